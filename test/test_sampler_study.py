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

"""Sampler study tooling: config grid, paired comparison, suggested default, end-to-end CLI."""

from __future__ import annotations

import json

from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.evaluation import sampler_study as study
from nova3r_ros.model import get_preset, Nova3r
import numpy as np
import pytest
import torch


def test_sampler_grid_counts_network_evaluations() -> None:
    grid = study.sampler_grid([1, 2, 4], ['euler', 'heun'], ['uniform'])
    assert [c.name for c in grid] == ['euler-uniform-25', 'euler-uniform-1', 'euler-uniform-2',
                                      'euler-uniform-4', 'heun-uniform-1', 'heun-uniform-2']
    assert [c.calls for c in grid] == [25, 1, 2, 4, 2, 4]  # a Heun step is 2 calls
    assert study.SamplerConfig('midpoint', 'cosine', 3).calls == 6
    with pytest.raises(ValueError, match='method'):
        study.sampler_grid([2], ['rk4'])
    with pytest.raises(ValueError, match='>= 1'):
        study.sampler_grid([0])


def test_compare_relative_difference_and_default() -> None:
    configs = [study.REFERENCE, study.SamplerConfig('euler', 'uniform', 4),
               study.SamplerConfig('heun', 'cosine', 2), study.SamplerConfig('euler', 'cosine', 2)]
    f = {'euler-uniform-25': 0.5, 'euler-uniform-4': 0.49, 'heun-cosine-2': 0.495,
         'euler-cosine-2': 0.40}

    def metrics(v: float) -> dict[str, float]:
        return {study.KEY_F: v, study.KEY_CD: 1 - v, study.KEY_OCC: v / 2}

    results = {name: {'a': metrics(v), 'b': metrics(v)} for name, v in f.items()}
    wall = {name: [1.0, 3.0] for name in f}
    rows = {r['config']: r for r in study.compare(results, wall, configs, 200)}
    assert rows['euler-uniform-25']['f_rel_diff'] == 0 and not rows['euler-uniform-25']['holds']
    assert rows['euler-uniform-4']['f_rel_diff'] == pytest.approx(-0.02)
    assert rows['euler-uniform-4']['f_rel_ci95'] == pytest.approx([-0.02, -0.02])
    assert rows['euler-uniform-4']['holds'] and rows['heun-cosine-2']['holds']
    assert not rows['euler-cosine-2']['holds']  # -20 %
    assert rows['heun-cosine-2']['wall_s'] == 2.0 and rows['heun-cosine-2'][study.KEY_OCC] == \
        pytest.approx(0.2475)
    # both holding configs spend 4 calls; the higher F@0.1 wins the tie
    assert study.suggest_default(list(rows.values()))['config'] == 'heun-cosine-2'
    assert 'heun, cosine grid, 2 steps (4 calls)' in study.markdown(list(rows.values()), '#')


def test_cli_end_to_end_on_micro_model(tmp_path, capsys) -> None:
    cfg = GeneratorConfig(width=112, height=84, num_points=4096, num_views=2)
    generate(tmp_path / 'data', 'val', [1_000_000, 1_000_001], cfg, progress=False)
    torch.manual_seed(0)
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(ckpt)
    out = tmp_path / 'study'
    argv = ['--checkpoint', str(ckpt), '--data', str(tmp_path / 'data' / 'val'), '--views', '2',
            '--num-points', '256', '--calls', '1', '2', '--methods', 'euler', 'heun',
            '--schedules', 'uniform', 'cosine', '--bootstrap', '100', '--threads', '1',
            '--out', str(out)]
    assert study.main(argv) == 0
    assert 'Suggested node default' in capsys.readouterr().out
    data = json.loads((out / 'sampler_study.json').read_text())
    names = {r['config'] for r in data['rows']}
    assert names == {'euler-uniform-25', 'euler-uniform-1', 'euler-uniform-2', 'euler-cosine-1',
                     'euler-cosine-2', 'heun-uniform-1', 'heun-cosine-1'}
    for name in names:  # every config scored on both samples with real metrics
        per = data['per_sample'][name]
        assert sorted(per) == ['sample_01000000', 'sample_01000001']
        assert all(0.0 <= m[study.KEY_F] <= 1.0 and m[study.KEY_CD] > 0 for m in per.values())
    ref = next(r for r in data['rows'] if r['config'] == 'euler-uniform-25')
    assert ref['f_rel_diff'] == 0.0 and ref['calls'] == 25
    # paired: the same x0 per sample, so euler-uniform-1 and euler-cosine-1 (same single step
    # from t=0 to t=1) give identical clouds and identical metrics
    e1, c1 = data['per_sample']['euler-uniform-1'], data['per_sample']['euler-cosine-1']
    for sid in e1:
        assert e1[sid][study.KEY_CD] == pytest.approx(c1[sid][study.KEY_CD])
    png = (out / 'sampler_study.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
    assert '| heun | cosine | 1 | 2 |' in (out / 'sampler_study.md').read_text()
    assert np.isfinite(ref['wall_s']) and ref['wall_s'] > 0


def test_cli_refuses_missing_inputs(tmp_path) -> None:
    with pytest.raises(SystemExit, match='does not exist'):
        study.main(['--checkpoint', str(tmp_path / 'none.safetensors'), '--data',
                    str(tmp_path)])


def test_sampler_study_imports_no_ros_and_no_matplotlib() -> None:
    import subprocess
    import sys

    code = ('import sys, nova3r_ros.evaluation.sampler_study; '
            'sys.exit(int("rclpy" in sys.modules or "matplotlib" in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code], timeout=60).returncode == 0


def test_study_knows_every_sampler_of_the_model() -> None:
    from nova3r_ros.evaluation import sampler_study
    from nova3r_ros.model import flow

    assert sampler_study.SOLVERS == flow.METHODS
    assert sampler_study.EVALS_PER_STEP == flow.EVALS_PER_STEP
    grid = sampler_study.sampler_grid([4], ['ddim'])
    ddim = [(c.method, c.steps, c.schedule) for c in grid if c.method == 'ddim']
    assert sorted(ddim) == [('ddim', 4, 'cosine'), ('ddim', 4, 'uniform')]  # one per time grid
