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
Model-card table from `nova3r_eval` outputs: rows x headline metrics + paired bootstrap CIs.

    python -m nova3r_ros.train.card_table eval_output/tiny_k2 eval_output/tiny_k1 ...

Each argument is a `nova3r_eval --out` directory (its metrics.json); K is read from its config.
`--registration` adds how far the evaluation's alignment moved each row's cloud, and the metrics
of the best- and worst-registered quarters of the scenes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys

from nova3r_ros.evaluation.report import bootstrap_differences
import numpy as np

ROWS = ('ceiling[chamfer]', 'oracle[none]', 'oracle[chamfer]', 'prior[chamfer]', 'model[chamfer]',
        'model_depth[none]', 'model_depth[chamfer]', 'autoencoder[chamfer]', 'queries[chamfer]')
KEYS = ('complete/fscore@0.1', 'complete/fscore@0.05', 'complete/chamfer', 'occluded/fscore@0.1',
        'occluded/recall@0.1', 'complete/hole_ratio@0.1', 'visibility/auroc')
# issue 8 compares the model with the oracle aligned and unaligned; the stage-1 bar: the
# autoencoder must beat its own queries
PAIRS = ('model[chamfer]', 'model_depth[none]', 'model_depth[chamfer]', 'prior[chamfer]',
         'oracle[none]', 'oracle[chamfer]', 'autoencoder[chamfer]', 'queries[chamfer]')
DIFF_KEYS = ('complete/fscore@0.1', 'complete/fscore@0.05', 'complete/chamfer',
             'occluded/fscore@0.1', 'occluded/hole_ratio@0.1')
# the quality bars of issue 8 beside the headline table: precision (scattering points cannot
# game it), occluded holes, and occluded recall by GT category (floor / wall / object)
BAR_KEYS = ('complete/precision@0.1', 'occluded/hole_ratio@0.1', 'occluded_floor/recall@0.1',
            'occluded_wall/recall@0.1', 'occluded_object/recall@0.1')


def tables(directories: Sequence[Path], resamples: int = 2000) -> str:
    """
    Build the markdown tables over all directories.

    The metric table, the issue-8 bar table and the paired-bootstrap table.
    """
    lines = ['| K | n | row | ' + ' | '.join(KEYS) + ' |', '|' + '---|' * (len(KEYS) + 3)]
    bars = ['| K | row | ' + ' | '.join(BAR_KEYS) + ' |', '|' + '---|' * (len(BAR_KEYS) + 2)]
    diffs = ['| K | a - b | metric | mean diff | 95% CI | n |', '|---|---|---|---|---|---|']
    for directory in directories:
        data = json.loads((Path(directory) / 'metrics.json').read_text())
        k = data['config']['views']
        for row in ROWS:
            if row not in data['summary']:
                continue
            s = data['summary'][row]
            vals = [f"{s[key]['mean']:.3f}" if key in s and s[key]['mean'] == s[key]['mean']
                    else '-' for key in KEYS]
            lines.append(f"| {k} | {len(data['per_sample'][row])} | {row} | "
                         + ' | '.join(vals) + ' |')
            bars.append(f'| {k} | {row} | ' + ' | '.join(
                f"{s[key]['mean']:.3f}" if key in s and s[key]['mean'] == s[key]['mean']
                else '-' for key in BAR_KEYS) + ' |')
        sub = {r: data['per_sample'][r] for r in PAIRS if r in data['per_sample']}
        for d in bootstrap_differences(sub, DIFF_KEYS, resamples, 0):
            diffs.append(f"| {k} | {d['a']} - {d['b']} | {d['metric']} | {d['mean_diff']:+.4f} | "
                         f"[{d['ci95_lo']:+.4f}, {d['ci95_hi']:+.4f}] | {d['n']} |")
    return '\n'.join(lines + [''] + bars + [''] + diffs) + '\n'


REGISTRATION_KEYS = ('visibility/auroc', 'complete/fscore@0.1', 'complete/precision@0.1')


def registration_table(directories: Sequence[Path]) -> str:
    """
    Build the markdown table of the alignment's size per row and the metrics by its quarter.

    Why: the labels and scores are read after a per-scene scale and shift fitted to the complete
    GT; a cloud that needs a large shift is placed badly, and the visibility label of its points
    then disagrees with what the cameras see (session 25). Rows without a fitted shift (the
    unaligned ones) are left out.
    """
    head = ['| K | n | row | mean shift | shift sd (x, y, z) | mean bias (x, y, z) | '
            'mean scale | '
            + ' | '.join(f'{key} (best / worst quarter)' for key in REGISTRATION_KEYS) + ' |',
            '|' + '---|' * (7 + len(REGISTRATION_KEYS))]
    lines = []
    for directory in directories:
        data = json.loads((Path(directory) / 'metrics.json').read_text())
        k = data['config']['views']
        for row in ROWS:
            samples = list(data['per_sample'].get(row, {}).values())
            if not samples or 'align/shift_x' not in samples[0]:
                continue
            shift = np.array([[m['align/shift_x'], m['align/shift_y'], m['align/shift_z']]
                              for m in samples], dtype=float)
            scale = np.array([m['align/scale'] for m in samples], dtype=float)
            size = np.linalg.norm(shift, axis=1)
            order = np.argsort(size, kind='stable')
            quarter = max(1, len(order) // 4)
            cells = []
            for key in REGISTRATION_KEYS:
                v = np.array([m.get(key, np.nan) for m in samples], dtype=float)
                best, worst = v[order[:quarter]], v[order[-quarter:]]
                if np.isnan(best).all() or np.isnan(worst).all():
                    cells.append('-')
                else:
                    cells.append(f'{np.nanmean(best):.3f} / {np.nanmean(worst):.3f}')
            sd, bias = shift.std(0), shift.mean(0)
            lines.append(f'| {k} | {len(samples)} | {row} | {size.mean():.3f} | '
                         + ', '.join(f'{x:.3f}' for x in sd) + ' | '
                         + ', '.join(f'{x:+.3f}' for x in bias) + f' | {scale.mean():.3f} | '
                         + ' | '.join(cells) + ' |')
    if not lines:
        raise ValueError('no aligned row with a fitted shift in these evaluations')
    return '\n'.join(head + lines) + '\n'


def release_difference(new: Path, old: Path, row: str = 'model[chamfer]',
                       resamples: int = 2000) -> str:
    """
    Build the markdown table of paired differences of one row between two evaluations.

    Both evaluate the same scenes (a new release against the previous one).
    """
    pair = {}
    for label, directory in (('new', new), ('old', old)):
        data = json.loads((Path(directory) / 'metrics.json').read_text())
        if row not in data['per_sample']:
            raise ValueError(f'{directory}: no row {row}')
        pair[f'{row} {label}'] = data['per_sample'][row]
    lines = ['| a - b | metric | mean diff | 95% CI | n |', '|---|---|---|---|---|']
    for d in bootstrap_differences(pair, DIFF_KEYS + ('visibility/auroc',), resamples, 0):
        if d['mean_diff'] != d['mean_diff']:  # a row without that metric (autoencoder AUROC)
            continue
        lines.append(f"| {d['a']} - {d['b']} | {d['metric']} | {d['mean_diff']:+.4f} | "
                     f"[{d['ci95_lo']:+.4f}, {d['ci95_hi']:+.4f}] | {d['n']} |")
    return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.train.card_table',
                                description=__doc__.strip().split('\n\n')[0])
    p.add_argument('dirs', nargs='+', type=Path, help='nova3r_eval output directories')
    p.add_argument('--bootstrap', type=int, default=2000, help='bootstrap resamples')
    p.add_argument('--previous', type=Path, default=None, metavar='DIR',
                   help="also: the first directory's --row minus this one's (same scenes)")
    p.add_argument('--row', default='model[chamfer]',
                   help='the row compared by --previous, e.g. autoencoder[chamfer]')
    p.add_argument('--registration', action='store_true',
                   help="also: how far the alignment moved each row's cloud, and the metrics "
                        'of the best- and worst-registered quarters of the scenes')
    args = p.parse_args(argv)
    if args.bootstrap < 1:
        p.error('--bootstrap must be >= 1')
    for directory in [*args.dirs, *([args.previous] if args.previous else [])]:
        if not (directory / 'metrics.json').is_file():
            p.error(f'{directory}: no metrics.json (a nova3r_eval --out directory?)')
    try:  # build everything before printing: an error leaves no half-printed table
        text = tables(args.dirs, args.bootstrap)
        if args.previous is not None:
            text += '\n' + release_difference(args.dirs[0], args.previous, row=args.row,
                                              resamples=args.bootstrap)
        if args.registration:
            text += '\n' + registration_table(args.dirs)
    except (ValueError, KeyError) as exc:
        print(f'card_table: error: {exc!s}', file=sys.stderr)
        return 2
    print(text, end='')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
