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
Sweep the confidence ranking's coverage weight and the oversample ratio on a tuning split.

Why: the sampler keeps the drawn points with the highest head logit + w x log isolation
(`decoder.confidence_coverage`). w = 0 maximises precision but piles the kept points onto the
surfaces the head is surest of, so occluded recall, and with it the occluded F-score, falls;
a larger w keeps confident points where the cloud is thin. This prints, per (ratio, w, rule),
the means over the scenes and the paired difference from the first row of the ratio, so the
shipped w and the node's default ratio are picked on scenes that are neither trained on nor the
test split.

`--rules` compares the shipped selection ('rank') with alternatives the sampler does not use
(session 12 measured each below it on the tuning split; docs/training_status.md):
'kept-set' measures isolation against the kept points instead of the whole draw (two passes);
'greedy' keeps points in 8 rounds, each point's score falling by GREEDY_PENALTY for every kept
point within GREEDY_RADIUS; 'project' keeps as 'rank' does, then moves each kept point onto the
plane of its PROJECT_NEIGHBOURS nearest drawn points (sharpening, if the error were noise
across the surface).

    python tools/coverage_sweep.py --checkpoint runs/conf_head/model.safetensors \
        --data data/generated/tune/val --ratios 1.5 2 3 --weights 0 1 2 3 5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import math
from pathlib import Path
import sys

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import density, Nova3r
from nova3r_ros.model.confidence import ISOLATION_NEIGHBOURS, VELOCITY_DIM
from nova3r_ros.model.preprocess import prepare_images
import numpy as np
from scipy.spatial import cKDTree
import torch

RULES = ('rank', 'kept-set', 'greedy', 'project')
GREEDY_RADIUS = 0.06  # normalised units: ~ the kept cloud's spacing at N = 8192
GREEDY_PENALTY = 0.1  # logit units per kept neighbour
PROJECT_NEIGHBOURS = 16
KEYS = ('complete/fscore@0.1', 'complete/precision@0.1', 'occluded/fscore@0.1',
        'occluded/recall@0.1', 'occluded_object/recall@0.1', 'visibility/auroc')


def select(rule: str, points: np.ndarray, logits: np.ndarray, isolation: np.ndarray,
           weight: float, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept indices (num_points,) ascending and the published points (num_points, 3) of a rule."""
    def top(score: np.ndarray) -> np.ndarray:
        return np.sort(np.argsort(-score, kind='stable')[:num_points])

    rank = logits + weight * isolation
    keep = top(rank)
    if rule == 'rank':
        return keep, points[keep]
    cloud = points.astype(np.float64)
    if rule == 'kept-set':
        for _ in range(2):
            dist, _ = cKDTree(cloud[keep]).query(cloud, k=9)
            kept = np.zeros(len(cloud), bool)
            kept[keep] = True
            # a kept point's nearest kept point is itself: skip it
            iso = np.where(kept, dist[:, 1:].mean(axis=1), dist[:, :8].mean(axis=1))
            keep = top(logits + weight * np.log(np.maximum(iso, 1e-6)))
        return keep, points[keep]
    if rule == 'greedy':
        tree = cKDTree(cloud)
        crowd = np.zeros(len(cloud))
        kept = np.zeros(len(cloud), bool)
        per_round = -(-num_points // 8)
        while kept.sum() < num_points:
            score = np.where(kept, -np.inf, rank - GREEDY_PENALTY * crowd)
            take = np.argsort(-score, kind='stable')[:min(per_round, num_points - kept.sum())]
            kept[take] = True
            for near in tree.query_ball_point(cloud[take], GREEDY_RADIUS):
                crowd[near] += 1
        keep = np.flatnonzero(kept)
        return keep, points[keep]
    if rule == 'project':
        _, idx = cKDTree(cloud).query(cloud[keep], k=PROJECT_NEIGHBOURS)
        near = cloud[idx]
        centre = near.mean(axis=1)
        dev = near - centre[:, None]
        normal = np.linalg.eigh(np.einsum('nki,nkj->nij', dev, dev))[1][:, :, 0]
        offset = np.einsum('ni,ni->n', cloud[keep] - centre, normal)
        return keep, (cloud[keep] - offset[:, None] * normal).astype(points.dtype)
    raise ValueError(f'rule must be one of {RULES}, got {rule!r}')


def sweep(model: Nova3r, files: list[Path], views: int, num_points: int, num_steps: int,
          ratio: float, weights: list[float], rules: Sequence[str] = ('rank',)
          ) -> dict[tuple[float, str], np.ndarray]:
    """Metrics (scenes, KEYS) per (weight, rule); one draw per scene shared by all of them."""
    if model.confidence_head is None:
        raise ValueError('the checkpoint has no confidence head')
    width = model.cfg.decoder.width
    column = width + VELOCITY_DIM + ISOLATION_NEIGHBOURS.index(8)
    rows: dict[tuple[float, str], list[list[float]]] = {(w, r): [] for w in weights
                                                        for r in rules}
    for i, path in enumerate(files):
        sample = select_views(load_sample(path), views)
        gt = ground_truth(sample)
        images, _ = prepare_images(list(sample['images']), model.cfg)
        with torch.no_grad():
            tokens = model.encode_images(images[None])
            points, inputs = model.draw(tokens, density.drawn_points(num_points, ratio),
                                        num_steps, generator=torch.Generator().manual_seed(i),
                                        head_inputs=True)
            logits = model.confidence_head(inputs)[0].numpy()
        for w, rule in rows:
            keep, kept_points = select(rule, points[0].numpy(), logits,
                                       inputs[0, :, column].numpy(), w, num_points)
            with torch.no_grad():
                vis = model.visibility_head(inputs[0, torch.from_numpy(keep), :width]).numpy()
            prediction = {'points': kept_points, 'units': 'normalized',
                          'visibility': vis > 0, 'visibility_scores': vis}
            metrics = score_prediction(prediction, sample, gt, 'chamfer', i).metrics
            rows[w, rule].append([float(metrics[k]) for k in KEYS])
        print(f'\r{ratio:g}: {i + 1}/{len(files)} scenes', end='', file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {key: np.asarray(v) for key, v in rows.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[1].strip())
    p.add_argument('--checkpoint', type=Path, required=True, help='model with a confidence head')
    p.add_argument('--data', type=Path, required=True, help='split directory (tuning scenes)')
    p.add_argument('--scenes', type=int, default=30)
    p.add_argument('--views', type=int, default=2)
    p.add_argument('--num-points', type=int, default=8192)
    p.add_argument('--num-steps', type=int, default=8)
    p.add_argument('--ratios', type=float, nargs='+', default=[2.0])
    p.add_argument('--weights', type=float, nargs='+', default=[0.0, 1.0, 2.0, 3.0, 5.0])
    p.add_argument('--rules', nargs='+', choices=RULES, default=['rank'],
                   help="selections to compare ('rank' is the sampler's)")
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args(argv)
    if not all(1.0 < r <= density.MAX_OVERSAMPLE for r in args.ratios):
        p.error(f'--ratios must be in (1, {density.MAX_OVERSAMPLE:g}]')
    if min(args.scenes, args.views, args.num_points, args.num_steps, args.threads) < 1:
        p.error('--scenes, --views, --num-points, --num-steps and --threads must be >= 1')
    if not all(math.isfinite(w) and w >= 0 for w in args.weights):
        p.error('--weights must be finite and >= 0')
    if not args.checkpoint.is_file():
        p.error(f'--checkpoint {args.checkpoint}: no such file')
    if not (args.data / 'manifest.json').is_file():
        p.error(f'--data {args.data}: no manifest.json (a nova3r_generate split)')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and print one markdown table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = Nova3r.from_checkpoint(args.checkpoint)
        manifest = read_manifest(args.data)
    except (ValueError, OSError) as exc:
        print(f'coverage_sweep: error: {exc}', file=sys.stderr)
        return 2
    available = int(manifest.get('params', {}).get('num_views', args.views))
    if args.views > available:
        print(f'coverage_sweep: error: {args.data} has {available} views per sample, asked '
              f'{args.views}', file=sys.stderr)
        return 2
    files = [args.data / s['file'] for s in manifest['samples']][:args.scenes]
    print('| ratio | w | rule | ' + ' | '.join(KEYS) + ' | occluded F - first row |')
    print('|---' * (len(KEYS) + 4) + '|')
    occluded = KEYS.index('occluded/fscore@0.1')
    for ratio in args.ratios:
        rows = sweep(model, files, args.views, args.num_points, args.num_steps, ratio,
                     args.weights, args.rules)
        first = next(iter(rows.values()))[:, occluded]
        for (w, rule), values in rows.items():
            diff = values[:, occluded] - first
            means = ' | '.join(f'{m:.3f}' for m in values.mean(axis=0))
            print(f'| {ratio:g} | {w:g} | {rule} | {means} | {diff.mean():+.4f} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
