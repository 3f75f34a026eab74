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
nova3r_generate: write a split of synthetic amodal samples (docs/dataset.md).

    nova3r_generate --out data/synth --split train --num-samples 2000 --views 2 --workers 2

Resumable: existing sample files are skipped; a manifest with other parameters is refused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
import time

from nova3r_ros.cli_format import HelpFormatter, make_out_dir
from nova3r_ros.data.dataset import load_sample, sample_filename, save_sample, SPLITS
from nova3r_ros.data.sample import (
    FORMAT_VERSION,
    GENERATOR_VERSION,
    GeneratorConfig,
    image_size,
    make_sample,
    PRESET_HELP,
)
import numpy as np
from tqdm import tqdm

_CFG: GeneratorConfig | None = None
_OUT: Path | None = None
_LEVEL = 1


def _init_worker(cfg: GeneratorConfig, out: Path, level: int) -> None:
    global _CFG, _OUT, _LEVEL
    _CFG, _OUT, _LEVEL = cfg, out, level


def _summary(sample: dict[str, np.ndarray]) -> dict:
    vis = sample['points_visible_in'].any(axis=1)
    return {'num_points': int(len(vis)), 'occluded_fraction': round(float(1 - vis.mean()), 4)}


def _work(seed: int) -> tuple[int, int, dict, float]:
    cpu0 = time.process_time()
    sample = make_sample(seed, _CFG)
    size = save_sample(_OUT / sample_filename(seed), sample, _LEVEL)
    return seed, size, _summary(sample), time.process_time() - cpu0


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def generate(out_dir: str | Path, split: str, seeds: list[int], cfg: GeneratorConfig,
             workers: int = 1, compresslevel: int = 1, progress: bool = True) -> dict:
    """Generate `seeds` into `out_dir/split`, then rewrite its manifest. Returns run stats."""
    cfg.validate()
    lo, hi = SPLITS[split]
    bad = [s for s in seeds if not lo <= s < hi]
    if bad:
        raise ValueError(f'seeds {bad[:5]} lie outside split {split!r} range [{lo}, {hi})')
    out = Path(out_dir) / split
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / 'manifest.json'
    entries: dict[int, dict] = {}
    if man_path.exists():
        old = json.loads(man_path.read_text())
        if old.get('params') != cfg.to_dict() or old.get('format_version') != FORMAT_VERSION:
            raise ValueError(f'{man_path} was written with other parameters '
                             f"({old.get('params')}); use another --out")
        entries = {e['seed']: e for e in old['samples']}
    todo = [s for s in seeds if not (out / sample_filename(s)).exists()]
    t0 = time.perf_counter()
    sizes: list[int] = []
    cpu: list[float] = []
    bar = tqdm(total=len(todo), desc=f'generate {split}', disable=not progress, unit='sample')
    if workers > 1 and len(todo) > 1:
        with mp.get_context('fork').Pool(workers, _init_worker, (cfg, out, compresslevel)) as pool:
            for seed, size, summ, cpu_s in pool.imap_unordered(_work, todo, chunksize=1):
                entries[seed] = {'file': sample_filename(seed), 'seed': seed, **summ}
                sizes.append(size)
                cpu.append(cpu_s)
                bar.update()
    else:
        _init_worker(cfg, out, compresslevel)
        for s in todo:
            seed, size, summ, cpu_s = _work(s)
            entries[seed] = {'file': sample_filename(seed), 'seed': seed, **summ}
            sizes.append(size)
            cpu.append(cpu_s)
            bar.update()
    bar.close()
    elapsed = time.perf_counter() - t0
    for s in seeds:  # files left by an earlier run that died before its manifest
        if s not in entries:
            entries[s] = {'file': sample_filename(s), 'seed': s,
                          **_summary(load_sample(out / sample_filename(s)))}
    manifest = {'format_version': FORMAT_VERSION, 'generator_version': GENERATOR_VERSION,
                'split': split, 'mode': cfg.mode, 'params': cfg.to_dict(),
                'seed_range': [lo, hi], 'samples': [entries[s] for s in sorted(entries)]}
    _write_json(man_path, manifest)
    return {'generated': len(todo), 'skipped': len(seeds) - len(todo), 'seconds': elapsed,
            'samples_per_s': len(todo) / elapsed if todo else 0.0,
            'bytes_per_sample': float(np.mean(sizes)) if sizes else 0.0,
            'cpu_s_per_sample': float(np.mean(cpu)) if cpu else 0.0, 'dir': str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='nova3r_generate',
                                description=__doc__.strip(), formatter_class=HelpFormatter)
    d = GeneratorConfig()
    p.add_argument('--out', required=True, help='dataset root; files go to <out>/<split>/')
    p.add_argument('--split', choices=sorted(SPLITS), default='train',
                   help='which seed range (never mixed: test seeds are never trained on)')
    p.add_argument('--num-samples', type=int, default=100, help='samples to make')
    p.add_argument('--seed-start', type=int, default=None,
                   help='first seed (default: start of the split range)')
    p.add_argument('--views', type=int, default=d.num_views, help='K views per sample (1..8)')
    p.add_argument('--preset', default=None, help=PRESET_HELP)
    p.add_argument('--width', type=int, default=None, help='image width, pixels')
    p.add_argument('--height', type=int, default=None, help='image height, pixels')
    p.add_argument('--mode', choices=('room', 'object'), default=d.mode,
                   help='furnished rooms, or single objects on an orbit')
    p.add_argument('--num-points', type=int, default=d.num_points, help='GT points per sample')
    p.add_argument('--max-depth', type=float, default=d.max_depth, help='crop far plane, m')
    p.add_argument('--baseline', type=float, default=d.baseline,
                   help='forward motion between views, m (room mode)')
    p.add_argument('--yaw-step', type=float, default=d.yaw_step_deg,
                   help='max yaw change between views, degrees (room mode)')
    p.add_argument('--noise', type=float, default=d.noise_std, help='RGB noise std, 8-bit units')
    p.add_argument('--workers', type=int, default=1, help='worker processes')
    p.add_argument('--compress-level', type=int, default=1, choices=range(0, 10),
                   help='zlib level of the npz files (1 = fast)')
    p.add_argument('--no-progress', action='store_true',
                   help='hide the progress bar (logs of long background runs stay readable)')
    args = p.parse_args(argv)
    if args.num_samples < 1:
        p.error('--num-samples must be positive')
    if args.workers < 1:
        p.error('--workers must be >= 1')
    try:
        make_out_dir(args.out)
    except ValueError as exc:
        p.error(str(exc))
    try:
        width, height = image_size(args.preset, args.width, args.height)
    except ValueError as exc:
        p.error(str(exc))
    cfg = GeneratorConfig(num_views=args.views, width=width, height=height,
                          mode=args.mode, num_points=args.num_points, max_depth=args.max_depth,
                          baseline=args.baseline, yaw_step_deg=args.yaw_step,
                          noise_std=args.noise)
    start = SPLITS[args.split][0] if args.seed_start is None else args.seed_start
    try:
        stats = generate(args.out, args.split, list(range(start, start + args.num_samples)),
                         cfg, args.workers, args.compress_level, progress=not args.no_progress)
    except ValueError as exc:
        p.error(str(exc))
    print(f"{stats['generated']} generated, {stats['skipped']} skipped in {stats['seconds']:.1f} s"
          f" -> {stats['samples_per_s']:.2f} samples/s with {args.workers} worker(s); "
          f"{stats['bytes_per_sample'] / 1e6:.2f} MB per sample; {stats['dir']}")
    if stats['generated']:
        # Wall-clock throughput depends on what else runs; CPU time per sample does not.
        cpu_s = stats['cpu_s_per_sample']
        print(f'{cpu_s:.3f} CPU-s per sample (process time, imports excluded) -> '
              f'{args.workers / cpu_s:.2f} samples/s on {args.workers} idle core(s)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
