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

"""
Training batches: one K (views) and one N (target points) per batch, deterministic per seed.

Samples are generated with K_max views. A batch of the sampler is a list of item keys
`(index, k, n, epoch)`; every item of a batch shares k and n (so tensors stack without padding)
and `TrainSet` restricts the sample to its first k views with `select_views` (GT cropped to those
frusta, median_3 scale recomputed). K=1 means a single view (not a duplicated pair).

Determinism: the order of samples comes from torch's `DistributedSampler` (seed, epoch); k and
n of batch b come from `numpy.random.default_rng([seed, epoch, b])` (the same on every rank);
the random point subsets of an item from `default_rng([seed, epoch, index, k, n])`. A resumed
run skips the batches already consumed in the current epoch, so it sees exactly what an
uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import os
from pathlib import Path

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.model.surface import SUB
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

ItemKey = tuple[int, int, int, int]  # (index, k, n, epoch)


class TrainSet(Dataset):
    """
    Items for stage 1 or 2 from `<root>/<split>` (docs/dataset.md).

    Item of key (index, k, n, epoch):
      points (n, 3) float32: target GT points, median_3-normalised view-1 frame;
      visible (n,) bool: point visible in any of the first k views;
      encoder_points (P_enc, 3) float32 (stage 1, or stage 2 with `with_encoder_points` for the
        latent loss): an independent draw of GT points;
      images (k, 3, H, W) float32 in [0, 1] (stage 2);
      pointmaps (k, R, 3) float32 and pointmaps_valid (k, R) bool (stage 2 with
        `pointmap_grid`): every view's GT pointmap in the same frame and units as `points`.
    """

    def __init__(self, root: str | os.PathLike, stage: int, encoder_points: int = 2048,
                 seed: int = 0, limit: int = 0, with_encoder_points: bool | None = None,
                 pointmap_grid: tuple[int, int] | None = None, start: int = 0) -> None:
        self.root = Path(root)
        manifest = read_manifest(self.root)
        self.files = [self.root / s['file'] for s in manifest['samples']][start:]
        if not self.files:
            raise ValueError(f'{self.root}: manifest lists no samples from index {start}')
        if limit:  # a run pins its sample count, so a growing split keeps its data order
            if len(self.files) < limit:
                raise ValueError(f'{self.root}: {len(self.files)} samples from index {start}, '
                                 f'the run uses {limit}')
            self.files = self.files[:limit]
        self.max_views = int(manifest['params']['num_views'])
        params = manifest['params']
        self.image_size = ((int(params['width']), int(params['height']))
                           if 'width' in params and 'height' in params else None)
        self.generator_version = str(manifest.get('generator_version', '?'))
        self.stage, self.encoder_points, self.seed = stage, encoder_points, seed
        self.with_encoder_points = (stage == 1 if with_encoder_points is None
                                    else with_encoder_points)
        self.pointmap_grid = pointmap_grid if stage == 2 else None

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, k: int) -> dict[str, np.ndarray]:
        """Load the view-selected sample dict of `index`."""
        if not 1 <= k <= self.max_views:
            raise ValueError(f'k={k} outside 1..{self.max_views} of {self.root}')
        return select_views(load_sample(self.files[index]), k)

    def __getitem__(self, key: ItemKey) -> dict[str, torch.Tensor]:
        index, k, n, epoch = (int(v) for v in key)
        s = self.load(index, k)
        rng = np.random.default_rng([self.seed, epoch, index, k, n])
        scale = float(s['median3_scale'])
        pts = s['points']
        idx = rng.choice(len(pts), n, replace=len(pts) < n)
        item = {'points': torch.from_numpy((pts[idx] * scale).astype(np.float32)),
                'visible': torch.from_numpy(s['points_visible'][idx])}
        if self.with_encoder_points:
            enc = rng.choice(len(pts), self.encoder_points,
                             replace=len(pts) < self.encoder_points)
            item['encoder_points'] = torch.from_numpy((pts[enc] * scale).astype(np.float32))
        if self.stage == 2:
            images = s['images'].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            item['images'] = torch.from_numpy(images)
        if self.pointmap_grid is not None:
            maps, valid = view1_pointmaps(s, self.pointmap_grid)
            item['pointmaps'] = torch.from_numpy(maps * np.float32(scale))
            item['pointmaps_valid'] = torch.from_numpy(valid)
        return item


def camera_pointmap(depth: np.ndarray, intrinsics: np.ndarray, grid: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """
    One view's depth at `SUB` x `SUB` points per patch, in its camera frame (same units).

    Returns (rows*SUB * cols*SUB, 3) float64 row-major over the image and validity (depth > 0).
    """
    rows, cols = grid
    h, w = depth.shape
    ys = (np.arange(rows * SUB) + 0.5) * h / (rows * SUB)
    xs = (np.arange(cols * SUB) + 0.5) * w / (cols * SUB)
    u, v = np.meshgrid(xs, ys)
    d = depth[np.clip(v.astype(int), 0, h - 1), np.clip(u.astype(int), 0, w - 1)]
    d = d.astype(np.float64)
    k = intrinsics
    pts = np.stack([(u - k[0, 2]) / k[0, 0] * d, (v - k[1, 2]) / k[1, 1] * d, d], axis=-1)
    return pts.reshape(-1, 3), (np.isfinite(d) & (d > 0)).reshape(-1)


def view1_pointmaps(sample: dict[str, np.ndarray], grid: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """
    Every view's `camera_pointmap` lifted into view 1's frame (metres).

    Returns (K, rows*SUB * cols*SUB, 3) float32 and validity (K, R).
    """
    maps, valid = [], []
    for view in range(sample['depths'].shape[0]):
        cam, ok = camera_pointmap(sample['depths'][view], sample['intrinsics'][view], grid)
        pose = sample['cam_to_view1'][view].astype(np.float64)
        maps.append((cam @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32))
        valid.append(ok)
    return np.stack(maps), np.stack(valid)


def num_points_choices(lo: int, hi: int, step: int) -> list[int]:
    """{lo, lo+step, ..., hi} (hi always included)."""
    values = list(range(lo, hi + 1, step))
    if values[-1] != hi:
        values.append(hi)
    return values


class BatchPlan(Sampler[list[ItemKey]]):
    """
    Batches of item keys for one epoch, starting at batch `start` (for exact resume).

    Sample order: `DistributedSampler(shuffle=True, seed, drop_last=True)` for this rank;
    incomplete last batches are dropped, so every rank runs the same number of steps.
    """

    def __init__(self, dataset: Dataset, batch_size: int, views: Sequence[int],
                 num_points: Sequence[int], seed: int, num_replicas: int = 1,
                 rank: int = 0) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.batch_size, self.views, self.num_points = batch_size, list(views), list(num_points)
        self.seed, self.epoch, self.start = seed, 0, 0
        if len(self) == 0:
            raise ValueError(f'{len(dataset)} samples over {num_replicas} processes cannot '
                             f'fill one batch of {batch_size}')

    def set_position(self, epoch: int, start: int) -> None:
        """Iterate epoch `epoch` from its batch `start`."""
        self.epoch, self.start = int(epoch), int(start)
        self.sampler.set_epoch(self.epoch)

    def batch_shape(self, batch: int) -> tuple[int, int]:
        """(k, n) of batch number `batch` of the current epoch (identical on all ranks)."""
        rng = np.random.default_rng([self.seed, self.epoch, batch])
        return int(rng.choice(self.views)), int(rng.choice(self.num_points))

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[list[ItemKey]]:
        order = list(self.sampler)
        for b in range(self.start, len(self)):
            k, n = self.batch_shape(b)
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(i, k, n, self.epoch) for i in chunk]
