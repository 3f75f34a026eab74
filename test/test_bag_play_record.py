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

"""nova3r_bag play/record over real DDS: timing, /clock, recorded QoS, remaps, offsets, bytes."""

import threading
import time

from nova3r_ros.data.bag_export import export_bag
from nova3r_ros.ros import bag as bag_cli
from nova3r_ros.ros.player import BagPlayer, message_class, PlayOptions, qos_from_offered
from nova3r_ros.ros.recorder import BagRecorder, RecordOptions
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime as QT
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2

FRAMES, RATE_HZ = 8, 10.0  # a 0.7 s bag
IMAGE = '/camera/image_raw'


@pytest.fixture(scope='module')
def input_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp('play') / 'in'
    export_bag(out, seed=5, num_frames=FRAMES, rate_hz=RATE_HZ, width=48, height=36,
               gt_points=600, progress=False)
    raw = {}
    with Reader(out) as reader:
        for conn, ns, data in reader.messages():
            raw.setdefault(conn.topic, []).append((ns, bytes(data)))
    return out, raw


@pytest.fixture()
def ctx():
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def _spin_in_thread(context, nodes):
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, thread


def test_qos_from_offered_profiles():
    zero = QT(0, 0)
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                  QosDurability.TRANSIENT_LOCAL, zero, zero, QosLiveliness.AUTOMATIC, zero, False)
    q = qos_from_offered([latched])
    assert (q.durability, q.reliability, q.depth) == (
        DurabilityPolicy.TRANSIENT_LOCAL, ReliabilityPolicy.RELIABLE, 1)
    sensor = latched._replace(reliability=QosReliability.BEST_EFFORT,
                              durability=QosDurability.VOLATILE, depth=5)
    q = qos_from_offered([sensor])
    assert (q.durability, q.reliability, q.depth) == (
        DurabilityPolicy.VOLATILE, ReliabilityPolicy.BEST_EFFORT, 5)
    q = qos_from_offered([])
    assert (q.durability, q.reliability, q.depth) == (
        DurabilityPolicy.VOLATILE, ReliabilityPolicy.RELIABLE, 10)
    assert message_class('sensor_msgs/msg/Image').__name__ == 'Image'
    assert message_class('no_such_pkg/msg/Thing') is None
    with pytest.raises(ValueError, match='rate'):
        PlayOptions(rate=0).validate()
    nan = float('nan')  # passes a plain `< 0` test: a NaN delay or duration never ends
    for bad in ({'rate': nan}, {'delay': nan}, {'clock_hz': nan}, {'wait_timeout': float('inf')}):
        with pytest.raises(ValueError, match='finite|rate'):
            PlayOptions(**bad).validate()
    for bad in ({'duration': nan}, {'linger': -1.0}):
        with pytest.raises(ValueError, match='finite'):
            RecordOptions(topics={'/x': 'std_msgs/msg/String'}, **bad).validate()


def test_play_record_timing_bytes_clock_and_latched(input_bag, ctx, tmp_path):
    bag, raw = input_bag
    rec_node = rclpy.create_node('rec', context=ctx)
    play_node = rclpy.create_node('play', context=ctx)
    recorder = BagRecorder(rec_node, tmp_path / 'rec', RecordOptions(
        topics={'/image': 'sensor_msgs/msg/Image'}))
    recorder.start()
    clocks = []
    rec_node.create_subscription(Clock, '/clock', lambda m: clocks.append(
        (time.monotonic(), m.clock.sec * 10**9 + m.clock.nanosec)),
        QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    stop, thread = _spin_in_thread(ctx, [rec_node])
    rate = 2.0
    player = BagPlayer(play_node, bag, PlayOptions(
        rate=rate, clock_hz=100.0, remaps={IMAGE: '/image'}, wait_for={'/image': 1, '/clock': 1},
        wait_timeout=20))
    summary = player.play()
    time.sleep(0.5)
    # Latched GT: a subscriber created after playback still gets it (transient local).
    got_gt = []
    rec_node.create_subscription(PointCloud2, '/gt/points', got_gt.append, QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
        reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 10
    while not got_gt and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    counts = recorder.close()

    bag_s = (raw[IMAGE][-1][0] - raw['/tf_static'][0][0]) / 1e9
    assert summary['wall_s'] == pytest.approx(bag_s / rate, abs=0.25)
    assert summary['topics'][IMAGE]['sent'] == FRAMES
    assert summary['topics'][IMAGE]['published_as'] == '/image'
    assert summary['topics']['/gt/points']['transient_local']
    tf_missing = message_class('tf2_msgs/msg/TFMessage') is None
    assert ('/tf' in summary['skipped_topics']) == tf_missing
    assert counts == {'/image': FRAMES}
    # Re-published serialized: the recorded CDR bytes are the bag's bytes.
    with Reader(tmp_path / 'rec') as reader:
        recorded = [bytes(d) for _, _, d in reader.messages()]
    assert recorded == [d for _, d in raw[IMAGE]]
    assert len(got_gt) == 1 and got_gt[0].width == 600
    # /clock: bag time advancing at `rate` x wall time, starting at the bag start.
    walls, stamps = np.array([c[0] for c in clocks]), np.array([c[1] for c in clocks])
    assert stamps[0] == raw['/tf_static'][0][0]
    assert (np.diff(stamps) >= 0).all() and len(clocks) > 20
    slope = np.polyfit(walls - walls[0], (stamps - stamps[0]) / 1e9, 1)[0]
    assert slope == pytest.approx(rate, rel=0.1)


def test_start_offset_keeps_latched_and_skips_earlier_frames(input_bag, ctx):
    bag, raw = input_bag
    node = rclpy.create_node('play_offset', context=ctx)
    offset = 0.35  # s: frames at 0.0 .. 0.3 are skipped
    summary = BagPlayer(node, bag, PlayOptions(rate=4.0, start_offset=offset,
                                               clock_hz=0)).play()
    start = raw['/tf_static'][0][0]
    expected = sum(ns >= start + offset * 1e9 for ns, _ in raw[IMAGE])
    assert 0 < expected < FRAMES
    assert summary['topics'][IMAGE]['sent'] == expected
    assert summary['topics']['/gt/points']['sent'] == 1
    with pytest.raises(ValueError, match='not in the bag'):
        BagPlayer(node, bag, PlayOptions(topics=['/nope']))


def test_recorder_stops_after_clock_silence_and_duration(ctx, tmp_path):
    node = rclpy.create_node('rec_stop', context=ctx)
    rec = BagRecorder(node, tmp_path / 'a', RecordOptions(
        topics={'/x': 'std_msgs/msg/String'}, clock_silence=0.2, linger=0.3))
    rec.start()
    assert not rec.done()  # no /clock seen yet: never "ended"
    rec._on_clock(None)
    time.sleep(0.25)
    assert not rec.done()  # silent, but lingering
    time.sleep(0.35)
    assert rec.done()
    assert rec.close() == {'/x': 0}
    rec = BagRecorder(node, tmp_path / 'b', RecordOptions(
        topics={'/x': 'std_msgs/msg/String'}, duration=0.2))
    rec.start()
    time.sleep(0.25)
    assert rec.done()
    rec.close()
    with pytest.raises(ValueError, match='exists'):
        BagRecorder(node, tmp_path / 'b', RecordOptions(topics={'/x': 'std_msgs/msg/String'}))
    with pytest.raises(ValueError, match='not importable'):
        RecordOptions(topics={'/x': 'nope/msg/X'}).validate()


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bag_cli.main(['--help'])
    assert exc.value.code == 0
    assert 'play' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bag_cli.main(['play', str(tmp_path), '--remap', 'no_separator'])
    assert bag_cli.main(['play', str(tmp_path / 'missing'), '--clock', '0']) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_loop_replays_until_stopped_and_sqlite3_plays(input_bag, ctx, tmp_path):
    bag, raw = input_bag
    node = rclpy.create_node('play_loop', context=ctx)
    player = BagPlayer(node, bag, PlayOptions(rate=4.0, loop=True, clock_hz=0,
                                              topics=[IMAGE]))
    stopper = threading.Timer(0.4, lambda: setattr(player, 'stop', True))  # ~2 bag lengths
    stopper.start()
    summary = player.play()
    stopper.join()
    assert summary['interrupted'] and summary['loops'] >= 2
    assert summary['topics'][IMAGE]['sent'] > FRAMES
    assert set(summary['topics']) == {IMAGE}
    lite = tmp_path / 'lite'
    export_bag(lite, seed=5, num_frames=3, rate_hz=RATE_HZ, width=32, height=24,
               storage='sqlite3', gt_points=100, progress=False)
    summary = BagPlayer(node, lite, PlayOptions(rate=4.0, clock_hz=0)).play()
    assert summary['topics'][IMAGE]['sent'] == 3
    assert summary['topics']['/gt/points']['sent'] == 1
