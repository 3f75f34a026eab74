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
Add a view-1 surface head and a visibility fusion to a model (every other weight frozen).

Why: the published visibility reads only the decoder's features and misses what view 1's depth
says (`train/visibility_bound.py`: with exact depth of the views a calibrated z-test
reaches AUROC 0.88 on the same points, the head 0.69). Step 1 fits `model.surface.SurfaceHead`
on the frozen image encoder's view-1 patch tokens against the GT pointmap of view 1 (normalised
units, as the model's points); step 2 samples training scenes as the node does and fits
`VisibilityFusion` on (head logit, `ray_features`) against the evaluation's label (the GT
visibility of each point's nearest GT point after the chamfer alignment). The points, and so
every geometry metric, do not change. With `--top N` the head reads view 1's tokens through its
own copy of the aggregator's last N layers, fine-tuned with it (every view's tokens entering
them are cached instead). A long fit saves its state next to `--out`; rerun to go on.

    python -m nova3r_ros.train.surface_head --checkpoint checkpoints/nova3r_tiny.safetensors \
        --data data/generated/room4 --out runs/surface/model.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import json
import math
from pathlib import Path
import sys
import time

from nova3r_ros.cli_format import HelpFormatter
from nova3r_ros.data.dataset import load_sample, select_views
from nova3r_ros.evaluation.cli import file_digest
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.evaluation.scoring import ground_truth
from nova3r_ros.geometry.align import align
from nova3r_ros.model import median3_scale, Nova3r
from nova3r_ros.model.image_encoder import AggregatorTop
from nova3r_ros.model.preprocess import prepare_images
from nova3r_ros.model.surface import (
    pointmap_loss,
    SUB,
    SurfaceHead,
    VisibilityFusion,
)
from nova3r_ros.params import DEFAULTS
from nova3r_ros.train.data import camera_pointmap
from nova3r_ros.train.visibility_head import (
    add_precision,
    check_counts,
    check_node_oversample,
    check_paths,
    frozen_model,
    split_files,
    with_fresh,
)
import numpy as np
from safetensors.torch import load_file, save_file
from scipy.spatial import cKDTree
import torch
from torch import nn
import torch.nn.functional as F


def view_pointmap(sample: dict[str, np.ndarray], grid: tuple[int, int], view: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """
    GT pointmap of one view (rows*SUB*cols*SUB, 3) in its own normalised units, and validity.

    View 1's scale is the sample's `median3_scale`; another view's is the same rule (median
    range 3) applied to the complete GT seen from that camera, so every row means the same.
    """
    if view == 0:
        scale = float(sample['median3_scale'])
    else:
        to_view = np.linalg.inv(sample['cam_to_view1'][view].astype(np.float64))
        scale = float(median3_scale(sample['points'] @ to_view[:3, :3].T + to_view[:3, 3]))
    pts, valid = camera_pointmap(sample['depths'][view], sample['intrinsics'][view], grid)
    return (pts * scale).astype(np.float32), valid


def view1_pointmap(sample: dict[str, np.ndarray], grid: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """GT view-1 pointmap (rows*SUB*cols*SUB, 3) in normalised units and its validity (R,)."""
    return view_pointmap(sample, grid, 0)


def grid_of(model: Nova3r) -> tuple[int, int]:
    """Patch grid (rows, cols) of the model's input size."""
    cfg = model.cfg
    return cfg.image_height // cfg.patch_size, cfg.image_width // cfg.patch_size


def encode(model: Nova3r, sample: dict[str, np.ndarray], tap: int | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Scene tokens (1, M, C), view 1's patch tokens (P, D) and model-input image (3, H, W).

    With `tap` the second is every view's tokens entering that aggregator layer (K, T, D).
    """
    images, _ = prepare_images(list(sample['images']), model.cfg)
    with torch.no_grad():
        tokens, frames = model.encode_images(images[None].to(model.device), frames=True,
                                             tap=tap)
    return tokens, frames[0] if tap is not None else frames[0, 0], images[0]


def surface_cache(model: Nova3r, split: Path, count: int, views: Sequence[int],
                  progress: bool = True, start: int = 0, images: bool = False,
                  tap: int | None = None) -> tuple[torch.Tensor, ...]:
    """
    View-1 patch tokens (S, P, D) fp16, GT pointmaps (S, R, 3) and validity (S, R).

    With `images` also view 1's model-input images (S, 3, H, W) fp16, which a stem reads. With
    `tap` the tokens are every view's entering that aggregator layer (S, max(views), T, D),
    zero past each scene's K, and a fourth tensor holds each scene's K (S,) (a surface top).
    """
    from tqdm import tqdm

    grid, k_max = grid_of(model), max(views)
    xs, ys, ms, ims, ks = [], [], [], [], []
    for i, path in enumerate(tqdm(split_files(split, count, start), desc=f'surface {split.name}',
                                  unit='scene', disable=not progress, dynamic_ncols=True)):
        k = views[(start + i) % len(views)]
        sample = select_views(load_sample(path), k)
        _, frame1, image1 = encode(model, sample, tap)
        if tap is not None:
            frame1 = F.pad(frame1, (0, 0, 0, 0, 0, k_max - k))
        target, mask = view1_pointmap(sample, grid)
        xs.append(frame1.cpu().half())
        ys.append(torch.from_numpy(target))
        ms.append(torch.from_numpy(mask))
        ks.append(k)
        if images:
            ims.append(image1.half())
    data = torch.stack(xs), torch.stack(ys), torch.stack(ms)
    if tap is not None:
        return (*data, torch.tensor(ks))
    return (*data, torch.stack(ims)) if images else data


def cached_surface(model: Nova3r, checkpoint: Path, cache: Path | None, split: Path, count: int,
                   views: Sequence[int], progress: bool = True, start: int = 0,
                   images: bool = False, tap: int | None = None) -> tuple[torch.Tensor, ...]:
    """
    `surface_cache`, kept in `cache` (safetensors) when given.

    Why: encoding thousands of scenes costs more than a fit, and refits with other head
    settings read the same tokens. The file name holds the checkpoint's digest, the split, the
    scene range, the views and whether it holds images, so a changed input never reads a stale
    cache.
    """
    if images and tap is not None:
        raise ValueError('a surface top reads tokens only (no stem)')
    if cache is None:
        return surface_cache(model, split, count, views, progress, start, images, tap)
    names = ('tokens', 'pointmaps', 'valid', 'images' if images else 'views')
    names = names[:4 if images or tap is not None else 3]
    tag = '-'.join(str(v) for v in views) + ('_images' if images else '')
    tag += '' if tap is None else f'_tap{tap}'
    path = cache / f'{file_digest(checkpoint)}_{split.name}_{start}_{count}_k{tag}.safetensors'
    if path.exists():
        got = load_file(str(path))
        return tuple(got[name] for name in names)
    data = surface_cache(model, split, count, views, progress, start, images, tap)
    cache.mkdir(parents=True, exist_ok=True)
    save_file(dict(zip(names, data, strict=True)), str(path))
    return data


def check_same_tokens(model: Nova3r, path: Path) -> None:
    """
    Refuse `path` as the token cache's key unless its image encoder is `model`'s.

    Why: the cache is keyed by a file's digest; a head refit from a later release (a warm
    start) reads the tokens an earlier file cached only when both encode alike.
    """
    from safetensors import safe_open, SafetensorError

    ours = {f'image_encoder.{k}': v for k, v in model.image_encoder.state_dict().items()}
    try:
        with safe_open(str(path), 'pt') as f:
            if not set(ours) <= set(f.keys()):
                raise ValueError(f'{path} lacks image encoder weights this model has')
            for name, value in ours.items():
                if not torch.equal(f.get_tensor(name).to(value.device, value.dtype), value):
                    raise ValueError(f'{path} encodes differently from --checkpoint ({name})')
    except SafetensorError as exc:  # not a safetensors file
        raise ValueError(f'{path}: {exc}') from exc


def run_head(head: SurfaceHead, data: tuple[torch.Tensor, ...],
             idx: torch.Tensor | slice = slice(None), top: AggregatorTop | None = None
             ) -> torch.Tensor:
    """
    Run the head on cached rows `idx` (tokens, and view-1 images for a stem).

    With `top` the rows hold every view's tokens entering it and must share one K.
    """
    if top is not None:
        ks = data[3][idx].unique()
        if len(ks) != 1:
            raise ValueError(f'a surface top runs one K at a time, rows have {ks.tolist()}')
        k = int(ks[0])
        return head(top(data[0][idx][:, :k].float(), head.grid)[:, 0])
    image = data[3][idx].float() if head.stem is not None else None
    return head(data[0][idx].float(), image)


def depth_edges(depth: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int],
                threshold: float = 0.1) -> torch.Tensor:
    """
    Mark valid pointmap points (B, R) where a valid 4-neighbour steps > `threshold` in log depth.

    Why: visibility flips at occlusion edges, so depth there is what the fusion reads; a mean
    AbsRel over all points can improve while it does not.
    """
    rows, cols = grid[0] * SUB, grid[1] * SUB
    if depth.shape[-1] != rows * cols:
        raise ValueError(f'pointmap has {depth.shape[-1]} points, the grid {rows}x{cols}')
    logz = depth.clamp_min(1e-6).log().reshape(-1, rows, cols)
    ok = valid.bool().reshape(-1, rows, cols)
    edge = torch.zeros_like(ok)
    for dim in (1, 2):
        n = logz.shape[dim] - 1
        a, b = logz.narrow(dim, 0, n), logz.narrow(dim, 1, n)
        step = ((a - b).abs() > threshold) & ok.narrow(dim, 0, n) & ok.narrow(dim, 1, n)
        edge.narrow(dim, 0, n).logical_or_(step)
        edge.narrow(dim, 1, n).logical_or_(step)
    return (edge & ok).reshape(valid.shape)


def head_depths(head: SurfaceHead, data: tuple[torch.Tensor, ...],
                top: AggregatorTop | None = None) -> torch.Tensor:
    """Run the head on every cached row: its pointmap depth (B, R), once for any split."""
    y = data[1]
    z = torch.empty(y.shape[:2])
    groups = ([torch.nonzero(data[3] == k).flatten() for k in data[3].unique().tolist()]
              if top is not None else [torch.arange(len(y))])
    with torch.no_grad():
        for rows in groups:
            for chunk in rows.split(64):
                z[chunk] = run_head(head, data, chunk, top)[..., 2]
    return z


def depth_absrel(z: torch.Tensor, data: tuple[torch.Tensor, ...],
                 points: torch.Tensor | None = None) -> float:
    """
    Mean over scenes of the AbsRel of depths `z` (B, R) against the rows' GT (valid points).

    `points` (B, R) bool narrows the points averaged (scenes without any are left out).
    """
    _, y, m = data[:3]
    err = (z - y[..., 2]).abs() / y[..., 2].clamp_min(1e-6)
    if points is None:
        return float(((err * m).sum(1) / m.sum(1).clamp_min(1)).mean())
    m = m.bool() & points.bool()
    count = m.sum(1)
    per_scene = (err * m).sum(1)[count > 0] / count[count > 0]
    return float(per_scene.mean()) if len(per_scene) else float('nan')


def absrel(head: SurfaceHead, data: tuple[torch.Tensor, ...],
           top: AggregatorTop | None = None, points: torch.Tensor | None = None) -> float:
    """Mean over scenes of the depth AbsRel of the head's pointmap (see `depth_absrel`)."""
    return depth_absrel(head_depths(head, data, top), data, points)


def set_dropout(head: SurfaceHead, dropout: float) -> None:
    """Set the dropout of the head's transformer layers (eval mode ignores it)."""
    for module in head.modules():
        if isinstance(module, nn.Dropout):
            module.p = dropout
        elif isinstance(module, nn.MultiheadAttention):
            module.dropout = dropout


def cosine_factor(steps: int) -> Callable[[int], float]:
    """LR factor for `LambdaLR`: cosine from 1 to 1/20 over `steps` (each group its own LR)."""
    return lambda s: 0.05 + 0.475 * (1.0 + math.cos(math.pi * min(s / steps, 1.0)))


def save_fit_state(path: Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler, step: int, key: dict) -> None:
    """
    Write a fit's weights, optimiser, schedule and RNG after `step` steps (atomic replace).

    Why: a fit with a surface top runs for hours on a CPU, longer than a working session; the
    state lets a rerun go on exactly where it stopped. `key` names what was fitted, so a rerun
    with other settings never continues a foreign fit.
    """
    tensors = {f'{name}.{k}': v.detach().contiguous()
               for name, module in modules.items() for k, v in module.state_dict().items()}
    state = opt.state_dict()
    for i, slots in state['state'].items():
        for name, value in slots.items():
            tensors[f'opt.{i}.{name}'] = torch.as_tensor(value).detach().clone()
    tensors['rng'] = torch.get_rng_state()
    meta = {'key': json.dumps(key, sort_keys=True), 'step': str(step),
            'param_groups': json.dumps(state['param_groups']),
            'scheduler': json.dumps(sched.state_dict())}
    tmp = path.with_name(path.name + '.tmp')
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_fit_state(path: Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler, key: dict) -> int:
    """Restore `save_fit_state`'s file into the fit; return its step (ValueError if foreign)."""
    from safetensors import safe_open

    with safe_open(str(path), 'pt') as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get('key') != json.dumps(key, sort_keys=True):
        raise ValueError(f'{path} holds another fit ({meta.get("key")}); delete it to start over')
    for name, module in modules.items():
        prefix = f'{name}.'
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                if k.startswith(prefix)})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith('opt.'):
            _, i, name = k.split('.', 2)
            slots.setdefault(int(i), {})[name] = v
    opt.load_state_dict({'state': slots, 'param_groups': json.loads(meta['param_groups'])})
    sched.load_state_dict(json.loads(meta['scheduler']))
    torch.set_rng_state(tensors['rng'])
    return int(meta['step'])


def fit_surface(head: SurfaceHead, data: tuple[torch.Tensor, ...],
                steps: int, seed: int, lr: float = 1e-3, batch: int = 16,
                progress: bool = True, dropout: float = 0.0,
                top: AggregatorTop | None = None, top_lr: float = 1e-4,
                state: Path | None = None, save_every: int = 200, until: int | None = None
                ) -> SurfaceHead:
    """
    Train with AdamW on `pointmap_loss`, cosine LR; returns the head in eval mode.

    `dropout` (training only: eval mode ignores it) fights the fit to its training scenes,
    which a head on 1 000 scenes fits far better than unseen ones. With `top` (a copy of the
    aggregator's last layers, fine-tuned with its own `top_lr`) each step's scenes share one K,
    drawn as often as the data holds it. With `state` the fit is saved there every `save_every`
    steps and goes on from it when the file exists (the same steps as one uninterrupted run);
    `until` stops it after that many steps in all (saved), for a rerun to finish.
    """
    from tqdm import tqdm

    x, y, m = data[:3]
    torch.manual_seed(seed)
    set_dropout(head, dropout)
    head.requires_grad_(True).train()
    if top is None:
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
        sched: torch.optim.lr_scheduler.LRScheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 20))
    else:
        top.requires_grad_(True).train()
        opt = torch.optim.AdamW([{'params': head.parameters(), 'lr': lr},
                                 {'params': top.parameters(), 'lr': top_lr}], weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(  # the same cosine to 1/20, per group
            opt, cosine_factor(steps))
        pools = {k: torch.nonzero(data[3] == k).flatten() for k in data[3].unique().tolist()}
    modules: dict[str, nn.Module] = {'head': head} if top is None else {'head': head, 'top': top}
    key = {'steps': steps, 'seed': seed, 'lr': lr, 'batch': batch, 'dropout': dropout,
           'top_lr': top_lr if top is not None else None, 'scenes': len(x),
           'shapes': {n: sorted((k, list(v.shape)) for k, v in m.state_dict().items())
                      for n, m in modules.items()}}
    done = 0
    if state is not None and state.exists():
        done = load_fit_state(state, modules, opt, sched, key)
    end = steps if until is None else min(until, steps)
    for step in tqdm(range(done, end), desc='surface fit', unit='step', disable=not progress,
                     dynamic_ncols=True, initial=done, total=steps):
        if top is None:
            idx = torch.randint(len(x), (batch,))
        else:
            pool = pools[int(data[3][torch.randint(len(x), (1,))])]
            idx = pool[torch.randint(len(pool), (batch,))]
        loss = pointmap_loss(run_head(head, data, idx, top), y[idx], m[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if state is not None and ((step + 1) % save_every == 0 or step + 1 == end):
            save_fit_state(state, modules, opt, sched, step + 1, key)
    if top is not None:
        top.requires_grad_(False).eval()
    return head.requires_grad_(False).eval()


def view_set(model: Nova3r, split: Path, count: int, views: Sequence[int],
             progress: bool = True, start: int = 0) -> tuple[torch.Tensor, ...]:
    """
    Load what a surface encoder trains on into memory: (images, pointmaps, valid, scales, ks).

    Images (S, Kmax, 3, H, W) uint8 of the first Kmax = max(views) views, view-1 pointmaps
    (S, R, 3) in metres, validity (S, R), `median3_scale` of each K (S, Kmax) (the pointmap's
    units follow the K views' points) and each scene's K in the `views` cycle (S,), which
    validation uses.
    """
    from tqdm import tqdm

    grid, k_max = grid_of(model), max(views)
    ims, pms, ms, scales, ks = [], [], [], [], []
    for i, path in enumerate(tqdm(split_files(split, count, start), desc=f'views {split.name}',
                                  unit='scene', disable=not progress, dynamic_ncols=True)):
        sample = load_sample(path)
        if int(sample['num_views']) < k_max:
            raise ValueError(f'{path}: {int(sample["num_views"])} views, --views asks {k_max}')
        sample = select_views(sample, k_max)
        images, _ = prepare_images(list(sample['images']), model.cfg)
        ims.append((images * 255.0).round().to(torch.uint8))
        target, mask = view1_pointmap(sample, grid)
        pms.append(torch.from_numpy(target / float(sample['median3_scale'])))
        ms.append(torch.from_numpy(mask))
        scales.append(torch.tensor([float(select_views(sample, k)['median3_scale'])
                                    for k in range(1, k_max + 1)]))
        ks.append(views[(start + i) % len(views)])
    return (torch.stack(ims), torch.stack(pms), torch.stack(ms), torch.stack(scales),
            torch.tensor(ks))


def encoder_pointmaps(model: Nova3r, data: tuple[torch.Tensor, ...], idx: torch.Tensor, k: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface encoder + head on scenes `idx` with their first k views -> (pred, target)."""
    assert model.surface_head is not None
    images = data[0][idx, :k].float() / 255.0
    view1 = images[:, 0] if model.surface_head.stem is not None else None
    pred = model.surface_head(model.surface_frames(images)[:, 0], view1)
    return pred, data[1][idx] * data[3][idx, k - 1][:, None, None]


def encoder_absrel(model: Nova3r, data: tuple[torch.Tensor, ...]) -> float:
    """Mean over scenes of the depth AbsRel of the surface encoder + head (each scene's K)."""
    ks, errs = data[4], torch.zeros(len(data[4]))
    with torch.no_grad():
        for k in ks.unique().tolist():
            rows = torch.nonzero(ks == k).flatten()
            for chunk in rows.split(16):
                pred, target = encoder_pointmaps(model, data, chunk, k)
                m = data[2][chunk].float()
                err = (pred[..., 2] - target[..., 2]).abs() / target[..., 2].clamp_min(1e-6)
                errs[chunk] = (err * m).sum(1) / m.sum(1).clamp_min(1)
    return float(errs.mean())


def fit_encoder(model: Nova3r, data: tuple[torch.Tensor, ...], views: Sequence[int],
                steps: int, seed: int, lr: float = 1e-3, encoder_lr: float = 1e-4,
                batch: int = 8, progress: bool = True, dropout: float = 0.0,
                val: tuple[torch.Tensor, ...] | None = None, val_every: int = 0) -> Nova3r:
    """
    Fine-tune the surface encoder with the surface head on `pointmap_loss` (K cycles `views`).

    AdamW, one LR per part (the encoder starts from trained weights, the head may be fresh),
    cosine to 1/20. With `val`, prints the held-out depth AbsRel every `val_every` steps: the
    encoder has 11 M weights and a few thousand scenes, so watch it over-fit.
    """
    from tqdm import tqdm

    enc, head = model.surface_encoder, model.surface_head
    if enc is None or head is None:
        raise ValueError('fit_encoder needs a model with a surface encoder and head')
    torch.manual_seed(seed)
    set_dropout(head, dropout)
    opt = torch.optim.AdamW([{'params': enc.parameters(), 'lr': encoder_lr},
                             {'params': head.parameters(), 'lr': lr}], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_factor(steps))
    if val is not None and val_every:
        print(f'step 0: val depth AbsRel {encoder_absrel(model, val):.4f}', flush=True)
    enc.requires_grad_(True).train()
    head.requires_grad_(True).train()
    bar = tqdm(range(steps), desc='surface encoder fit', unit='step', disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        k = views[step % len(views)]
        idx = torch.randint(len(data[0]), (batch,))
        pred, target = encoder_pointmaps(model, data, idx, k)
        loss = pointmap_loss(pred, target, data[2][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if val is not None and val_every and (step + 1) % val_every == 0:
            enc.eval()
            head.eval()
            score = encoder_absrel(model, val)
            enc.train()
            head.train()
            bar.write(f'step {step + 1}: loss {loss.item():.4f}, val depth AbsRel {score:.4f}')
    enc.requires_grad_(False).eval()
    head.requires_grad_(False).eval()
    return model


def fusion_rows(model: Nova3r, split: Path, count: int, views: Sequence[int], num_points: int,
                num_steps: int, oversample: float, keep: int, seed: int,
                progress: bool = True, start: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(head logit, ray features) rows (R, 3), labels (R,) and scene ids, sampled as the node."""
    from tqdm import tqdm

    rows, labels, scene = [], [], []
    for i, path in enumerate(tqdm(split_files(split, count, start), desc=f'fusion {split.name}',
                                  unit='scene', disable=not progress, dynamic_ncols=True)):
        sample = select_views(load_sample(path), views[(start + i) % len(views)])
        images, _ = prepare_images(list(sample['images']), model.cfg)
        generator = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            tokens, surface = model.encode_views(images[None].to(model.device))
            out = model.sample(tokens, num_points, num_steps, generator=generator,
                               oversample=oversample)  # the head's logits alone
            rays = model.ray_features(surface, out['points'])[0].cpu()
        pred = out['points'][0].double().cpu().numpy()
        gt = ground_truth(sample)
        aligned = align(pred, gt.points, 'chamfer', seed=seed + i).apply(pred)
        _, nearest = cKDTree(gt.points).query(aligned, k=1)
        label = np.asarray(gt.visible, dtype=bool)[nearest]
        pick = np.sort(np.random.default_rng(seed + i).choice(
            len(pred), min(keep, len(pred)), replace=False))
        x = torch.cat([out['visibility_logits'][0].cpu()[:, None], rays], dim=-1)[pick]
        rows.append(x)
        labels.append(torch.from_numpy(label[pick].astype(np.float32)))
        scene.append(np.full(len(pick), i))
    return torch.cat(rows), torch.cat(labels), np.concatenate(scene)


def scene_auroc(scores: np.ndarray, labels: np.ndarray, scene: np.ndarray) -> float:
    """Mean per-scene AUROC, as the evaluation reports it."""
    return float(np.nanmean([auroc(scores[scene == s], labels[scene == s] > 0.5)
                             for s in np.unique(scene)]))


def fit_fusion(fusion: VisibilityFusion, x: torch.Tensor, y: torch.Tensor, iters: int,
               seed: int, lr: float = 3e-3, batch: int = 4096) -> VisibilityFusion:
    """Adam on BCE with random batches; returns the fusion in eval mode."""
    torch.manual_seed(seed)
    fusion.requires_grad_(True).train()
    opt = torch.optim.Adam(fusion.parameters(), lr=lr)
    for _ in range(iters):
        idx = torch.randint(len(x), (batch,))
        loss = F.binary_cross_entropy_with_logits(fusion(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return fusion.requires_grad_(False).eval()


def with_surface(model: Nova3r, hidden: int, stem: int = 0, warm: bool = False,
                 encoder: bool = False, neighbours: int = 1, centred: bool = False,
                 position: bool = False, layers: int = 2, top: int = 0) -> Nova3r:
    """
    Copy `model` into one whose config has a fresh surface head and fusion.

    `warm` starts the new head's token path from `model`'s own surface head (same width and
    `layers`; a stem's refinement starts at zero, so the warm head begins where the old one
    ended).
    `neighbours`, `centred` and `position` choose what the new fusion reads
    (`surface.ray_features`).
    `encoder` gives the head its own image encoder, a copy of `model`'s surface encoder when
    warm and it has one, else of the scene tokens' encoder (so a warm head starts where it was).
    `top` gives it a copy of the aggregator's last `top` layers (`decoder.surface_top`), taken
    from `model`'s own surface top when warm and it has one of that size, else from the
    aggregator, so the copy starts out reproducing the tokens the head read before.
    """
    out = with_fresh(model, ('surface_head', 'visibility_fusion', 'surface_encoder',
                             'surface_top'),
                     surface_hidden=hidden, surface_layers=layers, surface_stem=stem,
                     surface_encoder=encoder, surface_top=top,
                     fusion_neighbours=neighbours, fusion_centred=centred,
                     fusion_position=position)
    if warm:
        old = model.surface_head
        if old is None or model.cfg.decoder.surface_hidden != hidden:
            raise ValueError(f'--warm-start needs a checkpoint with a surface head of width '
                             f'{hidden}, it has {model.cfg.decoder.surface_hidden or "none"}')
        if model.cfg.decoder.surface_layers != layers:
            raise ValueError(f'--warm-start needs a surface head of {layers} layers, the '
                             f'checkpoint has {model.cfg.decoder.surface_layers}')
        assert out.surface_head is not None
        missing, unexpected = out.surface_head.load_state_dict(old.state_dict(), strict=False)
        if unexpected or any(not k.startswith(('stem.', 'lift.', 'refine.')) for k in missing):
            raise ValueError(f'surface head does not carry over: {missing}, {unexpected}')
    if out.surface_encoder is not None:
        source = model.surface_encoder if warm and model.surface_encoder is not None else None
        out.surface_encoder.load_state_dict((source or model.image_encoder).state_dict())
    if out.surface_top is not None:
        old_top = model.surface_top
        if warm and old_top is not None and model.cfg.decoder.surface_top == top:
            out.surface_top.load_state_dict(old_top.state_dict())
        else:
            out.surface_top.copy_from(model.image_encoder.aggregator)
    return out


def read_pixel(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, weights) of a `train.pixel_surface` file (ValueError if it is not one)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), 'pt') as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f'{path}: not a readable safetensors file ({exc})') from exc
    if meta.get('format') != 'nova3r_ros.pixel_surface':
        raise ValueError(f'{path}: not a pixel net written by train.pixel_surface')
    return meta, tensors


def with_pixel(model: Nova3r, path: Path, neighbours: int, centred: bool, position: bool,
               keep_head: bool = True, mirror: bool = False) -> Nova3r:
    """
    Copy `model` into one with the pixel net in `path` and a fresh fusion.

    The fusion reads the pixel net's pointmap beside the surface head's (`keep_head`) or alone;
    `mirror`: the net averages its answer with the mirrored image's.
    """
    meta, weights = read_pixel(path)
    try:
        width, grid = int(meta['width']), tuple(json.loads(meta['grid']))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f'{path}: bad pixel net metadata ({exc})') from exc
    if grid != grid_of(model):
        raise ValueError(f'{path}: pixel net for a {grid} patch grid, the model has '
                         f'{grid_of(model)}')
    if keep_head and model.surface_head is None:
        raise ValueError('--pixel without --pixel-only needs a checkpoint with a surface head')
    changes: dict = {'surface_pixel': width, 'surface_pixel_mirror': mirror,
                     'fusion_neighbours': neighbours,
                     'fusion_centred': centred, 'fusion_position': position}
    fresh = ('visibility_fusion', 'pixel_surface')
    if not keep_head:
        fresh += ('surface_head', 'surface_encoder', 'surface_top')
        changes.update(surface_hidden=0, surface_stem=0, surface_encoder=False, surface_top=0)
    out = with_fresh(model, fresh, **changes)
    assert out.pixel_surface is not None
    try:
        out.pixel_surface.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f'{path}: pixel net weights do not fit width {width}: {exc}') from exc
    return out  # with_fresh left it frozen, in eval mode, on the model's device


def pixel_record(path: Path, pixel_only: bool, mirror: bool = False) -> dict:
    """Describe the pixel net for the checkpoint's metadata (its fit's settings and log)."""
    meta, _ = read_pixel(path)
    return {'file': path.name, 'width': int(meta['width']), 'pixel_only': pixel_only,
            'mirror': mirror,
            'fit': json.loads(meta.get('args', '{}')), 'log': json.loads(meta.get('log', '[]'))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.train.surface_head',
                                description=__doc__.strip().split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--checkpoint', required=True, help='model that gets the surface head')
    p.add_argument('--data', required=True, help='dataset root with train/ and val/ splits')
    p.add_argument('--out', required=True, help='output model (.safetensors)')
    p.add_argument('--hidden', type=int, default=192, help='width of the surface head')
    p.add_argument('--layers', type=int, default=2,
                   help='transformer layers of the surface head (1-12)')
    p.add_argument('--surface-scenes', type=int, nargs='+', default=[1000],
                   help='training scenes of the surface head (view-1 tokens cached once); '
                        'several values: one per --surface-start range')
    p.add_argument('--surface-start', type=int, nargs='+', default=[0],
                   help='index of its first training scene; several values train on several '
                        'ranges (each cached on its own, so an older cache is reused)')
    p.add_argument('--surface-steps', type=int, default=3000, help='its optimiser steps')
    p.add_argument('--stem', type=int, default=0,
                   help="channels of a convolutional stem on view 1's image (0: tokens only)")
    p.add_argument('--warm-start', action='store_true',
                   help="start the surface head from the checkpoint's own (same --hidden)")
    p.add_argument('--encoder', action='store_true',
                   help='give the surface head its own copy of the image encoder and fine-tune '
                        "both on view-1 depth (the scene tokens' encoder stays as it is)")
    p.add_argument('--encoder-lr', type=float, default=1e-4,
                   help='learning rate of that encoder (--encoder)')
    p.add_argument('--top', type=int, default=0,
                   help="give the surface head a copy of the image encoder's last this-many "
                        'aggregator layers, fine-tuned with it (every view informs view-1 depth; '
                        'the scene tokens keep the shared encoder); 0: the shared tokens')
    p.add_argument('--top-lr', type=float, default=1e-4,
                   help='learning rate of that copy (--top)')
    p.add_argument('--lr', type=float, default=1e-3, help='learning rate of the surface head')
    p.add_argument('--save-every', type=int, default=200,
                   help="save the head's fit every this many steps next to --out "
                        '(<out>_fit_state.safetensors); a rerun of the same command goes on '
                        'from it, and the file goes once the model is written')
    p.add_argument('--pause-at', type=int, default=None,
                   help='stop the fit after this many steps in all (saved) and exit without '
                        'the fusion; rerun without it to finish (a fit longer than a session)')
    p.add_argument('--batch', type=int, default=8, help='scenes per step with --encoder')
    p.add_argument('--val-every', type=int, default=0,
                   help='print the held-out depth AbsRel every this many steps (--encoder)')
    p.add_argument('--dropout', type=float, default=0.0,
                   help='dropout while the surface head trains (its transformer layers)')
    p.add_argument('--cache', default=None,
                   help='folder that keeps the encoded view-1 tokens between runs')
    p.add_argument('--tokens-from', default=None,
                   help='file the --cache is keyed by (default --checkpoint); it must hold '
                        "the same image encoder, so a warm start reuses an older file's cache")
    p.add_argument('--train-scenes', type=int, default=160, help='training scenes of the fusion')
    p.add_argument('--neighbours', type=int, default=1,
                   help='pointmap directions per point the fusion compares depth with (1-16)')
    p.add_argument('--centred', action='store_true',
                   help="the fusion also reads each point's depth difference minus the window's "
                        'median')
    p.add_argument('--position', action='store_true',
                   help="the fusion also reads each point's direction and log range from view 1")
    p.add_argument('--fusion-only', action='store_true',
                   help="keep the checkpoint's surface head (and encoder); refit the fusion alone")
    p.add_argument('--pixel', default=None, metavar='FILE',
                   help='add the pixel net fitted by train.pixel_surface (its weights file) and '
                        "refit the fusion alone on its pointmap beside the surface head's")
    p.add_argument('--pixel-only', action='store_true',
                   help='with --pixel, drop the surface head: the fusion reads the pixel net '
                        'alone')
    p.add_argument('--pixel-mirror', action='store_true',
                   help="with --pixel, average the pixel net's pointmap with the mirrored "
                        "image's (config decoder.surface_pixel_mirror)")
    p.add_argument('--fusion-start', type=int, default=0,
                   help="index of the fusion's first training scene (past the surface head's "
                        'scenes: the fusion then learns how far to trust held-out depth)')
    p.add_argument('--val-split', default='val')
    p.add_argument('--val-scenes', type=int, default=16)
    p.add_argument('--val-start', type=int, default=0,
                   help="index of the first validation scene (e.g. '--val-split train "
                        "--val-start 3400' for a larger held-out set than val/)")
    p.add_argument('--views', type=int, nargs='+', default=[1, 2, 2, 3, 4],
                   help='K per scene, cycled (default: K=2 twice as often)')
    p.add_argument('--num-points', type=int, default=DEFAULTS['num_points'],
                   help="the node's default N")
    p.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                   help="the node's default steps")
    p.add_argument('--oversample', type=float, default=DEFAULTS['oversample'],
                   help="the node's oversample")
    p.add_argument('--keep', type=int, default=2048, help='fusion rows kept per scene')
    p.add_argument('--iters', type=int, default=3000, help='fusion optimiser steps')
    p.add_argument('--threads', type=int, default=2)
    add_precision(p)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    check_counts(p, args, ('hidden', 'surface_steps', 'train_scenes', 'save_every',
                           'val_scenes', 'num_points', 'num_steps', 'keep', 'iters', 'threads',
                           'batch'))
    if not 1 <= args.neighbours <= 16:
        p.error('--neighbours must be in [1, 16]')
    if (args.pixel_only or args.pixel_mirror) and not args.pixel:
        p.error('--pixel-only and --pixel-mirror need --pixel')
    if args.pixel:
        args.fusion_only = True  # the pixel net is fitted; only the fusion is refitted here
    for name in ('fusion_start', 'val_start', 'stem', 'val_every'):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    check_ranges(p, args)
    for name in ('encoder_lr', 'lr', 'top_lr'):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if min(args.views) < 1:
        p.error('--views must be >= 1')
    if args.fusion_only and (args.encoder or args.warm_start or args.stem):
        p.error("--fusion-only keeps the checkpoint's surface head: --encoder, --warm-start "
                'and --stem do not apply')
    if args.pause_at is not None and args.pause_at < 1:
        p.error('--pause-at must be >= 1')
    if args.pause_at is not None and (args.encoder or args.fusion_only):
        p.error('--pause-at pauses the token fit: not with --encoder or --fusion-only')
    if args.top < 0:
        p.error('--top must be >= 0')
    if args.top and (args.encoder or args.stem or args.fusion_only):
        p.error('--top does not combine with --encoder, --stem or --fusion-only')
    if not 0.0 <= args.dropout < 1.0:
        p.error('--dropout must be in [0, 1)')
    if not 1 <= args.layers <= 12:
        p.error('--layers must be in [1, 12]')
    if args.hidden % 4:
        p.error('--hidden must be a multiple of 4 (4 attention heads)')
    check_node_oversample(p, args)
    check_paths(p, args)
    return args


def surface_ranges(args: argparse.Namespace) -> list[tuple[int, int]]:
    """Return the surface head's training ranges (start, count), as given."""
    return list(zip(args.surface_start, args.surface_scenes, strict=True))


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether index ranges (start, count) share a scene."""
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def check_ranges(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """
    Refuse malformed surface ranges; warn when the fusion or validation reads surface scenes.

    Why warn: a fusion fitted on scenes the surface head learnt sees a better pointmap than the
    node will, and trusts it too much (the tenth release did; the eleventh fixed it).
    """
    if len(args.surface_start) != len(args.surface_scenes):
        p.error(f'--surface-start has {len(args.surface_start)} values, --surface-scenes '
                f'{len(args.surface_scenes)}: give one count per start')
    if min(args.surface_start) < 0:
        p.error('--surface-start must be >= 0')
    if min(args.surface_scenes) < 1:
        p.error('--surface-scenes must be >= 1')
    ranges = surface_ranges(args)
    if any(overlaps(a, b) for i, a in enumerate(ranges) for b in ranges[i + 1:]):
        p.error(f'--surface-start / --surface-scenes ranges overlap: {ranges}')
    if args.fusion_only:
        return
    others = [('fusion', (args.fusion_start, args.train_scenes))]
    if args.val_split == 'train':
        others.append(('validation', (args.val_start, args.val_scenes)))
    for label, other in others:
        if any(overlaps(other, r) for r in ranges):
            print(f"warning: the {label} scenes {other} overlap the surface head's {ranges}",
                  file=sys.stderr)


def concat(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Join per-range data tuples along the scene axis."""
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def fit_surface_part(model: Nova3r, args: argparse.Namespace) -> float:
    """Fit the surface head (and its encoder with --encoder); return the held-out depth AbsRel."""
    assert model.surface_head is not None
    root, progress = Path(args.data), not args.no_progress
    val_split = root / args.val_split
    if args.encoder:
        train_v = concat([view_set(model, root / 'train', count, args.views, progress, start)
                          for start, count in surface_ranges(args)])
        val_v = view_set(model, val_split, args.val_scenes, args.views, progress,
                         args.val_start)
        fit_encoder(model, train_v, args.views, args.surface_steps, args.seed, lr=args.lr,
                    encoder_lr=args.encoder_lr, batch=args.batch, progress=progress,
                    dropout=args.dropout, val=val_v, val_every=args.val_every)
        return encoder_absrel(model, val_v)
    cache = Path(args.cache) if args.cache else None
    ckpt, stem = Path(args.tokens_from or args.checkpoint), args.stem > 0
    top = model.surface_top
    tap = top.start if top is not None else None
    train_s = concat([cached_surface(model, ckpt, cache, root / 'train', count, args.views,
                                     progress, start, stem, tap)
                      for start, count in surface_ranges(args)])
    val_s = cached_surface(model, ckpt, cache, val_split, args.val_scenes, args.views,
                           progress, args.val_start, stem, tap)
    fit_surface(model.surface_head, train_s, args.surface_steps, args.seed, lr=args.lr,
                progress=progress, dropout=args.dropout, top=top, top_lr=args.top_lr,
                state=fit_state_path(args), save_every=args.save_every, until=args.pause_at)
    return absrel(model.surface_head, val_s, top)


def fit_state_path(args: argparse.Namespace) -> Path:
    """Where the surface fit keeps its state between runs (next to --out)."""
    out = Path(args.out)
    return out.with_name(f'{out.stem}_fit_state.safetensors')


def surface_record(args: argparse.Namespace, surface_val: float) -> dict:
    """Describe how the surface head was fitted, for the checkpoint's metadata."""
    return {
        'hidden': args.hidden, 'layers': args.layers, 'stem': args.stem,
        'top': args.top, 'top_lr': args.top_lr if args.top else None,
        'warm_start': args.warm_start, 'lr': args.lr,
        'encoder': args.encoder, 'encoder_lr': args.encoder_lr if args.encoder else None,
        'batch': args.batch if args.encoder else None,
        'surface_scenes': sum(args.surface_scenes),
        'surface_start': args.surface_start[0],
        'surface_ranges': [list(r) for r in surface_ranges(args)],
        'surface_steps': args.surface_steps,
        'dropout': args.dropout, 'val_depth_absrel': round(surface_val, 4)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        base, out = frozen_model(args)
        if args.pixel:
            model = with_pixel(base, Path(args.pixel), args.neighbours, args.centred,
                               args.position, keep_head=not args.pixel_only,
                               mirror=args.pixel_mirror)
            record = json.loads(base.checkpoint_metadata.get('surface_head', '{}'))
            record['pixel'] = pixel_record(Path(args.pixel), args.pixel_only, args.pixel_mirror)
        elif args.fusion_only:
            if base.surface_head is None:
                raise ValueError('--fusion-only needs a checkpoint with a surface head')
            model = with_fresh(base, ('visibility_fusion',), fusion_neighbours=args.neighbours,
                               fusion_centred=args.centred, fusion_position=args.position)
            record = json.loads(base.checkpoint_metadata.get('surface_head', '{}'))
        else:
            torch.manual_seed(args.seed)  # the fresh head's init: a rerun builds the same
            model = with_surface(base, args.hidden, args.stem, args.warm_start, args.encoder,
                                 args.neighbours, args.centred, args.position, args.layers,
                                 args.top)
    except (ValueError, OSError) as exc:  # a corrupt or foreign checkpoint
        print(f'error: --checkpoint {args.checkpoint}: {exc}', file=sys.stderr)
        return 2
    if args.tokens_from:
        try:
            check_same_tokens(base, Path(args.tokens_from))
        except (ValueError, OSError) as exc:
            print(f'error: --tokens-from {args.tokens_from}: {exc}', file=sys.stderr)
            return 2
    root, progress = Path(args.data), not args.no_progress
    val_split = root / args.val_split
    t0 = time.perf_counter()
    try:
        assert model.visibility_fusion is not None
        if not args.fusion_only:
            record = surface_record(args, fit_surface_part(model, args))
            if args.pause_at is not None and args.pause_at < args.surface_steps:
                print(f'surface fit paused at step {args.pause_at} of {args.surface_steps} '
                      f'({fit_state_path(args)}); rerun without --pause-at to finish')
                return 0
        x, y, _ = fusion_rows(model, root / 'train', args.train_scenes, args.views,
                              args.num_points, args.num_steps, args.oversample, args.keep,
                              args.seed, progress, args.fusion_start)
        vx, vy, vscene = fusion_rows(model, val_split, args.val_scenes, args.views,
                                     args.num_points, args.num_steps, args.oversample,
                                     args.keep, args.seed + 10_000_000, progress,
                                     args.val_start)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    fit_fusion(model.visibility_fusion, x, y, args.iters, args.seed)
    with torch.no_grad():
        fused = model.visibility_fusion(vx).numpy()
    before = scene_auroc(vx[:, 0].numpy(), vy.numpy(), vscene)
    after = scene_auroc(fused, vy.numpy(), vscene)
    meta = dict(model.checkpoint_metadata)
    surface_val = record.get('val_depth_absrel', float('nan'))
    pixel_log = record.get('pixel', {}).get('log') or [{}]
    pixel_val = pixel_log[-1].get('absrel', float('nan'))  # the pixel net's own validation
    if args.pixel_mirror:  # its mirror-averaged figure, where its fit logged one
        pixel_val = pixel_log[-1].get('absrel_mirror', pixel_val)
    record.update({
        'fusion_only': args.fusion_only, 'fusion_neighbours': args.neighbours,
        'fusion_centred': args.centred, 'fusion_position': args.position,
        'fusion_train_scenes': args.train_scenes, 'fusion_start': args.fusion_start,
        'val_split': args.val_split, 'val_start': args.val_start, 'val_scenes': args.val_scenes,
        'num_points': args.num_points,
        'num_steps': args.num_steps, 'oversample': args.oversample, 'views': args.views,
        'precision': args.precision, 'val_auroc_head': round(before, 4),
        'val_auroc_fused': round(after, 4)})
    meta['surface_head'] = json.dumps(record)
    model.save_checkpoint(out, meta)
    fit_state_path(args).unlink(missing_ok=True)  # the model holds the fit now
    seconds = time.perf_counter() - t0
    summary = {'out': str(out), 'val_depth_absrel': surface_val,
               'pixel_val_depth_absrel': pixel_val if args.pixel else None, 'fusion_rows': len(x),
               'visible_fraction': float(y.mean()), 'val_auroc_head': before,
               'val_auroc_fused': after, 'seconds': round(seconds, 1)}
    (out.parent / f'{out.stem}_fit.json').write_text(json.dumps(summary, indent=1))
    depth = f'{surface_val:.3f}'
    if args.pixel:
        head = '' if args.pixel_only else f', surface head {surface_val:.3f}'
        depth = f'pixel net {pixel_val:.3f}{head}'
    print(f'surface head: val depth AbsRel {depth}; visibility val AUROC {before:.3f} '
          f'(head) -> {after:.3f} (fused), {args.val_scenes} scenes; wrote {out} '
          f'({seconds / 60:.1f} min)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
