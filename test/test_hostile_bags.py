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
Malformed bags given to the tools: a clear one-line error and exit status 2, no traceback.

Bags are written by hand with rosbags (a few tiny messages) and then damaged:
- *truncated*: the MCAP file cut in half (as after a crash or a full disk while recording);
- *wrong type*: the image topic (or the recorded cloud topic) recorded as ``std_msgs/String``;
- *mislabelled*: the connection says ``sensor_msgs/Image`` but the payloads are String CDR.
"""

import shutil
import signal

from nova3r_ros.data.bag_export import export_bag
from nova3r_ros.evaluation import cli as eval_cli
from nova3r_ros.ros import bag as bag_cli
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
IMAGE_TOPIC = '/camera/image_raw'


def _image(i: int):
    header = T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=i, nanosec=0), frame_id='cam')
    return T['sensor_msgs/msg/Image'](header=header, height=4, width=4, encoding='rgb8',
                                      is_bigendian=0, step=12, data=np.zeros(48, np.uint8))


def _string(text: str):
    return T['std_msgs/msg/String'](data=text)


def _write(path, topic: str, declared: str, messages) -> None:
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, declared, typestore=TS)
        for i, msg in enumerate(messages):
            writer.write(conn, (i + 1) * 10_000_000, TS.serialize_cdr(msg, msg.__msgtype__))


def _truncate(bag_dir) -> None:
    (mcap,) = bag_dir.glob('*.mcap')
    data = mcap.read_bytes()
    mcap.write_bytes(data[:len(data) // 2])


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('hostile_bags')
    _write(root / 'good', IMAGE_TOPIC, 'sensor_msgs/msg/Image', [_image(i) for i in range(5)])
    shutil.copytree(root / 'good', root / 'truncated')
    _truncate(root / 'truncated')
    _write(root / 'wrong_type', IMAGE_TOPIC, 'std_msgs/msg/String', [_string('x')] * 3)
    _write(root / 'mislabelled', IMAGE_TOPIC, 'sensor_msgs/msg/Image', [_string('x')] * 3)
    _write(root / 'wrong_cloud', '/nova3r/points', 'std_msgs/msg/String', [_string('x')])
    _write(root / 'mislabelled_cloud', '/nova3r/points', 'sensor_msgs/msg/PointCloud2',
           [_string('not a cloud')])
    (root / 'no_metadata').mkdir()  # a directory that is not a rosbag2 (no metadata.yaml)
    return root


@pytest.fixture(scope='module')
def input_bag(tmp_path_factory):
    """Export a real (tiny) input bag, so the recording is what fails."""
    out = tmp_path_factory.mktemp('hostile_input') / 'in'
    export_bag(out, seed=3, num_frames=2, rate_hz=15.0, width=32, height=24, gt_points=2000,
               progress=False)
    return out


def _one_error_line(err: str, prefix: str) -> str:
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def keep_signal_handlers():
    """``nova3r_bag play`` installs SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _play(bag_dir) -> int:
    return bag_cli.main(['play', str(bag_dir), '--clock', '0', '--rate', '100'])


def test_play_good_bag_exits_zero(bags, capsys, keep_signal_handlers):
    assert _play(bags / 'good') == 0  # the damaged copies below fail for their damage only


@pytest.mark.parametrize('name, expected', [
    ('truncated', 'File end magic is invalid'),
    ('no_metadata', 'metadata file'),
])
def test_play_unreadable_bag(bags, capsys, keep_signal_handlers, name, expected):
    assert _play(bags / name) == 2
    line = _one_error_line(capsys.readouterr().err, 'nova3r_bag play: error:')
    assert f'cannot read bag {bags / name}: ' in line and expected in line


def test_play_mislabelled_topic(bags, capsys, keep_signal_handlers):
    assert _play(bags / 'mislabelled') == 2
    line = _one_error_line(capsys.readouterr().err, 'nova3r_bag play: error:')
    assert f'first message on {IMAGE_TOPIC} is not a valid sensor_msgs/msg/Image' in line


def test_play_wrong_but_valid_type_is_played(bags, capsys, keep_signal_handlers, tmp_path):
    """
    Check that the player publishes a String topic and the subscriber side rejects it by type.

    A String topic is a valid bag (ros2 bag play plays it too). The summary counts what was
    sent.
    """
    summary = tmp_path / 'play.json'
    assert bag_cli.main(['play', str(bags / 'wrong_type'), '--clock', '0', '--rate', '100',
                         '--summary', str(summary)]) == 0
    assert '"sent": 3' in summary.read_text()


def _eval(input_dir, recording_dir, out) -> int:
    return eval_cli.main(['--bag-input', str(input_dir), '--bag-recording', str(recording_dir),
                          '--out', str(out), '--no-progress'])


@pytest.mark.parametrize('name, expected', [
    ('truncated', 'cannot read input bag'),
    ('no_metadata', 'cannot read input bag'),
    ('wrong_type', f'topic {IMAGE_TOPIC} has type std_msgs/msg/String, expected '
                   'sensor_msgs/msg/Image'),
    ('mislabelled', f'a message on {IMAGE_TOPIC} at 10000000 ns is not a valid '
                    'sensor_msgs/msg/Image'),
])
def test_eval_bad_input_bag(bags, capsys, tmp_path, name, expected):
    assert _eval(bags / name, bags / 'good', tmp_path / 'out') == 2
    line = _one_error_line(capsys.readouterr().err, 'nova3r_eval: error:')
    assert expected in line and str(bags / name) in line


@pytest.mark.parametrize('name, expected', [
    ('truncated', 'cannot read recording'),
    ('wrong_cloud', 'topic /nova3r/points has type std_msgs/msg/String, expected '
                    'sensor_msgs/msg/PointCloud2'),
    ('mislabelled_cloud', 'a message on /nova3r/points at 10000000 ns is not a valid '
                          'sensor_msgs/msg/PointCloud2'),
    ('good', 'has no /nova3r/points'),
])
def test_eval_bad_recording(bags, input_bag, capsys, tmp_path, name, expected):
    assert _eval(input_bag, bags / name, tmp_path / 'out') == 2
    line = _one_error_line(capsys.readouterr().err, 'nova3r_eval: error:')
    assert expected in line
