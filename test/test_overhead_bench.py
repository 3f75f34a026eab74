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

"""nova3r_bench overhead: the node process over real DDS against run_window on the same windows."""

from __future__ import annotations

import json
import math

from nova3r_ros import bench
from nova3r_ros.ros import overhead_bench as ob
import numpy as np
import pytest


def _window(model_ms: float, node_ms: float, e2e_ms: float, ros_layer_ms: float) -> dict:
    return {'model_ms': model_ms, 'node_ms': node_ms, 'e2e_ms': e2e_ms,
            'overhead_ms': e2e_ms - model_ms, 'ros_layer_ms': ros_layer_ms,
            'bit_identical': True, 'max_abs_diff': 0.0}


def test_summary_and_bar_known_answers() -> None:
    windows = [_window(100.0, 104.0, 105.0, 3.0), _window(200.0, 204.0, 206.0, 4.0),
               _window(300.0, 306.0, 309.0, 5.0)]
    summary = ob.summarize(windows)
    assert summary['model_ms']['p50'] == 200.0
    assert summary['overhead_ms']['p50'] == 6.0  # paired: 5, 6, 9
    assert summary['overhead_in_node_ms']['p50'] == 4.0
    assert summary['overhead_dds_ms']['p50'] == 2.0
    assert summary['overhead_rel']['p50'] == pytest.approx(0.03)
    assert summary['bar_ms'] == 20.0  # 10 % of 200 ms > 5 ms
    assert summary['passes'] and summary['ros_layer_passes']
    small = ob.summarize([_window(20.0, 26.0, 27.0, 6.0)])
    assert small['bar_ms'] == 5.0 and not small['passes'] and not small['ros_layer_passes']
    assert '| **ROS overhead** = end to end - model alone | 6.0 |' in ob.table(summary)


def test_frames_distinct_and_arguments_validated() -> None:
    frames = ob.make_frames(3, 64, 48)
    assert [f.shape for f in frames] == [(48, 64, 3)] * 3 and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0][:, 8:], frames[1][:, :-8])  # a pan, 8 px/frame
    args = bench.build_parser().parse_args(['overhead', '--windows', '0'])
    with pytest.raises(ValueError, match='--windows'):
        ob._validate(args)
    assert args.num_points == 8192 and args.num_steps == 4 and args.window_size == 2
    both = bench.build_parser().parse_args(['overhead', '--checkpoint', 'x.safetensors',
                                            '--random-preset', 'micro'])
    with pytest.raises(ValueError, match='not both'):
        ob._validate(both)


@pytest.mark.slow
def test_overhead_over_dds_on_micro_model(micro_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / 'overhead.json'
    code = bench.main(['overhead', '--checkpoint', str(micro_checkpoint), '--windows', '3',
                       '--warmup', '1', '--num-points', '256', '--num-steps', '2',
                       '--width', '160', '--height', '120', '--threads', '1',
                       '--timeout', '120', '--out', str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert '**ROS overhead**' in printed
    data = json.loads(out.read_text())
    assert data['config']['threads'] == 1 and data['config']['num_points'] == 256
    windows = data['windows']
    assert [w['window'] for w in windows] == [1, 2, 3]  # window 0 was the warm-up
    for w in windows:
        for key in ('model_ms', 'node_ms', 'e2e_ms'):
            assert math.isfinite(w[key]) and 0 < w[key] < 60_000, (key, w)
        assert math.isfinite(w['ros_layer_ms']) and w['ros_layer_ms'] > 0
        assert w['overhead_ms'] == pytest.approx(w['e2e_ms'] - w['model_ms'])
        # the node's cloud is the model-alone cloud: same images, stamp seed, settings, threads
        assert w['num_points'] == 256 and w['visibility_equal']
        assert w['max_abs_diff'] <= 1e-5
        assert w['node_stages_ms']['sample'] > 0 and w['node_stages_ms']['publish'] > 0
        for usage in (w['node_usage'], w['model_usage']):  # /proc: CPU ms and page faults
            assert usage['cpu_ms'] >= 0 and usage['minor_faults'] >= 0
    summary = data['summary']
    for key in ('model_ms', 'node_ms', 'e2e_ms', 'ros_layer_ms'):
        assert math.isfinite(summary[key]['p50']) and summary[key]['p50'] > 0
    assert summary['bar_ms'] >= 5.0
    assert set(data['stage_means_ms']['model_alone']) == {'preprocess', 'encode', 'sample',
                                                          'scale'}
