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
Acceptance over real DDS: one camera replayed like a looping bag, with sim time.

The camera topics are remapped (``image:=/cam/image_raw``, ``camera_info:=/cam/camera_info``),
their best-effort publishers appear only after the node subscribed (BEST_AVAILABLE must still
match both), stamps jump back
(bag loop) -> buffers reset, no crash, clouds resume; ``use_sim_time`` makes output age come
from /clock, not the wall clock.
"""

from nova3r_ros.ros.node_harness import Probe, start_node, stop_node
import numpy as np
import pytest
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

NS = 1_000_000_000
SIM_START_NS = 1000 * NS


def _images(i):
    rng = np.random.default_rng(100 + i)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)]


@pytest.mark.slow
def test_single_camera_time_jump_back_resets_and_resumes(micro_checkpoint, tmp_path):
    log = tmp_path / 'node.log'
    process = start_node({
        'checkpoint': str(micro_checkpoint), 'use_sim_time': True, 'window_size': 2,
        'keyframe_min_interval': 0.0, 'keyframe_change_threshold': 0.0, 'num_points': 256,
        'num_steps': 2, 'diagnostics_period': 0.5,
    }, remaps={'image': '/cam/image_raw', 'camera_info': '/cam/camera_info'}, log_path=log)
    rclpy.init()
    probe = Probe(image_topics=())
    try:
        assert probe.wait_for(lambda: probe.diagnostics_count > 0, 90), log.read_text()
        assert probe.wait_for(lambda: probe.count_subscribers('/cam/image_raw') > 0, 10)
        # The camera driver starts after the node (best-effort, like most drivers).
        probe.image_pubs = [probe.create_publisher(Image, '/cam/image_raw',
                                                   qos_profile_sensor_data)]
        # ... and so does its CameraInfo, with the image's QoS (as image_transport does)
        info_pub = probe.create_publisher(CameraInfo, '/cam/camera_info',
                                          qos_profile_sensor_data)
        info = CameraInfo(width=128, height=96, k=[100.0, 0.0, 64.0, 0.0, 100.0, 48.0, 0.0,
                                                   0.0, 1.0])
        assert probe.wait_for(lambda: (info_pub.publish(info), probe.counter(
            'inputs', 'camera_info received') > 0)[1], 15), 'camera_info never matched'
        frame_ids = ('camera_optical',)
        first = probe.stream(10.0, 4.0, SIM_START_NS, _images, frame_ids, clock=True)
        probe.spin_for(1.5)
        before_jump = list(probe.clouds)
        assert before_jump, log.read_text()
        # bag loop: time jumps back to the start and plays again
        second = probe.stream(10.0, 4.0, SIM_START_NS + NS // 20, _images, frame_ids,
                              clock=True)
        probe.spin_for(1.5)
        after_jump = probe.clouds[len(before_jump):]
        assert process.poll() is None
        assert probe.counter('inputs', 'time resets') >= 1
        assert after_jump, 'no clouds after the time jump: the node did not resume'
        assert any(c.stamp_ns < max(first) for c in after_jump)  # clouds from the new loop
        assert {c.stamp_ns for c in after_jump} <= set(first) | set(second)
        assert all(c.finite and c.frame_id == 'camera_optical' for c in probe.clouds)
        # output age = /clock at publish - view-1 stamp: seconds, not ~1.7e9 s of wall time
        age_p50_ms = float(probe.value('output', 'output age p50 [ms]'))
        assert -1000.0 < age_p50_ms < 5000.0
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        code, output = stop_node(process)
    text = log.read_text()
    assert code == 0, output + text
    assert 'time went backwards' in text and 're-subscribing' in text
    assert 'Traceback' not in text
