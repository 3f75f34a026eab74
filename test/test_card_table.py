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

"""Model-card tables from nova3r_eval outputs (known answers on a hand-made metrics.json)."""

from __future__ import annotations

import json

from nova3r_ros.train.card_table import tables


def write_release_pair(root, row: str, metric: str, bases: tuple[float, float], step: float,
                       count: int) -> None:
    """root/new and root/old metrics.json: one row, samples differ by bases[0] - bases[1]."""
    for name, base in zip(('new', 'old'), bases, strict=True):
        per = {row: {f's{i}': {metric: base + step * i} for i in range(count)}}
        (root / name).mkdir()
        (root / name / 'metrics.json').write_text(json.dumps(
            {'config': {'views': 2}, 'summary': {}, 'per_sample': per}))


def test_tables_rows_bars_and_paired_differences(tmp_path) -> None:
    per = {'model[chamfer]': {f's{i}': {'complete/fscore@0.1': 0.5 + 0.01 * i,
                                        'complete/precision@0.1': 0.4}
                              for i in range(4)},
           'prior[chamfer]': {f's{i}': {'complete/fscore@0.1': 0.4 + 0.01 * i,
                                        'complete/precision@0.1': 0.3}
                              for i in range(4)}}
    summary = {row: {k: {'mean': sum(v[k] for v in samples.values()) / 4}
                     for k in ('complete/fscore@0.1', 'complete/precision@0.1')}
               for row, samples in per.items()}
    (tmp_path / 'metrics.json').write_text(json.dumps(
        {'config': {'views': 2}, 'summary': summary, 'per_sample': per}))
    text = tables([tmp_path], resamples=100)
    assert '| 2 | 4 | model[chamfer] | 0.515 | - |' in text
    assert '| 2 | prior[chamfer] | 0.300 | - |' in text  # the bar table: precision first
    # every sample is exactly 0.1 better: the paired difference and its whole CI are +0.1
    assert ('| 2 | model[chamfer] - prior[chamfer] | complete/fscore@0.1 | +0.1000 | '
            '[+0.1000, +0.1000] | 4 |') in text


def test_release_difference_pairs_the_model_rows_of_two_evaluations(tmp_path) -> None:
    from nova3r_ros.train.card_table import release_difference

    write_release_pair(tmp_path, 'model[chamfer]', 'complete/fscore@0.1', (0.6, 0.5), 0.01, 5)
    text = release_difference(tmp_path / 'new', tmp_path / 'old', resamples=100)
    assert ('| model[chamfer] new - model[chamfer] old | complete/fscore@0.1 | +0.1000 | '
            '[+0.1000, +0.1000] | 5 |') in text


def test_previous_compares_the_row_asked_for(tmp_path, capsys) -> None:
    from nova3r_ros.train.card_table import main

    write_release_pair(tmp_path, 'autoencoder[chamfer]', 'complete/fscore@0.05', (0.4, 0.3),
                       0.02, 4)
    main([str(tmp_path / 'new'), '--previous', str(tmp_path / 'old'),
          '--row', 'autoencoder[chamfer]', '--bootstrap', '50'])
    out = capsys.readouterr().out
    assert ('| autoencoder[chamfer] new - autoencoder[chamfer] old | complete/fscore@0.05 | '
            '+0.1000 | [+0.1000, +0.1000] | 4 |') in out
    assert 'nan' not in out  # no AUROC in these rows: no NaN line


def test_the_model_is_paired_with_both_oracles(tmp_path) -> None:
    rows = {'model[chamfer]': 0.6, 'oracle[none]': 0.55, 'oracle[chamfer]': 0.5}
    per = {row: {f's{i}': {'occluded/fscore@0.1': base + 0.01 * i} for i in range(3)}
           for row, base in rows.items()}
    (tmp_path / 'metrics.json').write_text(json.dumps(
        {'config': {'views': 2}, 'summary': {}, 'per_sample': per}))
    text = tables([tmp_path], resamples=50)
    for oracle, diff in (('oracle[none]', '+0.0500'), ('oracle[chamfer]', '+0.1000')):
        assert (f'| 2 | model[chamfer] - {oracle} | occluded/fscore@0.1 | {diff} | '
                f'[{diff}, {diff}] | 3 |') in text


def test_bad_directories_and_rows_are_one_line_errors(tmp_path, capsys) -> None:
    from nova3r_ros.train.card_table import main
    import pytest

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / 'missing')])
    assert exc.value.code == 2 and 'no metrics.json' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), '--bootstrap', '0'])
    assert '--bootstrap must be >= 1' in capsys.readouterr().err
    write_release_pair(tmp_path, 'model[chamfer]', 'complete/fscore@0.1', (0.5, 0.4), 0.01, 3)
    assert main([str(tmp_path / 'new'), '--previous', str(tmp_path / 'old'), '--row', 'bogus',
                 '--bootstrap', '20']) == 2
    captured = capsys.readouterr()
    assert 'card_table: error' in captured.err and captured.out == ''  # nothing half-printed


def test_registration_table_splits_scenes_by_the_alignment_shift(tmp_path) -> None:
    from nova3r_ros.train.card_table import registration_table
    import pytest

    # 8 scenes: shift i along z (size i), AUROC falls with it; the unaligned row has no shift
    per = {'model[chamfer]': {f's{i}': {'align/shift_x': 0.0, 'align/shift_y': 0.0,
                                        'align/shift_z': float(i), 'align/scale': 1.0 + i / 10,
                                        'visibility/auroc': 0.9 - 0.1 * i}
                              for i in range(8)},
           'oracle[none]': {f's{i}': {'complete/fscore@0.1': 0.9} for i in range(8)}}
    (tmp_path / 'metrics.json').write_text(json.dumps(
        {'config': {'views': 2}, 'summary': {}, 'per_sample': per}))
    text = registration_table([tmp_path])
    # mean |shift| 3.5, sd of z over 0..7 = sqrt(5.25); best quarter = scenes 0, 1, worst 6, 7
    assert ('| 2 | 8 | model[chamfer] | 3.500 | 0.000, 0.000, 2.291 | +0.000, +0.000, +3.500 '
            '| 1.350 | 0.850 / 0.250 | - | - |') in text
    assert 'oracle[none]' not in text
    per.pop('model[chamfer]')
    (tmp_path / 'metrics.json').write_text(json.dumps(
        {'config': {'views': 2}, 'summary': {}, 'per_sample': per}))
    with pytest.raises(ValueError, match='no aligned row'):
        registration_table([tmp_path])
