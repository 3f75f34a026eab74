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
nova3r_bench: latency and throughput benchmarks, one subcommand each.

- ``pack``: PointCloud2 pack/unpack of an xyz+visibility cloud through a real rclpy message
  (target < 5 ms each for 100,000 points), plus the cost of filling ``uint8[]`` from ``bytes``
  versus ``array.array('B')``.
- ``model``: per-stage latency and peak memory of the reconstruction (``model_bench``), CPU or
  CUDA, totals for 1..25 decoder steps checked against a direct run.
- ``dds``: delivery of a best-effort 640x480 rgb8 stream between two processes, with and
  without the package's Fast DDS profile, counted by stamp.
- ``callback``: the node over DDS under a free-running camera (callback cost, latency, drops).
- ``overhead``: what the ROS layer adds (issue 11 item 3): end-to-end latency through DDS to the
  node process and back vs ``pipeline.run_window`` alone on the same windows, same seed and
  threads (``nova3r_ros.ros.overhead_bench``).

Run as ``nova3r_bench <subcommand> --help`` or ``python -m nova3r_ros.bench``. Subcommands live
in ``SUBCOMMANDS`` (name -> (add_arguments, run)); later benchmarks add an entry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import math
import sys

from nova3r_ros.cli_format import HelpFormatter
from tqdm import tqdm


# ---- pack ------------------------------------------------------------------------------------
def _pack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--points', type=int, default=100_000, help='points in the cloud')
    parser.add_argument('--repeats', type=int, default=50, help='timed repetitions (median)')
    parser.add_argument('--rgb', action='store_true', help='add the packed rgb field')
    parser.add_argument('--skip-bytes', action='store_true',
                        help='skip the slow checked bytes-assignment measurement')


def _pack_run(args: argparse.Namespace) -> int:
    from nova3r_ros.ros.msg_bench import pack_benchmark

    if args.points < 1 or args.repeats < 1:
        raise ValueError('--points and --repeats must be >= 1')

    res = pack_benchmark(args.points, args.repeats, args.rgb, not args.skip_bytes)
    print(f'cloud: {res["num_points"]} points, point_step {res["point_step"]}, '
          f'{res["num_bytes"]} bytes, round trip bit-exact: {res["bit_exact"]}')
    print(f'pack   (numpy -> PointCloud2): {res["pack_ms"]:.2f} ms (median of {args.repeats})')
    print(f'unpack (PointCloud2 -> numpy): {res["unpack_ms"]:.2f} ms (median of {args.repeats})')
    print(f'msg.data = array.array("B").frombytes(...): {res["array_fill_ms"]:.2f} ms')
    print(f'msg.data = bytes (field checks off, the default): {res["bytes_fill_ms"]:.2f} ms')
    if 'bytes_checked_fill_ms' in res:
        print(f'msg.data = bytes (ROS_PYTHON_CHECK_FIELDS=1): '
              f'{res["bytes_checked_fill_ms"]:.1f} ms (median of 3)')
    return 0 if res['bit_exact'] else 1


# ---- dds -------------------------------------------------------------------------------------
def _dds_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--duration', type=float, default=30.0, help='seconds per run')
    parser.add_argument('--rate', type=float, default=30.0, help='Hz')
    parser.add_argument('--width', type=int, default=640, help='camera image width, px')
    parser.add_argument('--height', type=int, default=480, help='camera image height, px')
    parser.add_argument('--reliable', action='store_true', help='RELIABLE instead of best effort')
    parser.add_argument('--only', choices=('profile', 'stock'), default=None,
                        help='run only with (profile) or without (stock) the package profile')


def _dds_run(args: argparse.Namespace) -> int:
    from nova3r_ros.ros.delivery import measure_delivery

    if not all(math.isfinite(v) and v > 0 for v in (args.duration, args.rate)):
        raise ValueError('--duration and --rate must be finite and > 0')
    if args.width < 1 or args.height < 1:
        raise ValueError('--width and --height must be >= 1')

    count = max(1, int(round(args.duration * args.rate)))
    modes = {'profile': True, 'stock': False}
    if args.only:
        modes = {args.only: modes[args.only]}
    qos = 'reliable' if args.reliable else 'best effort'
    for name, use_profile in tqdm(modes.items(), desc='dds runs', disable=len(modes) < 2):
        result = measure_delivery('image', count=count, rate=args.rate, reliable=args.reliable,
                                  use_profile=use_profile, width=args.width, height=args.height)
        print(f'{name:8s}: {result["delivered"]}/{result["sent"]} delivered '
              f'({100 * result["ratio"]:.1f} %), {args.width}x{args.height} rgb8 at '
              f'{args.rate:g} Hz, {qos}, {result["publish_s"]:.1f} s, two processes')
    return 0


# ---- model (per-stage latency, no rclpy) ------------------------------------------------------
def _model_args(parser: argparse.ArgumentParser) -> None:
    from nova3r_ros import model_bench

    model_bench.add_args(parser)


def _model_run(args: argparse.Namespace) -> int:
    from nova3r_ros import model_bench

    return model_bench.run(args)


# ---- callback (node over DDS) -----------------------------------------------------------------
def _callback_args(parser: argparse.ArgumentParser) -> None:
    from nova3r_ros.ros import node_bench

    node_bench.add_args(parser)


def _callback_run(args: argparse.Namespace) -> int:
    from nova3r_ros.ros import node_bench

    return node_bench.run(args)


# ---- overhead (node over DDS vs the model alone) -----------------------------------------------
def _overhead_args(parser: argparse.ArgumentParser) -> None:
    from nova3r_ros.ros import overhead_bench

    overhead_bench.add_args(parser)


def _overhead_run(args: argparse.Namespace) -> int:
    from nova3r_ros.ros import overhead_bench

    return overhead_bench.run(args)


SUBCOMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    'pack': (_pack_args, _pack_run, 'PointCloud2 pack/unpack timing'),
    'model': (_model_args, _model_run,
              'per-stage model latency (preprocess, encoder, decoder call, visibility, '
              'packing) over K x N, totals per step count, peak memory'),
    'callback': (_callback_args, _callback_run,
                 'node image-callback cost and window latency over DDS'),
    'dds': (_dds_args, _dds_run, 'camera-frame delivery over DDS with/without the profile'),
    'overhead': (_overhead_args, _overhead_run,
                 'ROS overhead: end-to-end latency through DDS and the node vs the model alone '
                 'on the same windows'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='nova3r_bench',
                                     description=__doc__.strip().split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for name, (add_args, _run, help_text) in SUBCOMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text,
                                formatter_class=HelpFormatter))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark; a bad argument or input file is a one-line error (exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: CheckpointError, torch
        print(f'nova3r_bench {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
