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

"""Start-up failures end the process with a clear message and a non-zero code; --help works."""

from pathlib import Path
import subprocess
import sys

from nova3r_ros.ros import node as node_module
from nova3r_ros.ros.node_harness import node_command
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(params):
    return subprocess.Popen(node_command(params), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)


@pytest.mark.slow
def test_missing_corrupt_checkpoint_and_bad_config_exit_nonzero(tmp_path):
    from nova3r_ros.model import get_preset, Nova3r

    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(b'not a safetensors file' * 10)
    two_views = tmp_path / 'two_views.safetensors'
    cfg = get_preset('micro')
    cfg.max_views = 2
    Nova3r(cfg).save_checkpoint(str(two_views))
    cases = {
        'missing': ({'checkpoint': str(tmp_path / 'nope.safetensors')}, 'checkpoint not found'),
        'corrupt': ({'checkpoint': str(corrupt)}, 'not a valid safetensors file'),
        'too many views': ({'checkpoint': str(corrupt), 'image_topics': ['a', 'b', 'c'],
                            'window_size': 3}, 'at most 8'),
        'more views than the checkpoint takes': (
            {'checkpoint': str(two_views), 'window_size': 3}, 'takes at most 2'),
        'int for a double': ({'checkpoint': str(corrupt), 'slop': 0}, 'write 0.0, not 0'),
        'out of range': ({'checkpoint': str(corrupt), 'num_points': 0}, 'allowed: [1, 262144]'),
    }
    processes = {name: _run(params) for name, (params, _) in cases.items()}  # in parallel
    for name, process in processes.items():
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 2, f'{name}: {output}'
        assert cases[name][1] in output, f'{name}: {output}'
        assert 'cannot start' in output and 'Traceback' not in output, output


def test_help_lists_parameters(capsys):
    with pytest.raises(SystemExit) as exc:
        node_module.main(['--help'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in ('checkpoint', 'image_topics', 'num_points', 'scale_mode'):
        assert name in text


def test_unreadable_params_file_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        node_module.main(['--ros-args', '--params-file', str(tmp_path / 'none.yaml')])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'nova3r_node: error: invalid ROS arguments' in err and 'Traceback' not in err


@pytest.mark.slow
def test_module_is_runnable():
    result = subprocess.run([sys.executable, '-m', 'nova3r_ros.ros.node', '--help'],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and 'nova3r_node' in result.stdout
