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
Quality against the number of sampled points N (issue 5 item 8), with reference lines.

    python -m nova3r_ros.evaluation.quality_vs_n \
        --checkpoint checkpoints/nova3r_tiny.safetensors --data data/generated/room4/test \
        --views 2 --num-samples 50 --out eval_output/quality_vs_n

The decoder is joint (query points interact through the scene tokens), so its output depends
on N, not only its density. For every held-out sample and every N (default 1024 ... 16384) this
scores, with the evaluation toolkit (``cli.dataset_sources`` -> ``scoring.score_prediction``,
chamfer alignment on the complete GT, the same for every row):

- ``model``: ``baselines.ModelMethod`` (the checkpoint on the sample's K images);
- ``prior``: ``baselines.TrivialPrior`` (the decoder from the mean training latent, no image
  information: a model that does not beat it at some N has learned nothing there);
- ``ceiling``: ``baselines.ResampledGT`` (an independent GT sample of the same N: the best any
  method can score at that density; small-tau F-scores are bounded by it).

Each row uses the same flow seed per sample at every N (seed + sample seed). Writes
``<out>/quality_vs_n.json`` (settings, per-N means, paired bootstrap CI of model - prior
F@0.1, per-sample metrics), ``quality_vs_n.md`` and ``quality_vs_n.png`` (complete F@0.1,
Chamfer and occluded F@0.1 against N).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import math
from pathlib import Path
import sys
import time
from typing import Any

from nova3r_ros import allocator
from nova3r_ros.evaluation import report
from nova3r_ros.evaluation.baselines import ModelMethod, ResampledGT, TrivialPrior
from nova3r_ros.evaluation.cli import dataset_sources
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
import numpy as np

DEFAULT_N = (1024, 2048, 4096, 8192, 16384)
NODE_NUM_STEPS = 4  # the node's num_steps default (nova3r_params.py; a test compares)
DEFAULT_DATA = Path('data/generated/room4/test')
ROWS = ('model', 'prior', 'ceiling')
KEY_F, KEY_CD, KEY_OCC = 'complete/fscore@0.1', 'complete/chamfer', 'occluded/fscore@0.1'
PLOT_KEYS = ((KEY_F, 'complete F@0.1 (higher is better)'),
             (KEY_CD, 'complete Chamfer, normalised units (lower is better)'),
             (KEY_OCC, 'occluded F@0.1 (higher is better)'))


def row_name(method: str, num_points: int) -> str:
    """Results key of one method at one N, e.g. ``model@8192``."""
    return f'{method}@{num_points}'


def run(methods: Sequence[Any], sources: Sequence[Any], num_points: Sequence[int],
        seed: int = 0, progress: bool = True
        ) -> tuple[report.Results, dict[str, list[float]]]:
    """
    Score every method at every N on every sample.

    Returns (results {``method@N``: {sample_id: metrics}}, predict wall seconds per row).
    """
    from tqdm import tqdm

    results: report.Results = {row_name(m.name, n): {} for n in num_points for m in methods}
    wall: dict[str, list[float]] = {row: [] for row in results}
    bar = tqdm(total=len(sources) * len(num_points) * len(methods), desc='quality vs N',
               disable=not progress)
    for i, source in enumerate(sources):
        sample = source.load()
        gt = ground_truth(sample)
        sample_seed = seed + int(sample.get('seed', i))
        for n in num_points:
            for method in methods:
                row = row_name(method.name, n)
                t0 = time.perf_counter()
                prediction = method.predict(sample, n, sample_seed)
                wall[row].append(time.perf_counter() - t0)
                scored = score_prediction(prediction, sample, gt, 'chamfer', seed=sample_seed)
                results[row][source.sample_id] = scored.metrics
                bar.update(1)
    bar.close()
    return results, wall


def table_rows(results: report.Results, wall: dict[str, list[float]],
               num_points: Sequence[int], methods: Sequence[str], num_resamples: int = 2000,
               seed: int = 0) -> list[dict[str, Any]]:
    """One row per N: mean F@0.1 / CD / occluded F@0.1 per method, model - prior CI, time."""
    summary = report.summarize(results)
    rows = []
    for n in num_points:
        row: dict[str, Any] = {'num_points': int(n)}
        for method in methods:
            name = row_name(method, n)
            for key in (KEY_F, KEY_CD, KEY_OCC):
                row[f'{method}/{key}'] = summary[name].get(key, {}).get('mean', math.nan)
            row[f'{method}/predict_s'] = float(np.mean(wall[name])) if wall[name] else math.nan
            row['n_samples'] = len(results[name])
        if 'model' in methods and 'prior' in methods:
            model, prior = results[row_name('model', n)], results[row_name('prior', n)]
            ids = sorted(set(model) & set(prior))
            diff, lo, hi = report.paired_bootstrap(
                np.array([model[s].get(KEY_F, math.nan) for s in ids], dtype=float),
                np.array([prior[s].get(KEY_F, math.nan) for s in ids], dtype=float),
                num_resamples, seed)
            row['model_minus_prior_f'] = diff
            row['model_minus_prior_f_ci95'] = [lo, hi]
            row['beats_prior'] = bool(np.isfinite(lo) and lo > 0)
        rows.append(row)
    return rows


def markdown(rows: Sequence[dict[str, Any]], methods: Sequence[str], header: str) -> str:
    """Markdown table: per N, every method's F@0.1 / CD / occluded F@0.1 and model - prior."""
    names = {'model': 'model', 'prior': 'trivial prior', 'ceiling': 'resampled-GT ceiling'}
    columns = ['N']
    for method in methods:
        columns += [f'{names[method]} F@0.1', f'{names[method]} CD', f'{names[method]} occl. F']
    has_diff = 'model' in methods and 'prior' in methods
    if has_diff:
        columns.append('model - prior F@0.1 [95 % CI]')
    if 'model' in methods:
        columns.append('model s/sample')
    lines = [header, '', '| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    for row in rows:
        cells = [str(row['num_points'])]
        for method in methods:
            cells += [f"{row[f'{method}/{KEY_F}']:.4f}", f"{row[f'{method}/{KEY_CD}']:.4f}",
                      f"{row[f'{method}/{KEY_OCC}']:.4f}"]
        if has_diff:
            lo, hi = row['model_minus_prior_f_ci95']
            mark = ' (beats prior)' if row['beats_prior'] else ''
            cells.append(f"{row['model_minus_prior_f']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}")
        if 'model' in methods:
            cells.append(f"{row['model/predict_s']:.2f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(rows: Sequence[dict[str, Any]], methods: Sequence[str], path: Path, title: str
         ) -> None:
    """Three panels against N (log2 axis): complete F@0.1, Chamfer, occluded F@0.1."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    styles = {'model': {'fmt': 'o-', 'label': 'model', 'color': 'C0'},
              'prior': {'fmt': 's--', 'label': 'trivial prior (mean latent)', 'color': 'C3'},
              'ceiling': {'fmt': '^:', 'label': 'resampled-GT ceiling', 'color': '0.4'}}
    n = [row['num_points'] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (key, label) in zip(axes, PLOT_KEYS, strict=True):
        for method in methods:
            style = dict(styles[method])
            fmt = style.pop('fmt')
            ax.plot(n, [row[f'{method}/{key}'] for row in rows], fmt, ms=5, **style)
        ax.set_xscale('log', base=2)
        ax.set_xticks(n, [str(v) for v in n])
        ax.set_xlabel('N, sampled points')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.evaluation.quality_vs_n',
                                description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.strip().split('\n', 4)[-1])
    p.add_argument('--checkpoint', type=Path, default=Path('checkpoints/nova3r_tiny.safetensors'),
                   help='stage-2 model (safetensors)')
    p.add_argument('--data', type=Path, default=DEFAULT_DATA,
                   help='held-out split directory with sample_*.npz')
    p.add_argument('--views', type=int, default=2, help='K: the first K views of each sample')
    p.add_argument('--num-samples', type=int, default=50,
                   help='evaluate the first NUM_SAMPLES samples (by file name)')
    p.add_argument('--num-points', type=int, nargs='+', default=list(DEFAULT_N),
                   help='the N values (points sampled per cloud)')
    p.add_argument('--num-steps', type=int, default=NODE_NUM_STEPS,
                   help='flow sampler steps (the node default)')
    p.add_argument('--no-ceiling', action='store_true',
                   help='leave out the resampled-GT ceiling rows')
    p.add_argument('--seed', type=int, default=0, help='added to each sample seed')
    p.add_argument('--bootstrap', type=int, default=2000, help='bootstrap resamples')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', type=Path, default=Path('eval_output/quality_vs_n'))
    p.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    return p


def _validate(args: argparse.Namespace) -> None:
    if not args.checkpoint.is_file():
        raise ValueError(f'checkpoint {args.checkpoint} does not exist')
    for name, value in (('--views', args.views), ('--num-samples', args.num_samples),
                        ('--num-steps', args.num_steps), ('--bootstrap', args.bootstrap),
                        ('--threads', args.threads), ('--num-points', min(args.num_points))):
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad arguments or data)."""
    args = build_parser().parse_args(argv)
    allocator.tune_malloc()  # keep freed activation pages mapped (allocator.py)
    num_points = sorted(set(args.num_points))
    try:
        _validate(args)
        sources = dataset_sources(args.data, args.views, args.num_samples)
    except ValueError as exc:
        print(f'quality_vs_n: error: {exc}', file=sys.stderr)
        return 2
    from nova3r_ros.model import Nova3r
    import torch

    torch.set_num_threads(args.threads)
    model = Nova3r.from_checkpoint(str(args.checkpoint), map_location=args.device).eval()
    methods: list[Any] = [ModelMethod(model, args.num_steps), TrivialPrior(model, args.num_steps)]
    if not args.no_ceiling:
        methods.append(ResampledGT())
    names = [m.name for m in methods]
    results, wall = run(methods, sources, num_points, args.seed, not args.no_progress)
    rows = table_rows(results, wall, num_points, names, args.bootstrap, args.seed)
    header = (f'Quality vs N: `{args.checkpoint.name}` ({model.cfg.name}) on {len(sources)} '
              f'samples of `{args.data}`, K={args.views}, {args.num_steps} sampler steps, '
              f'{args.device}; chamfer alignment on complete GT, means over samples, paired '
              f'bootstrap ({args.bootstrap} resamples) of model - prior F@0.1.')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'quality_vs_n.md').write_text(markdown(rows, names, header))
    report.dump_json(args.out / 'quality_vs_n.json',
                     {'settings': {k: str(v) if isinstance(v, Path) else v
                                   for k, v in vars(args).items()},
                      'model': model.cfg.name, 'rows': rows, 'per_sample': results,
                      'predict_s': wall})
    plot(rows, names, args.out / 'quality_vs_n.png',
         f'{args.checkpoint.name}: {len(sources)} samples, K={args.views}, '
         f'{args.num_steps} steps')
    print(markdown(rows, names, header))
    print(f'wrote {args.out}/quality_vs_n.{{md,json,png}}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
