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
Soak the node: 3 synthetic cameras at 30 Hz 640x480 rgb8 over real DDS for ``--duration``.

The node runs in its own process (as deployed, with the package's Fast DDS profile), so what is
sampled is the node alone. This process publishes the cameras on a fixed schedule (offered
load fixed: a tick that comes while the publisher is still behind is skipped and counted, not
published late), receives the clouds and ``/diagnostics``, and every ``--sample-period``
seconds samples the node process:

- RSS, thread count and open file descriptors (``/proc/<pid>``), CPU use;
- pending-window queue depth (``windows pending`` of the newest-wins slot) and the intake's
  dropped sets, from /diagnostics;
- latency of each cloud: view-1 stamp (the probe stamps frames with the wall clock when it
  publishes) -> cloud received here. With ``--window-size 1`` (default) view 1 is the newest
  view of its window, so this is the node's processing latency plus DDS transport both ways;
  the node's own rolling ``latency p95`` is recorded beside it;
- frames delivered to the node (its input counters) against frames offered.

Writes ``soak.csv`` (one row per sample), ``soak.png`` and ``summary.json`` into ``--out`` and
prints a verdict against issue 12's criteria (after ``--warmup``): RSS growth < 2 %, no thread
or fd growth (last sample <= first), queue depth <= 1, latency p95 of the last half within
20 % of the first half (|ratio - 1| <= 0.2), and no non-finite point. Exit code 0 = pass,
1 = fail, 2 = could not run.

    nice -n 10 python -m nova3r_ros.ros.soak --duration 600 --out soak_out
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, dataclass, field
import json
import math
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

from nova3r_ros.cli_format import HelpFormatter, make_out_dir
from nova3r_ros.params import DEFAULTS
import numpy as np

NS_PER_S = 1_000_000_000
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
RSS_GROWTH_MAX = 0.02
LATENCY_RATIO_MAX = 0.20
CSV_FIELDS = ('t_s', 'rss_mib', 'threads', 'fds', 'cpu_percent', 'windows_pending',
              'windows_published', 'windows_dropped', 'sets_dropped_intake', 'offered',
              'delivered', 'clouds', 'latency_p50_ms', 'latency_p95_ms',
              'node_latency_p95_ms')


@dataclass
class Sample:
    """One row of ``soak.csv``; interval figures cover the time since the previous sample."""

    t_s: float  # seconds since streaming started
    rss_mib: float
    threads: int
    fds: int
    cpu_percent: float  # node process, 100 = one core, over the interval
    windows_pending: int
    windows_published: int
    windows_dropped: int
    sets_dropped_intake: int
    offered: int  # frames published so far (all cameras)
    delivered: int  # frames the node received so far (all cameras)
    clouds: int  # clouds received in the interval
    latency_p50_ms: float  # clouds of the interval (nan when none)
    latency_p95_ms: float
    node_latency_p95_ms: float  # the node's rolling p95 (diagnostics)


@dataclass
class Verdict:
    """Each criterion: (passed, text)."""

    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def add(self, name: str, passed: bool, text: str) -> None:
        self.checks[name] = (bool(passed), text)

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks.values())


# ---- process sampling (Linux /proc) ----------------------------------------------------------
def proc_status(pid: int) -> dict[str, float]:
    """RSS (MiB), threads, open fds and CPU seconds (user + system) of a live process."""
    fields = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            fields[key] = value.strip()
    with open(f'/proc/{pid}/stat') as f:
        stat = f.read().rsplit(')', 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    return {'rss_mib': int(fields['VmRSS'].split()[0]) / 1024.0,
            'threads': int(fields['Threads']), 'fds': len(os.listdir(f'/proc/{pid}/fd')),
            'cpu_s': cpu_s}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# ---- verdict -----------------------------------------------------------------------------------
def judge(samples: list[Sample], latencies: list[tuple[float, float]], warmup_s: float,
          nonfinite_clouds: int, node_alive: bool) -> Verdict:
    """
    Issue 12's criteria over the samples after ``warmup_s``.

    ``latencies``: (seconds since start, latency seconds) of every cloud received.
    """
    verdict = Verdict()
    post = [s for s in samples if s.t_s >= warmup_s]
    verdict.add('node alive', node_alive, 'node process running at the end' if node_alive
                else 'node process exited')
    if len(post) < 2:
        verdict.add('samples', False, f'{len(post)} samples after the {warmup_s:g} s warm-up '
                                      '(need >= 2: longer --duration or shorter --warmup)')
        return verdict
    # Medians of the first and last fifth (>= 3 samples): RSS swings by a few % within one
    # window (activations allocated and freed), so single samples would be noise.
    count = max(3, len(post) // 5)
    head = float(np.median([s.rss_mib for s in post[:count]]))
    tail = float(np.median([s.rss_mib for s in post[-count:]]))
    growth = tail / head - 1.0
    verdict.add('rss', growth < RSS_GROWTH_MAX,
                f'RSS {head:.1f} -> {tail:.1f} MiB after warm-up ({growth:+.2%}, limit '
                f'{RSS_GROWTH_MAX:.0%})')
    for name in ('threads', 'fds'):
        first, last = getattr(post[0], name), getattr(post[-1], name)
        peak = max(getattr(s, name) for s in post)
        verdict.add(name, last <= first, f'{name} {first} -> {last} (max {peak})')
    depth = max(s.windows_pending for s in samples)
    verdict.add('queue depth', depth <= 1, f'pending windows max {depth} (limit 1)')
    verdict.add('finite', nonfinite_clouds == 0, f'{nonfinite_clouds} clouds with NaN/Inf')
    end = samples[-1].t_s
    middle = (warmup_s + end) / 2.0
    first = [lat for t, lat in latencies if warmup_s <= t < middle]
    last = [lat for t, lat in latencies if middle <= t <= end]
    if len(first) < 5 or len(last) < 5:
        verdict.add('latency', False, f'too few clouds to compare halves ({len(first)}, '
                                      f'{len(last)}; need >= 5 each)')
        return verdict
    p95_first, p95_last = percentile(first, 95), percentile(last, 95)
    ratio = p95_last / p95_first
    finite = all(math.isfinite(v) for v in first + last)
    verdict.add('latency', finite and abs(ratio - 1.0) <= LATENCY_RATIO_MAX,
                f'p95 first half {p95_first * 1e3:.0f} ms ({len(first)} clouds), last half '
                f'{p95_last * 1e3:.0f} ms ({len(last)}): ratio {ratio:.2f} (limit 1 +/- '
                f'{LATENCY_RATIO_MAX:.2f})')
    return verdict


# ---- outputs -----------------------------------------------------------------------------------
def write_csv(path: Path, samples: list[Sample]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for sample in samples:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v)
                             for k, v in asdict(sample).items()})


def plot(path: Path, samples: list[Sample], latencies: list[tuple[float, float]],
         warmup_s: float, title: str) -> None:
    """Six panels against time: RSS, threads + fds, queue depth, latency, delivery, CPU."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    t = [s.t_s for s in samples]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(t, [s.rss_mib for s in samples], 'o-', ms=3)
    ax.set_ylabel('RSS [MiB]')
    ax = axes[0, 1]
    ax.plot(t, [s.threads for s in samples], 'o-', ms=3, label='threads')
    ax.plot(t, [s.fds for s in samples], 's-', ms=3, label='open fds')
    ax.set_ylabel('count')
    ax.legend()
    ax = axes[0, 2]
    ax.step(t, [s.windows_pending for s in samples], where='post', label='windows pending')
    ax.axhline(1, color='r', ls='--', lw=1, label='limit')
    ax.set_ylim(-0.1, 2.1)
    ax.set_ylabel('queue depth')
    ax.legend()
    ax = axes[1, 0]
    if latencies:
        lt, lv = zip(*latencies, strict=True)
        ax.plot(lt, np.asarray(lv) * 1e3, '.', ms=2, alpha=0.5, label='each cloud')
    ax.plot(t, [s.latency_p95_ms for s in samples], 'o-', ms=3, label='p95 per sample')
    ax.plot(t, [s.node_latency_p95_ms for s in samples], 'x--', ms=3,
            label='node rolling p95')
    ax.set_ylabel('latency [ms]')
    ax.legend()
    ax = axes[1, 1]
    rates = []
    previous = None
    for s in samples:
        if previous is not None and s.t_s > previous.t_s:
            dt = s.t_s - previous.t_s
            rates.append((s.t_s, (s.offered - previous.offered) / dt,
                          (s.delivered - previous.delivered) / dt))
        previous = s
    if rates:
        rt, offered, delivered = zip(*rates, strict=True)
        ax.plot(rt, offered, 'o-', ms=3, label='offered')
        ax.plot(rt, delivered, 's-', ms=3, label='delivered to node')
    ax.set_ylabel('frames/s (all cameras)')
    ax.legend()
    ax = axes[1, 2]
    ax.plot(t, [s.cpu_percent for s in samples], 'o-', ms=3)
    ax.set_ylabel('node CPU [% of a core]')
    for ax in axes.flat:
        ax.axvspan(0, warmup_s, color='0.9', zorder=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel('time [s] (grey: warm-up)')
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- the run -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nova3r_soak', formatter_class=HelpFormatter,
        description=__doc__.strip().split('\n\n')[0],
        epilog='Criteria and measurements: see the module docstring (docs/reliability.md).')
    parser.add_argument('--duration', type=float, default=600.0,
                        help='seconds of streaming (default 600)')
    parser.add_argument('--warmup', type=float, default=None,
                        help='seconds excluded from the criteria (default: duration / 10)')
    parser.add_argument('--sample-period', type=float, default=5.0,
                        help='seconds between samples of the node process (default 5)')
    parser.add_argument('--out', type=Path, default=Path('soak_out'),
                        help='output directory (soak.csv, soak.png, summary.json)')
    parser.add_argument('--checkpoint', default='',
                        help="model file ('' = the shipped nova3r_tiny.safetensors)")
    parser.add_argument('--device', default='cpu', help='auto | cpu | cuda[:i]')
    parser.add_argument('--cameras', type=int, default=3, help='synchronized camera topics')
    parser.add_argument('--rate', type=float, default=30.0, help='frames/s per camera')
    parser.add_argument('--width', type=int, default=640, help='camera image width, px')
    parser.add_argument('--height', type=int, default=480, help='camera image height, px')
    parser.add_argument('--window-size', type=int, default=1,
                        help='keyframes per window (1: view 1 is the newest view, so cloud '
                             'latency = processing latency)')
    parser.add_argument('--num-points', type=int, default=8192,
                        help="points per published cloud (the node's num_points)")
    parser.add_argument('--num-steps', type=int, default=DEFAULTS['num_steps'],
                        help="ODE steps per window (the node's num_steps)")
    parser.add_argument('--torch-threads', type=int, default=0, help='0 = cores - 1')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def _frames(cameras: int, height: int, width: int, count: int = 8) -> list[list[np.ndarray]]:
    """Per camera, ``count`` frames of a textured image moving sideways (keyframes happen)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [[np.roll(base, 9 * i + 41 * c, axis=1) for i in range(count)]
            for c in range(cameras)]


class _SoakProbe:
    """Publishers, cloud and diagnostics subscribers (an rclpy node built lazily)."""

    def __init__(self, topics: list[str], frames: list[list[np.ndarray]], frame_ids: list[str]
                 ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nova3r_ros.ros import msgs
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2
        from std_msgs.msg import Header

        self.node = Node('nova3r_soak')
        self.pubs = [self.node.create_publisher(Image, t, qos_profile_sensor_data)
                     for t in topics]
        self.messages = [[msgs.numpy_to_image_msg(f, 'rgb8', Header(frame_id=frame_ids[c]))
                          for f in cam] for c, cam in enumerate(frames)]
        self.clouds: list[tuple[int, int, bool]] = []  # (stamp ns, received wall ns, finite)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_count = 0
        self.node.create_subscription(PointCloud2, '/nova3r/points', self._on_cloud, 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)

    def _on_cloud(self, msg: Any) -> None:
        from nova3r_ros.ros import msgs
        received = time.time_ns()
        points = msgs.cloud_msg_to_points(msg)['points']
        stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec
        self.clouds.append((stamp, received, bool(np.all(np.isfinite(points)))))

    def _on_diag(self, msg: Any) -> None:
        from nova3r_ros.ros.diagnostics import values_of
        self.diagnostics_count += 1
        for status in msg.status:
            self.diagnostics[status.name.split(': ', 1)[-1]] = values_of(status)

    def value(self, task: str, key: str, default: float = math.nan) -> float:
        try:
            return float(self.diagnostics.get(task, {})[key])
        except (KeyError, ValueError):
            return default

    def publish(self, index: int) -> None:
        """One frame per camera, all stamped now (wall clock, integer ns)."""
        from builtin_interfaces.msg import Time
        stamp_ns = time.time_ns()
        stamp = Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)
        for pub, cam in zip(self.pubs, self.messages, strict=True):
            msg = cam[index % len(cam)]
            msg.header.stamp = stamp
            pub.publish(msg)


def run(args: argparse.Namespace) -> int:
    """Start the node, stream, sample, write the outputs, print the verdict; exit code."""
    from nova3r_ros.ros import dds
    from nova3r_ros.ros.model_loader import CheckpointError, resolve_checkpoint
    from nova3r_ros.ros.node_harness import start_node, stop_node
    import rclpy
    from tqdm import tqdm

    timings = [args.duration, args.sample_period, args.rate]
    if not all(math.isfinite(v) and v > 0 for v in timings) or not (
            args.warmup is None or (math.isfinite(args.warmup) and args.warmup >= 0)):
        print('--duration, --sample-period and --rate must be finite and > 0, --warmup >= 0',
              file=sys.stderr)
        return 2
    if not 1 <= args.cameras <= 8 or args.cameras * args.window_size > 8:
        print('need 1-8 cameras and cameras x window size <= 8', file=sys.stderr)
        return 2
    if not (1 <= args.width <= 8192 and 1 <= args.height <= 8192 and args.num_points >= 1
            and args.num_steps >= 1 and args.torch_threads >= 0 and args.window_size >= 1):
        print('--width and --height must be 1..8192, --num-points, --num-steps and '
              '--window-size >= 1, --torch-threads >= 0', file=sys.stderr)
        return 2
    try:
        checkpoint = str(resolve_checkpoint(args.checkpoint))
    except CheckpointError as exc:
        print(f'cannot soak: {exc}', file=sys.stderr)
        return 2
    warmup = args.duration / 10.0 if args.warmup is None else args.warmup
    try:
        make_out_dir(args.out)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    dds.apply_default_dds_profile()
    topics = [f'soak_cam{c}' for c in range(args.cameras)]
    frames = _frames(args.cameras, args.height, args.width)
    log_dir = Path(tempfile.mkdtemp(prefix='nova3r_soak_'))
    log = log_dir / 'node.log'
    process = start_node({
        'checkpoint': checkpoint, 'device': args.device, 'image_topics': topics,
        'window_size': args.window_size, 'num_points': args.num_points,
        'num_steps': args.num_steps, 'torch_threads': args.torch_threads,
        'slop': 0.5 / args.rate}, log_path=log)
    probe: _SoakProbe | None = None
    samples: list[Sample] = []
    latencies: list[tuple[float, float]] = []
    offered = skipped = 0
    try:  # from here on, whatever happens, the node is stopped
        rclpy.init()
        probe = _SoakProbe(topics, frames, [f'{t}_optical' for t in topics])
        end_wait = time.monotonic() + 180
        while time.monotonic() < end_wait and not (
                probe.diagnostics_count > 0
                and all(probe.node.count_subscribers(t) > 0 for t in topics)):
            rclpy.spin_once(probe.node, timeout_sec=0.1)
            if process.poll() is not None:
                break
        if process.poll() is not None or probe.diagnostics_count == 0:
            print('node did not start:\n' + log.read_text(), file=sys.stderr)
            return 2
        period = 1.0 / args.rate
        t0 = time.monotonic()
        t0_wall_ns = time.time_ns()
        status = proc_status(process.pid)
        last_cpu, last_sample_t, clouds_seen = status['cpu_s'], 0.0, 0
        next_sample = args.sample_period
        tick = 0
        bar = tqdm(total=round(args.duration), unit='s', desc='soak', disable=args.quiet)
        while True:
            now = time.monotonic() - t0
            if now >= args.duration:
                break
            if now >= tick * period:
                behind = int(now / period) - tick  # whole ticks missed: skipped, not queued
                skipped += behind
                tick += behind
                probe.publish(tick)
                offered += 1
                tick += 1
            if now >= next_sample:
                status = proc_status(process.pid)
                new = probe.clouds[clouds_seen:]
                clouds_seen = len(probe.clouds)
                interval = [(received - stamp) / NS_PER_S for stamp, received, _ in new]
                latencies += [((received - t0_wall_ns) / NS_PER_S, lat)
                              for (_, received, _), lat in zip(new, interval, strict=True)]
                delivered = sum(probe.value('inputs', f'{t} received', 0.0) for t in topics)
                samples.append(Sample(
                    t_s=now, rss_mib=status['rss_mib'], threads=int(status['threads']),
                    fds=int(status['fds']),
                    cpu_percent=100.0 * (status['cpu_s'] - last_cpu) / (now - last_sample_t),
                    windows_pending=int(probe.value('inference', 'windows pending', 0)),
                    windows_published=int(probe.value('inference', 'windows published', 0)),
                    windows_dropped=int(probe.value('inference', 'windows dropped', 0)),
                    sets_dropped_intake=int(probe.value(
                        'inputs', 'frame sets dropped (intake busy)', 0)),
                    offered=offered * args.cameras, delivered=int(delivered), clouds=len(new),
                    latency_p50_ms=percentile(interval, 50) * 1e3,
                    latency_p95_ms=percentile(interval, 95) * 1e3,
                    node_latency_p95_ms=probe.value('inference', 'latency p95 [ms]')))
                last_cpu, last_sample_t = status['cpu_s'], now
                next_sample += args.sample_period
                bar.n = min(round(now), bar.total)
                bar.set_postfix(rss=f'{status["rss_mib"]:.0f}M', clouds=len(probe.clouds),
                                refresh=False)
                bar.refresh()
            wait = min(tick * period, next_sample) - (time.monotonic() - t0)
            rclpy.spin_once(probe.node, timeout_sec=max(0.0, wait))
        bar.n = bar.total
        bar.close()
        # Two more diagnostics periods: the node's input counters then include the last frames.
        settle = time.monotonic() + 2.5
        while time.monotonic() < settle:
            rclpy.spin_once(probe.node, timeout_sec=0.1)
        delivered = int(sum(probe.value('inputs', f'{t} received', 0.0) for t in topics))
        node_alive = process.poll() is None
    finally:
        if probe is not None:
            probe.node.destroy_node()
        rclpy.try_shutdown()
        code, _ = stop_node(process)
    nonfinite = sum(1 for _, _, finite in probe.clouds if not finite)
    verdict = judge(samples, latencies, warmup, nonfinite, node_alive)
    verdict.add('clean exit', code == 0, f'node exit code {code} after SIGINT (0 = clean)')
    title = (f'nova3r soak: {args.cameras} x {args.width}x{args.height} rgb8 @ {args.rate:g} Hz, '
             f'{args.duration:g} s, K={args.cameras * args.window_size}, N={args.num_points}, '
             f'{args.num_steps} steps, {Path(checkpoint).name}')
    write_csv(args.out / 'soak.csv', samples)
    plot(args.out / 'soak.png', samples, latencies, warmup, title)
    summary = {
        'title': title, 'passed': verdict.passed, 'warmup_s': warmup,
        'checks': {k: {'passed': ok, 'text': text} for k, (ok, text) in verdict.checks.items()},
        'frames_offered': offered * args.cameras, 'ticks_skipped': skipped,
        'frames_scheduled': (offered + skipped) * args.cameras,
        'frames_delivered': delivered, 'clouds': len(probe.clouds),
        'nonfinite_clouds': nonfinite, 'node_exit_code': code, 'node_log': str(log),
        'samples': len(samples)}
    (args.out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    _print(summary)
    return 0 if verdict.passed else 1


def _print(summary: dict[str, Any]) -> None:
    print(summary['title'])
    scheduled, offered = summary['frames_scheduled'], summary['frames_offered']
    delivered = summary['frames_delivered']
    print(f'frames: scheduled {scheduled}, offered {offered} '
          f'({offered / max(scheduled, 1):.1%}; the rest: publisher behind, skipped), '
          f'delivered to the node {delivered} ({delivered / max(offered, 1):.1%} of offered); '
          f'clouds received {summary["clouds"]}')
    for name, check in summary['checks'].items():
        print(f'  [{"PASS" if check["passed"] else "FAIL"}] {name}: {check["text"]}')
    print('SOAK ' + ('PASSED' if summary['passed'] else 'FAILED'))


def main(argv: list[str] | None = None) -> int:
    """Entry point (``nova3r_soak``); exit code 0 pass, 1 fail, 2 could not run."""
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
