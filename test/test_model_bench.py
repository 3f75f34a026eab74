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

"""nova3r_bench model: stage timing, derived totals, verification run, outputs; no rclpy."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from nova3r_ros import bench, model_bench
import pytest


def test_time_stage_measures_known_sleep() -> None:
    res = model_bench.time_stage(lambda: time.sleep(0.02), 'cpu', repeats=3, warmup=0)
    assert 20.0 <= res['min_ms'] <= res['median_ms'] <= res['p95_ms'] < 200.0
    assert res['repeats'] == 3
    assert res['peak_bytes'] > 10 * 2**20  # a python + torch process is tens of MiB
    with pytest.raises(ValueError, match='repeats'):
        model_bench.time_stage(lambda: None, 'cpu', repeats=0, warmup=0)


def test_run_benchmark_totals_and_verify() -> None:
    model = model_bench.load_model('micro', None, 'cpu')
    res = model_bench.run_benchmark(model, views=(1, 2), points=(64, 128), steps=(1, 8),
                                    repeats=1, warmup=0, frame_size=(64, 48), progress=False)
    assert [(r['views'], r['points']) for r in res['rows']] == [(1, 64), (1, 128), (2, 64),
                                                                (2, 128)]
    for row in res['rows']:
        st = {k: v['median_ms'] for k, v in row['stages'].items()}
        assert set(st) == {'preprocess', 'encoder', 'decoder', 'visibility', 'packing'}
        fixed = st['preprocess'] + st['encoder'] + st['visibility'] + st['packing']
        assert row['totals_ms'][1] == pytest.approx(fixed + st['decoder'])
        assert row['totals_ms'][8] == pytest.approx(fixed + 8 * st['decoder'])
    # the decoder stage depends on N only: shared between K = 1 and K = 2
    assert res['rows'][0]['stages']['decoder'] == res['rows'][2]['stages']['decoder']
    v = res['verify']
    assert (v['views'], v['points'], v['steps']) == (1, 64, 8)
    first = res['rows'][0]['stages']
    assert v['derived_ms'] == pytest.approx(
        sum(first[s]['median_ms'] for s in ('preprocess', 'encoder', 'visibility', 'packing'))
        + 8 * first['decoder']['median_ms'])
    assert v['direct']['median_ms'] > 0
    table = model_bench.markdown_table(res)
    assert '| 2 | 128 |' in table and 'direct end-to-end run' in table
    with pytest.raises(ValueError, match='views'):
        model_bench.run_benchmark(model, views=(9,), points=(64,), progress=False)


def test_cli_writes_json_and_markdown(tmp_path, capsys) -> None:
    rc = bench.main(['model', '--preset', 'micro', '--views', '1', '--points', '32',
                     '--steps', '1', '2', '--repeats', '1', '--warmup', '0', '--threads', '1',
                     '--frame-size', '64', '48', '--out', str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / 'model_micro_cpu.json').read_text())
    assert data['environment']['preset'] == 'micro' and data['steps'] == [1, 2]
    assert (tmp_path / 'model_micro_cpu.md').read_text().startswith('preset `micro`')
    assert 'total 2 steps' in capsys.readouterr().out
    # --precision bf16 on the CPU: recorded, and written beside the fp32 result, not over it
    rc = bench.main(['model', '--preset', 'micro', '--views', '1', '--points', '32',
                     '--steps', '1', '--repeats', '1', '--warmup', '0', '--threads', '1',
                     '--frame-size', '64', '48', '--out', str(tmp_path), '--precision', 'bf16'])
    assert rc == 0
    data = json.loads((tmp_path / 'model_micro_cpu_bf16.json').read_text())
    assert data['environment']['autocast'] == 'bf16'
    assert json.loads((tmp_path / 'model_micro_cpu.json').read_text())['steps'] == [1, 2]


def test_model_bench_does_not_import_rclpy() -> None:
    code = ('import sys, nova3r_ros.bench, nova3r_ros.model_bench; '
            'sys.exit(int("rclpy" in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code], timeout=60).returncode == 0


def test_cuda_request_without_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='no CUDA device'):
        bench.main(['model', '--device', 'cuda'])


def test_verify_point_outside_grid_runs_direct_only() -> None:
    model = model_bench.load_model('micro', None, 'cpu')
    res = model_bench.run_benchmark(model, views=(1,), points=(32,), steps=(2,), repeats=1,
                                    warmup=0, frame_size=(64, 48), verify=(3, 32, 2),
                                    progress=False)
    assert res['verify']['derived_ms'] is None and res['verify']['direct']['median_ms'] > 0
    assert 'derived from the stages n/a' in model_bench.markdown_table(res)
    with pytest.raises(ValueError, match='verify point'):
        model_bench.run_benchmark(model, views=(1,), points=(32,), verify=(9, 32, 2),
                                  progress=False)


def test_ros_packing_builds_the_node_message() -> None:
    import numpy as np

    build = model_bench._packer(with_ros=True)
    msg = build(np.zeros((5, 3), np.float32), np.array([1, 0, 1, 0, 0], bool))
    assert (msg.width, msg.height, msg.point_step, len(msg.data)) == (5, 1, 16, 80)
    assert msg.header.frame_id == 'camera_optical' and msg.is_dense
