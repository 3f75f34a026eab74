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

"""quality_vs_n: every (method, N, sample) scored by the toolkit, seeds paired, outputs written."""

from __future__ import annotations

import json

from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.evaluation import quality_vs_n as qn
from nova3r_ros.evaluation.baselines import ModelMethod
from nova3r_ros.evaluation.cli import dataset_sources
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import get_preset, Nova3r
import pytest
import torch


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    """Two generated samples, a random micro checkpoint, the CLI run at N = 128 and 1024."""
    root = tmp_path_factory.mktemp('qvn')
    cfg = GeneratorConfig(width=112, height=84, num_points=4096, num_views=2)
    generate(root / 'data', 'test', [2_000_000, 2_000_001], cfg, progress=False)
    torch.manual_seed(0)
    ckpt = root / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(ckpt)
    out = root / 'out'
    argv = ['--checkpoint', str(ckpt), '--data', str(root / 'data' / 'test'), '--views', '2',
            '--num-samples', '2', '--num-points', '1024', '128', '--num-steps', '2',
            '--bootstrap', '50', '--threads', '1', '--seed', '3', '--out', str(out),
            '--no-progress']
    assert qn.main(argv) == 0
    return root, ckpt, out, json.loads((out / 'quality_vs_n.json').read_text())


def test_every_method_n_and_sample_scored(study) -> None:
    _, _, _, data = study
    assert [r['num_points'] for r in data['rows']] == [128, 1024]  # sorted, unique
    assert set(data['per_sample']) == {f'{m}@{n}' for m in qn.ROWS for n in (128, 1024)}
    for per in data['per_sample'].values():
        assert sorted(per) == ['sample_02000000', 'sample_02000001']
        for metrics in per.values():
            assert 0.0 <= metrics[qn.KEY_F] <= 1.0 and metrics[qn.KEY_CD] > 0
    for row in data['rows']:
        assert row['n_samples'] == 2
        lo, hi = row['model_minus_prior_f_ci95']
        assert lo <= row['model_minus_prior_f'] <= hi
        assert row['model/predict_s'] > 0


def test_model_row_is_the_toolkit_on_the_same_seed(study) -> None:
    """The stored model@128 metrics equal a direct ModelMethod + score_prediction call."""
    root, ckpt, _, data = study
    model = Nova3r.from_checkpoint(str(ckpt)).eval()
    torch.set_num_threads(1)
    source = dataset_sources(root / 'data' / 'test', 2, 1)[0]
    sample = source.load()
    seed = 3 + int(sample['seed'])
    prediction = ModelMethod(model, 2).predict(sample, 128, seed)
    direct = score_prediction(prediction, sample, ground_truth(sample), 'chamfer', seed=seed)
    stored = data['per_sample']['model@128'][source.sample_id]
    for key in (qn.KEY_F, qn.KEY_CD, qn.KEY_OCC):
        assert stored[key] == pytest.approx(direct.metrics[key], rel=1e-6, abs=1e-9)


def test_ceiling_improves_with_density(study) -> None:
    """An independent GT sample covers the surfaces better at N=1024 than at N=128."""
    rows = study[3]['rows']
    f128, f1024 = rows[0][f'ceiling/{qn.KEY_F}'], rows[1][f'ceiling/{qn.KEY_F}']
    assert f1024 > f128 > 0.3
    assert rows[1][f'ceiling/{qn.KEY_CD}'] < rows[0][f'ceiling/{qn.KEY_CD}']


def test_outputs_written(study) -> None:
    out = study[2]
    table = (out / 'quality_vs_n.md').read_text()
    assert '| N | model F@0.1 |' in table and '| 1024 |' in table
    assert 'resampled-GT ceiling F@0.1' in table
    png = (out / 'quality_vs_n.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


def test_bad_arguments(tmp_path, capsys) -> None:
    assert qn.main(['--checkpoint', str(tmp_path / 'none.safetensors')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        qn.main(['--help'])
    assert exc.value.code == 0
    assert '--num-samples' in capsys.readouterr().out


def test_defaults_follow_the_node_and_the_issue() -> None:
    from nova3r_ros import params

    args = qn.build_parser().parse_args([])
    assert args.num_steps == params.DEFAULTS['num_steps'] == qn.NODE_NUM_STEPS
    assert args.num_points == [1024, 2048, 4096, 8192, 16384]
    assert args.views == 2 and args.num_samples == 50
    assert str(args.data) == 'data/generated/room4/test'


def test_imports_no_ros_and_no_matplotlib() -> None:
    import subprocess
    import sys

    code = ('import sys, nova3r_ros.evaluation.quality_vs_n; '
            'sys.exit(int("rclpy" in sys.modules or "matplotlib" in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code], timeout=60).returncode == 0
