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
Fault injection over real DDS (issue 12).

The node runs in its own process, a probe node drives it. Each test injects one fault and
asserts what the node does: it stays alive, keeps publishing later windows, counts the
fault on /diagnostics, and never publishes NaN.

Seven tests share one node (two cameras, one keyframe per window, micro checkpoint,
``use_sim_time`` with the probe publishing ``/clock``, ``window_timeout`` 1 s); each reads
counter deltas, so they also pass alone. The node process is started through a small wrapper
that patches ``worker.run_window`` to misbehave for windows whose view-1 frame_id asks for it
(``fault_raise``: raises; ``fault_hang``: blocks for ``HANG_S``), so worker faults are injected
over DDS without test hooks in the product. The restart test plays a bag with the project's
player and kills the node mid-bag.
"""

import hashlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from nova3r_ros.ros import msgs
from nova3r_ros.ros.node import stamp_msg
from nova3r_ros.ros.node_harness import node_command, Probe, stop_node
import numpy as np
import pytest
import rclpy
from rclpy.serialization import serialize_message
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header

pytestmark = pytest.mark.slow

NS = 1_000_000_000
FRAME_IDS = ('cam0_optical', 'cam1_optical')
HANG_S = 4.0  # an injected hang, > window_timeout
TIMEOUT_S = 1.0  # the node's window_timeout here
NUM_POINTS = 256
INJECT = f"""
import sys, time
from nova3r_ros.ros import node, worker
_run_window = worker.run_window
def run_window(model, window, settings):
    frame_id = window.view1.frame_id
    if frame_id == 'fault_raise':
        raise RuntimeError('injected model failure')
    if frame_id == 'fault_hang':
        time.sleep({HANG_S})
    return _run_window(model, window, settings)
worker.run_window = run_window
sys.exit(node.main(sys.argv[1:]))
"""
SHARED_PARAMS = {
    'image_topics': ['cam0', 'cam1'], 'window_size': 1, 'keyframe_min_interval': 0.2,
    'keyframe_max_interval': 1.0, 'keyframe_change_threshold': 0.01,
    'num_points': NUM_POINTS, 'num_steps': 2, 'slop': 0.01, 'stale_input_timeout': 1.0,
    'diagnostics_period': 0.25, 'window_timeout': TIMEOUT_S, 'use_sim_time': True,
    'torch_threads': 1,
}
_IMAGES: dict[tuple[int, int], list[np.ndarray]] = {}


def images(height=120, width=160):
    """Random frames (every one differs, so every frame past min_interval is a keyframe)."""
    if (height, width) not in _IMAGES:
        rng = np.random.default_rng(height * 1000 + width)
        _IMAGES[(height, width)] = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                                    for _ in range(8)]
    return _IMAGES[(height, width)]


def start_injected_node(params, log_path, env=None, cwd=None):
    cmd = node_command(params)
    cmd = [sys.executable, '-c', INJECT] + cmd[3:]  # python -m nova3r_ros.ros.node -> wrapper
    return subprocess.Popen(cmd, stdout=open(log_path, 'w'),  # noqa: SIM115
                            stderr=subprocess.STDOUT,
                            env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
                            cwd=cwd, text=True)


class Rig:
    """
    Start the shared node, the probe and a stamp allocator.

    Stamps only move on, except where a test jumps back on purpose.
    """

    def __init__(self, process, probe, log):
        self.process, self.probe, self.log = process, probe, log
        self.last_ns = 1_700_000_000 * NS

    def fresh(self, gap_s=1.0):
        return self.last_ns + int(gap_s * NS)

    def stream(self, seconds, start_ns, rate=30.0, size=(120, 160), frame_ids=FRAME_IDS,
               cameras=None, sizes=None):
        """Stream sets with /clock = stamp; ``sizes`` gives one (h, w) per camera."""
        per_camera = sizes or [size, size]

        def make(i):
            return [images(*hw)[i % 8] for hw in per_camera]
        stamps = self.probe.stream(rate, seconds, start_ns, make, frame_ids, cameras, clock=True)
        self.last_ns = stamps[-1]
        return stamps

    def publish_fault(self, frame_id):
        """
        Send one set whose window faults; return its stamp.

        Waits until the worker has taken that window (so no newer window replaces it in the
        newest-wins slot).
        """
        self.fresh_diagnostics()
        taken = self.probe.counter('inference', 'windows run')
        stamp = self.fresh(0.5)  # > keyframe_min_interval after the last frame: a keyframe
        frame = np.random.default_rng(stamp % 2**32).integers(0, 256, (120, 160, 3), np.uint8)
        self.probe.publish_set(stamp, [frame, frame], (frame_id, FRAME_IDS[1]), clock=True)
        self.last_ns = stamp
        assert self.probe.wait_for(
            lambda: self.probe.counter('inference', 'windows run') > taken, 5)
        return stamp

    def fresh_diagnostics(self, count=2):
        """Wait for ``count`` new /diagnostics messages (counters then include what was sent)."""
        target = self.probe.diagnostics_count + count
        assert self.probe.wait_for(lambda: self.probe.diagnostics_count >= target, 10)

    def counters(self):
        self.fresh_diagnostics()
        p = self.probe
        inference = ('windows formed', 'windows published', 'windows failed',
                     'windows timed out', 'late results discarded', 'windows dropped')
        values = {k: p.counter('inference', k) for k in inference}
        for key in ('time resets', 'bad frames', 'keyframes', 'frame sets dropped (intake busy)',
                    'cam0 received', 'cam1 received', 'sets synchronized'):
            values[key] = p.counter('inputs', key)
        return values

    def clouds_between(self, first_ns, last_ns):
        return [c for c in self.probe.clouds if first_ns <= c.stamp_ns <= last_ns]

    def assert_healthy(self):
        assert self.process.poll() is None, self.log.read_text()
        for cloud in self.probe.clouds + self.probe.occluded:
            assert cloud.finite and cloud.is_dense
        assert all(c.width == NUM_POINTS for c in self.probe.clouds)


@pytest.fixture(scope='module')
def rig(micro_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp('faults') / 'node.log'
    process = start_injected_node({'checkpoint': str(micro_checkpoint), **SHARED_PARAMS}, log)
    rclpy.init()
    probe = Probe(('cam0', 'cam1'))
    try:
        assert probe.wait_for(lambda: probe.diagnostics_count > 0, 90), log.read_text()
        assert probe.wait_for(lambda: probe.count_subscribers('cam0') > 0
                              and probe.count_subscribers('cam1') > 0, 10)
        rig = Rig(process, probe, log)
        rig.stream(1.0, rig.fresh())  # warm-up: first windows, model threads started
        yield rig
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        code, output = stop_node(process, sig=signal.SIGTERM)
        assert code == 0, output + log.read_text()
        assert 'Traceback' not in log.read_text()


def test_camera_stops_and_resumes(rig):
    before = rig.counters()
    first = rig.stream(1.5, rig.fresh())
    assert rig.probe.wait_for(lambda: rig.clouds_between(first[0], first[-1]), 5)
    stopped = rig.stream(2.5, rig.fresh(), cameras=[0])  # camera 1 goes silent
    rig.fresh_diagnostics()
    level, message, _ = rig.probe.diagnostics['inputs']
    assert level == 1 and 'cam1 stopped' in message
    assert not rig.clouds_between(stopped[0], stopped[-1])  # no set can be synchronized
    resumed = rig.stream(2.0, rig.fresh())
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(resumed[0], resumed[-1])) >= 2, 5)
    after = rig.counters()
    assert 'stopped' not in rig.probe.diagnostics['inputs'][1]
    assert after['cam0 received'] - before['cam0 received'] >= 0.8 * (
        len(first) + len(stopped) + len(resumed))
    assert after['time resets'] == before['time resets']
    rig.assert_healthy()


def test_burst_of_duplicate_stamps(rig):
    before = rig.counters()
    lead = rig.stream(1.0, rig.fresh())
    duplicate = rig.fresh(0.5)
    for i in range(30):  # a driver re-sending one frame: 30 sets with one stamp
        rig.probe.publish_set(duplicate, [images()[i % 8]] * 2, FRAME_IDS, clock=True)
        rig.probe.spin_for(0.005)
    rig.last_ns = duplicate
    tail = rig.stream(1.5, rig.fresh(0.1))
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(tail[0], tail[-1])) >= 2, 5)
    after = rig.counters()
    assert after['time resets'] == before['time resets']  # equal stamps are not time going back
    assert len([c for c in rig.probe.clouds if c.stamp_ns == duplicate]) <= 1
    stamps = [c.stamp_ns for c in rig.clouds_between(lead[0], tail[-1])]
    assert stamps == sorted(set(stamps))  # one cloud per stamp, in order
    rig.assert_healthy()


def test_stamps_from_the_future(rig):
    before = rig.counters()
    present = rig.stream(1.0, rig.fresh())
    future = present[-1] + 3600 * NS  # a camera clock an hour ahead of /clock
    period = NS // 30
    for i in range(45):
        rig.probe.clock_pub.publish(Clock(clock=stamp_msg(present[-1] + i * period)))
        rig.probe.publish_set(future + i * period, images()[i % 2:i % 2 + 2], FRAME_IDS)
        rig.probe.spin_for(1 / 30)
    assert rig.probe.wait_for(
        lambda: rig.clouds_between(future, future + 45 * period), 5)  # published as stamped
    rig.fresh_diagnostics()
    level, message, values = rig.probe.diagnostics['output']
    assert level == 1 and 'ahead of the node clock' in message
    rig.last_ns = present[-1] + 46 * period
    back = rig.stream(1.5, rig.fresh(0.2))  # the camera clock is fixed: time goes back 1 h
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(back[0], back[-1])) >= 2, 5)
    after = rig.counters()
    assert after['time resets'] == before['time resets'] + 1
    assert 'ahead of the node clock' not in rig.probe.diagnostics['output'][1]
    rig.assert_healthy()


def test_sim_clock_jumps_backwards(rig):
    before = rig.counters()
    first = rig.stream(1.5, rig.fresh())
    diagnostics_before = rig.probe.diagnostics_count
    jumped = rig.stream(2.0, first[0] - 120 * NS)  # /clock and stamps reset 2 minutes back
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(jumped[0], jumped[-1])) >= 2, 5)
    assert rig.probe.diagnostics_count - diagnostics_before >= 4  # steady-clock timer kept on
    after = rig.counters()
    assert after['time resets'] == before['time resets'] + 1
    assert after['windows published'] > before['windows published']
    rig.assert_healthy()


def test_publisher_at_ten_times_the_rate(rig):
    before = rig.counters()
    flood = rig.stream(2.0, rig.fresh(), rate=300.0)
    calm = rig.stream(1.5, rig.fresh())
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(calm[0], calm[-1])) >= 2, 5)
    after = rig.counters()
    received = after['cam0 received'] - before['cam0 received']
    assert received >= 0.5 * (len(flood) + len(calm))
    span_s = (flood[-1] - flood[0]) / NS + (calm[-1] - calm[0]) / NS
    keyframes = after['keyframes'] - before['keyframes']
    assert keyframes <= span_s / 0.2 + 4  # keyframes follow stamps, not the message rate
    assert int(rig.probe.value('inference', 'windows pending')) <= 1
    assert rig.clouds_between(flood[0], flood[-1])
    rig.assert_healthy()


def test_resolution_switch_mid_stream(rig):
    before = rig.counters()
    phases = [{'sizes': [(120, 160), (120, 160)]}, {'sizes': [(240, 320), (240, 320)]},
              {'sizes': [(240, 320), (60, 80)]}, {'sizes': [(120, 160), (120, 160)]}]
    sent = [rig.stream(1.2, rig.fresh(0.3), **phase) for phase in phases]
    assert rig.probe.wait_for(lambda: rig.clouds_between(sent[-1][0], sent[-1][-1]), 5)
    for stamps in sent:
        assert rig.clouds_between(stamps[0], stamps[-1]), 'a phase produced no cloud'
    after = rig.counters()
    assert after['bad frames'] == before['bad frames']
    assert after['windows failed'] == before['windows failed']
    rig.assert_healthy()


def test_worker_raises_hangs_and_stalls_watchdog(rig):
    before = rig.counters()
    rig.stream(1.0, rig.fresh())
    # 1. the model raises for one window: counted as failed, the next windows publish
    raised = rig.publish_fault('fault_raise')
    after_raise = rig.stream(1.2, rig.fresh(0.3))
    assert rig.probe.wait_for(lambda: rig.clouds_between(after_raise[0], after_raise[-1]), 5)
    # 2. the model hangs (HANG_S) past window_timeout: abandoned, later windows publish,
    #    the late result is discarded
    hung = rig.publish_fault('fault_hang')
    during = rig.stream(HANG_S + 0.5, rig.fresh(0.3))
    assert rig.probe.wait_for(
        lambda: rig.probe.counter('inference', 'late results discarded')
        > before['late results discarded'], 5)
    published_during = rig.clouds_between(during[0], during[-1])
    assert len(published_during) >= 2
    assert min(c.received_s for c in published_during) < max(c.received_s for c in
                                                             published_during)
    mid = rig.counters()
    assert mid['windows failed'] == before['windows failed'] + 1
    assert mid['windows timed out'] == before['windows timed out'] + 1
    assert 'abandoned after window_timeout' in rig.probe.diagnostics['inference'][1]
    # 3. two hangs in a row: both threads abandoned -> stalled (ERROR), then it recovers
    for _ in range(2):  # the first is abandoned after TIMEOUT_S, then the second starts
        rig.publish_fault('fault_hang')
        rig.probe.spin_for(TIMEOUT_S + 0.2)
    assert rig.probe.wait_for(lambda: 'inference stalled' in
                              rig.probe.diagnostics['inference'][1], 3)
    assert rig.probe.diagnostics['inference'][0] == 2
    assert int(rig.probe.value('inference', 'hung model threads')) == 2
    recovered = rig.stream(HANG_S, rig.fresh(0.3))
    assert rig.probe.wait_for(lambda: len(rig.clouds_between(recovered[0], recovered[-1])) >= 2,
                              5)
    assert rig.probe.wait_for(lambda: rig.probe.value('inference', 'hung model threads') == '0',
                              5)
    after = rig.counters()
    assert after['windows timed out'] == before['windows timed out'] + 3
    assert after['late results discarded'] == before['late results discarded'] + 3
    assert rig.probe.diagnostics['inference'][0] < 2
    for stamp in (raised, hung):  # no cloud from a failed or abandoned window
        assert not [c for c in rig.probe.clouds if c.stamp_ns == stamp]
    rig.assert_healthy()


# ---- restart mid-bag -------------------------------------------------------------------------
def write_bag(path: Path, seconds: float, rate: float, start_ns: int) -> list[int]:
    """Write an MCAP bag of one 96x128 rgb8 camera on /image (random frames)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_JAZZY)
    frames = images(96, 128)
    stamps = [start_ns + int(i * NS / rate) for i in range(int(seconds * rate))]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/image', 'sensor_msgs/msg/Image', typestore=store)
        for i, stamp in enumerate(stamps):
            msg = msgs.numpy_to_image_msg(frames[i % 8], 'rgb8',
                                          Header(frame_id='bag_cam', stamp=stamp_msg(stamp)))
            writer.write(conn, stamp, serialize_message(msg))
    return stamps


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_node_restarted_mid_bag(micro_checkpoint, tmp_path):
    """
    Kill -9 the node while a bag plays, start it again: it publishes the rest of the bag.

    Nothing it reads was modified and the only files it wrote are logs (no state to corrupt).

    Runs on a DDS domain of its own so the shared node above never sees this bag's /clock.
    """
    from nova3r_ros.ros.player import BagPlayer, PlayOptions
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import PointCloud2

    bag = tmp_path / 'bag'
    stamps = write_bag(bag, seconds=30.0, rate=10.0, start_ns=1_600_000_000 * NS)
    sandbox = tmp_path / 'sandbox'  # the node's HOME, ROS_HOME, ROS_LOG_DIR and cwd
    for sub in ('home', 'ros_home', 'log', 'cwd'):
        (sandbox / sub).mkdir(parents=True)
    domain = 200 + os.getpid() % 30  # conftest domains are 100..199
    env = {'HOME': str(sandbox / 'home'), 'ROS_HOME': str(sandbox / 'ros_home'),
           'ROS_LOG_DIR': str(sandbox / 'log'), 'ROS_DOMAIN_ID': str(domain)}
    inputs_before = {**tree_digest(bag), **tree_digest(micro_checkpoint.parent)}
    params = {'checkpoint': str(micro_checkpoint), 'use_sim_time': True,
              'keyframe_min_interval': 0.3, 'keyframe_change_threshold': 0.0,
              'num_points': NUM_POINTS, 'num_steps': 2, 'camera_info_topic': '',
              'torch_threads': 1, 'diagnostics_period': 0.5}
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    listener = Node('fault_listener', context=context)
    clouds = []
    listener.create_subscription(PointCloud2, '/nova3r/points',
                                 lambda m: clouds.append(Probe._record(m)), 10)
    player_node = Node('fault_player', context=context)
    player = BagPlayer(player_node, bag, PlayOptions(clock_hz=40.0, wait_for={'/image': 1},
                                                     wait_timeout=90.0), log=lambda s: None)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    logs = [tmp_path / 'first.log', tmp_path / 'second.log']
    first = start_injected_node(params, logs[0], env, sandbox / 'cwd')
    second, code = None, None
    playing = threading.Thread(target=player.play, daemon=True)
    try:
        playing.start()
        assert _spin_until(executor, lambda: len(clouds) >= 3, 90), logs[0].read_text()
        first.send_signal(signal.SIGKILL)  # a crash mid-bag: no clean shutdown at all
        first.wait(10)
        killed_at = clouds[-1].stamp_ns
        second = start_injected_node(params, logs[1], env, sandbox / 'cwd')
        assert _spin_until(executor, lambda: len([c for c in clouds
                                                  if c.stamp_ns > killed_at]) >= 3, 60), \
            logs[1].read_text()
        assert playing.is_alive(), 'the bag ended before the restarted node published'
    finally:
        player.stop = True
        playing.join(10)
        if second is not None:
            code, _ = stop_node(second)
        if first.poll() is None:
            first.kill()
        executor.shutdown()
        listener.destroy_node()
        player_node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert code == 0, logs[1].read_text()
    later = [c for c in clouds if c.stamp_ns > killed_at]
    assert all(c.finite and c.width == NUM_POINTS and c.frame_id == 'bag_cam' for c in later)
    assert {c.stamp_ns for c in clouds} <= set(stamps)  # stamps come from the bag
    # nothing the node reads was modified, and it keeps no state on disk: the only files it
    # wrote (HOME, ROS_HOME, cwd and the log directory watched) are log files
    assert {**tree_digest(bag), **tree_digest(micro_checkpoint.parent)} == inputs_before
    written = [p.relative_to(sandbox) for p in sandbox.rglob('*') if p.is_file()]
    assert all(p.parts[0] == 'log' for p in written), written
    assert 'Traceback' not in logs[1].read_text()


def _spin_until(executor, predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()
