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
Dataset files: deterministic `.npz` writer, validating reader, view selection, torch Dataset.

Format: docs/dataset.md (version 1). Files are plain zip archives of `.npy` arrays written with
fixed timestamps and a fixed key order, so equal arrays give byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import zipfile

from nova3r_ros.data.groundtruth import median3_scale
from nova3r_ros.data.sample import FORMAT_VERSION
import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS: dict[str, tuple[int, int]] = {
    'train': (0, 1_000_000),
    'val': (1_000_000, 1_100_000),
    'test': (2_000_000, 2_100_000),
}

_STORED = frozenset({'points', 'points_alt'})
_POINT_KEYS = ('', '_normals', '_category', '_in_view', '_visible_in')


def _schema(k: int, h: int, w: int) -> dict[str, tuple[np.dtype, tuple]]:
    """Return the expected dtype and shape per key (P written as -1)."""
    s = {
        'format_version': (np.int64, ()), 'seed': (np.int64, ()), 'num_views': (np.int64, ()),
        'max_depth': (np.float32, ()), 'median3_scale': (np.float32, ()),
        'images': (np.uint8, (k, h, w, 3)), 'depths': (np.float32, (k, h, w)),
        'instance_ids': (np.int32, (k, h, w)), 'intrinsics': (np.float32, (k, 3, 3)),
        'cam_to_world': (np.float32, (k, 4, 4)), 'cam_to_view1': (np.float32, (k, 4, 4)),
    }
    for prefix in ('points', 'points_alt'):
        s[prefix] = (np.float32, (-1, 3))
        s[prefix + '_normals'] = (np.float32, (-1, 3))
        s[prefix + '_category'] = (np.uint8, (-1,))
        s[prefix + '_in_view'] = (np.bool_, (-1, k))
        s[prefix + '_visible_in'] = (np.bool_, (-1, k))
    return s


def sample_filename(seed: int) -> str:
    """`sample_<seed:08d>.npz`."""
    return f'sample_{int(seed):08d}.npz'


def split_of_seed(seed: int) -> str | None:
    """Name of the split whose seed range holds `seed`, or None."""
    for name, (lo, hi) in SPLITS.items():
        if lo <= seed < hi:
            return name
    return None


def save_sample(path: str | os.PathLike, sample: dict[str, np.ndarray],
                compresslevel: int = 1) -> int:
    """Write `sample` atomically (temp file + rename), byte-deterministic. Returns bytes."""
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for key in sorted(sample):
            info = zipfile.ZipInfo(key + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
            # Random float coordinates shrink < 10 % under zlib: store them, save the time.
            info.compress_type = (zipfile.ZIP_STORED if key in _STORED or compresslevel == 0
                                  else zipfile.ZIP_DEFLATED)
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.asarray(sample[key]), allow_pickle=False)
            zf.writestr(info, arr.getvalue(), compresslevel=compresslevel)
    data = buf.getvalue()
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def load_sample(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load and validate one sample file (no pickle). Raises ValueError naming the problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            sample = {k: z[k] for k in z.files}
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f'{path}: not a readable sample file ({exc})') from exc
    validate_sample(sample, str(path))
    return sample


def validate_sample(sample: dict[str, np.ndarray], name: str = 'sample') -> None:
    """Check version, keys, dtypes and shapes against docs/dataset.md."""
    if 'format_version' not in sample:
        raise ValueError(f'{name}: missing key format_version')
    if int(sample['format_version']) != FORMAT_VERSION:
        raise ValueError(f"{name}: format_version {int(sample['format_version'])}, "
                         f'this reader reads {FORMAT_VERSION}')
    if 'images' not in sample or np.ndim(sample['images']) != 4:
        raise ValueError(f'{name}: images must be (K,H,W,3)')
    k, h, w, _ = sample['images'].shape
    schema = _schema(k, h, w)
    missing = sorted(set(schema) - set(sample))
    if missing:
        raise ValueError(f'{name}: missing keys {missing}')
    if int(sample['num_views']) != k:
        raise ValueError(f"{name}: num_views={int(sample['num_views'])} but images has K={k}")
    for key, (dtype, shape) in schema.items():
        arr = sample[key]
        if arr.dtype != dtype:
            raise ValueError(f'{name}: {key} has dtype {arr.dtype}, expected {np.dtype(dtype)}')
        prefix = 'points_alt' if key.startswith('points_alt') else 'points'
        want = tuple(len(sample[prefix]) if s == -1 else s for s in shape)
        if arr.shape != want:
            raise ValueError(f'{name}: {key} has shape {arr.shape}, expected {want}')


def select_views(sample: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """
    Restrict the sample to its first k views (points cropped to those frusta).

    Adds `points_visible` / `points_alt_visible` (P',) bool = visible in any of the k views and
    recomputes `median3_scale` from the kept points.
    """
    k_max = int(sample['num_views'])
    if not 1 <= k <= k_max:
        raise ValueError(f'select_views: k={k} outside 1..{k_max}')
    out = dict(sample)
    for key in ('images', 'depths', 'instance_ids', 'intrinsics', 'cam_to_world',
                'cam_to_view1'):
        out[key] = sample[key][:k]
    out['num_views'] = np.int64(k)
    for prefix in ('points', 'points_alt'):
        keep = sample[prefix + '_in_view'][:, :k].any(axis=1)
        for suffix in _POINT_KEYS:
            arr = sample[prefix + suffix][keep]
            out[prefix + suffix] = arr[:, :k] if suffix in ('_in_view', '_visible_in') else arr
        out[prefix + '_visible'] = out[prefix + '_visible_in'].any(axis=1)
    out['median3_scale'] = median3_scale(out['points'])
    return out


def read_manifest(directory: str | os.PathLike) -> dict:
    """Parse `<directory>/manifest.json` (ValueError if absent or malformed)."""
    path = Path(directory) / 'manifest.json'
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f'{path}: cannot read manifest ({exc})') from exc
    if manifest.get('format_version') != FORMAT_VERSION or 'samples' not in manifest:
        raise ValueError(f'{path}: not a format-{FORMAT_VERSION} manifest')
    return manifest


class SceneDataset(Dataset):
    """
    Training view of a split directory (see docs/dataset.md, "Reader").

    Items: images float32 (K,3,H,W) in [0,1]; points float32 (N,3) view-1 frame (times
    median3_scale when `normalize`); visible bool (N,); category uint8 (N,); median3_scale
    float32 (); index int. The point subset depends only on (seed, epoch, index).
    """

    def __init__(self, root: str | os.PathLike, num_views: int, num_points: int,
                 normalize: bool = True, seed: int = 0, split: str | None = None) -> None:
        self.root = Path(root) / split if split else Path(root)
        manifest = read_manifest(self.root)
        self.files = [self.root / s['file'] for s in manifest['samples']]
        if not self.files:
            raise ValueError(f'{self.root}: manifest lists no samples')
        k_max = int(manifest['params']['num_views'])
        if not 1 <= num_views <= k_max:
            raise ValueError(f'num_views={num_views} outside 1..{k_max} of {self.root}')
        if num_points < 1:
            raise ValueError(f'num_points must be positive, got {num_points}')
        self.num_views, self.num_points = num_views, num_points
        self.normalize, self.seed, self.epoch = normalize, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose point subsets __getitem__ draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        s = select_views(load_sample(self.files[index]), self.num_views)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        n_avail = len(s['points'])
        idx = rng.choice(n_avail, self.num_points, replace=n_avail < self.num_points)
        scale = float(s['median3_scale'])
        pts = s['points'][idx] * (scale if self.normalize else 1.0)
        images = s['images'].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return {
            'images': torch.from_numpy(images),
            'points': torch.from_numpy(pts.astype(np.float32)),
            'visible': torch.from_numpy(s['points_visible'][idx]),
            'category': torch.from_numpy(s['points_category'][idx]),
            'median3_scale': torch.tensor(scale, dtype=torch.float32),
            'index': int(index),
        }
