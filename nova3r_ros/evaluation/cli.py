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
nova3r_eval: score methods on a dataset split and write metrics.json, report.md, PNG, PLY.

    nova3r_eval --data data/generated/room4/test --method oracle --method ceiling --out eval_output
    nova3r_eval --data data/generated/room4/test --method prior --method model \
        --checkpoint checkpoints/nova3r_tiny.safetensors --out eval_output
    nova3r_eval --bag-input bags/room --bag-recording bags/room_out --out bag_eval
        (recorded node outputs against the input bag's GT: nova3r_ros.evaluation.bag_eval)

Each (sample, row) result is cached as ``<out>/cache/<row>/<sample_id>.json`` together with the
settings that produced it, so an interrupted run resumes where it stopped and a change of
settings recomputes. A row is one method under one alignment; the visible oracle is always
scored unaligned as well (alignment can pull an exact visible cloud toward occluded GT).

Seam for evaluating recorded node outputs (the bag replay issue): :func:`evaluate` takes any
iterable of :class:`SampleSource` and any methods; a bag mode adds a source built from the bag
and a method whose ``predict`` returns the recorded cloud, and reuses everything else here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
import sys
import time
from typing import Any

from nova3r_ros import allocator
from nova3r_ros import params as P
from nova3r_ros.cli_format import HelpFormatter, make_out_dir
from nova3r_ros.evaluation import report
from nova3r_ros.evaluation.baselines import (
    Autoencoder,
    FpsQueries,
    Method,
    ModelMethod,
    ModelWithDepth,
    ResampledGT,
    TrivialPrior,
    VisibleOracle,
)
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.geometry.align import ALIGNMENTS
import numpy as np

METHODS = ('oracle', 'ceiling', 'prior', 'model', 'model_depth', 'autoencoder', 'queries')
MODEL_METHODS = ('prior', 'model', 'model_depth', 'autoencoder', 'queries')
# draw from the flow: oversample applies
SAMPLED_METHODS = ('prior', 'model', 'model_depth', 'autoencoder')
SAMPLERS = ('euler', 'midpoint', 'heun', 'ddim')  # = model.flow.METHODS (no torch import here)
# Bump when metrics, alignment or baselines change meaning, so cached results are recomputed.
SCORING_VERSION = 1


@dataclass
class SampleSource:
    """
    One sample to evaluate: an id (cache key) and a loader.

    The loader returns the view-selected sample dict (called only when some row is not cached
    yet).
    """

    sample_id: str
    load: Callable[[], dict[str, np.ndarray]]


def dataset_sources(split_dir: Path, views: int, limit: int | None) -> list[SampleSource]:
    """List sources for ``<split_dir>/sample_*.npz`` in name order, first `views` views only."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise ValueError(f'dataset split directory {split_dir} does not exist')
    files = sorted(split_dir.glob('sample_*.npz'))
    if not files:
        raise ValueError(f'no sample_*.npz files in {split_dir}')
    if limit is not None:
        files = files[:limit]
    available = _manifest(split_dir).get('params', {}).get('num_views')
    if available is not None and views > int(available):
        raise ValueError(f'{split_dir} has {int(available)} views per sample, asked {views}')

    def loader(path: Path) -> Callable[[], dict[str, np.ndarray]]:
        def load() -> dict[str, np.ndarray]:
            from nova3r_ros.data.dataset import load_sample, select_views

            sample = load_sample(path)
            if views > int(sample['num_views']):
                raise ValueError(f'{path} has {int(sample["num_views"])} views, asked {views}')
            return select_views(sample, views)
        return load

    return [SampleSource(f.stem, loader(f)) for f in files]


def _manifest(split_dir: Path) -> dict[str, Any]:
    """Read the split's manifest.json (empty when absent or unreadable: a hand-made folder)."""
    from nova3r_ros.data.dataset import read_manifest

    try:
        return read_manifest(split_dir)
    except ValueError:
        return {}


def data_digest(split_dir: Path) -> str | None:
    """
    Fingerprint of how a split's samples were made (generator version, mode, parameters).

    Why: cached results are keyed by sample id, and another split with the same seeds but other
    parameters (resolution, views, noise) has the same ids; this keeps their caches apart.
    None without a manifest.
    """
    manifest = _manifest(split_dir)
    if not manifest:
        return None
    made = {k: manifest.get(k) for k in ('generator_version', 'mode', 'params')}
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]


def build_methods(names: Sequence[str], checkpoint: Path | None, num_steps: int | None,
                  encoder_points: int = 2048, oversample: float = 1.0, keep: str = 'auto',
                  precision: str = 'auto', sampler: str | None = None) -> list[Method]:
    """Instantiate the named methods (one model load shared by the model-backed ones)."""
    methods: list[Method] = []
    model = None
    for name in dict.fromkeys(names):  # unique, in the given order
        if name == 'oracle':
            methods.append(VisibleOracle())
        elif name == 'ceiling':
            methods.append(ResampledGT())
        elif name in MODEL_METHODS:
            if checkpoint is None:
                raise ValueError(f'--method {name} needs --checkpoint')
            if model is None:
                from nova3r_ros.model import Nova3r

                model = Nova3r.from_checkpoint(str(checkpoint), map_location='cpu').eval()
                model.set_precision(precision)
                if sampler is not None:  # the sampled rows' ODE method (default: the file's)
                    model.cfg.flow.method = sampler
                if keep == 'confidence' and model.confidence_head is None:
                    raise ValueError(f'--keep confidence needs a checkpoint with a confidence '
                                     f'head; {checkpoint} has none')
            if name in ('autoencoder', 'queries'):
                cls = Autoencoder if name == 'autoencoder' else FpsQueries
                methods.append(cls(model, num_steps=num_steps, encoder_points=encoder_points,
                                   oversample=oversample, keep=keep))
            else:
                cls = {'prior': TrivialPrior, 'model_depth': ModelWithDepth}.get(name, ModelMethod)
                methods.append(cls(model, num_steps=num_steps, oversample=oversample, keep=keep))
        else:
            raise ValueError(f'unknown method {name!r}; expected one of {METHODS}')
    return methods


def rows_of(method: Method, alignment: str) -> list[tuple[str, str]]:
    """(row name, alignment) pairs a method is scored under."""
    alignments = [alignment]
    if isinstance(method, VisibleOracle) and alignment != 'none':
        alignments = ['none', alignment]
    return [(f'{method.name}[{a}]', a) for a in alignments]


def _prior_digest(path: Path) -> str:
    """
    Digest what the trivial prior depends on.

    The decoder and flow config, the decoder tensors, `mean_scene_tokens`, the visibility
    head, which labels its points, and the confidence head, which picks them (names + bytes).
    A new image encoder keeps its cached results; a refitted head does not.
    """
    return _part_digest(path, 'prior', ('decoder', 'flow'),
                        ('decoder.', 'mean_scene_tokens', 'visibility_head.',
                         'confidence_head.'))


def _stage1_digest(path: Path) -> str:
    """
    Digest the stage-1 half (point encoder + decoder).

    That is what the autoencoder and queries rows depend on (with the confidence head, which
    picks the autoencoder's points), so a new stage 2 or a refitted visibility head keeps their
    cached results.
    """
    return _part_digest(path, 'stage1', ('point_encoder', 'decoder', 'flow',
                                         'num_scene_tokens', 'latent_dim'),
                        ('point_encoder.', 'decoder.', 'confidence_head.'))


def _part_digest(path: Path, label: str, config_keys: tuple[str, ...],
                 prefixes: tuple[str, ...]) -> str:
    from nova3r_ros.model.checkpoint import read_config
    from safetensors import safe_open

    config = read_config(path)
    h = hashlib.sha256(json.dumps([config.get(k) for k in config_keys],
                                  sort_keys=True).encode())
    with safe_open(str(path), framework='pt') as f:
        for name in sorted(f.keys()):
            if name.startswith(prefixes):
                h.update(name.encode())
                h.update(f.get_tensor(name).contiguous().numpy().tobytes())
    return f'{label}-' + h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """First 16 hex digits of the sha256 of a file (names what a result was computed from)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass
class Settings:
    """Everything a cached result depends on (compared on resume)."""

    num_points: int
    views: int
    seed: int
    num_steps: int | None
    checkpoint_digest: str | None
    # digest of the tensors the trivial prior uses (decoder + mean latent): a new stage 2 on the
    # same stage-1 half keeps the prior's cached results
    prior_digest: str | None = None
    stage1_digest: str | None = None  # autoencoder / queries rows
    encoder_points: int = 2048
    oversample: float = 1.0  # sampled rows (prior, model, autoencoder) only
    keep: str = 'auto'  # which drawn points the sampled rows keep (Nova3r.sample)
    data_digest: str | None = None  # `data_digest` of the split (None: not in the key)
    precision: str = 'auto'  # model rows' compute precision (Nova3r.set_precision)
    sampler: str | None = None  # the sampled rows' ODE method (None: the checkpoint's)

    def key(self, alignment: str, method: str) -> dict[str, Any]:
        uses_model = method in MODEL_METHODS
        digest = self.checkpoint_digest
        if method == 'prior' and self.prior_digest is not None:
            digest = self.prior_digest
        if method in ('autoencoder', 'queries') and self.stage1_digest is not None:
            digest = self.stage1_digest
        extra: dict[str, Any] = ({'encoder_points': self.encoder_points}
                                 if method in ('autoencoder', 'queries') else {})
        if method in SAMPLED_METHODS and self.oversample != 1.0:
            extra['oversample'] = self.oversample  # 1.0 keeps the keys of earlier caches
        if method in SAMPLED_METHODS and self.keep != 'auto':
            extra['keep'] = self.keep  # 'auto' keeps the keys of earlier caches
        if self.data_digest is not None:
            extra['data'] = self.data_digest
        if uses_model and self.precision != 'auto':
            extra['precision'] = self.precision  # 'auto' keeps the keys of earlier caches
        if method == 'model_depth':
            extra['depth'] = ModelWithDepth.settings
        if method in SAMPLED_METHODS and self.sampler is not None:
            extra['sampler'] = self.sampler  # None keeps the keys of earlier caches
        return {'scoring_version': SCORING_VERSION,
                'num_points': self.num_points, 'views': self.views, 'seed': self.seed,
                'alignment': alignment,
                'num_steps': self.num_steps if uses_model else None,
                'checkpoint': digest if uses_model else None, **extra}


def evaluate(sources: Iterable[SampleSource], methods: Sequence[Method], settings: Settings,
             alignment: str, out: Path, num_plots: int = 3, progress: bool = True
             ) -> tuple[report.Results, dict[str, dict[str, float]]]:
    """Score every method on every source; returns (results, timing per row in seconds)."""
    from tqdm import tqdm

    sources = list(sources)
    rows = [(m, row, a) for m in methods for row, a in rows_of(m, alignment)]
    results: report.Results = {row: {} for _, row, _ in rows}
    timing = {row: {'predict_s': 0.0, 'score_s': 0.0, 'computed': 0, 'cached': 0}
              for _, row, _ in rows}
    for d in ('cache', 'plots', 'ply'):
        (out / d).mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(tqdm(sources, desc='samples', unit='sample', disable=not progress)):
        plot = i < num_plots and not (out / 'plots' / f'{source.sample_id}.png').exists()
        sample = gt = None
        by_row: dict[str, tuple[np.ndarray, Any]] = {}
        for method in methods:
            prediction = None
            predict_s = 0.0
            for _, row, a in (r for r in rows if r[0] is method):
                path = out / 'cache' / row / f'{source.sample_id}.json'
                key = settings.key(a, method.name)
                if path.exists() and not plot:
                    record = report.load_json_metrics(path)
                    if record.get('settings') == key:
                        results[row][source.sample_id] = record['metrics']
                        for k in ('predict_s', 'score_s'):
                            timing[row][k] += record['timing'][k]
                        timing[row]['cached'] += 1
                        continue
                if sample is None:
                    sample = source.load()
                    gt = ground_truth(sample)
                seed = settings.seed + int(sample.get('seed', i))
                if prediction is None:
                    t0 = time.perf_counter()
                    prediction = method.predict(sample, settings.num_points, seed)
                    predict_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                scored = score_prediction(prediction, sample, gt, a, seed=seed)
                score_s = time.perf_counter() - t0
                results[row][source.sample_id] = scored.metrics
                timing[row]['predict_s'] += predict_s
                timing[row]['score_s'] += score_s
                timing[row]['computed'] += 1
                path.parent.mkdir(parents=True, exist_ok=True)
                report.dump_json(path, {'settings': key, 'sample_id': source.sample_id,
                                        'metrics': scored.metrics,
                                        'timing': {'predict_s': predict_s, 'score_s': score_s}})
                if plot:
                    by_row[row] = (scored.points, prediction.get('visibility'))
        if plot and sample is not None:
            _write_visuals(out, source.sample_id, sample, gt, by_row)
    return results, timing


def _write_visuals(out: Path, sample_id: str, sample: dict[str, np.ndarray], gt: Any,
                   by_row: dict[str, tuple[np.ndarray, Any]]) -> None:
    """PNG of every row plus PLY files of the GT and every row for one sample."""
    scale = float(sample['median3_scale'])
    cameras = np.asarray(sample['cam_to_view1'])[:, :3, 3] * scale
    height, width = sample['images'].shape[1:3]
    report.plot_sample(out / 'plots' / f'{sample_id}.png', sample_id, gt,
                       np.asarray(sample['intrinsics'][0], dtype=np.float64), (width, height),
                       by_row, cameras=cameras)
    report.write_ply(out / 'ply' / f'{sample_id}_gt.ply', gt.points,
                     report.visibility_colors(gt.visible, len(gt.points)))
    for row, (points, visibility) in by_row.items():
        safe = row.replace('[', '_').replace(']', '')
        report.write_ply(out / 'ply' / f'{sample_id}_{safe}.ply', points,
                         report.visibility_colors(visibility, len(points)))


def build_parser() -> argparse.ArgumentParser:
    """Build the nova3r_eval argument parser (every option documented)."""
    p = argparse.ArgumentParser(
        prog='nova3r_eval', description=__doc__.strip().split('\n\n')[0],
        formatter_class=HelpFormatter,
        epilog="Bag mode (score a recorded node run against the bag's GT): nova3r_eval "
               '--bag-input BAG --bag-recording REC [--out DIR]; its options: nova3r_eval '
               '--bag-input x --help.')
    p.add_argument('--data', type=Path, required=True,
                   help='dataset split directory holding sample_*.npz (e.g. '
                        'data/generated/room4/test); required')
    p.add_argument('--method', action='append', choices=METHODS, dest='methods',
                   help='method to score, repeatable: oracle = GT depth of the input views '
                        'back-projected; ceiling = independent GT resample at the same N; '
                        'prior = decoder from the mean latent; model = the checkpoint on the '
                        'images; model_depth = the model as the node publishes it with a depth '
                        "camera (depth scale mode's registration and depth_snap, view 1's GT "
                        'depth as the sensor; metric); '
                        'autoencoder = stage 1 alone on the complete GT (a bound); '
                        'queries = its M FPS query points as the cloud. Default: oracle and '
                        'ceiling')
    p.add_argument('--checkpoint', type=Path, default=None,
                   help='safetensors model checkpoint, needed by prior and model')
    p.add_argument('--num-points', type=int, default=8192,
                   help='N, points per prediction (the node publishes this many)')
    p.add_argument('--num-steps', type=int, default=P.DEFAULTS['num_steps'],
                   help='ODE steps of the flow sampler (sampled rows), as the node does (its '
                        'num_steps parameter, same default)')
    p.add_argument('--oversample', type=float, default=P.DEFAULTS['oversample'],
                   help='sampled rows (prior, model, autoencoder) draw N x this and keep N of '
                        'them (see --keep), as the node does (its oversample parameter, same '
                        'default); 1 = plain sampling')
    p.add_argument('--sampler', choices=SAMPLERS, default=None,
                   help="sampled rows' ODE step (model.flow: euler, midpoint, heun, or ddim, the "
                        "step that stays on the cosine path); default: the checkpoint's "
                        '(flow.method, ddim for the shipped model, as the node uses)')
    p.add_argument('--keep', choices=('auto', 'confidence', 'density'), default='auto',
                   help='which drawn points the sampled rows keep: the most confident (needs '
                        'a checkpoint with a confidence head), the least isolated, or auto '
                        '(confidence when the checkpoint has the head, as the node does)')
    p.add_argument('--encoder-points', type=int, default=2048,
                   help='complete-GT points the autoencoder / queries rows encode')
    p.add_argument('--views', type=int, default=2,
                   help='K, number of input views: each sample is restricted to its first K '
                        '(GT cropped to their frusta, median_3 scale recomputed)')
    p.add_argument('--alignment', choices=ALIGNMENTS, default='chamfer',
                   help='chamfer = per-sample scale + 3D shift fitted to the complete GT; '
                        'none = compare as is (the oracle is always scored both ways)')
    p.add_argument('--limit', type=int, default=None,
                   help='evaluate only the first LIMIT samples (by file name)')
    p.add_argument('--out', type=Path, default=Path('eval_output'),
                   help='output directory: metrics.json, report.md, config.json, cache/, '
                        'plots/, ply/')
    p.add_argument('--plots', type=int, default=3,
                   help='write PNG and PLY files for the first PLOTS samples (0 = none)')
    p.add_argument('--bootstrap', type=int, default=2000,
                   help='bootstrap resamples for the paired CIs between rows')
    p.add_argument('--seed', type=int, default=0,
                   help='base seed; per sample it is added to the sample seed (subsampling, '
                        'flow noise, alignment subsets)')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (model rows)')
    p.add_argument('--precision', choices=P.PRECISIONS, default='auto',
                   help="model rows' compute precision, as the node's precision parameter "
                        '(auto: fp32 on the CPU)')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of nova3r_eval; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    allocator.tune_malloc()  # keep freed activation pages mapped (allocator.py)
    if any(a.split('=')[0] in ('--bag-input', '--bag-recording') for a in argv):
        from nova3r_ros.evaluation.bag_eval import main as bag_main  # recorded-bag mode

        return bag_main(argv)
    args = build_parser().parse_args(argv)
    names = args.methods or ['oracle', 'ceiling']
    try:
        limit = args.limit if args.limit is not None else 1
        num_steps = args.num_steps if args.num_steps is not None else 1
        for name, value, low in (
                ('--num-points', args.num_points, 1), ('--views', args.views, 1),
                ('--num-steps', num_steps, 1), ('--plots', args.plots, 0),
                ('--bootstrap', args.bootstrap, 1), ('--threads', args.threads, 1),
                ('--limit', limit, 1), ('--encoder-points', args.encoder_points, 1)):
            if value < low:
                raise ValueError(f'{name} must be >= {low}, got {value}')
        spec = P.SPECS['oversample']  # the node's range
        if not spec.low <= args.oversample <= spec.high:
            raise ValueError(f'--oversample must be in [{spec.low:g}, {spec.high:g}], '
                             f'got {args.oversample}')
        needs_model = [n for n in names if n in MODEL_METHODS]
        if needs_model and args.checkpoint is None:
            raise ValueError(f'--method {needs_model[0]} needs --checkpoint')
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise ValueError(f'checkpoint {args.checkpoint} does not exist')
        if needs_model:
            import torch

            torch.set_num_threads(args.threads)
        sources = dataset_sources(args.data, args.views, args.limit)
        make_out_dir(args.out)  # before the model loads; after the data is known good
        methods = build_methods(names, args.checkpoint, args.num_steps, args.encoder_points,
                                args.oversample, args.keep, args.precision, args.sampler)
        digest = file_digest(args.checkpoint) if args.checkpoint is not None else None
        prior_digest = _prior_digest(args.checkpoint) if args.checkpoint is not None else None
        stage1_digest = _stage1_digest(args.checkpoint) if args.checkpoint is not None else None
    except ValueError as err:
        print(f'nova3r_eval: error: {err}', file=sys.stderr)
        return 2
    settings = Settings(args.num_points, args.views, args.seed, args.num_steps, digest,
                        prior_digest, stage1_digest, args.encoder_points, args.oversample,
                        args.keep, data_digest(args.data), args.precision, args.sampler)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(methods=names, checkpoint_digest=digest)
    report.dump_json(args.out / 'config.json', config)

    try:
        results, timing = evaluate(sources, methods, settings, args.alignment, args.out,
                                   num_plots=args.plots, progress=not args.no_progress)
    except ValueError as err:  # an unreadable sample file: its reason, not a traceback
        print(f'nova3r_eval: error: {err} (results so far are cached in {args.out})',
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary = report.summarize(results)
    diffs = report.bootstrap_differences(results, num_resamples=args.bootstrap, seed=args.seed)
    report.dump_json(args.out / 'metrics.json', {
        'config': config, 'summary': summary, 'differences': diffs, 'timing': timing,
        'per_sample': results})
    header = (f'# nova3r_eval: {args.data}, K={args.views}, N={args.num_points}, '
              f'alignment={args.alignment}, {len(sources)} samples')
    (args.out / 'report.md').write_text(report.markdown(summary, diffs, header))
    report_s = time.perf_counter() - t0

    print(json.dumps({row: {k: v['mean'] for k, v in summary[row].items()
                            if k in ('complete/chamfer', 'complete/fscore@0.05',
                                     'occluded/fscore@0.05')} for row in summary}, indent=1))
    for row, t in timing.items():
        n = t['computed'] + t['cached']
        print(f'{row}: scoring (alignment + metrics) {t["score_s"]:.2f} s for {n} samples '
              f'({1000 * t["score_s"] / max(n, 1):.0f} ms/sample), prediction '
              f'{t["predict_s"]:.2f} s; {t["cached"]} from cache')
    print(f'report + bootstrap: {report_s:.2f} s; wrote {args.out}/report.md, metrics.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
