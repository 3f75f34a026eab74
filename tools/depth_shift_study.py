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
How well `depth` scale mode places the published cloud: scale only, scale and shift, snapped.

Why: the evaluation aligns every cloud to the complete GT, which a robot does not have; what a
planner gets is the cloud as published. With a depth image of view 1 the node registers the
visible points onto the measured surface (`geometry.scale.depth_scale`, the node's own code here)
and then snaps the points the camera sees through or on to that surface
(`geometry.depth_check.snap_to_depth`, node parameter `depth_snap`). This scores the published
cloud of each step against the complete GT with no alignment, and the paired differences of
consecutive steps. The GT depth of the generated scenes stands in for the depth camera. The
visibility AUROC ranks the snapped points (labelled visible) above all others, the rest by the
model's logit.

    python tools/depth_shift_study.py --checkpoint checkpoints/nova3r_tiny.safetensors \
        --data data/generated/room4/test --limit 100

Choosing the tolerance on scenes the shipped model never saw (training seeds from 9 630 on),
not on the test split. `--start` is a manifest index, and the manifest lists whatever seeds were
generated in seed order: with session 26's split (seeds 3 400-3 499 and 9 630-10 829) index 100
is seed 9 630, on a full split it is `--start 9630`:

    python tools/depth_shift_study.py --checkpoint checkpoints/nova3r_tiny.safetensors \
        --data data/generated/room4/train --start 100 --limit 60 \
        --tolerance 0.05 0.1 0.15 0.2 0.3
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
import sys

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.evaluation.baselines import ModelMethod, snapped, with_depth
from nova3r_ros.evaluation.report import bootstrap_differences
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import Nova3r
import numpy as np
import torch
from tqdm import tqdm

FITS = ('chamfer', 'chamfer_shift')  # then one snapped row per tolerance
KEYS = ('complete/fscore@0.1', 'complete/precision@0.1', 'complete/chamfer',
        'occluded/fscore@0.1', 'occluded/hole_ratio@0.1', 'visibility/auroc')


def study(model: Nova3r, files: list[Path], views: int, num_points: int, oversample: float,
          progress: bool = True, tolerances: tuple[float, ...] = (0.1,)
          ) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """Per-sample metrics of each step's published cloud (unaligned); scenes without a scale."""
    method = ModelMethod(model, oversample=oversample)
    names = FITS + tuple(f'chamfer_shift+snap{tol:g}' for tol in tolerances)
    rows: dict[str, dict[str, dict]] = {f'{name}[none]': {} for name in names}
    skipped = []
    for i, path in enumerate(tqdm(files, desc='scenes', unit='scene', disable=not progress)):
        sample = select_views(load_sample(path), views)
        gt = ground_truth(sample)
        pred = method.predict(sample, num_points, seed=i)
        points = np.asarray(pred['points'], dtype=np.float64)
        depth = np.asarray(sample['depths'][0], dtype=np.float64)
        intrinsics = np.asarray(sample['intrinsics'][0], dtype=np.float64)
        kept, first = with_depth(pred, depth, intrinsics, views == 1, tolerance=tolerances[0])
        if first is None:
            skipped.append(f'{path.name}: {kept.reason}')
            continue
        # the chamfer fit is the same one with its shift dropped (geometry.scale): fitted once
        clouds = [{**pred, 'points': result.apply(points), 'units': 'metric'}
                  for result in (replace(kept, shift=(0.0, 0.0, 0.0)), kept)]
        clouds += [first] + [snapped(pred, kept, depth, intrinsics, views == 1, tol)
                             for tol in tolerances[1:]]
        for name, published in zip(rows, clouds, strict=True):
            scored = score_prediction(published, sample, gt, 'none', seed=i)
            rows[name][path.stem] = {k: scored.metrics[k] for k in KEYS}
    return rows, skipped


def table(rows: dict[str, dict[str, dict]], resamples: int = 2000) -> str:
    """Markdown: the mean of each metric per step, then each step minus the one before."""
    lines = ['| depth mode (published cloud, no alignment) | n | ' + ' | '.join(KEYS) + ' |',
             '|' + '---|' * (len(KEYS) + 2)]
    for row, per in rows.items():
        means = [np.nanmean([m[k] for m in per.values()]) if per else np.nan for k in KEYS]
        lines.append(f'| {row} | {len(per)} | ' + ' | '.join(f'{v:.3f}' for v in means) + ' |')
    lines += ['', '| a - b | metric | mean diff | 95% CI | n |', '|---|---|---|---|---|']
    for before, after in pairwise(rows):
        pair = {name: rows[name] for name in (after, before)}
        for d in bootstrap_differences(pair, KEYS, resamples, 0):
            lines.append(f"| {d['a']} - {d['b']} | {d['metric']} | {d['mean_diff']:+.4f} | "
                         f"[{d['ci95_lo']:+.4f}, {d['ci95_hi']:+.4f}] | {d['n']} |")
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='model (.safetensors)')
    p.add_argument('--data', required=True, help='a generated split (room4/test)')
    p.add_argument('--limit', type=int, default=100, help='N scenes of the split')
    p.add_argument('--start', type=int, default=0,
                   help='first scene (manifest index): tune on training scenes, not the test')
    p.add_argument('--views', type=int, default=2, help='K input views')
    p.add_argument('--num-points', type=int, default=8192, help="the node's N")
    p.add_argument('--oversample', type=float, default=2.0, help="the node's oversample")
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--tolerance', type=float, nargs='+', default=[0.1],
                   help="the node's depth_snap_tolerance (fraction of the measured depth); "
                        'several: one snapped row each')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    args = p.parse_args(argv)
    if args.limit < 1 or args.views < 1 or args.num_points < 1 or args.threads < 1:
        p.error('--limit, --views, --num-points and --threads must be >= 1')
    if args.start < 0 or not all(0 <= tol <= 1 for tol in args.tolerance):
        p.error('--start must be >= 0 and every --tolerance in [0, 1]')
    try:
        split = Path(args.data)
        files = [split / s['file'] for s in read_manifest(split)['samples']]
        files = files[args.start:args.start + args.limit]
        torch.set_num_threads(args.threads)
        model = Nova3r.from_checkpoint(args.checkpoint)
        rows, skipped = study(model, files, args.views, args.num_points, args.oversample,
                              not args.no_progress, tuple(args.tolerance))
    except (ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for line in skipped:
        print(f'no depth scale, skipped: {line}', file=sys.stderr)
    if not next(iter(rows.values())):
        print('error: no scene got a depth scale', file=sys.stderr)
        return 2
    print(table(rows), end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
