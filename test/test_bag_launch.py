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
Test launch/replay.launch.py: static checks here, a real run where launch_ros is installed.

launch_ros is not on PyPI; the real run needs it installed (robots with apt ROS).
"""

import ast
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'replay.launch.py'


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def test_replay_launch_declares_and_uses_its_arguments():
    tree = ast.parse(LAUNCH.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    declared = {c.args[0].value for c in _calls(tree, 'DeclareLaunchArgument')}
    used = {c.args[0].value for c in _calls(tree, 'LaunchConfiguration')}
    assert declared == used == {'bag', 'record_out', 'rate', 'params_file', 'checkpoint',
                                'image_topic', 'camera_info_topic', 'depth_topic'}
    # Every LaunchConfiguration variable is passed to an action.
    source = LAUNCH.read_text()
    body = source.split('def _node(', 1)[1]
    for name in used:
        assert re.search(rf'\b{name}\b', body), name
    # The executables it starts are console scripts of the package.
    executables = {kw.value.value for c in _calls(tree, 'Node') for kw in c.keywords
                   if kw.arg == 'executable'}
    setup = (ROOT / 'setup.py').read_text()
    for exe in executables:
        assert f"'{exe} = " in setup, exe
    assert executables == {'nova3r_node', 'nova3r_bag'}
    assert _calls(tree, 'OnProcessExit') and _calls(tree, 'Shutdown')


def test_bag_cli_accepts_the_arguments_the_launch_file_passes(tmp_path):
    from nova3r_ros.ros import bag

    args = bag.build_parser().parse_args(
        ['play', str(tmp_path), '--rate', '0.25', '--wait-for', '/camera/image_raw',
         '--wait-for', '/clock=2', '--clock-tail', '2'])
    assert args.wait_for == [('/camera/image_raw', 1), ('/clock', 2)]
    args = bag.build_parser().parse_args(
        ['record', '--out', str(tmp_path / 'r'), '--stop-on-clock-silence', '2', '--linger',
         '10', '--use-sim-time'])
    assert args.use_sim_time and args.stop_on_clock_silence == 2.0
    # launch_ros.actions.Node appends ROS arguments; the CLI ignores them.
    assert bag.main(['play', str(tmp_path / 'missing'), '--ros-args', '-r',
                     '__node:=player']) == 2


@pytest.mark.slow
def test_replay_launch_runs(tmp_path):
    launch_ros = pytest.importorskip('launch_ros')  # not on PyPI; present with apt ROS
    import importlib.util

    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from nova3r_ros.data.bag_export import export_bag
    from nova3r_ros.model import get_preset, Nova3r

    assert importlib.util.find_spec('launch_ros.actions') is not None, launch_ros
    bag = tmp_path / 'in'
    export_bag(bag, seed=3, num_frames=20, rate_hz=15.0, gt_points=5000, progress=False)
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(str(ckpt))
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH)),
        launch_arguments={'bag': str(bag), 'record_out': str(tmp_path / 'rec'), 'rate': '0.5',
                          'checkpoint': str(ckpt)}.items())
    service = LaunchService()
    service.include_launch_description(LaunchDescription([include]))
    assert service.run() == 0
    assert (tmp_path / 'rec' / 'metadata.yaml').exists()
