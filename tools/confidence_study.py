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
Compare keeping the drawn points by a learnt surface confidence with the density filter.

Why: issue 8's occluded F-score is the harmonic mean of occluded recall and *complete*
precision, so it waits on precision. The shipped sampler draws N x 1.25 points and drops the
most isolated; here a small head on the decoder's point features (plus the isolation itself)
learns P(a sampled point lies within tau of the GT) from training scenes, and the kept N are the
most confident instead. Experiment, not a feature: it prints paired differences against the
shipped density filter on held-out scenes.

    python tools/confidence_study.py --checkpoint checkpoints/nova3r_tiny.safetensors \
        --train data/generated/room4/train --eval data/generated/tune/val --out runs/conf
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys
import time

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.geometry.align import align
from nova3r_ros.model import density, Nova3r
from nova3r_ros.model.preprocess import prepare_images
import numpy as np
from scipy.spatial import cKDTree
import torch
import torch.nn.functional as F

KEYS = ('complete/fscore@0.1', 'complete/fscore@0.05', 'complete/precision@0.1',
        'occluded/fscore@0.1', 'occluded/recall@0.1', 'occluded_object/recall@0.1',
        'visibility/auroc')


def draw(model: Nova3r, sample: dict[str, np.ndarray], count: int, steps: int, seed: int
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    `count` plain samples (count, 3), their per-point features (count, F) and scene tokens.

    Features: the decoder's point features at t = 1 (width), then the last two Euler
    velocities (3 + 3): how far and how straight each point was still moving at the end.
    """
    images, _ = prepare_images(list(sample['images']), model.cfg)
    generator = torch.Generator().manual_seed(seed)
    velocities: list[torch.Tensor] = []
    plain = model.velocity

    def recording(tokens: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = plain(tokens, xt, t)
        velocities.append(v[0])
        return v

    with torch.no_grad():
        tokens = model.encode_images(images[None])
        model.velocity = recording
        try:
            points = model.sample(tokens, count, steps, generator=generator, visibility=False)
        finally:
            del model.velocity
        points = points['points']
        features = model.point_features(tokens, points)[0].float()
    return points[0], torch.cat([features, velocities[-1], velocities[-2]], dim=-1), tokens


def extra_features(points: torch.Tensor) -> torch.Tensor:
    """
    Per-point geometric evidence (count, 19).

    Log isolation at 4, 8, 32, 64 and 128 neighbours (the density filter's own evidence at
    several scales); the view-1 position and its log range (far points are blurrier); and at 16
    and 64 neighbours the local shape: normalised covariance eigenvalues (planar, linear or
    blob), log total variance and the point's distance to its neighbours' plane relative to the
    plane's thickness (a point between two surfaces sits off both).
    """
    cols = [density.isolation(points[None], k)[0].clamp_min(1e-6).log()
            for k in (4, 8, 32, 64, 128)]
    cols += [points[:, 0], points[:, 1], points[:, 2], points.norm(dim=-1).clamp_min(1e-6).log()]
    cloud = points.double().numpy()
    tree = cKDTree(cloud)
    for k in (16, 64):
        _, idx = tree.query(cloud, k=k + 1)
        nbrs = cloud[idx[:, 1:]]  # (n, k, 3)
        centre = nbrs.mean(axis=1)
        dev = nbrs - centre[:, None]
        cov = np.einsum('nki,nkj->nij', dev, dev) / k
        vals, vecs = np.linalg.eigh(cov)  # ascending
        total = vals.sum(axis=1).clip(1e-12)
        offset = np.abs(np.einsum('ni,ni->n', cloud - centre, vecs[:, :, 0]))
        thickness = np.sqrt(vals[:, 0].clip(1e-12))
        extra = np.stack([vals[:, 0] / total, vals[:, 1] / total, vals[:, 2] / total,
                          np.log(total), np.log1p(offset / thickness)], axis=1)
        cols += [torch.from_numpy(extra[:, j]).float() for j in range(extra.shape[1])]
    return torch.stack(cols, dim=-1)


def smooth(points: torch.Tensor, conf: torch.Tensor, k: int) -> torch.Tensor:
    """Mean logit over each point and its k nearest neighbours (0: unchanged)."""
    if k == 0:
        return conf
    cloud = points.double().numpy()
    _, idx = cKDTree(cloud).query(cloud, k=k + 1)
    return conf[torch.from_numpy(idx)].mean(dim=-1)


def near_labels(points: np.ndarray, sample: dict[str, np.ndarray], keep: np.ndarray,
                tau: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(within tau of GT, nearest GT visible) of every point, aligned as the kept set would be."""
    gt = ground_truth(sample)
    fit = align(points[keep], gt.points, 'chamfer', seed=seed)
    dist, nearest = cKDTree(gt.points).query(fit.apply(points), k=1, workers=1)
    return dist < tau, np.asarray(gt.visible, dtype=bool)[nearest]


class Head(torch.nn.Module):
    """LayerNorm + 2-layer MLP on chosen input columns -> logit."""

    def __init__(self, columns: list[int], hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer('columns', torch.tensor(columns), persistent=False)
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(len(columns)),
                                       torch.nn.Linear(len(columns), hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, all columns) -> (R,) logits."""
        return self.net(x[:, self.columns]).squeeze(-1)


def scenes(split: Path, count: int) -> list[Path]:
    """First `count` sample files of a split."""
    files = [split / s['file'] for s in read_manifest(split)['samples']][:count]
    if len(files) < count:
        raise ValueError(f'{split}: {len(files)} samples, asked for {count}')
    return files


def build_train(model: Nova3r, files: list[Path], args: argparse.Namespace
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and on-surface labels of `args.keep` random drawn points per training scene."""
    from tqdm import tqdm

    xs, ys = [], []
    drawn = density.drawn_points(args.num_points, args.train_oversample)
    for i, path in enumerate(tqdm(files, desc='train features', unit='scene')):
        sample = select_views(load_sample(path), args.views)
        seed = args.seed + i
        points, feats, _ = draw(model, sample, drawn, args.num_steps, seed)
        extra = extra_features(points)
        keep = density.keep_densest(points[None], args.num_points)[0].numpy()
        near, _ = near_labels(points.double().numpy(), sample, keep, args.tau, seed)
        idx = np.random.default_rng(seed).choice(drawn, args.keep, replace=False)
        xs.append(torch.cat([feats, extra], dim=-1)[torch.from_numpy(idx)])
        ys.append(torch.from_numpy(near[idx].astype(np.float32)))
    return torch.cat(xs), torch.cat(ys)


def fit(x: torch.Tensor, y: torch.Tensor, columns: list[int], hidden: int, epochs: int,
        seed: int, name: str) -> Head:
    """AdamW on BCE, cosine LR, 10 % of rows held out to report AUROC."""
    torch.manual_seed(seed)
    perm = torch.randperm(len(y))
    cut = len(y) // 10
    val, tr = perm[:cut], perm[cut:]
    head = Head(columns, hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.01)
    batch = 4096
    steps = epochs * (len(tr) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr))]
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start:start + batch]
            loss = F.binary_cross_entropy_with_logits(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        score = head(x[val]).numpy()
    print(f'{name}: {epochs} epochs, held-out rows AUROC(on-surface) '
          f'{auroc(score, y[val].numpy() > 0.5):.3f}', flush=True)
    return head.eval()


def evaluate(model: Nova3r, heads: dict[str, Head], files: list[Path],
             args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Score every keep policy on each held-out scene (same seed per scene for all)."""
    from tqdm import tqdm

    rows: dict[str, list[dict[str, float]]] = {}
    n = args.num_points
    for i, path in enumerate(tqdm(files, desc='evaluate', unit='scene')):
        sample = select_views(load_sample(path), args.views)
        gt = ground_truth(sample)
        seed = args.eval_seed + i
        for ratio in sorted(set(args.ratios) | {1.25}):
            points, feats, tokens = draw(model, sample, density.drawn_points(n, ratio),
                                         args.num_steps, seed)
            x = torch.cat([feats, extra_features(points)], dim=-1)
            keeps = {}
            if ratio == 1.25:
                keeps['density@1.25'] = density.keep_densest(points[None], n)[0]
            if ratio in args.ratios:
                if ratio != 1.25:
                    keeps[f'density@{ratio:g}'] = density.keep_densest(points[None], n)[0]
                for name, head in heads.items():
                    with torch.no_grad():
                        conf = head(x)
                    for k in args.smooth:
                        score = smooth(points, conf, k)
                        label = name if k == 0 else f'{name}+smooth{k}'
                        keeps[f'{label}@{ratio:g}'] = torch.sort(torch.topk(score, n).indices
                                                                ).values
            for name, keep in keeps.items():
                kept = points[keep]
                with torch.no_grad():
                    vis = model.visibility_logits(tokens, kept[None])[0]
                prediction = {'points': kept.numpy(), 'units': 'normalized',
                              'visibility': vis.numpy() > 0, 'visibility_scores': vis.numpy()}
                metrics = score_prediction(prediction, sample, gt, 'chamfer', seed).metrics
                rows.setdefault(name, []).append({k: float(metrics[k]) for k in KEYS})
    return rows


def paired(a: np.ndarray, b: np.ndarray, seed: int = 0, reps: int = 2000
           ) -> tuple[float, float, float]:
    """Mean of a - b and its paired-bootstrap 95 % interval."""
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (reps, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(rows: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: each policy's means, then its difference from the shipped density@1.25."""
    lines = ['| policy | ' + ' | '.join(KEYS) + ' |', '|---' * (len(KEYS) + 1) + '|']
    for name, values in rows.items():
        means = [np.nanmean([v[k] for v in values]) for k in KEYS]
        lines.append(f'| {name} | ' + ' | '.join(f'{m:.3f}' for m in means) + ' |')
    base = rows['density@1.25']
    lines += ['', '| policy - density@1.25 | metric | mean | 95% CI |', '|---|---|---|---|']
    for name, values in rows.items():
        if name == 'density@1.25':
            continue
        for k in ('complete/fscore@0.1', 'complete/precision@0.1', 'occluded/fscore@0.1',
                  'occluded/recall@0.1'):
            m, lo, hi = paired(np.array([v[k] for v in values]), np.array([v[k] for v in base]))
            lines.append(f'| {name} | {k} | {m:+.4f} | [{lo:+.4f}, {hi:+.4f}] |')
    return '\n'.join(lines)


HEADS = ('dec+iso+pos/256', 'dec+iso+pos+pca/256', 'all/256', 'all/512')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[1].strip())
    p.add_argument('--checkpoint', type=Path, required=True)
    p.add_argument('--train', type=Path, required=True, help='training split directory')
    p.add_argument('--eval', type=Path, required=True, help='held-out split directory')
    p.add_argument('--out', type=Path, required=True, help='directory for head + report')
    p.add_argument('--train-scenes', type=int, default=120)
    p.add_argument('--eval-scenes', type=int, default=30)
    p.add_argument('--views', type=int, default=2)
    p.add_argument('--num-points', type=int, default=8192)
    p.add_argument('--num-steps', type=int, default=8)
    p.add_argument('--train-oversample', type=float, default=2.0)
    p.add_argument('--ratios', type=float, nargs='+', default=[1.25, 1.5, 2.0])
    p.add_argument('--keep', type=int, default=4096, help='training rows per scene')
    p.add_argument('--tau', type=float, default=0.1)
    p.add_argument('--epochs', type=int, default=8)
    p.add_argument('--heads', nargs='+', default=list(HEADS))
    p.add_argument('--smooth', type=int, nargs='+', default=[0],
                   help='also rank by the logit averaged over k nearest neighbours')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--eval-seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args(argv)
    for name in ('train_scenes', 'eval_scenes', 'views', 'num_points', 'num_steps', 'keep',
                 'epochs', 'threads'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.num_steps < 2:
        p.error('--num-steps must be >= 2 (the head reads the last two velocities)')
    unknown = sorted(set(args.heads) - set(HEADS))
    if unknown:
        p.error(f'unknown --heads {unknown}; choose from {list(HEADS)}')
    for path in (args.checkpoint, args.train / 'manifest.json', args.eval / 'manifest.json'):
        if not Path(path).is_file():
            p.error(f'{path}: no such file')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Fit the confidence head (or reuse runs' cache), score the policies, write the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model = Nova3r.from_checkpoint(args.checkpoint).eval()
    cache = args.out / 'train_rows.pt'
    # the rows depend on these; a cache made with others is rebuilt, not reused
    made_with = {k: str(getattr(args, k)) for k in (
        'checkpoint', 'train', 'train_scenes', 'views', 'num_points', 'num_steps',
        'train_oversample', 'keep', 'tau', 'seed')}
    start = time.monotonic()
    stamp = args.out / 'train_rows.json'
    if cache.exists() and stamp.exists() and json.loads(stamp.read_text()) == made_with:
        x, y = torch.load(cache)
    else:
        x, y = build_train(model, scenes(args.train, args.train_scenes), args)
        torch.save((x, y), cache)
        stamp.write_text(json.dumps(made_with))
    print(f'{len(y)} rows, {float(y.mean()):.3f} on surface; '
          f'{time.monotonic() - start:.0f} s', flush=True)
    width = model.cfg.decoder.width
    dec = list(range(width))
    traj = list(range(width, width + 6))
    iso = list(range(width + 6, width + 11))
    pos = list(range(width + 11, width + 15))
    pca = list(range(width + 15, width + 25))
    if x.shape[1] != width + 25:
        raise ValueError(f'cache {cache} has {x.shape[1]} columns, expected {width + 25}')
    variants = {'dec+iso+pos/256': (dec + iso + pos, 256, 2 * args.epochs),
                'dec+iso+pos+pca/256': (dec + iso + pos + pca, 256, 2 * args.epochs),
                'all/256': (dec + traj + iso + pos + pca, 256, 2 * args.epochs),
                'all/512': (dec + traj + iso + pos + pca, 512, 3 * args.epochs)}
    heads = {name: fit(x, y, cols, hidden, epochs, args.seed, name)
             for name, (cols, hidden, epochs) in variants.items()
             if name in args.heads}
    rows = evaluate(model, heads, scenes(args.eval, args.eval_scenes), args)
    text = report(rows)
    (args.out / 'rows.json').write_text(json.dumps(rows))
    (args.out / 'report.md').write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
