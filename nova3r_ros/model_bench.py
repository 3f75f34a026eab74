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
``nova3r_bench model``: per-stage latency and peak memory of the reconstruction pipeline.

Stages (one window of K views, N output points, B = 1):
  preprocess   K uint8 camera frames (``--frame-size``) -> model input tensor on the device
  encoder      ``encode_views`` (K views -> scene tokens, + view-1 pointmap with a surface head)
  decoder      ONE decoder call (``velocity``) at N points; an Euler step costs one call
  visibility   the extra decoder call at t = 1 + visibility head
  packing      device -> host copy, threshold, ``io.pointcloud.pack_points`` (DESIGN §6 layout);
               with ``--ros`` the whole rclpy ``PointCloud2`` build (``ros.msgs``) instead
Totals for S Euler steps = preprocess + encoder + S * decoder + visibility + packing.
The encoder depends on K only and the decoder stages on N only (the scene tokens have a fixed
size), so they are measured once per K and once per N and combined over the grid. One grid
point is checked against a direct end-to-end run (``prepare_images`` -> ``reconstruct`` ->
packing) and both numbers are printed.

Timing: ``--warmup`` untimed calls, then ``--repeats`` timed ones; median and p95. On CUDA every
call is bracketed by CUDA events after a synchronize (bf16 autocast there by default). Peak
memory: CUDA ``max_memory_allocated`` per stage; CPU the process peak RSS (VmHWM), reset per
stage through ``/proc/self/clear_refs`` where the kernel allows it. No rclpy import unless
``--ros``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import json
import os
from pathlib import Path
import platform
import statistics
import time
from typing import Any

import numpy as np

DEFAULT_VIEWS = (1, 2)
DEFAULT_POINTS = (8192,)
FULL_VIEWS = (1, 2, 4, 8)
FULL_POINTS = (8192, 20000, 50000)
STEPS = (1, 2, 4, 8, 25)
STAGES = ('preprocess', 'encoder', 'decoder', 'visibility', 'packing')


# ---- measurement -------------------------------------------------------------------------
def _rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False if not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _rss_peak_bytes() -> int:
    """Peak resident set size (VmHWM) of this process in bytes, 0 if /proc is missing."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def time_stage(fn: Callable[[], Any], device: str, repeats: int, warmup: int
               ) -> dict[str, float]:
    """
    Median / p95 / min wall time (ms) of ``fn()`` and its peak memory (bytes).

    On CUDA: synchronize, CUDA events around each call, ``max_memory_allocated`` since a reset
    before the timed calls. On CPU: ``perf_counter`` and peak RSS (process-wide).
    """
    import torch

    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    cuda = device.startswith('cuda')
    if cuda and torch.device(device).index is not None:
        # events, synchronize and the memory counters act on the current device: make it the
        # benchmarked one (cuda:1 used to time cuda:0's stream and read its memory)
        torch.cuda.set_device(torch.device(device))
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        _rss_reset()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_peak_bytes()
    return {'median_ms': statistics.median(times), 'p95_ms': float(np.percentile(times, 95)),
            'min_ms': min(times), 'peak_bytes': int(peak), 'repeats': repeats}


# ---- the benchmark -----------------------------------------------------------------------
def load_model(preset: str | None, checkpoint: str | None, device: str, seed: int = 0) -> Any:
    """Load a checkpoint's model or a preset with random weights (valid for timing), eval mode."""
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    if checkpoint:
        return Nova3r.from_checkpoint(checkpoint, map_location=device).eval()
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: the paper preset has 718 M params
        return Nova3r(get_preset(preset or 'tiny')).eval()


def _packer(with_ros: bool) -> Callable[[np.ndarray, np.ndarray], Any]:
    from nova3r_ros.io.pointcloud import pack_points

    if not with_ros:
        return lambda p, v: pack_points(p, v)
    from nova3r_ros.ros.msg_bench import cloud_msg_builder  # lazy: rclpy only with --ros

    return cloud_msg_builder()


def run_benchmark(model: Any, views: Sequence[int], points: Sequence[int],
                  steps: Sequence[int] = STEPS, repeats: int = 3, warmup: int = 1,
                  frame_size: tuple[int, int] = (640, 480), with_ros: bool = False,
                  verify: tuple[int, int, int] | None = None, seed: int = 0,
                  progress: bool = True) -> dict[str, Any]:
    """
    Time every stage over the (K, N) grid; derive totals; verify one point end to end.

    views: K values (each <= cfg.max_views); points: N values; steps: Euler step counts for the
    totals; frame_size: (width, height) of the synthetic uint8 camera frames; verify:
    (K, N, steps) for the direct run (None: smallest K and N, 8 steps). Times in ms.
    """
    import torch
    from tqdm import tqdm

    cfg = model.cfg
    device = str(model.device)
    bad = [k for k in views if not 1 <= k <= cfg.max_views]
    if bad:
        raise ValueError(f'views {bad} outside 1..{cfg.max_views} of preset {cfg.name!r}')
    if min(points) < 1 or min(steps) < 1:
        raise ValueError('points and steps must be >= 1')
    vk, vn, vs = verify or (min(views), min(points), 8)
    if not 1 <= vk <= cfg.max_views or vn < 1 or vs < 1:
        raise ValueError(f'verify point (K={vk}, N={vn}, steps={vs}) is invalid')
    rng = np.random.default_rng(seed)
    w, h = frame_size
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for _ in range(max(*views, vk))]
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(1, cfg.num_scene_tokens, cfg.latent_dim, generator=gen).to(device)
    pack = _packer(with_ros)
    per_k: dict[int, dict[str, Any]] = {}
    per_n: dict[int, dict[str, Any]] = {}
    jobs = [('k', k) for k in views] + [('n', n) for n in points]
    with torch.no_grad():
        for kind, value in tqdm(jobs, desc='stages', disable=not progress):
            if kind == 'k':
                per_k[value] = _encoder_stages(model, frames[:value], device, repeats, warmup)
            else:
                xt = (torch.rand(1, value, 3, generator=gen) * 2 - 1).to(device)
                per_n[value] = _decoder_stages(model, tokens, xt, pack, repeats, warmup)
        rows = []
        for k in views:
            for n in points:
                stage = {**per_k[k], **per_n[n]}
                totals = {s: derived_total(stage, s) for s in steps}
                peak = max(v['peak_bytes'] for v in stage.values())
                rows.append({'views': k, 'points': n, 'stages': stage, 'totals_ms': totals,
                             'peak_bytes': peak})
        direct = _direct_run(model, frames[:vk], vn, vs, pack, device, repeats, warmup)
    ref = next((r for r in rows if r['views'] == vk and r['points'] == vn), None)
    derived = None if ref is None else derived_total(ref['stages'], vs)
    return {'environment': environment(model), 'frame_size': list(frame_size),
            'repeats': repeats, 'warmup': warmup, 'steps': list(steps), 'rows': rows,
            'verify': {'views': vk, 'points': vn, 'steps': vs, 'direct': direct,
                       'derived_ms': derived}}


def derived_total(stages: dict[str, dict[str, float]], num_steps: int) -> float:
    """Median ms of a window with `num_steps` Euler steps: the fixed stages + steps x decoder."""
    fixed = sum(stages[s]['median_ms'] for s in ('preprocess', 'encoder', 'visibility',
                                                 'packing'))
    return fixed + num_steps * stages['decoder']['median_ms']


def _encoder_stages(model: Any, frames: list[np.ndarray], device: str, repeats: int,
                    warmup: int) -> dict[str, dict[str, float]]:
    """Preprocess and encoder timings for one K (= len(frames))."""
    from nova3r_ros.model.preprocess import prepare_images

    def prep() -> Any:
        return prepare_images(frames, model.cfg)[0][None].to(device)

    images = prep()
    return {'preprocess': time_stage(prep, device, repeats, warmup),
            'encoder': time_stage(lambda: model.encode_views(images), device, repeats, warmup)}


def _decoder_stages(model: Any, tokens: Any, xt: Any, pack: Callable, repeats: int,
                    warmup: int) -> dict[str, dict[str, float]]:
    """Time the decoder (one call), visibility and packing for one N (= xt.shape[1])."""
    import torch

    device = str(xt.device)
    t = torch.full((1,), 0.5, device=device)
    logits = model.visibility_logits(tokens, xt)

    def packing() -> Any:
        return pack(xt[0].float().cpu().numpy(), (logits[0] > 0).cpu().numpy())

    return {'decoder': time_stage(lambda: model.velocity(tokens, xt, t), device, repeats,
                                  warmup),
            'visibility': time_stage(lambda: model.visibility_logits(tokens, xt), device,
                                     repeats, warmup),
            'packing': time_stage(packing, device, repeats, warmup)}


def _direct_run(model: Any, frames: list[np.ndarray], num_points: int, num_steps: int,
                pack: Callable, device: str, repeats: int, warmup: int) -> dict[str, float]:
    """Time the real path: prepare_images -> reconstruct (Euler) -> packing, end to end."""
    from nova3r_ros.model.preprocess import prepare_images
    import torch

    def run() -> Any:
        x = prepare_images(frames, model.cfg)[0][None].to(device)
        out = model.reconstruct(x, num_points, num_steps, method='euler', schedule='uniform',
                                generator=torch.Generator().manual_seed(0))
        return pack(out['points'][0].cpu().numpy(), (out['visibility_logits'][0] > 0)
                    .cpu().numpy())

    return time_stage(run, device, repeats, warmup)


def environment(model: Any) -> dict[str, Any]:
    """Device, threads, versions and machine load, stored with every result."""
    import torch

    device = str(model.device)
    env = {'preset': model.cfg.name, 'device': device, 'torch': torch.__version__,
           'threads': torch.get_num_threads(), 'cpu': platform.processor() or platform.machine(),
           'cpu_count': os.cpu_count(), 'load_average_1m': os.getloadavg()[0],
           'image_size': [model.cfg.image_width, model.cfg.image_height],
           'autocast': 'bf16' if model.uses_bf16() else 'fp32', 'precision': model.precision}
    if device.startswith('cuda'):
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env


# ---- report ------------------------------------------------------------------------------
def markdown_table(result: dict[str, Any]) -> str:
    """One row per (K, N): stage medians (p95) in ms, totals per step count, peak memory."""
    env = result['environment']
    steps = result['steps']
    stage_names = [s for s in STAGES if s in result['rows'][0]['stages']]
    lines = [f"preset `{env['preset']}` ({env['image_size'][0]}x{env['image_size'][1]}), "
             f"device {env.get('gpu', env['device'])}, {env['autocast']}, "
             f"{env['threads']} threads, torch {env['torch']}, 1-min load "
             f"{env['load_average_1m']:.1f}; median (p95) of {result['repeats']} after "
             f"{result['warmup']} warm-up; ms", '']
    head = ['K', 'N'] + stage_names + [f'total {s} steps' for s in steps] + ['peak MiB']
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for row in result['rows']:
        cells = [str(row['views']), str(row['points'])]
        cells += [f"{row['stages'][s]['median_ms']:.1f} ({row['stages'][s]['p95_ms']:.1f})"
                  for s in stage_names]
        cells += [f"{row['totals_ms'][s]:.0f}" for s in steps]
        cells.append(f"{row['peak_bytes'] / 2**20:.0f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    v = result['verify']
    direct = v['direct']
    derived = 'n/a' if v['derived_ms'] is None else f"{v['derived_ms']:.1f}"
    lines += ['', f"Check K={v['views']}, N={v['points']}, {v['steps']} Euler steps: direct "
              f"end-to-end run {direct['median_ms']:.1f} ms (p95 {direct['p95_ms']:.1f}) vs "
              f'derived from the stages {derived} ms.']
    return '\n'.join(lines) + '\n'


def write_outputs(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<out>/model_<preset>_<device>.json`` and ``.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = result['environment']
    stem = f"model_{env['preset']}_{env['device'].replace(':', '')}"
    if env.get('precision', 'auto') != 'auto':
        stem += f"_{env['autocast']}"  # beside the device's default result, not over it
    json_path, md_path = out_dir / f'{stem}.json', out_dir / f'{stem}.md'
    json_path.write_text(json.dumps(result, indent=1) + '\n')
    md_path.write_text(markdown_table(result))
    return json_path, md_path


# ---- CLI (registered in nova3r_ros.bench.SUBCOMMANDS) -------------------------------------
def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', choices=('micro', 'tiny', 'paper'), default='tiny',
                        help='random-weight model of this preset (ignored with --checkpoint)')
    parser.add_argument('--checkpoint', default=None, help='safetensors checkpoint to time')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--precision', choices=('auto', 'fp32', 'bf16'), default='auto',
                        help="as the node's precision parameter (auto: bf16 on a GPU with "
                             'native bf16, fp32 on the CPU)')
    parser.add_argument('--views', type=int, nargs='+', default=None,
                        help=f'K values (default {DEFAULT_VIEWS}; --full {FULL_VIEWS})')
    parser.add_argument('--points', type=int, nargs='+', default=None,
                        help=f'N values (default {DEFAULT_POINTS}; --full {FULL_POINTS})')
    parser.add_argument('--steps', type=int, nargs='+', default=list(STEPS),
                        help='ODE step counts for the derived totals (one decoder pass a step, '
                             'euler or ddim alike)')
    parser.add_argument('--full', action='store_true', help='the full K x N grid')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed repeats per stage (default 3; --full 10)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed calls per stage')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--frame-size', type=int, nargs=2, default=(640, 480),
                        metavar=('W', 'H'), help='camera frame size fed to preprocessing')
    parser.add_argument('--verify', type=int, nargs=3, default=None,
                        metavar=('K', 'N', 'STEPS'),
                        help='grid point for the direct run (default: smallest K, N; 8 steps)')
    parser.add_argument('--ros', action='store_true',
                        help='packing = the rclpy PointCloud2 build (imports rclpy)')
    parser.add_argument('--out', type=Path, default=Path('eval_output/bench'),
                        help='directory for the JSON and markdown results')


def run(args: argparse.Namespace) -> int:
    from nova3r_ros import allocator

    allocator.tune_malloc()  # time the model as the node runs it (allocator.py)
    import torch

    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device visible to torch here')
    if args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    torch.set_num_threads(args.threads)
    views = args.views or (FULL_VIEWS if args.full else DEFAULT_VIEWS)
    points = args.points or (FULL_POINTS if args.full else DEFAULT_POINTS)
    repeats = args.repeats or (10 if args.full else 3)
    model = load_model(args.preset, args.checkpoint, args.device).set_precision(args.precision)
    result = run_benchmark(model, views, points, args.steps, repeats, args.warmup,
                           tuple(args.frame_size), args.ros,
                           tuple(args.verify) if args.verify else None)
    json_path, md_path = write_outputs(result, args.out)
    print(markdown_table(result))
    print(f'wrote {json_path} and {md_path}')
    return 0
