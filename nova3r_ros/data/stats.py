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
Occluded fraction of the GT per category, for K = 1..K_max views of a split directory.

    python -m nova3r_ros.data.stats data/synth/train --limit 50

The occluded fraction is the share of GT points (inside the first k frusta) that are not
visible in any of the first k views; "share" is the category's part of all occluded points.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nova3r_ros.data.dataset import load_sample, select_views
import numpy as np
from tqdm import tqdm

CATEGORY_NAMES = ('floor', 'wall', 'object')


def occlusion_stats(samples: list[dict[str, np.ndarray]], k: int) -> dict[str, float]:
    """
    Average occlusion statistics over samples.

    Mean over samples of: occluded fraction overall and per category, and each category's
    share of the GT and of the occluded points (categories absent from a sample are skipped).
    """
    rows: dict[str, list[float]] = {}
    for s in samples:
        v = select_views(s, k)
        occ, cat = ~v['points_visible'], v['points_category']
        rows.setdefault('occluded', []).append(float(occ.mean()))
        for c, name in enumerate(CATEGORY_NAMES):
            m = cat == c
            rows.setdefault(f'{name}_gt_share', []).append(float(m.mean()))
            rows.setdefault(f'{name}_occluded_share', []).append(
                float((occ & m).sum() / max(occ.sum(), 1)))
            if m.any():
                rows.setdefault(f'{name}_occluded', []).append(float(occ[m].mean()))
    return {key: float(np.mean(vals)) for key, vals in rows.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.data.stats',
                                description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('directory', help='split directory with sample_*.npz')
    p.add_argument('--limit', type=int, default=50, help='number of samples to read')
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f'--limit must be >= 1, got {args.limit}')
    files = sorted(Path(args.directory).glob('sample_*.npz'))[: args.limit]
    if not files:
        p.error(f'no sample_*.npz in {args.directory}')
    samples = [load_sample(f) for f in tqdm(files, desc='load')]
    k_max = min(int(s['num_views']) for s in samples)
    print(f'{len(samples)} samples from {args.directory}')
    print('| K | occluded | floor occ. | wall occ. | object occ. '
          '| occluded share floor/wall/object | GT share floor/wall/object |')
    print('|---|---|---|---|---|---|---|')
    for k in range(1, k_max + 1):
        st = occlusion_stats(samples, k)
        occ_c = ' | '.join(f"{100 * st.get(f'{n}_occluded', np.nan):.1f} %"
                           for n in CATEGORY_NAMES)
        share = '/'.join(f"{100 * st[f'{n}_occluded_share']:.0f}" for n in CATEGORY_NAMES)
        gt = '/'.join(f"{100 * st[f'{n}_gt_share']:.0f}" for n in CATEGORY_NAMES)
        print(f"| {k} | {100 * st['occluded']:.1f} % | {occ_c} | {share} % | {gt} % |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
