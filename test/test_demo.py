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
Test nova3r_demo: node parameters, helpers and one short run with a summary and a report.

Its node parameters are valid, helpers give known answers, and one short run ends by itself
with a summary and a report (random-weight micro model).
"""

from nova3r_ros import demo
from nova3r_ros import params as P
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros.offline import load_parameters
import numpy as np
import pytest


def test_demo_parameters_are_valid_node_parameters(tmp_path):
    values = demo.node_parameters('/some/model.safetensors', 4096, 8)
    path = demo.write_params(tmp_path / 'p.yaml', values)
    loaded = load_parameters(path)
    for key, value in values.items():
        assert loaded[key] == value
    node_values = {k: loaded[k] for k in P.DEFAULTS}
    P.validate_startup(node_values)  # raises on anything the node would refuse
    assert loaded['depth_topic'] and loaded['scale_mode'] == 'depth'
    assert loaded['use_sim_time'] is True


def test_offline_check_reports_differences():
    a = {1: {'points': np.zeros((4, 3), np.float32), 'visibility': np.array([1, 0, 1, 0], bool)}}
    b = {1: {'points': np.full((4, 3), 0.25, np.float32),
             'visibility': np.array([1, 1, 1, 0], bool)},
         2: {'points': np.zeros((4, 3), np.float32), 'visibility': np.ones(4, bool)}}
    assert demo.offline_check(a, b) == {'windows compared': 1, 'max point difference': 0.25,
                                        'max visibility disagreement': 0.25}
    assert demo.offline_check(a, a)['max point difference'] == 0.0


def test_calibrated_rate_and_missing_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(str(ckpt))
    rate, seconds = demo.calibrate_rate(str(ckpt), 256, 2)
    assert seconds > 0 and 0.01 <= rate <= 1.0
    assert rate == pytest.approx(min(1.0, max(0.01, demo.KEYFRAME_INTERVAL / (2.5 * seconds))))
    assert demo.main(['--out', str(tmp_path / 'o'), '--checkpoint',
                      str(tmp_path / 'missing.safetensors')]) == 2
    assert 'missing.safetensors' in capsys.readouterr().err
    assert demo.main(['--out', str(tmp_path / 'o2'), '--checkpoint', __file__]) == 2
    assert 'not a valid safetensors file' in capsys.readouterr().err
    assert not (tmp_path / 'o2' / 'input_bag').exists()  # refused before rendering the bag
    with pytest.raises(SystemExit) as exc:
        demo.main(['--out', str(ckpt / 'o')])  # a folder under a file
    assert exc.value.code == 2 and 'cannot create this folder' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        demo.main(['--help'])
    assert exc.value.code == 0


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    for bad, said in ((['--rate', 'nan'], '--rate'), (['--rate', '-1'], '--rate'),
                      (['--frames', '0'], '--frames'), (['--num-points', '0'], '--num-points'),
                      (['--num-steps', '500'], '--num-steps'), (['--pictures', '-1'], 'pictures')):
        with pytest.raises(SystemExit) as exc:
            demo.main(['--out', str(tmp_path / 'o'), *bad])
        assert exc.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_input_bag_is_reused_only_when_complete_and_for_the_same_drive(tmp_path, monkeypatch):
    from nova3r_ros.data import bag_export

    rendered = []

    def fake_export(out, seed, num_frames, rate_hz):
        rendered.append((seed, num_frames))
        out.mkdir()
        (out / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}')

    monkeypatch.setattr(bag_export, 'export_bag', fake_export)
    assert demo.render_input_bag(tmp_path, 7, 30) == tmp_path / 'input_bag'
    demo.render_input_bag(tmp_path, 7, 30)  # complete and the same drive: reused
    assert rendered == [(7, 30)]
    demo.render_input_bag(tmp_path, 7, 40)  # another drive: rendered again
    (tmp_path / 'input_bag' / 'metadata.yaml').unlink()  # as an interrupted render leaves it
    demo.render_input_bag(tmp_path, 7, 40)
    assert rendered == [(7, 30), (7, 40), (7, 40)]
    assert not (tmp_path / 'input_bag.partial').exists()


@pytest.mark.slow
def test_short_demo_run_prints_summary_and_writes_report(tmp_path, capsys):
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(str(ckpt))
    out = tmp_path / 'demo_output'
    assert demo.main(['--out', str(out), '--checkpoint', str(ckpt), '--frames', '25',
                      '--num-points', '2048', '--num-steps', '2', '--rate', '0.5',
                      '--pictures', '1', '--scale-mode', 'normalized']) == 0
    printed = capsys.readouterr().out
    assert 'node[chamfer]' in printed and 'oracle[none]' in printed
    assert 'offline[chamfer]' in printed
    assert f'report: {out / "report.md"}' in printed
    text = (out / 'report.md').read_text()
    assert '## Demo run' in text and '![' in text
    assert '"max point difference": 0.0' in text  # node and offline run agree
    assert 'node units: normalized' in text and '## Metric' not in text
    assert (out / 'recording' / 'metadata.yaml').exists()
    assert len(list((out / 'pictures').glob('*.png'))) == 1
