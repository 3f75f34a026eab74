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
Few-step sampling study: ODE solver x time grid x decoder calls vs quality and wall time.

    python -m nova3r_ros.evaluation.sampler_study \
        --checkpoint checkpoints/nova3r_tiny.safetensors --data data/synth/test --views 2 \
        --limit 50 --out eval_output/sampler_study

For every held-out sample the images are encoded once; then every configuration (solver in
euler / midpoint / heun, or ddim with ``--methods``; grid in uniform / cosine; decoder-call
budget) samples N points from the SAME noise x0 (paired), and each cloud is scored with the
evaluation toolkit (``scoring.score_prediction``: chamfer alignment on complete GT, every metric
of ``metrics.score``). Decoder calls count network evaluations (a Heun or midpoint step is 2), so a
budget of c calls is c Euler steps or c // 2 two-evaluation steps; the visibility call is extra
and identical for every configuration. The reference is 25-step uniform Euler (the released
sampler). Each configuration gets the paired bootstrap CI (``report.paired_bootstrap``, samples
resampled) of its complete-GT F@0.1 minus the reference's, relative to the reference mean; a
configuration "holds" if the lower CI bound is >= -3 %. The cheapest holding configuration
with <= 8 calls is the suggested node default.

Writes ``<out>/sampler_study.json``, ``sampler_study.md`` and ``sampler_study.png`` (CD, F@0.1
and occluded F@0.1 against decoder calls and against wall time per sample).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
import math
from pathlib import Path
import time
from typing import Any

from nova3r_ros import allocator
from nova3r_ros.evaluation import report
from nova3r_ros.evaluation.cli import dataset_sources
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
import numpy as np

DEFAULT_CALLS = (1, 2, 4, 6, 8, 12, 16, 25)
SOLVERS = ('euler', 'midpoint', 'heun', 'ddim')  # = model.flow.METHODS
DEFAULT_SOLVERS = ('euler', 'midpoint', 'heun')
GRIDS = ('uniform', 'cosine')
EVALS_PER_STEP = {'euler': 1, 'midpoint': 2, 'heun': 2, 'ddim': 1}
KEY_CD, KEY_F, KEY_OCC = 'complete/chamfer', 'complete/fscore@0.1', 'occluded/fscore@0.1'
TOLERANCE = 0.03  # relative drop of complete-GT F@0.1 allowed vs the reference (issue 11)
MAX_DEFAULT_CALLS = 8


@dataclass(frozen=True)
class SamplerConfig:
    """One sampler setting; `calls` = decoder evaluations = steps * evals per step."""

    method: str
    schedule: str
    steps: int

    @property
    def calls(self) -> int:
        return self.steps * EVALS_PER_STEP[self.method]

    @property
    def name(self) -> str:
        return f'{self.method}-{self.schedule}-{self.steps}'


REFERENCE = SamplerConfig('euler', 'uniform', 25)


def sampler_grid(calls: Sequence[int], methods: Sequence[str] = DEFAULT_SOLVERS,
                 schedules: Sequence[str] = GRIDS) -> list[SamplerConfig]:
    """
    Every (method, schedule) at every call budget it can spend exactly, plus the reference.

    A 2-evaluation solver skips odd budgets (it cannot spend them); budgets < 1 are refused.
    """
    for m in methods:
        if m not in EVALS_PER_STEP:
            raise ValueError(f'unknown method {m!r}; choose from {SOLVERS}')
    for s in schedules:
        if s not in GRIDS:
            raise ValueError(f'unknown schedule {s!r}; choose from {GRIDS}')
    if not calls or min(calls) < 1:
        raise ValueError(f'decoder-call budgets must be >= 1, got {list(calls)}')
    configs = [REFERENCE]
    for m in methods:
        for s in schedules:
            for c in sorted(set(calls)):
                if c % EVALS_PER_STEP[m] == 0:
                    cfg = SamplerConfig(m, s, c // EVALS_PER_STEP[m])
                    if cfg not in configs:
                        configs.append(cfg)
    return configs


def run_study(model: Any, sources: Sequence[Any], configs: Sequence[SamplerConfig],
              num_points: int, seed: int = 0, progress: bool = True
              ) -> tuple[report.Results, dict[str, list[float]]]:
    """
    Score every config on every sample: (results {config: {sample: metrics}}, wall s).

    Wall time per (config, sample) = image encoding + sampling + visibility (same encode time
    for every config of a sample, measured once).
    """
    from nova3r_ros.model.preprocess import prepare_images
    import torch
    from tqdm import tqdm

    def sync() -> None:  # CUDA work is asynchronous: wait before reading the clock
        if model.device.type == 'cuda':
            torch.cuda.synchronize(model.device)

    results: report.Results = {c.name: {} for c in configs}
    wall: dict[str, list[float]] = {c.name: [] for c in configs}
    bar = tqdm(total=len(sources) * len(configs), desc='sampler study', disable=not progress)
    for i, source in enumerate(sources):
        sample = source.load()
        gt = ground_truth(sample)
        sample_seed = seed + int(sample.get('seed', i))
        images, _ = prepare_images(list(sample['images']), model.cfg)
        with torch.no_grad():
            t0 = time.perf_counter()
            tokens = model.encode_images(images[None].to(model.device))
            sync()
            encode_s = time.perf_counter() - t0
            for cfg in configs:
                gen = torch.Generator().manual_seed(sample_seed)  # same x0 for every config
                t0 = time.perf_counter()
                out = model.sample(tokens, num_points, cfg.steps, cfg.method, cfg.schedule,
                                   generator=gen)
                sync()
                sample_s = time.perf_counter() - t0
                logits = out['visibility_logits'][0].float().cpu().numpy()
                prediction = {'points': out['points'][0].float().cpu().numpy(),
                              'visibility': logits > 0, 'visibility_scores': logits,
                              'units': 'normalized'}
                scored = score_prediction(prediction, sample, gt, 'chamfer', seed=sample_seed)
                results[cfg.name][source.sample_id] = scored.metrics
                wall[cfg.name].append(encode_s + sample_s)
                bar.update(1)
    bar.close()
    return results, wall


def compare(results: report.Results, wall: dict[str, list[float]],
            configs: Sequence[SamplerConfig], num_resamples: int = 2000, seed: int = 0
            ) -> list[dict[str, Any]]:
    """Per config: mean metrics, wall time, paired bootstrap of F@0.1 vs the reference."""
    ref = results[REFERENCE.name]
    ids = sorted(ref)
    ref_f = np.array([ref[s][KEY_F] for s in ids], dtype=float)
    ref_mean = float(np.nanmean(ref_f)) if ref_f.size else math.nan
    rows = []
    for cfg in configs:
        res = results[cfg.name]

        def mean(key: str, res: dict = res) -> float:
            vals = np.array([res[s].get(key, math.nan) for s in ids], dtype=float)
            return float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan

        f = np.array([res[s][KEY_F] for s in ids], dtype=float)
        diff, lo, hi = report.paired_bootstrap(f, ref_f, num_resamples, seed)
        rel = [d / ref_mean if ref_mean > 0 else math.nan for d in (diff, lo, hi)]
        rows.append({'config': cfg.name, 'method': cfg.method, 'schedule': cfg.schedule,
                     'steps': cfg.steps, 'calls': cfg.calls,
                     'wall_s': float(np.mean(wall[cfg.name])), KEY_CD: mean(KEY_CD),
                     KEY_F: mean(KEY_F), KEY_OCC: mean(KEY_OCC),
                     'f_rel_diff': rel[0], 'f_rel_ci95': [rel[1], rel[2]],
                     'holds': bool(cfg != REFERENCE and np.isfinite(rel[1])
                                   and rel[1] >= -TOLERANCE),
                     'n': len(ids)})
    return rows


def suggest_default(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Pick the holding config with the fewest calls (<= 8), ties by higher F@0.1; None if none."""
    ok = [r for r in rows if r['holds'] and r['calls'] <= MAX_DEFAULT_CALLS]
    return min(ok, key=lambda r: (r['calls'], -r[KEY_F])) if ok else None


def markdown(rows: Sequence[dict[str, Any]], header: str) -> str:
    """Table sorted by calls: CD, F@0.1, occluded F@0.1, wall time, relative dF [95 % CI]."""
    lines = [header, '',
             '| solver | grid | steps | decoder calls | wall s/sample | CD | F@0.1 | occl. F@0.1 '
             '| dF@0.1 vs 25-step Euler [95 % CI] | within 3 % |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in sorted(rows, key=lambda r: (r['calls'], r['method'], r['schedule'])):
        ci = r['f_rel_ci95']
        rel = ('reference' if r['config'] == REFERENCE.name else
               f"{100 * r['f_rel_diff']:+.1f} % [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")
        lines.append(f"| {r['method']} | {r['schedule']} | {r['steps']} | {r['calls']} | "
                     f"{r['wall_s']:.2f} | {r[KEY_CD]:.4f} | {r[KEY_F]:.4f} | {r[KEY_OCC]:.4f} "
                     f"| {rel} | {'yes' if r['holds'] else ''} |")
    best = suggest_default(rows)
    lines += ['', 'Suggested node default (fewest decoder calls <= 8 whose F@0.1 CI lower '
              f'bound is within {TOLERANCE:.0%} of the reference): '
              + (f"**{best['method']}, {best['schedule']} grid, {best['steps']} steps "
                 f"({best['calls']} calls)**" if best else '**none holds**')]
    return '\n'.join(lines) + '\n'


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """2 x 3 panels: (CD, F@0.1, occluded F@0.1) vs decoder calls (top) and wall time."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    ref = next(r for r in rows if r['config'] == REFERENCE.name)
    for (method, schedule) in sorted({(r['method'], r['schedule']) for r in rows}):
        line = sorted((r for r in rows if r['method'] == method and r['schedule'] == schedule),
                      key=lambda r: r['calls'])
        for col, key in enumerate((KEY_CD, KEY_F, KEY_OCC)):
            for row, xkey in enumerate(('calls', 'wall_s')):
                axes[row, col].plot([r[xkey] for r in line], [r[key] for r in line], 'o-',
                                    label=f'{method} / {schedule}', ms=4)
    for col, key in enumerate((KEY_CD, KEY_F, KEY_OCC)):
        for row, xlabel in enumerate(('decoder calls', 'wall time per sample, s')):
            ax = axes[row, col]
            ax.axhline(ref[key], color='k', ls='--', lw=0.8, label='25-step Euler')
            ax.set_xscale('log')
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on log axes
            ax.set_xlabel(xlabel)
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.evaluation.sampler_study',
                                description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.strip().split('\n', 4)[-1])
    p.add_argument('--checkpoint', required=True, type=Path, help='stage-2 model (safetensors)')
    p.add_argument('--data', required=True, type=Path,
                   help='held-out split directory with sample_*.npz')
    p.add_argument('--views', type=int, default=2, help='first K views of each sample')
    p.add_argument('--limit', type=int, default=None, help='at most this many samples')
    p.add_argument('--num-points', type=int, default=8192, help='N points per cloud')
    p.add_argument('--calls', type=int, nargs='+', default=list(DEFAULT_CALLS),
                   help='decoder-call budgets (network evaluations)')
    p.add_argument('--methods', nargs='+', default=list(DEFAULT_SOLVERS), choices=SOLVERS)
    p.add_argument('--schedules', nargs='+', default=list(GRIDS), choices=GRIDS)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--bootstrap', type=int, default=2000, help='bootstrap resamples')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', type=Path, default=Path('eval_output/sampler_study'))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    allocator.tune_malloc()  # as in the node, so wall times compare (allocator.py)
    from nova3r_ros.model import Nova3r
    import torch

    torch.set_num_threads(args.threads)
    if not args.checkpoint.is_file():
        raise SystemExit(f'checkpoint {args.checkpoint} does not exist')
    try:
        configs = sampler_grid(args.calls, args.methods, args.schedules)
        sources = dataset_sources(args.data, args.views, args.limit)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    model = Nova3r.from_checkpoint(str(args.checkpoint), map_location=args.device).eval()
    results, wall = run_study(model, sources, configs, args.num_points, args.seed)
    rows = compare(results, wall, configs, args.bootstrap, args.seed)
    header = (f'Sampler study: `{args.checkpoint.name}` on {len(sources)} samples of '
              f'`{args.data}`, K={args.views}, N={args.num_points}, {args.device}, '
              f'{args.threads} threads; means over samples, paired bootstrap '
              f'({args.bootstrap} resamples) of complete-GT F@0.1 vs 25-step Euler.')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'sampler_study.md').write_text(markdown(rows, header))
    report.dump_json(args.out / 'sampler_study.json',
                     {'settings': {k: str(v) if isinstance(v, Path) else v
                                   for k, v in vars(args).items()},
                      'rows': rows, 'per_sample': results, 'wall_s': wall,
                      'suggested_default': suggest_default(rows)})
    plot(rows, args.out / 'sampler_study.png',
         f'{args.checkpoint.name}: {len(sources)} samples, K={args.views}, N={args.num_points}')
    print(markdown(rows, header))
    print(f'wrote {args.out}/sampler_study.{{md,json,png}}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
