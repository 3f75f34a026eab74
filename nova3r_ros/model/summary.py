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
Parameter counts of every preset per block (vs the digest) and CPU latency of `tiny`.

    python -m nova3r_ros.model.summary [--presets micro tiny paper] [--no-latency]

`paper` is built on the meta device (no memory). Latency runs `tiny` in fp32 on the CPU with
`--threads` threads: encode (images, K views), one decoder step at N points, the visibility
call, and totals for 8 and 25 Euler steps (encode + steps + visibility).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import time

import torch

from .configs import get_preset, PRESETS
from .nova3r import count_parameters, Nova3r

# nova3r-digest §6 (counts from the released stage-2 config), millions of parameters.
DIGEST_M = {
    'backbone': 304.4,
    'aggregator.frame_blocks': 201.6,
    'aggregator.global_blocks': 201.6,
    'aggregator.scene_conditioner': 7.35,
    'aggregator.scene_tokens': 0.79,
    'aggregator.token_proj': 0.26,
    'decoder': 2.4,
}
STAGE2_BLOCKS = ('backbone', 'aggregator.frame_blocks', 'aggregator.global_blocks',
                 'aggregator.scene_conditioner', 'aggregator.scene_tokens',
                 'aggregator.token_proj', 'aggregator.special_tokens+patch_proj', 'decoder',
                 'visibility_head')
DIGEST_STAGE2_M = 718.4


def parameter_table(preset: str) -> tuple[list[tuple[str, int]], int, int]:
    """([(block, count)], total, stage-2 total) for a preset (built on the meta device)."""
    with torch.device('meta'):
        model = Nova3r(get_preset(preset))
    rows = [(name, count_parameters(block)) for name, block in model.named_blocks()]
    total = count_parameters(model)
    stage2 = sum(n for name, n in rows if name in STAGE2_BLOCKS)
    return rows, total, stage2


def print_parameters(preset: str) -> None:
    rows, total, stage2 = parameter_table(preset)
    print(f'\n## {preset}: {total / 1e6:.3f} M parameters '
          f'(stage-2 inference model {stage2 / 1e6:.3f} M)')
    print(f'{"block":40s} {"params":>14s} {"digest (paper)":>15s}')
    for name, n in rows:
        ref = f'{DIGEST_M[name]:.2f} M' if preset == 'paper' and name in DIGEST_M else ''
        print(f'{name:40s} {n:>14,d} {ref:>15s}')
    if preset == 'paper':
        print(f'{"stage-2 total":40s} {stage2:>14,d} {DIGEST_STAGE2_M:>13.1f} M')


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def print_latency(num_points: int, num_views: int, repeats: int) -> None:
    cfg = get_preset('tiny')
    torch.manual_seed(0)
    model = Nova3r(cfg).eval()
    images = torch.rand(1, num_views, 3, cfg.image_height, cfg.image_width)
    with torch.no_grad():
        z = model.encode_images(images)
        x = torch.rand(1, num_points, 3) * 2 - 1
        t = torch.zeros(1)
        enc = _time(lambda: model.encode_images(images), repeats)
        step = _time(lambda: model.velocity(z, x, t), repeats)
        vis = _time(lambda: model.visibility_logits(z, x), repeats)
    print(f'\n## tiny latency (CPU, {torch.get_num_threads()} threads, fp32, best of '
          f'{repeats}; K={num_views}, N={num_points})')
    print(f'encode_images          {enc * 1e3:9.1f} ms')
    print(f'decoder step           {step * 1e3:9.1f} ms')
    print(f'visibility (1 call)    {vis * 1e3:9.1f} ms')
    for steps in (8, 25):
        print(f'total, {steps:2d} Euler steps  {(enc + steps * step + vis) * 1e3:9.1f} ms')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--presets', nargs='+', default=list(PRESETS), choices=PRESETS)
    parser.add_argument('--no-latency', action='store_true', help='only parameter counts')
    parser.add_argument('--num-points', type=int, default=8192)
    parser.add_argument('--num-views', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for preset in args.presets:
        print_parameters(preset)
    if not args.no_latency:
        print_latency(args.num_points, args.num_views, args.repeats)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
