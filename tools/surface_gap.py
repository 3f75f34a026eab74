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
Depth AbsRel of a checkpoint's surface head on scenes it trained on and on unseen ones.

Why: the gap says whether the head over-fits its scenes (more data helps) or under-fits them
(a longer fit or a wider head helps). The tokens come from `train.surface_head`'s cache when
`--tokens-from` names the file that cache is keyed by (any release from the tenth on encodes the
same tokens), so nothing is encoded twice. With `--edges T` each row is also split into the
points at a depth edge (a 4-neighbour's log depth differs by more than T) and the rest: the
visibility fusion reads the depth where a point's side of the surface flips, so a head can gain
on the mean and not where it matters.

    python tools/surface_gap.py --checkpoint checkpoints/nova3r_tiny.safetensors \
        --tokens-from runs/tenth.safetensors --data data/generated/room4 \
        --cache runs/surface_cache --train 0 3000 --train-first 300 --held-out 3400 100
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from nova3r_ros.model import Nova3r
from nova3r_ros.train.surface_head import (
    cached_surface,
    check_same_tokens,
    depth_absrel,
    depth_edges,
    grid_of,
    head_depths,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='model whose surface head is scored')
    p.add_argument('--tokens-from', default=None,
                   help='file the token cache is keyed by (default: --checkpoint)')
    p.add_argument('--data', required=True, help='dataset root with a train/ split')
    p.add_argument('--cache', default=None, help='train.surface_head --cache directory')
    p.add_argument('--train', type=int, nargs=2, metavar=('START', 'COUNT'), required=True,
                   help='a cached range the head trained on')
    p.add_argument('--train-first', type=int, default=300,
                   help='score only this many of its first scenes')
    p.add_argument('--held-out', type=int, nargs=2, metavar=('START', 'COUNT'), required=True,
                   help='a range of the train split the head never saw')
    p.add_argument('--views', type=int, nargs='+', default=[1, 2, 2, 3, 4])
    p.add_argument('--edges', type=float, default=None, metavar='T',
                   help='also split each row at depth edges: a log depth step > T to a '
                        '4-neighbour (0.1 is a 10 %% jump)')
    args = p.parse_args(argv)
    if args.edges is not None and not args.edges > 0:
        p.error(f'--edges must be > 0, got {args.edges}')
    model = Nova3r.from_checkpoint(args.checkpoint)
    if model.surface_head is None:
        print(f'error: {args.checkpoint} has no surface head', file=sys.stderr)
        return 2
    keyed = Path(args.tokens_from or args.checkpoint)
    if args.tokens_from:  # the checkpoint itself needs no check against itself
        try:
            check_same_tokens(model, keyed)
        except (ValueError, OSError) as exc:
            print(f'error: --tokens-from {keyed}: {exc}', file=sys.stderr)
            return 2
    cache = Path(args.cache) if args.cache else None
    split = Path(args.data) / 'train'
    rows = {}
    for label, (start, count) in (('trained on', args.train), ('held out', args.held_out)):
        top = model.surface_top  # a head with its own top layers reads what enters them
        tap = top.start if top is not None else None
        data = cached_surface(model, keyed, cache, split, count, args.views, True, start,
                              tap=tap)
        if label == 'trained on':
            data = tuple(x[:args.train_first] for x in data)
        z = head_depths(model.surface_head, data, top)  # once, however many splits
        row = [len(data[0]), depth_absrel(z, data)]
        if args.edges is not None:
            edge = depth_edges(data[1][..., 2], data[2], grid_of(model), args.edges)
            share = float(edge.sum() / data[2].bool().sum().clamp_min(1))
            row += [share, depth_absrel(z, data, edge), depth_absrel(z, data, ~edge)]
        rows[label] = row
    for label, row in rows.items():
        print(f'{label}: {row[0]} scenes, depth AbsRel {row[1]:.4f}')
        if args.edges is not None:
            print(f'  at depth edges ({row[2]:.1%} of points) {row[3]:.4f}, '
                  f'elsewhere {row[4]:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
