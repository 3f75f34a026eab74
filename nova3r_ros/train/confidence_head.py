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
Fit the surface-confidence head on the points the sampler draws (all other weights frozen).

Why: with a confidence head the sampler keeps the drawn points most likely to lie on a surface
instead of the least isolated (`nova3r_ros/model/confidence.py`). The head's label is what the
evaluation's precision counts: the point lies within `tau` of the complete GT after the
standard chamfer alignment. Inputs are cached once per scene (decoder features, last
velocities, local geometry, exactly as `Nova3r.draw` builds them), then the head trains on the
cache. The output is the input checkpoint plus the head (config `decoder.confidence_hidden`).

    python -m nova3r_ros.train.confidence_head --checkpoint checkpoints/nova3r_tiny.safetensors \
        --data data/generated/room4 --out runs/conf_head/model.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

from nova3r_ros.cli_format import HelpFormatter
from nova3r_ros.evaluation.scoring import ground_truth
from nova3r_ros.geometry.align import align
from nova3r_ros.model import density, Nova3r
from nova3r_ros.model.preprocess import prepare_images
from nova3r_ros.params import DEFAULTS
from nova3r_ros.train.visibility_head import (
    add_precision,
    check_counts,
    check_paths,
    collect,
    FeatureSet,
    fit_head,
    frozen_model,
    scene_auroc,
    with_fresh,
)
import numpy as np
from scipy.spatial import cKDTree
import torch


def scene_rows(model: Nova3r, sample: dict[str, np.ndarray], num_points: int, num_steps: int,
               oversample: float, tau: float, keep: int, seed: int
               ) -> tuple[torch.Tensor, np.ndarray]:
    """Head inputs of `keep` random drawn points (keep, D) and their labels (within tau)."""
    images, _ = prepare_images(list(sample['images']), model.cfg)
    generator = torch.Generator().manual_seed(seed)
    drawn = density.drawn_points(num_points, oversample)
    with torch.no_grad():
        tokens = model.encode_images(images[None])
        points, inputs = model.draw(tokens, drawn, num_steps, generator=generator,
                                    head_inputs=True)
    points = points[0]
    # align as the evaluation would align the published cloud (density-kept stands in for it)
    kept = density.keep_densest(points[None], num_points)[0].numpy()
    pred = points.double().numpy()
    gt = ground_truth(sample)
    fit = align(pred[kept], gt.points, 'chamfer', seed=seed)
    dist, _ = cKDTree(gt.points).query(fit.apply(pred), k=1, workers=1)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(drawn, min(keep, drawn), replace=False))
    return inputs[0][torch.from_numpy(idx)], dist[idx] < tau


def build_cache(model: Nova3r, split_dir: Path, count: int, args: argparse.Namespace,
                seed: int, start: int = 0) -> FeatureSet:
    """Head inputs and labels of `count` scenes of a split from index `start` (`collect`)."""
    return collect(split_dir, count, args.views,
                   lambda sample, s: scene_rows(model, sample, args.num_points, args.num_steps,
                                                args.oversample, args.tau, args.keep, s),
                   seed, not args.no_progress, 'rows', start)


def with_head(model: Nova3r, hidden: int, coverage: float) -> Nova3r:
    """Copy `model` into one whose config has a fresh confidence head of width `hidden`."""
    return with_fresh(model, ('confidence_head',), confidence_hidden=hidden,
                      confidence_coverage=coverage)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.train.confidence_head',
                                description=__doc__.strip().split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--checkpoint', required=True, help='model that gets the head')
    p.add_argument('--data', required=True, help='dataset root with train/ and val/ splits')
    p.add_argument('--out', required=True, help='output model (.safetensors)')
    p.add_argument('--train-scenes', type=int, default=160)
    p.add_argument('--train-start', type=int, default=0,
                   help='first train/ index of the fit (scenes the encoder never saw)')
    p.add_argument('--val-split', default='val')
    p.add_argument('--val-scenes', type=int, default=16)
    p.add_argument('--val-start', type=int, default=0,
                   help="first index of --val-split (e.g. '--val-split train --val-start 3400' "
                        'where there is no val/)')
    p.add_argument('--views', type=int, nargs='+', default=[1, 2, 2, 3, 4],
                   help='K per scene, cycled (default: K=2 twice as often)')
    p.add_argument('--num-points', type=int, default=8192, help="the node's default N")
    p.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                   help="the node's default steps")
    p.add_argument('--oversample', type=float, default=2.0,
                   help='draw N x this per training scene (covers every node ratio up to it)')
    p.add_argument('--tau', type=float, default=0.1, help='on-surface distance (eval units)')
    p.add_argument('--keep', type=int, default=4096, help='rows kept per scene')
    p.add_argument('--hidden', type=int, default=512, help='hidden width of the head')
    p.add_argument('--coverage', type=float, default=3.0,
                   help='ranking weight of log isolation (config decoder.confidence_coverage; '
                        'tuned on the tune split, docs/training_status.md)')
    p.add_argument('--epochs', type=int, default=24)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--batch', type=int, default=4096)
    p.add_argument('--last', action='store_true',
                   help='keep the head at the end of the schedule, not the best validation epoch')
    p.add_argument('--threads', type=int, default=2)
    add_precision(p)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    check_counts(p, args, ('train_scenes', 'val_scenes', 'num_points', 'num_steps', 'keep',
                           'hidden', 'epochs', 'batch', 'threads'))
    if not (args.lr > 0 and args.tau > 0):
        p.error('--lr and --tau must be > 0')
    if args.train_start < 0 or args.val_start < 0:
        p.error('--train-start and --val-start must be >= 0')
    if args.val_split == 'train' and (args.val_start < args.train_start + args.train_scenes
                                      and args.train_start < args.val_start + args.val_scenes):
        p.error('the validation scenes overlap the training scenes (move --val-start)')
    if not 0.0 <= args.coverage <= 10.0:
        p.error('--coverage must be in [0, 10]')
    if not 1.0 < args.oversample <= density.MAX_OVERSAMPLE:
        p.error(f'--oversample must be in (1, {density.MAX_OVERSAMPLE:g}]')
    check_paths(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model, out = frozen_model(args)
    except (ValueError, OSError) as exc:  # a corrupt or foreign checkpoint
        print(f'error: --checkpoint {args.checkpoint}: {exc}', file=sys.stderr)
        return 2
    root = Path(args.data)
    t0 = time.perf_counter()
    train = build_cache(model, root / 'train', args.train_scenes, args, args.seed,
                        args.train_start)
    val = build_cache(model, root / args.val_split, args.val_scenes, args,
                      args.seed + 10_000_000, args.val_start)
    cache_s = time.perf_counter() - t0
    model = with_head(model, args.hidden, args.coverage)
    head = model.confidence_head
    head.requires_grad_(True).train()
    log: list[dict[str, float]] = []
    fit_head(head, train, val, args.epochs, args.lr, args.batch, args.seed, log, args.last)
    head.requires_grad_(False).eval()
    after = scene_auroc(head, val)
    meta = dict(model.checkpoint_metadata)
    meta['confidence_head'] = json.dumps({
        'train_scenes': args.train_scenes, 'train_start': args.train_start,
        'val_split': args.val_split, 'val_start': args.val_start,
        'val_scenes': args.val_scenes, 'num_points': args.num_points,
        'num_steps': args.num_steps, 'views': args.views, 'oversample': args.oversample,
        'tau': args.tau, 'hidden': args.hidden, 'epochs': args.epochs,
        'coverage': args.coverage, 'last_epoch': args.last, 'precision': args.precision,
        'val_auroc': round(after, 4)})
    model.save_checkpoint(out, meta)
    summary = {'out': str(out), 'train_rows': len(train), 'on_surface_fraction':
               float(train.labels.mean()), 'val_auroc': after,
               'cache_seconds': round(cache_s, 1), 'log': log}
    (out.parent / f'{out.stem}_fit.json').write_text(json.dumps(summary, indent=1))
    print(f'confidence head: val AUROC (on surface) {after:.3f} ({len(train)} rows from '
          f'{args.train_scenes} scenes, {cache_s:.0f} s caching); wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
