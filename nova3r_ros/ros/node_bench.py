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
Measure the node over real DDS: image-callback cost while inference runs, and latency.

The node runs in its own process (as deployed) with every frame a keyframe, so the inference
worker is busy the whole time; a probe publishes ``--cameras`` x 640x480 rgb8 streams at
``--rate`` Hz stamped with the current time and reads the node's /diagnostics:

- image callback time (mean / p99 / max over the last 1000 callbacks, steady clock);
- processing latency: newest view received -> publish returned (steady clock), p50 / p95;
- output age: publish time - view-1 stamp (node clock), p50 / p95;
- per-stage means (wait, preprocess, encode, sample, scale, publish) and window counters.

Without ``--checkpoint`` the shipped model is used; when it is missing, ``--preset`` builds a
model of that size with random weights in a temporary directory (same compute cost, useless
output; the report says so).

    python -m nova3r_ros.ros.node_bench --duration 30
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import sys
import tempfile

from nova3r_ros.params import DEFAULTS
import numpy as np


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments (also used by ``nova3r_bench callback``)."""
    parser.add_argument('--checkpoint', default='',
                        help="model file ('' = the shipped one, else --preset random weights)")
    parser.add_argument('--preset', default='tiny', choices=('micro', 'tiny'),
                        help='model size used when no checkpoint is available')
    parser.add_argument('--device', default='cpu', help='auto | cpu | cuda[:i]')
    parser.add_argument('--cameras', type=int, default=1, help='image streams (1-4)')
    parser.add_argument('--window-size', type=int, default=2,
                        help='keyframes per window (K = cameras x window size)')
    parser.add_argument('--num-points', type=int, default=8192,
                        help="points per published cloud (the node's num_points)")
    parser.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                        help="ODE steps per window (the node's num_steps)")
    parser.add_argument('--width', type=int, default=640, help='camera image width, px')
    parser.add_argument('--height', type=int, default=480, help='camera image height, px')
    parser.add_argument('--rate', type=float, default=30.0, help='frames per second per camera')
    parser.add_argument('--duration', type=float, default=30.0, help='seconds of streaming')
    parser.add_argument('--keyframe-interval', type=float, default=0.5,
                        help='keyframe_min_interval, s (every frame past it is a keyframe)')
    parser.add_argument('--torch-threads', type=int, default=0, help='0 = cores - 1')


def _checkpoint(args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    from nova3r_ros.ros.model_loader import CheckpointError, resolve_checkpoint

    try:
        return str(resolve_checkpoint(args.checkpoint)), 'given/shipped'
    except CheckpointError:
        if args.checkpoint:
            raise
    from nova3r_ros.model import get_preset, Nova3r
    import torch
    path = tmp / f'{args.preset}_random.safetensors'
    torch.manual_seed(0)
    Nova3r(get_preset(args.preset)).save_checkpoint(path)
    return str(path), f'{args.preset} preset, RANDOM weights (shipped checkpoint missing)'


def _frames(args: argparse.Namespace, count: int = 8) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    return [[np.roll(base, 7 * i + 3 * c, axis=1) for c in range(args.cameras)]
            for i in range(count)]


def run(args: argparse.Namespace) -> int:
    """Start the node, stream, print the figures; returns an exit code."""
    from nova3r_ros.ros import dds
    from nova3r_ros.ros.node_harness import Probe, start_node, stop_node
    import rclpy
    from tqdm import tqdm

    if not 1 <= args.cameras <= 4 or args.cameras * args.window_size > 8:
        print('need 1-4 cameras and cameras x window size <= 8', file=sys.stderr)
        return 2
    if not all(math.isfinite(v) and v > 0 for v in (args.rate, args.duration)):
        print('--rate and --duration must be finite and > 0', file=sys.stderr)
        return 2
    dds.apply_default_dds_profile()
    topics = [f'bench_cam{c}' for c in range(args.cameras)]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, origin = _checkpoint(args, Path(tmp))
        log = Path(tmp) / 'node.log'
        process = start_node({
            'checkpoint': checkpoint, 'device': args.device, 'image_topics': topics,
            'window_size': args.window_size, 'keyframe_min_interval': args.keyframe_interval,
            'keyframe_change_threshold': 0.0, 'num_points': args.num_points,
            'num_steps': args.num_steps, 'torch_threads': args.torch_threads,
            'slop': 0.5 / args.rate,
        }, log_path=log)
        rclpy.init()
        probe = Probe(topics)
        frames = _frames(args)
        try:
            if not probe.wait_for(lambda: probe.diagnostics_count > 0, 180):
                print('node did not start:\n' + log.read_text(), file=sys.stderr)
                return 1
            start_ns = probe.get_clock().now().nanoseconds
            frame_ids = [f'bench_cam{c}_optical' for c in range(args.cameras)]
            chunks = max(1, int(args.duration))
            sent = 0
            for chunk in tqdm(range(chunks), desc='streaming', unit='s'):
                stamps = probe.stream(args.rate, args.duration / chunks,
                                      start_ns + int(chunk * args.duration / chunks * 1e9),
                                      lambda i: frames[i % len(frames)], frame_ids)
                sent += len(stamps)
            probe.spin_for(2.0)
            figures = dict(probe.diagnostics)
        finally:
            probe.destroy_node()
            rclpy.shutdown()
            stop_node(process)
    _print(args, origin, sent, figures)
    return 0


def _print(args: argparse.Namespace, origin: str, sent: int, figures: dict) -> None:
    inputs = figures.get('inputs', (0, '', {}))[2]
    inference = figures.get('inference', (0, '', {}))[2]
    output = figures.get('output', (0, '', {}))[2]
    k = args.cameras * args.window_size
    print(f'nova3r node bench: {args.cameras} x {args.width}x{args.height} rgb8 at '
          f'{args.rate:g} Hz for {args.duration:g} s ({sent} sets sent), K={k}, '
          f'N={args.num_points}, {args.num_steps} steps, device {inference.get("device")}, '
          f'torch threads {inference.get("torch threads")}')
    print(f'model: {inference.get("model")} [{origin}]')
    print('image callback [us] (while inference runs): mean {} p99 {} max {}'.format(
        inputs.get('callback time mean [us]'), inputs.get('callback time p99 [us]'),
        inputs.get('callback time max [us]')))
    print('image callback CPU time [us] (thread CPU, no waits): mean {} p99 {} max {}'.format(
        inputs.get('callback cpu time mean [us]'), inputs.get('callback cpu time p99 [us]'),
        inputs.get('callback cpu time max [us]')))
    print('processing latency [ms] (newest view in -> publish, steady): p50 {} p95 {} '
          'mean {}'.format(inference.get('latency p50 [ms]'),
                           inference.get('latency p95 [ms]'),
                           inference.get('latency mean [ms]')))
    print('output age [ms] (publish - view-1 stamp): p50 {} p95 {}'.format(
        output.get('output age p50 [ms]'), output.get('output age p95 [ms]')))
    stages = {key.split(' ')[1]: value for key, value in inference.items()
              if key.startswith('stage ')}
    print('stage means [ms]: ' + ', '.join(f'{k} {v}' for k, v in stages.items()))
    print('windows: formed {} run {} dropped {} published {}; frames received {}'.format(
        inference.get('windows formed'), inference.get('windows run'),
        inference.get('windows dropped'), inference.get('windows published'),
        [v for key, v in inputs.items() if key.endswith(' received')]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='nova3r_node_bench',
                                     description=__doc__.strip().split('\n')[0])
    add_args(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
