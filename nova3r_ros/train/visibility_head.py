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
Fit the visibility head on the points the model actually samples (head-only fine-tune).

Why: stage 2 trains the head on ground-truth points, but at inference it labels *sampled*
points, which lie around the surfaces rather than on them, so the head meets inputs it never saw
(held-out AUROC 0.65 for the first shipped model). Here every other weight stays frozen, the
node's own sampler (N points, its steps) runs on training scenes, and each sampled point gets
the label the evaluation uses: the GT visibility of its nearest GT point after the standard
chamfer alignment. The decoder features of those points are cached once, then the small head
trains on the cache for many epochs. The points, and so every geometry metric, do not change.

    python -m nova3r_ros.train.visibility_head --checkpoint checkpoints/nova3r_tiny.safetensors \
        --data data/generated/room4 --out runs/vis_head/model.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
import json
from pathlib import Path
import sys
import time
from typing import Any

from nova3r_ros import allocator
from nova3r_ros.cli_format import HelpFormatter
from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.evaluation.scoring import ground_truth
from nova3r_ros.geometry.align import align
from nova3r_ros.model import Nova3r, PRECISIONS
from nova3r_ros.model.preprocess import prepare_images
from nova3r_ros.params import DEFAULTS, SPECS
import numpy as np
from scipy.spatial import cKDTree
import torch
import torch.nn.functional as F


@dataclass
class FeatureSet:
    """Cached decoder features of sampled points, their labels, and the scene each came from."""

    features: torch.Tensor  # (R, width) float32
    labels: torch.Tensor  # (R,) float32, 1 = nearest GT point visible
    scene: np.ndarray  # (R,) int, index of the source scene in the cache

    def __len__(self) -> int:
        return len(self.labels)


def scene_features(model: Nova3r, sample: dict[str, np.ndarray], num_points: int,
                   num_steps: int, keep: int, seed: int, oversample: float = 1.0
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """
    Sample the model on one view-selected sample as the node does.

    Returns (features of `keep` random points (keep, width), their evaluation labels (keep,)
    bool).
    """
    images, _ = prepare_images(list(sample['images']), model.cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tokens = model.encode_images(images[None])
        # the features the node's sampler hands the head (with a confidence head they come
        # from the call that ranked the drawn points)
        result = model.sample(tokens, num_points, num_steps, generator=generator,
                              visibility=False, oversample=oversample, features=True)
        points, features = result['points'], result['point_features'][0].float()
    pred = points[0].double().numpy()  # normalised units = evaluation units
    gt = ground_truth(sample)
    aligned = align(pred, gt.points, 'chamfer', seed=seed).apply(pred)
    _, nearest = cKDTree(gt.points).query(aligned, k=1, workers=1)
    labels = np.asarray(gt.visible, dtype=bool)[nearest]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(num_points, min(keep, num_points), replace=False))
    return features[torch.from_numpy(idx)], labels[idx]


def split_files(split: Path, count: int, start: int = 0) -> list[Path]:
    """Return `count` sample files of a split from index `start` (ValueError when short)."""
    files = [split / s['file'] for s in read_manifest(split)['samples']][start:start + count]
    if len(files) < count:
        raise ValueError(f'{split}: {len(files)} samples from index {start}, asked for {count}')
    return files


def collect(split_dir: Path, count: int, views: list[int],
            rows: Callable[[dict[str, np.ndarray], int], tuple[torch.Tensor, np.ndarray]],
            seed: int, progress: bool = True, desc: str = 'features',
            start: int = 0) -> FeatureSet:
    """
    Rows of `count` scenes of a split from index `start`; scene i uses K = views[i % len].

    `rows(sample, seed + i)` returns one scene's (features (R, D), labels (R,) bool); the head
    refits (visibility here, confidence in `confidence_head.py`) differ only in it. `i` is the
    split index, so a scene gets the same K and seed whichever range it is read in.
    """
    files = split_files(split_dir, count, start)
    feats, labels, scene = [], [], []
    iterator = enumerate(files, start)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(files), desc=f'{desc} {split_dir.name}',
                        unit='scene', dynamic_ncols=True)
    for i, path in iterator:
        sample = select_views(load_sample(path), views[i % len(views)])
        f, lab = rows(sample, seed + i)
        feats.append(f)
        labels.append(torch.from_numpy(lab.astype(np.float32)))
        scene.append(np.full(len(lab), i))
    return FeatureSet(torch.cat(feats), torch.cat(labels), np.concatenate(scene))


def build_cache(model: Nova3r, split_dir: Path, count: int, views: list[int], num_points: int,
                num_steps: int, keep: int, seed: int, progress: bool = True,
                oversample: float = 1.0) -> FeatureSet:
    """Visibility features and labels of the first `count` scenes of a split (`collect`)."""
    return collect(split_dir, count, views,
                   lambda sample, s: scene_features(model, sample, num_points, num_steps, keep,
                                                    s, oversample),
                   seed, progress)


def scene_auroc(head: torch.nn.Module, data: FeatureSet) -> float:
    """Mean per-scene AUROC, as the evaluation reports it (one AUROC per prediction)."""
    with torch.no_grad():
        scores = head(data.features).squeeze(-1).numpy()
    labels = data.labels.numpy() > 0.5
    values = [auroc(scores[data.scene == s], labels[data.scene == s])
              for s in np.unique(data.scene)]
    return float(np.nanmean(values))


def fit_head(head: torch.nn.Module, train: FeatureSet, val: FeatureSet, epochs: int, lr: float,
             batch: int, seed: int, log: list[dict[str, float]], last: bool = False
             ) -> torch.nn.Module:
    """
    Train with AdamW on BCE (cosine LR).

    Returns the head of the best validation AUROC, or with `last` the head at the end of the
    schedule (when a small validation split is too noisy to pick an epoch).
    """
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * max(1, len(train) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 20)
    best = (scene_auroc(head, val), {k: v.clone() for k, v in head.state_dict().items()})
    log.append({'epoch': 0, 'val_auroc': best[0]})
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train))
        total = 0.0
        for start in range(0, len(train) - batch + 1, batch):
            idx = order[start:start + batch]
            loss = F.binary_cross_entropy_with_logits(head(train.features[idx]).squeeze(-1),
                                                      train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        value = scene_auroc(head, val)
        log.append({'epoch': epoch, 'train_bce': total / len(train), 'val_auroc': value})
        if value > best[0]:
            best = (value, {k: v.clone() for k, v in head.state_dict().items()})
    if not last:
        head.load_state_dict(best[1])
    return head


def check_counts(p: argparse.ArgumentParser, args: argparse.Namespace,
                 names: tuple[str, ...]) -> None:
    """Refuse counts below 1 and K below 1 (both head refits take the same kinds of count)."""
    for name in names:
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if any(k < 1 for k in args.views):
        p.error('--views must be >= 1')


def check_node_oversample(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse an `--oversample` outside the node parameter's range (refits that sample as it)."""
    spec = SPECS['oversample']
    if not spec.low <= args.oversample <= spec.high:
        p.error(f'--oversample must be in [{spec.low:g}, {spec.high:g}]')


def check_paths(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """
    Refuse paths both head refits would only fail on later, or get wrong.

    A missing checkpoint or data split; an `--out` that is the checkpoint itself (the refit
    would replace the only copy of the weights it read).
    """
    checkpoint, out = Path(args.checkpoint), Path(args.out)
    if not checkpoint.is_file():
        p.error(f'--checkpoint {checkpoint}: no such file')
    if out.exists() and out.resolve() == checkpoint.resolve():
        p.error('--out must not be the --checkpoint it reads (write a new file, then copy it)')
    if out.is_dir():
        p.error(f'--out {out} is a directory; name the .safetensors file to write')
    for split in ('train', getattr(args, 'val_split', 'val')):
        if not (Path(args.data) / split / 'manifest.json').is_file():
            p.error(f'--data {args.data}: no {split}/manifest.json (nova3r_generate makes it)')


def frozen_model(args: argparse.Namespace) -> tuple[Nova3r, Path]:
    """Load `--checkpoint` with every weight frozen and make `--out`'s folder (both refits)."""
    allocator.tune_malloc()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = Nova3r.from_checkpoint(args.checkpoint).set_precision(args.precision)
    model.requires_grad_(False)
    return model, out


def with_fresh(model: Nova3r, fresh: tuple[str, ...], **decoder: Any) -> Nova3r:
    """
    Copy `model` into one whose decoder config changes by `decoder`, modules `fresh` new.

    Every other weight carries over (checked); device, precision and metadata too. The copy is
    frozen and in eval mode: the refit unfreezes what it fits.
    """
    cfg = dataclasses.replace(model.cfg, decoder=dataclasses.replace(model.cfg.decoder,
                                                                     **decoder))
    out = Nova3r(cfg).to(model.device)
    prefixes = tuple(f'{name}.' for name in fresh)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    missing, unexpected = out.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(prefixes) for k in missing):
        raise ValueError(f'weights do not carry over: missing {missing}, unexpected {unexpected}')
    out.checkpoint_metadata = dict(model.checkpoint_metadata)
    out.set_precision(model.precision)
    return out.requires_grad_(False).eval()


def add_precision(p: argparse.ArgumentParser) -> None:
    """Add the node's `precision` for the sampling that makes the cache (both refits)."""
    p.add_argument('--precision', default='auto', choices=PRECISIONS,
                   help="compute precision of the sampling, as the node's parameter (bf16 makes "
                        'CPU caching faster on CPUs with native bf16; the heads fit in fp32)')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.train.visibility_head',
                                description=__doc__.strip().split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--checkpoint', required=True, help='model whose head is refitted')
    p.add_argument('--data', required=True, help='dataset root with train/ and val/ splits')
    p.add_argument('--out', required=True, help='output model (.safetensors)')
    p.add_argument('--train-scenes', type=int, default=300)
    p.add_argument('--val-split', default='val')
    p.add_argument('--val-scenes', type=int, default=16)
    p.add_argument('--views', type=int, nargs='+', default=[1, 2, 2, 3, 4],
                   help='K per scene, cycled (default: K=2 twice as often)')
    p.add_argument('--num-points', type=int, default=8192, help="the node's default N")
    p.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                   help="the node's default steps")
    p.add_argument('--oversample', type=float, default=DEFAULTS['oversample'],
                   help="the node's oversample: draw N x this, keep N as the node does")
    p.add_argument('--keep', type=int, default=2048, help='points kept per scene')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--batch', type=int, default=4096)
    p.add_argument('--reinit', action='store_true', help='start the head from scratch')
    p.add_argument('--threads', type=int, default=1)
    add_precision(p)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    check_counts(p, args, ('train_scenes', 'val_scenes', 'num_points', 'num_steps', 'keep',
                           'epochs', 'batch', 'threads'))
    if not args.lr > 0:
        p.error('--lr must be > 0')
    check_node_oversample(p, args)
    check_paths(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model, out = frozen_model(args)
    except (ValueError, OSError) as exc:  # a corrupt or foreign checkpoint
        print(f'error: --checkpoint {args.checkpoint}: {exc}', file=sys.stderr)
        return 2
    root, progress = Path(args.data), not args.no_progress
    t0 = time.perf_counter()
    train = build_cache(model, root / 'train', args.train_scenes, args.views, args.num_points,
                        args.num_steps, args.keep, args.seed, progress, args.oversample)
    val = build_cache(model, root / args.val_split, args.val_scenes, args.views,
                      args.num_points, args.num_steps, args.keep, args.seed + 10_000_000,
                      progress, args.oversample)
    cache_s = time.perf_counter() - t0
    head = model.visibility_head
    if args.reinit:
        for module in head.modules():
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()
    head.requires_grad_(True).train()
    before = scene_auroc(head, val)
    log: list[dict[str, float]] = []
    fit_head(head, train, val, args.epochs, args.lr, args.batch, args.seed, log)
    head.requires_grad_(False).eval()
    after = scene_auroc(head, val)
    meta = dict(model.checkpoint_metadata)
    meta['visibility_head'] = json.dumps({
        'refit_on': 'sampled points', 'train_scenes': args.train_scenes,
        'num_points': args.num_points, 'num_steps': args.num_steps, 'views': args.views,
        'oversample': args.oversample, 'precision': args.precision,
        'val_auroc_before': round(before, 4), 'val_auroc_after': round(after, 4)})
    model.save_checkpoint(out, meta)
    summary = {'out': str(out), 'train_rows': len(train), 'visible_fraction':
               float(train.labels.mean()), 'val_auroc_before': before, 'val_auroc_after': after,
               'cache_seconds': round(cache_s, 1), 'log': log}
    (out.parent / f'{out.stem}_fit.json').write_text(json.dumps(summary, indent=1))
    print(f'visibility head: val AUROC {before:.3f} -> {after:.3f} '
          f'({len(train)} training points from {args.train_scenes} scenes); wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
