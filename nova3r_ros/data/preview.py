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
Preview PNGs of samples: the K views, their depths, and a top-down plot of the GT.

python -m nova3r_ros.data.preview data/synth/train --out previews --limit 8
python -m nova3r_ros.data.preview --seeds 0 1 2 --views 2 --out previews   # no files needed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

CATEGORY_NAMES = ('floor', 'wall', 'object')


def render_preview(sample: dict[str, np.ndarray], path: str | Path) -> None:
    """
    Write one preview PNG of the sample.

    Row 1 RGB views, row 2 depths, right: top-down (x-z, view-1 frame) GT, visible points
    green, occluded red, camera centres and viewing directions in blue.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    k = int(sample['num_views'])
    fig = plt.figure(figsize=(3.2 * k + 6.5, 5.6))
    grid = fig.add_gridspec(2, k + 2)
    max_d = float(np.max(sample['depths'])) or 1.0
    for i in range(k):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(sample['images'][i])
        ax.set_title(f'view {i + 1}')
        ax.axis('off')
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(sample['depths'][i], cmap='turbo', vmin=0, vmax=max_d)
        ax.set_title(f'depth (0-{max_d:.1f} m)')
        ax.axis('off')
    ax = fig.add_subplot(grid[:, k:])
    pts = sample['points']
    vis = sample['points_visible_in'].any(axis=1)
    order = np.argsort(-pts[:, 1])  # y points down: draw high points last, over the floor
    sub = order[:: max(1, len(order) // 20000)]
    colors = np.where(vis[sub, None], [[0.1, 0.7, 0.2]], [[0.85, 0.1, 0.1]])
    ax.scatter(pts[sub, 0], pts[sub, 2], s=0.6, c=colors, linewidths=0)
    for pose in sample['cam_to_view1']:
        c, f = pose[:3, 3], pose[:3, 2]
        ax.plot([c[0]], [c[2]], 'bo', ms=4)
        ax.plot([c[0], c[0] + 0.5 * f[0]], [c[2], c[2] + 0.5 * f[2]], 'b-')
    cat = sample['points_category']
    occ = [f'{CATEGORY_NAMES[c]} {100 * (1 - vis[cat == c].mean()):.0f}%'
           for c in range(3) if np.any(cat == c)]
    ax.set_title(f"seed {int(sample['seed'])}: occluded {100 * (1 - vis.mean()):.0f}% "
                 f"({', '.join(occ)})", fontsize=9)
    ax.set_xlabel('x (m, view-1 right)')
    ax.set_ylabel('z (m, view-1 forward)')
    ax.set_aspect('equal')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m nova3r_ros.data.preview',
                                     description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='*', help='sample .npz files or split directories')
    parser.add_argument('--seeds', type=int, nargs='*', default=[],
                        help='generate these seeds on the fly instead of reading files')
    parser.add_argument('--views', type=int, default=2, help='K for --seeds')
    parser.add_argument('--mode', choices=('room', 'object'), default='room',
                        help='scene kind for --seeds')
    parser.add_argument('--out', required=True, help='output directory for PNGs')
    parser.add_argument('--limit', type=int, default=8, help='max samples per directory')
    args = parser.parse_args(argv)
    from nova3r_ros.cli_format import make_out_dir
    from nova3r_ros.data.dataset import load_sample
    from nova3r_ros.data.sample import GeneratorConfig, make_sample

    if args.limit < 1:
        parser.error(f'--limit must be >= 1, got {args.limit}')
    jobs = []
    for item in args.inputs:
        p = Path(item)
        if not p.exists():
            parser.error(f'{p} does not exist')
        files = sorted(p.glob('sample_*.npz'))[: args.limit] if p.is_dir() else [p]
        jobs += [('file', f) for f in files]
    jobs += [('seed', s) for s in args.seeds]
    if not jobs:
        parser.error('give sample files/directories or --seeds')
    try:
        cfg = GeneratorConfig(num_views=args.views, mode=args.mode)
        out = make_out_dir(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    for kind, item in tqdm(jobs, desc='preview'):
        try:
            sample = load_sample(item) if kind == 'file' else make_sample(item, cfg)
        except ValueError as exc:  # not a sample file, or a seed the generator refuses
            parser.error(str(exc))
        render_preview(sample, out / f"preview_{int(sample['seed']):08d}.png")
    print(f'wrote {len(jobs)} PNGs to {out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
