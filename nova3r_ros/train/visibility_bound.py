# Copyright 2026 nova3r_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

r"""
How far can a visibility score go on the points the model samples? Bounds from the views.

    python -m nova3r_ros.train.visibility_bound \
        --checkpoint checkpoints/nova3r_tiny.safetensors --data data/generated/room4/test \
        --limit 100 --out eval_output/visibility_bound \
        --probe-data data/generated/room4/train --probe-scenes 500

Issue 8 asks for a visibility AUROC of 0.85 with the evaluation's label: the GT visibility of
each sampled point's nearest GT point. The label depends on where the model put the point, so
even a perfect head cannot reach 1. This tool measures what *knowing what the cameras see*
would give, on the same points, labels and alignment as ``nova3r_eval``:

- ``head``: the visibility head's own logit (what the node published before the tenth
  release; with a surface head the node now publishes its fusion with the surface);
- ``ztest_view1`` / ``ztest_all``: GT depth at the point's projection minus its depth, in view 1
  or the best of the K views (GT intrinsics and poses; raw score, no fitting);
- ``learned(...)``: a small MLP on those inputs fitted on half the scenes and scored on the
  other half (two folds, every scene scored once): the z-test is not monotone in the label
  (points far in front of a surface are mostly off-surface guesses), so a calibrated bound is
  the honest one;
- with ``--depth-noise``: ``ztest_all~s``, the z-test against GT depth with log-depth noise of
  std s (and that depth's AbsRel): how accurate a depth estimate must be to clear the bar;
- with ``--probe-data``: ``probe``, a small pointmap head trained on the frozen image encoder's
  view-1 patch tokens (train split), compared by ray direction with each sampled point in the
  model's own frame (no intrinsics needed); its depth error (AbsRel on the test scenes) says
  how much of the views' depth the image tokens carry;
- with ``--pointmaps`` (a checkpoint with a pixel net): what the shipped fusion's *inputs* could
  give, each pointmap compared with the points by ``surface.ray_features`` at the model's
  settings: ``learned(head, model rays)`` (the shipped inputs); the same against view 1's GT
  pointmap (exact depth, same resolution), with the points as sampled or where the
  evaluation's alignment puts them (the label is read there); the model's pointmaps with the
  aligned points, or with the points fitted to the pixel pointmap (``fit_to_surface``, what a
  node could do); the cloud's own z-buffer; per-scene context; and, views 2..K, each view's GT
  pointmap or the pixel net's placed with the GT pose and scale (the fusion reads view 1 only;
  the label is visibility in any view).

Per-scene AUROC averaged over scenes, as the evaluation reports it. Writes ``<out>/bound.json``
and ``bound.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys
import time
from typing import Any

from nova3r_ros import allocator
from nova3r_ros.cli_format import HelpFormatter
from nova3r_ros.data.dataset import load_sample, select_views
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.evaluation.scoring import ground_truth
from nova3r_ros.geometry.align import align
from nova3r_ros.model import median3_scale
from nova3r_ros.model.preprocess import prepare_images
from nova3r_ros.model.surface import CHUNK, ray_features, SurfaceHead
from nova3r_ros.params import DEFAULTS
from nova3r_ros.train import surface_head as sh
import numpy as np
from scipy.spatial import cKDTree
import torch
from torch import nn
import torch.nn.functional as F

CLIP = 2.0  # feature clip, evaluation units (the scenes span ~2-6)
NO_HIT = 10.0  # a ray that hits nothing: free space up to the far clip
PROBE_HIDDEN = 192  # width of the pointmap probe (a `SurfaceHead`)
SELF_NEIGHBOURS = 16  # nearest directions of the cloud's own z-buffer feature


def ztest(points: np.ndarray, sample: dict[str, np.ndarray], views: int) -> np.ndarray:
    """
    Best over the first `views` views of (GT depth at the projection - point depth), metres.

    `points` (N, 3) metres in view 1's optical frame; -inf where no view sees the direction.
    """
    best = np.full(len(points), -np.inf)
    for v in range(views):
        inv = np.linalg.inv(np.asarray(sample['cam_to_view1'][v], dtype=np.float64))
        p = points @ inv[:3, :3].T + inv[:3, 3]
        k, depth = sample['intrinsics'][v], sample['depths'][v]
        h, w = depth.shape
        z = p[:, 2]
        front = z > 1e-3
        zs = np.where(front, z, 1.0)
        u = np.floor(k[0, 0] * p[:, 0] / zs + k[0, 2])
        r = np.floor(k[1, 1] * p[:, 1] / zs + k[1, 2])
        ok = front & (u >= 0) & (u < w) & (r >= 0) & (r < h)
        d = depth[r[ok].astype(int), u[ok].astype(int)]
        score = np.full(len(p), -np.inf)
        score[ok] = np.where(d > 0, d - z[ok], NO_HIT)
        best = np.maximum(best, score)
    return best


def noisy_depths(sample: dict[str, np.ndarray], sigma: float, patch: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """
    Return the sample with its depths multiplied by exp(noise), std `sigma` in log depth.

    Half the log variance is one factor per view (a scale error), half one factor per
    `patch`-pixel block (local shape errors), the two kinds a depth network makes.
    """
    out = dict(sample)
    depths = []
    for depth in sample['depths']:
        h, w = depth.shape
        blocks = rng.normal(size=(-(-h // patch), -(-w // patch)))
        local = np.kron(blocks, np.ones((patch, patch)))[:h, :w]
        log_factor = sigma / np.sqrt(2.0) * (rng.normal() + local)
        depths.append((depth * np.exp(log_factor)).astype(np.float32))
    out['depths'] = np.stack(depths)
    return out


def train_probe(model: Any, split: Path, count: int, views: Sequence[int], steps: int,
                seed: int, progress: bool = True) -> SurfaceHead:
    """Fit a fresh surface head on the frozen encoder's view-1 tokens of `count` train scenes."""
    torch.manual_seed(seed)
    probe = SurfaceHead(model.cfg.aggregator.dim, sh.grid_of(model), PROBE_HIDDEN)
    return sh.fit_surface(probe, sh.surface_cache(model, split, count, views, progress), steps,
                          seed, progress=progress)


def probe_features(probe: SurfaceHead, frame1: torch.Tensor, points: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`surface.ray_features` of the points (model frame, unaligned) against the probe."""
    with torch.no_grad():
        surface = probe(frame1[None].float())
        rays = ray_features(surface, torch.from_numpy(points)[None])[0].double().numpy()
    return rays[:, 0], rays[:, 1]


def scene_rows(model: Any, sample: dict[str, np.ndarray], num_points: int, num_steps: int,
               oversample: float, seed: int, probe: SurfaceHead | None,
               noise: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """Every feature and the label of one scene's sampled points (as the node samples them)."""
    tokens, frame1, _ = sh.encode(model, sample)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model.sample(tokens, num_points, num_steps, generator=generator,
                           visibility=True, oversample=oversample)
    pred = out['points'][0].double().numpy()
    gt = ground_truth(sample)
    aligned = align(pred, gt.points, 'chamfer', seed=seed).apply(pred)
    _, nearest = cKDTree(gt.points).query(aligned, k=1)
    scale = float(sample['median3_scale'])
    metres = aligned / scale
    views = int(sample['num_views'])
    rows = {
        'label': np.asarray(gt.visible, dtype=bool)[nearest],
        'head': out['visibility_logits'][0].numpy().astype(np.float64),
        'ztest_view1': np.clip(ztest(metres, sample, 1) * scale, -CLIP, CLIP),
        'ztest_all': np.clip(ztest(metres, sample, views) * scale, -CLIP, CLIP),
    }
    rng = np.random.default_rng(seed)
    for sigma in noise:
        noisy = noisy_depths(sample, sigma, model.cfg.patch_size, rng)
        rows[f'ztest_all~{sigma:g}'] = np.clip(ztest(metres, noisy, views) * scale, -CLIP, CLIP)
        valid = sample['depths'] > 0
        rows[f'absrel~{sigma:g}'] = np.array([np.mean(
            np.abs(noisy['depths'][valid] - sample['depths'][valid]) / sample['depths'][valid])])
    if probe is not None:
        rows['probe'], rows['probe_angle'] = probe_features(probe, frame1, pred)
        target, mask = sh.view1_pointmap(sample, sh.grid_of(model))
        data = (frame1[None].cpu(), torch.from_numpy(target)[None], torch.from_numpy(mask)[None])
        rows['probe_absrel'] = np.array([sh.absrel(probe, data)])
    return rows


def to_view(points: np.ndarray, sample: dict[str, np.ndarray], view: int, scale: float
            ) -> np.ndarray:
    """Move points (N, 3) from view 1's frame to view `view`'s (`scale` units per metre)."""
    inv = np.linalg.inv(np.asarray(sample['cam_to_view1'][view], dtype=np.float64))
    return (points / scale) @ inv[:3, :3].T * scale + inv[:3, 3] * scale


def view_scale(sample: dict[str, np.ndarray], view: int) -> float:
    """Return the units per metre `train.surface_head.view_pointmap` gives a view."""
    if view == 0:
        return float(sample['median3_scale'])
    inv = np.linalg.inv(np.asarray(sample['cam_to_view1'][view], dtype=np.float64))
    return float(median3_scale(sample['points'] @ inv[:3, :3].T + inv[:3, 3]))


def fit_to_surface(points: torch.Tensor, surface: torch.Tensor, iters: int = 10,
                   eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Scale (B,) and shift (B, 3) that put the sampled points on a pointmap's surface.

    Why: the evaluation labels each point after aligning the cloud to the complete GT (a
    per-scene shift ~0.4 units on the held-out scenes), and the fusion compares the unaligned
    cloud with pointmaps in the true frame. Each pointmap point should lie on the cloud (not the
    reverse: the cloud also holds what no camera sees), so this minimises the mean distance from
    every pointmap point to the nearest moved point, by the reweighted least squares of
    `geometry/align.py` in one direction, from the identity. The bound's `self_error` says how
    close that lands to the evaluation's alignment.
    points (B, N, 3), surface (B, R, 3) in the model's frame; non-finite points are ignored.
    """
    if points.dim() != 3 or surface.dim() != 3 or points.shape[0] != surface.shape[0]:
        raise ValueError(f'fit_to_surface needs (B, N, 3) points and (B, R, 3) surface, got '
                         f'{tuple(points.shape)} and {tuple(surface.shape)}')
    scales, shifts = [], []
    for p, g in zip(points.double(), surface.double(), strict=True):
        p = p[torch.isfinite(p).all(dim=-1)]
        g = g[torch.isfinite(g).all(dim=-1)]
        s, t = p.new_tensor(1.0), p.new_zeros(3)
        if len(p) > 1 and len(g) > 1:
            for _ in range(iters):
                moved = s * p + t
                idx = torch.cat([torch.cdist(g[i:i + CHUNK], moved).argmin(dim=1)
                                 for i in range(0, len(g), CHUNK)])
                a = p[idx]
                w = 1.0 / (s * a + t - g).norm(dim=-1).clamp_min(eps)
                w = w / w.sum()
                a_bar, b_bar = (w[:, None] * a).sum(0), (w[:, None] * g).sum(0)
                a_c, b_c = a - a_bar, g - b_bar
                denom = (w * (a_c * a_c).sum(-1)).sum()
                if denom <= 0:
                    break
                s = ((w * (a_c * b_c).sum(-1)).sum() / denom).clamp(0.5, 2.0)
                t = b_bar - s * a_bar
        scales.append(s)
        shifts.append(t)
    return torch.stack(scales).float(), torch.stack(shifts).float()


def pointmap_rows(model: Any, sample: dict[str, np.ndarray], num_points: int, num_steps: int,
                  oversample: float, seed: int) -> dict[str, np.ndarray]:
    """
    One scene's label, published logit and ray features against every pointmap source.

    As the node samples (the model's own pointmaps, unaligned points in its frame); views 2..K
    are compared in their own camera frame, placed with the GT pose and scale, so those rows
    bound what a pose estimate could add, not what the node can do today.
    """
    d = model.cfg.decoder
    images, _ = prepare_images(list(sample['images']), model.cfg)
    images = images[None].to(model.device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tokens, surface = model.encode_views(images)
        out = model.sample(tokens, num_points, num_steps, generator=generator,
                           oversample=oversample, surface=surface)
        rays = model.ray_features(surface, out['points'])[0].double().numpy()
    points = out['points'][0].double().numpy()
    gt = ground_truth(sample)
    fit = align(points, gt.points, 'chamfer', seed=seed)
    aligned = fit.apply(points)
    _, nearest = cKDTree(gt.points).query(aligned, k=1)

    def features(pointmap: np.ndarray, pts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = ray_features(torch.from_numpy(pointmap).float()[None],
                             torch.from_numpy(pts).float()[None], d.fusion_neighbours,
                             d.fusion_centred, d.fusion_position)
        return f[0].double().numpy()

    grid = sh.grid_of(model)
    s1 = view_scale(sample, 0)
    rows = {'label': np.asarray(gt.visible, dtype=bool)[nearest],
            'fused': out['visibility_logits'][0].numpy().astype(np.float64),
            'head': out.get('visibility_head_logits', out['visibility_logits'])[0].numpy()
            .astype(np.float64),
            'rays_model': rays,
            'rays_gt1': features(sh.view_pointmap(sample, grid, 0)[0], points),
            # the same with the points where the evaluation's alignment puts them
            'rays_gt1_aligned': features(sh.view_pointmap(sample, grid, 0)[0], aligned),
            'ztest_view1': np.clip(ztest(aligned / s1, sample, 1) * s1, -CLIP, CLIP),
            'align_scale': np.array([fit.scale]),
            'align_shift': np.array([float(np.linalg.norm(fit.shift))])}
    with torch.no_grad():
        rows['rays_model_aligned'] = model.ray_features(
            surface, torch.from_numpy(aligned).float()[None])[0].double().numpy()
        pixel = surface[:, -surface.shape[1] // (1 + int(model.surface_head is not None)):]
        scale, shift = fit_to_surface(out['points'], pixel)
        moved = scale[:, None, None] * out['points'] + shift[:, None]
        rows['rays_model_self'] = model.ray_features(surface, moved)[0].double().numpy()
        # the cloud against itself along view 1's rays: a z-buffer on the points, which a
        # shift of the whole cloud (what the evaluation's alignment adds) barely changes
        own = ray_features(out['points'], out['points'], min(SELF_NEIGHBOURS, len(points)))
        rows['rays_self'] = own[0].double().numpy()
    # what a per-point fusion cannot see: where the scene's cloud and pointmap sit, per scene
    pm = pixel[0].double().numpy()
    context = np.concatenate([[float(scale[0])], shift[0].double().numpy(), points.mean(0),
                              pm.mean(0), [np.median(np.linalg.norm(points, axis=1)),
                                           np.median(np.linalg.norm(pm, axis=1))]])
    rows['scene_context'] = np.repeat(context[None], len(points), axis=0)
    # how far the self-fit lands from the evaluation's alignment, at the cloud's centre
    centre = points.mean(axis=0)
    rows['self_error'] = np.array([float(np.linalg.norm(
        float(scale[0]) * centre + shift[0].double().numpy() - fit.apply(centre[None])[0]))])
    for v in range(1, int(sample['num_views'])):
        ratio = s1 / view_scale(sample, v)
        local = to_view(points, sample, v, s1)
        rows[f'rays_gt{v + 1}'] = features(sh.view_pointmap(sample, grid, v)[0] * ratio, local)
        if model.pixel_surface is not None:
            with torch.no_grad():
                pix = model.pixel_surface(images[:, v])[0].double().cpu().numpy()
            rows[f'rays_pix{v + 1}'] = features(pix * ratio, local)
    return rows


def pointmap_bound(rows: list[dict[str, np.ndarray]], seed: int, iters: int = 1500
                   ) -> dict[str, float]:
    """Raw AUROC of the published logit and the learned bound of every pointmap combination."""
    labels = np.concatenate([r['label'] for r in rows])
    scene = np.concatenate([np.full(len(r['label']), i) for i, r in enumerate(rows)])
    others = sorted(k for k in rows[0] if k.startswith('rays_gt') and k != 'rays_gt1')
    pixels = sorted(k for k in rows[0] if k.startswith('rays_pix'))
    combos = {'learned(head)': ['head'],
              'learned(head, model rays)': ['head', 'rays_model'],
              'learned(head, GT view-1 rays)': ['head', 'rays_gt1'],
              'learned(head, ztest_view1)': ['head', 'ztest_view1'],
              'learned(head, GT view-1 rays, aligned points)': ['head', 'rays_gt1_aligned'],
              'learned(head, model rays, aligned points)': ['head', 'rays_model_aligned'],
              'learned(head, model rays, points fitted to the pixel pointmap)':
                  ['head', 'rays_model_self'],
              'learned(head, model rays, own z-buffer)': ['head', 'rays_model', 'rays_self'],
              'learned(head, model rays, scene context)': ['head', 'rays_model',
                                                           'scene_context']}
    if others:
        combos['learned(head, model rays, GT rays views 2..K)'] = ['head', 'rays_model'] + others
        combos['learned(head, GT rays every view)'] = ['head', 'rays_gt1'] + others
    if pixels:
        combos['learned(head, model rays, pixel-net rays views 2..K at GT pose)'] = (
            ['head', 'rays_model'] + pixels)
    published = [auroc(r['fused'], r['label']) for r in rows]
    result = {'fused (published)': float(np.nanmean(published))}
    for name, cols in combos.items():
        x = np.concatenate([np.concatenate([r[c] for r in rows]).reshape(len(labels), -1)
                            for c in cols], axis=1)
        result[name] = learned_auroc(x, labels, scene, seed, iters)
    result['visible_fraction'] = float(labels.mean())
    result['align_scale'] = float(np.mean([r['align_scale'][0] for r in rows]))
    result['align_shift'] = float(np.mean([r['align_shift'][0] for r in rows]))
    result['self_error'] = float(np.mean([r['self_error'][0] for r in rows]))
    return result


def learned_auroc(x: np.ndarray, labels: np.ndarray, scene: np.ndarray, seed: int,
                  iters: int = 1500) -> float:
    """
    Mean per-scene AUROC of a small MLP on `x` (R, F), two folds over scenes.

    Each fold fits on one half of the scenes and scores the other, so every scene is scored by
    an MLP that never saw it.
    """
    ids = np.unique(scene)
    folds = [ids[: len(ids) // 2], ids[len(ids) // 2:]]
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(labels.astype(np.float32))
    values = []
    for fit_ids, test_ids in ((folds[0], folds[1]), (folds[1], folds[0])):
        train = torch.from_numpy(np.nonzero(np.isin(scene, fit_ids))[0])
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(),
                            nn.Linear(64, 1))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(iters):
            idx = train[torch.randint(len(train), (4096,))]
            loss = F.binary_cross_entropy_with_logits(net(xt[idx]).squeeze(-1), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores = net(xt).squeeze(-1).numpy()
        values += [auroc(scores[scene == s], labels[scene == s]) for s in test_ids]
    return float(np.nanmean(values))


RAW = ('head', 'ztest_view1', 'ztest_all')
LEARNED = {
    'learned(head)': ('head',),
    'learned(ztest_view1)': ('ztest_view1',),
    'learned(ztest_all)': ('ztest_all',),
    'learned(head, ztest_all)': ('head', 'ztest_all'),
}
LEARNED_PROBE = {
    'learned(probe)': ('probe', 'probe_angle'),
    'learned(head, probe)': ('head', 'probe', 'probe_angle'),
}


def bound(rows: list[dict[str, np.ndarray]], seed: int, iters: int = 1500
          ) -> dict[str, float]:
    """Every score's mean per-scene AUROC (raw scores as they are, learned ones two-fold)."""
    labels = np.concatenate([r['label'] for r in rows])
    scene = np.concatenate([np.full(len(r['label']), i) for i, r in enumerate(rows)])
    result = {name: float(np.nanmean([auroc(r[name], r['label']) for r in rows]))
              for name in RAW}
    combos = dict(LEARNED)
    if 'probe' in rows[0]:
        combos.update(LEARNED_PROBE)
        result['probe_absrel'] = float(np.mean([r['probe_absrel'][0] for r in rows]))
    for key in rows[0]:
        if key.startswith('ztest_all~'):
            sigma = key.split('~')[1]
            combos[f'learned(head, {key})'] = ('head', key)
            result[f'depth_absrel~{sigma}'] = float(np.mean([r[f'absrel~{sigma}'][0]
                                                             for r in rows]))
    for name, cols in combos.items():
        x = np.stack([np.concatenate([r[c] for r in rows]) for c in cols], axis=1)
        result[name] = learned_auroc(x, labels, scene, seed, iters)
    result['visible_fraction'] = float(labels.mean())
    return result


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.train.visibility_bound',
                                description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=HelpFormatter)
    p.add_argument('--checkpoint', required=True, type=Path, help='model (safetensors)')
    p.add_argument('--data', required=True, type=Path, help='held-out split directory')
    p.add_argument('--views', type=int, default=2, help='first K views of each sample')
    p.add_argument('--limit', type=int, default=100, help='scenes scored')
    p.add_argument('--num-points', type=int, default=DEFAULTS['num_points'],
                   help="N points per scene (the node's default)")
    p.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                   help="sampler steps (the node's default)")
    p.add_argument('--oversample', type=float, default=DEFAULTS['oversample'],
                   help="draw ratio ranked by the confidence head (the node's default)")
    p.add_argument('--probe-data', type=Path, default=None,
                   help='train split for the pointmap probe (off without it)')
    p.add_argument('--probe-scenes', type=int, default=500, help='probe training scenes')
    p.add_argument('--probe-steps', type=int, default=1500, help='probe optimiser steps')
    p.add_argument('--depth-noise', type=float, nargs='*', default=[],
                   help='also z-test against GT depth with this log-depth noise (std; half '
                        'per view, half per patch): how accurate must depth be')
    p.add_argument('--pointmaps', action='store_true',
                   help='instead: bound the fusion with better pointmaps (view 1 exact; views '
                        '2..K exact or the pixel net at the GT pose); needs a pixel net')
    p.add_argument('--learn-iters', type=int, default=1500,
                   help='optimiser steps of each learned bound (per fold)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('--out', type=Path, default=Path('eval_output/visibility_bound'))
    return p


def markdown(result: dict[str, float], args: argparse.Namespace) -> str:
    """Render the result as a small table with the settings it was measured at."""
    lines = [f'Visibility AUROC bounds: {args.limit} scenes of `{args.data}`, K={args.views}, '
             f'N={args.num_points}, {args.num_steps} steps, oversample {args.oversample}, '
             f'`{args.checkpoint}`', '', '| score | AUROC |', '|---|---|']
    lines += [f'| {k} | {v:.4f} |' for k, v in result.items()
              if k not in ('visible_fraction', 'probe_absrel', 'align_scale', 'align_shift',
                           'self_error')
              and 'absrel~' not in k]
    lines.append('')
    lines.append(f"Visible fraction of the labels: {result['visible_fraction']:.3f}")
    if 'align_scale' in result:
        lines.append(f"Mean alignment scale {result['align_scale']:.3f}, shift "
                     f"{result['align_shift']:.3f} (normalised units); the fit to the pixel "
                     f"pointmap moves the cloud's centre {result['self_error']:.3f} from it")
    if 'probe_absrel' in result:
        lines.append(f"Probe depth AbsRel (view 1): {result['probe_absrel']:.3f}")
    for key, value in result.items():
        if key.startswith('depth_absrel~'):
            lines.append(f"Depth AbsRel of the GT depth with log noise {key.split('~')[1]}: "
                         f'{value:.3f}')
    return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: score every bound and write the report."""
    p = build_parser()
    args = p.parse_args(argv)
    for name in ('views', 'limit', 'num_points', 'num_steps', 'probe_scenes', 'probe_steps',
                 'learn_iters', 'threads'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.limit < 2:
        p.error('--limit must be >= 2 (the learned bounds fit on half the scenes)')
    if args.oversample < 1.0:
        p.error('--oversample must be >= 1')
    if any(not 0.0 < sigma <= 5.0 for sigma in args.depth_noise):
        p.error('--depth-noise values must be in (0, 5]')
    if not args.checkpoint.is_file():
        p.error(f'--checkpoint {args.checkpoint}: no such file')
    for split in (args.data, args.probe_data):
        if split is not None and not (split / 'manifest.json').is_file():
            p.error(f'{split}: no manifest.json (not a generated split)')
    from nova3r_ros.model import Nova3r
    from tqdm import tqdm

    allocator.tune_malloc()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    try:
        model = Nova3r.from_checkpoint(str(args.checkpoint)).eval()
        files = sh.split_files(args.data, args.limit)
        if args.pointmaps and (model.pixel_surface is None
                               or model.visibility_fusion is None):
            raise ValueError(f'--pointmaps needs a checkpoint with a pixel net and a fusion; '
                             f'{args.checkpoint} has none')
        probe = None
        if args.probe_data is not None and not args.pointmaps:
            probe = train_probe(model, args.probe_data, args.probe_scenes, (1, 2, 2, 3, 4),
                                args.probe_steps, args.seed, not args.no_progress)
        rows = []
        for i, path in enumerate(tqdm(files, desc='scenes', unit='scene',
                                      disable=args.no_progress, dynamic_ncols=True)):
            sample = select_views(load_sample(path), args.views)
            if args.pointmaps:
                rows.append(pointmap_rows(model, sample, args.num_points, args.num_steps,
                                          args.oversample, args.seed + i))
                continue
            rows.append(scene_rows(model, sample, args.num_points, args.num_steps,
                                   args.oversample, args.seed + i, probe, args.depth_noise))
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    result = (pointmap_bound if args.pointmaps else bound)(rows, args.seed, args.learn_iters)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / 'bound.json').write_text(json.dumps(
        {'settings': settings, 'result': result, 'seconds': time.monotonic() - start},
        indent=2) + '\n')
    text = markdown(result, args)
    (args.out / 'bound.md').write_text(text)
    print(text, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
