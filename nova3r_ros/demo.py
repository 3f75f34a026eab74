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
nova3r_demo: the bag replay evaluation end to end, in one command (``make demo``).

1. ``nova3r_bag make``: a synthetic drive through a room (fixed seed) as an MCAP bag with GT;
2. three processes over DDS, as on a robot: the node (``python -m nova3r_ros.ros.node``, its own
   params file, ``use_sim_time``), the recorder (``nova3r_bag record``) and the player
   (``nova3r_bag play``, slowed down so the node keeps up: the rate is calibrated from one timed
   model run, so windows are not dropped on a slow CPU);
3. the node's window logic replayed offline (which frames formed each window) and the model run
   offline on the same windows (skip with ``--no-offline``): the ROS path must lose nothing;
4. ``nova3r_eval`` bag mode: report.md with tables, pictures, PLYs under ``demo_output/``.

It prints a short summary table and the report path. Where ``ros2 launch`` is installed,
``launch/replay.launch.py`` starts the same three processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any

from nova3r_ros.cli_format import HelpFormatter, make_out_dir
from nova3r_ros.geometry.scale import DEPTH_FITS
from nova3r_ros.params import DEFAULTS

DEMO_SEED = 2_000_000  # first seed of the held-out (test) split
NODE_INPUTS = ('/camera/image_raw', '/camera/depth/image_raw', '/camera/camera_info')
KEYFRAME_INTERVAL = 0.3  # seconds of bag time between keyframes (15 Hz bag: every 5th frame)


def node_parameters(checkpoint: str, num_points: int, num_steps: int,
                    scale_mode: str = 'depth') -> dict[str, Any]:
    """Return the node's parameters for the synthetic bag's topics (params file content)."""
    return {
        'checkpoint': checkpoint, 'device': 'cpu',
        'image_topics': [NODE_INPUTS[0]], 'depth_topic': NODE_INPUTS[1],
        'camera_info_topic': NODE_INPUTS[2], 'scale_mode': scale_mode,
        'num_points': num_points, 'num_steps': num_steps,
        'keyframe_min_interval': KEYFRAME_INTERVAL, 'keyframe_max_interval': 3.0,
        'window_size': 2, 'window_stride': 1, 'use_sim_time': True,
    }


def write_params(path: Path, values: dict[str, Any]) -> Path:
    """Write a ``/**``-keyed ROS parameters YAML."""
    import yaml

    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}, sort_keys=False))
    return path


def calibrate_rate(checkpoint: str, num_points: int, num_steps: int, views: int = 2,
                   margin: float = 2.5) -> tuple[float, float]:
    """
    (playback rate, seconds per window): one timed window of the model on this machine.

    The rate lets each keyframe interval of bag time last ``margin`` x the window's compute
    time, so the node (sharing the CPU with player and recorder) does not drop windows.
    """
    from nova3r_ros.ros.model_loader import load_model, worker_threads
    import torch

    model, _, _ = load_model(checkpoint, 'cpu')
    torch.set_num_threads(worker_threads(0))
    cfg = model.cfg
    images = torch.rand(1, views, 3, cfg.image_height, cfg.image_width)
    start = time.perf_counter()
    with torch.inference_mode():
        model.reconstruct(images, num_points, num_steps,
                          generator=torch.Generator().manual_seed(0),
                          oversample=DEFAULTS['oversample'])
    seconds = time.perf_counter() - start
    rate = min(1.0, max(0.01, KEYFRAME_INTERVAL / (margin * seconds)))
    return rate, seconds


def _ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGINT (clean ROS shutdown), then SIGTERM/SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def replay(bag: Path, out: Path, params_file: Path, rate: float, linger: float,
           timeout: float = 900.0) -> dict[str, Path]:
    """
    Node + recorder + player as three processes; returns the recording and summary paths.

    Raises RuntimeError (with the log tail) when the node or the recorder fails. Logs go to
    ``out``/{node,recorder,player}.log.
    """
    out.mkdir(parents=True, exist_ok=True)
    recording, play_summary = out / 'recording', out / 'player_summary.json'
    if recording.exists():
        import shutil
        shutil.rmtree(recording)
    env, py = _ros_env(), sys.executable
    logs = {name: open(out / f'{name}.log', 'w') for name in ('node', 'recorder', 'player')}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs['node'] = subprocess.Popen(
            [py, '-m', 'nova3r_ros.ros.node', '--ros-args', '--params-file', str(params_file)],
            stdout=logs['node'], stderr=subprocess.STDOUT, env=env)
        procs['recorder'] = subprocess.Popen(
            [py, '-m', 'nova3r_ros.ros.bag', 'record', '--out', str(recording),
             '--stop-on-clock-silence', '2', '--linger', str(linger), '--use-sim-time',
             '--summary', str(out / 'recorder_summary.json')],
            stdout=logs['recorder'], stderr=subprocess.STDOUT, env=env)
        # the player sees the node's inputs and both /clock readers (node, recorder) before the
        # first frame, but not whether the node has matched the recorder's cloud subscription:
        # one more second lets that discovery settle (else the node may skip window 1 as having
        # no subscribers, which the node-vs-offline comparison counts as a lost window)
        wait_for = [a for t in NODE_INPUTS for a in ('--wait-for', t)]
        procs['player'] = subprocess.Popen(
            [py, '-m', 'nova3r_ros.ros.bag', 'play', str(bag), '--rate', f'{rate:.4f}',
             *wait_for, '--wait-for', '/clock=2', '--wait-timeout', '300', '--delay', '1.0',
             '--clock-tail', '2', '--summary', str(play_summary)],
            stdout=logs['player'], stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while procs['player'].poll() is None or procs['recorder'].poll() is None:
            if procs['node'].poll() is not None:
                raise RuntimeError('the node exited early:\n' + _tail(out / 'node.log'))
            if procs['player'].poll() not in (None, 0):  # the recorder would wait for /clock
                raise RuntimeError('the player failed:\n' + _tail(out / 'player.log'))
            if time.monotonic() > deadline:
                raise RuntimeError(f'replay took longer than {timeout:.0f} s')
            time.sleep(0.2)
        if procs['recorder'].returncode != 0:
            raise RuntimeError('the recorder failed:\n' + _tail(out / 'recorder.log'))
        if procs['player'].returncode != 0:
            raise RuntimeError('the player failed:\n' + _tail(out / 'player.log'))
    finally:
        for proc in reversed(list(procs.values())):
            _stop(proc)
        for f in logs.values():
            f.close()
    return {'recording': recording, 'player_summary': play_summary}


def offline_check(node_clouds: dict[int, dict[str, Any]],
                  offline_clouds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Largest point and visibility differences between the node's and the offline clouds."""
    import numpy as np

    common = sorted(set(node_clouds) & set(offline_clouds))
    diffs, flips = [], []
    for stamp in common:
        a, b = node_clouds[stamp], offline_clouds[stamp]
        if a['points'].shape != b['points'].shape:
            diffs.append(float('inf'))
            continue
        diffs.append(float(np.abs(a['points'] - b['points']).max()))
        flips.append(float(np.mean(a['visibility'] != b['visibility'])))
    return {'windows compared': len(common), 'max point difference': max(diffs, default=0.0),
            'max visibility disagreement': max(flips, default=0.0)}


def build_parser() -> argparse.ArgumentParser:
    """nova3r_demo options (all have working defaults)."""
    p = argparse.ArgumentParser(prog='nova3r_demo', description=__doc__.strip().split('\n\n')[0],
                                epilog=__doc__.strip().split('\n\n', 1)[1],
                                formatter_class=HelpFormatter)
    p.add_argument('--out', type=Path, default=Path('demo_output'), help='output directory')
    p.add_argument('--checkpoint', default='',
                   help="model checkpoint ('' = the shipped checkpoints/nova3r_tiny.safetensors)")
    p.add_argument('--seed', type=int, default=DEMO_SEED, help='room seed of the synthetic bag')
    p.add_argument('--frames', type=int, default=120, help='frames in the bag (15 Hz)')
    p.add_argument('--num-points', type=int, default=4096, help='points per window')
    p.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                   help="flow sampler steps (the node's default)")
    p.add_argument('--scale-mode', choices=('depth', 'normalized'), default='depth',
                   help="the node's scale_mode: depth = metric from the depth topic")
    p.add_argument('--depth-scale-fit', choices=DEPTH_FITS, default=DEPTH_FITS[0],
                   help="the node's depth_scale_fit (how depth mode fits the metric scale)")
    p.add_argument('--no-depth-snap', dest='depth_snap', action='store_false',
                   help="the node's depth_snap off (points are not moved onto the measured "
                        'depth)')
    p.add_argument('--rate', type=float, default=0.0,
                   help='playback rate (0 = calibrate from one timed model run)')
    p.add_argument('--no-offline', dest='offline', action='store_false',
                   help='skip running the model offline on the same windows (the check that '
                        'the ROS path gives the same clouds)')
    p.add_argument('--pictures', type=int, default=4, help='window pictures in the report')
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values the demo would only fail on minutes later (after rendering the bag)."""
    from nova3r_ros import params as P

    for name in ('frames', 'num_points', 'num_steps'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.pictures < 0:
        p.error('--pictures must be >= 0')
    if not (math.isfinite(args.rate) and args.rate >= 0):
        p.error(f'--rate must be >= 0 (0 = calibrate), got {args.rate}')
    for name in ('num_points', 'num_steps'):
        spec = P.SPECS[name]
        if not spec.low <= getattr(args, name) <= spec.high:
            p.error(f'--{name.replace("_", "-")} must be in [{spec.low:g}, {spec.high:g}]')


def render_input_bag(out: Path, seed: int, frames: int) -> Path:
    """
    Return the input bag in `out`, rendered unless a complete one for (seed, frames) is there.

    Why: an interrupted render leaves a bag without metadata, and a changed --seed/--frames
    must not replay the old drive; the render goes to a temporary folder renamed when done.
    """
    bag, stamp = out / 'input_bag', out / 'input_bag.json'
    wanted = {'seed': seed, 'frames': frames}
    try:
        reusable = (bag / 'metadata.yaml').is_file() and json.loads(stamp.read_text()) == wanted
    except (OSError, ValueError):
        reusable = False
    if reusable:
        print(f'[1/4] reusing {bag}')
        return bag
    import shutil

    from nova3r_ros.data.bag_export import export_bag
    partial = out / 'input_bag.partial'
    for stale in (bag, partial):
        if stale.exists():
            shutil.rmtree(stale)
    print(f'[1/4] rendering a {frames}-frame drive through room {seed} -> {bag}')
    export_bag(partial, seed, num_frames=frames, rate_hz=15.0)
    partial.rename(bag)
    stamp.write_text(json.dumps(wanted))
    return bag


def main(argv: list[str] | None = None) -> int:
    """Entry point of nova3r_demo; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    started = time.monotonic()
    try:
        out = make_out_dir(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    from nova3r_ros.model.checkpoint import read_config
    from nova3r_ros.ros.model_loader import CheckpointError, resolve_checkpoint

    try:
        checkpoint = str(resolve_checkpoint(args.checkpoint))
        read_config(checkpoint)  # a file that is no model is refused before the bag is rendered
    except (CheckpointError, ValueError) as exc:
        print(f'nova3r_demo: {exc}\n(no model to run: train one with nova3r_train or pass '
              '--checkpoint)', file=sys.stderr)
        return 2
    bag = render_input_bag(out, args.seed, args.frames)
    values = node_parameters(checkpoint, args.num_points, args.num_steps, args.scale_mode)
    values['depth_scale_fit'] = args.depth_scale_fit
    values['depth_snap'] = args.depth_snap
    params_file = write_params(out / 'node_params.yaml', values)
    rate, window_s = args.rate, float('nan')
    if rate <= 0:
        rate, window_s = calibrate_rate(checkpoint, args.num_points, args.num_steps)
    print(f'[2/4] replaying over DDS at rate {rate:.3f} (one window: {window_s:.2f} s here); '
          f'node, recorder and player logs in {out}/')
    try:
        paths = replay(bag, out, params_file, rate, linger=max(5.0, 3 * window_s + 2))
    except RuntimeError as exc:
        print(f'nova3r_demo: {exc}', file=sys.stderr)
        return 1

    from nova3r_ros.evaluation import bag_eval, bag_report
    from nova3r_ros.ros.offline import load_parameters, replay_windows, run_offline

    print("[3/4] replaying the node's window logic offline")
    values = load_parameters(params_file)
    frames = bag_eval.read_input_bag(bag)
    windows = replay_windows(frames.stamps_ns, frames.images, values)
    views = [[int(frames.stamps_ns[i]) for i in w] for w in windows]
    extra, check = [], None
    if args.offline:
        from nova3r_ros.model import Nova3r

        model = Nova3r.from_checkpoint(checkpoint, map_location='cpu').eval()
        clouds = run_offline(model, frames.stamps_ns, frames.images, frames.depths,
                             frames.intrinsics, windows, values)
        units = 'metric' if values['scale_mode'] != 'normalized' else 'normalized'
        extra = [bag_eval.RecordedMethod('offline', clouds, units)]
        check = offline_check(bag_eval.read_recording(paths['recording']).clouds, clouds)
    print('[4/4] evaluating the recording')
    try:
        content = bag_eval.evaluate_bag(
            bag, paths['recording'], out, window_views=views,
            player_summary=json.loads(paths['player_summary'].read_text()),
            num_plots=1, pictures=args.pictures, extra_methods=extra)
    except ValueError as exc:
        print(f'nova3r_demo: evaluation failed: {exc}\nnode log:\n{_tail(out / "node.log")}',
              file=sys.stderr)
        return 1
    wall = time.monotonic() - started
    notes = [f'\n## Demo run\n\n- `nova3r_demo` wall time {wall:.0f} s; playback rate '
             f'{rate:.3f}; checkpoint `{checkpoint}`; {len(windows)} windows formed offline']
    if check is not None:
        notes.append(f'- node vs offline on the same windows: {json.dumps(check)}')
    with open(out / 'report.md', 'a') as f:
        f.write('\n'.join(notes) + '\n')
    print()
    print(bag_report.summary_text(content))
    if check is not None:
        print(f'node vs offline: {check}')
    print(f'demo wall time {wall:.0f} s; report: {out / "report.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
