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
Acceptance over real DDS: the node in its own process with a micro checkpoint.

Two synchronized cameras -> clouds, runtime parameters, a camera that stops, clean SIGTERM.
"""

import signal

from nova3r_ros.io.pointcloud import FLOAT32, UINT8
from nova3r_ros.ros.node_harness import Probe, start_node, stop_node
import numpy as np
import pytest
import rclpy

NS = 1_000_000_000
FRAME_IDS = ('cam0_optical', 'cam1_optical')
START_NS = 1_700_000_000 * NS


def _images(i):
    rng = np.random.default_rng(i)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]


@pytest.mark.slow
def test_two_cameras_clouds_parameters_stall_and_sigterm(micro_checkpoint, tmp_path):
    log = tmp_path / 'node.log'
    process = start_node({
        'checkpoint': str(micro_checkpoint), 'image_topics': ['cam0', 'cam1'],
        'window_size': 2, 'window_stride': 1, 'keyframe_min_interval': 0.0,
        'keyframe_change_threshold': 0.0, 'num_points': 512, 'num_steps': 2,
        'slop': 0.01, 'stale_input_timeout': 1.0, 'diagnostics_period': 0.5,
    }, log_path=log)
    rclpy.init()
    probe = Probe(('cam0', 'cam1'))
    try:
        assert probe.wait_for(lambda: probe.diagnostics_count > 0, 90), log.read_text()
        assert probe.wait_for(lambda: probe.count_subscribers('cam0') > 0
                              and probe.count_subscribers('cam1') > 0, 10)

        # ---- 2 cameras, 30 Hz, 10 s ----------------------------------------------------------
        stamps = probe.stream(30.0, 10.0, START_NS, _images, FRAME_IDS)
        probe.spin_for(3.0)  # last window finishes, fresh diagnostics arrive
        clouds = list(probe.clouds)
        assert len(clouds) >= 5, log.read_text()
        published = set(stamps)
        for cloud in clouds:
            assert cloud.finite and cloud.is_dense
            assert cloud.frame_id == 'cam0_optical'  # view 1 = camera 0, never "map"
            assert cloud.stamp_ns in published  # a view-1 stamp, never now()
            assert cloud.fields['visibility'] == (12, UINT8) and cloud.point_step == 16
            assert cloud.fields['x'] == (0, FLOAT32) and cloud.width == 512
        assert sorted(c.stamp_ns for c in clouds) == [c.stamp_ns for c in clouds]
        assert len({c.stamp_ns for c in clouds}) == len(clouds)
        assert len(probe.occluded) >= 1 and all(c.visible == 0 for c in probe.occluded)

        # ---- window accounting --------------------------------------------------------------
        sets = probe.counter('inputs', 'sets synchronized')
        keyframes = probe.counter('inputs', 'keyframes')
        intake_dropped = probe.counter('inputs', 'frame sets dropped (intake busy)')
        formed = probe.counter('inference', 'windows formed')
        run = probe.counter('inference', 'windows run')
        dropped = probe.counter('inference', 'windows dropped')
        pending = probe.counter('inference', 'windows pending')
        done = probe.counter('inference', 'windows published')
        possible = len(stamps) - 2 + 1  # window_size 2, stride 1, every set a keyframe
        assert 0 < sets <= len(stamps)
        assert keyframes == sets - intake_dropped
        assert formed == keyframes - 1 <= possible
        assert run + dropped + pending == formed
        assert len(clouds) <= done <= run
        assert probe.counter('inputs', 'bad frames') == 0
        assert probe.last_hardware_id

        # ---- runtime parameters -------------------------------------------------------------
        results = probe.set_parameters({'num_points': 300})
        assert results[0].successful
        rejected = probe.set_parameters({'scale_mode': 'depth'})
        assert not rejected[0].successful and 'depth_topic' in rejected[0].reason
        out_of_range = probe.set_parameters({'num_points': 0})
        assert not out_of_range[0].successful
        read_only = probe.set_parameters({'window_size': 1})
        assert not read_only[0].successful
        before = len(probe.clouds)
        probe.stream(30.0, 3.0, stamps[-1] + NS, _images, FRAME_IDS)
        probe.spin_for(1.5)
        later = probe.clouds[before:]
        assert later and later[-1].width == 300

        # ---- camera 1 stops: node warns and stays alive -------------------------------------
        probe.stream(30.0, 3.0, stamps[-1] + 10 * NS, _images, FRAME_IDS, cameras=[0])
        probe.spin_for(1.0)
        level, message, _ = probe.diagnostics['inputs']
        assert level == 1 and 'cam1 stopped' in message
        assert process.poll() is None
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        code, output = stop_node(process, sig=signal.SIGTERM)
    assert code == 0, output + log.read_text()
    assert 'Traceback' not in log.read_text()
