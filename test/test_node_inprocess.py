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
The node object in-process (no second process).

Declared parameters, topics and QoS, runtime parameter handling, and a depth-scaled window
fed straight into the subscription callbacks.
"""

import time
from types import SimpleNamespace

from nova3r_ros.params import PARAMETERS
from nova3r_ros.ros import compat, msgs
from nova3r_ros.ros.diagnostics import level_of, values_of
from nova3r_ros.ros.node import stamp_msg
from nova3r_ros.ros.node_diagnostics import build_statuses
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

NS = 1_000_000_000


def test_declared_parameters_topics_and_qos(make_node):
    node = make_node()
    for spec in PARAMETERS:
        assert node.has_parameter(spec.name)
        desc = node.describe_parameter(spec.name)
        assert desc.description and desc.read_only == spec.read_only
    assert node.get_parameter('image_topics').value == ['image']
    publishers = {p.topic_name: p for p in node.publishers}
    for topic in ('/nova3r/points', '/nova3r/occluded_points'):
        qos = publishers[topic].qos_profile
        assert qos.reliability == ReliabilityPolicy.RELIABLE and qos.depth == 1
        assert qos.durability == DurabilityPolicy.VOLATILE
    assert '/diagnostics' in publishers
    subscriptions = {s.topic_name: s for s in node.subscriptions}
    assert {'/image', '/camera_info'} <= set(subscriptions)
    assert subscriptions['/image'].qos_profile.depth == 5
    assert node.sync is None  # one camera, no depth: no synchronizer


def test_runtime_parameters_apply_immediately_or_are_rejected(make_node):
    node = make_node()
    results = node.set_parameters([Parameter('num_points', value=77),
                                   Parameter('scale_mode', value='fixed'),
                                   Parameter('scale_factor', value=0.5)])
    assert all(r.successful for r in results)
    assert node.settings.num_points == 77 and node.settings.scale_mode == 'fixed'
    assert node.settings.scale_factor == 0.5
    bad = node.set_parameters([Parameter('scale_mode', value='depth')])[0]
    assert not bad.successful and 'depth_topic' in bad.reason
    assert node.settings.scale_mode == 'fixed'  # unchanged
    bad = node.set_parameters([Parameter('keyframe_min_interval', value=10.0)])[0]
    assert not bad.successful and 'keyframe_max_interval' in bad.reason
    assert node.set_parameters([Parameter('keyframe_change_threshold', value=0.3)])[0].successful
    assert node.intake.selector.change_threshold == 0.3
    assert not node.set_parameters([Parameter('checkpoint', value='/x')])[0].successful


def test_compressed_transport_subscribes_image_transport_names(make_node):
    node = make_node(image_topics=['cam_a', 'cam_b'], transport='compressed')
    names = {s.topic_name: s.msg_type for s in node.subscriptions}
    assert names['/cam_a/compressed'] is CompressedImage
    assert names['/cam_b/compressed'] is CompressedImage
    assert node.sync is not None and node.sync_backend in ('message_filters',
                                                           'nova3r_ros.sync')
    inputs = values_of({s.name: s for s in build_statuses(node).status}['nova3r: inputs'])
    assert inputs['sync'] == node.sync_backend
    assert inputs['image decoding'] == ('cv_bridge' if compat.HAVE_CV_BRIDGE else 'nova3r_ros.io')
    assert inputs['sets out of order (late matches, dropped)'] == '0'


def _callback(node, topic):
    return next(s.callback for s in node.subscriptions if s.topic_name == topic)


def test_depth_scaled_window_end_to_end(make_node):
    """Camera + registered depth + camera_info through the callbacks -> a metric cloud."""
    node = make_node(depth_topic='depth', window_size=1, keyframe_min_interval=0.0,
                     keyframe_change_threshold=0.0, num_points=2048, num_steps=2,
                     visibility_threshold=0.0, scale_min_pixels=5,
                     skip_without_subscribers=False)
    assert node.scale.mode == 'depth' and node.sync is not None
    published = []
    node.pub_points.publish = published.append
    info = CameraInfo(width=64, height=48)
    info.k = [40.0, 0.0, 31.5, 0.0, 40.0, 23.5, 0.0, 0.0, 1.0]
    _callback(node, '/camera_info')(info)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = np.full((48, 64), 1.5, np.float32)
    depth[:5] = np.nan  # invalid rows are ignored
    header = Header(frame_id='cam_optical', stamp=stamp_msg(5 * NS + 7))
    _callback(node, '/depth')(msgs.numpy_to_image_msg(depth, '32FC1', header))
    _callback(node, '/image')(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
    deadline = time.monotonic() + 60
    while not published and time.monotonic() < deadline:
        time.sleep(0.05)
    assert published, node.worker.last_error
    cloud = msgs.cloud_msg_to_points(published[0])
    assert published[0].header.frame_id == 'cam_optical'
    assert published[0].header.stamp.sec == 5 and published[0].header.stamp.nanosec == 7
    assert np.all(np.isfinite(cloud['points']))
    assert node.worker.last_scale.is_metric and node.worker.last_scale.scale > 0
    statuses = {s.name: s for s in build_statuses(node).status}
    output = statuses['nova3r: output']
    assert values_of(output)['metric'] == 'True' and level_of(output) == 0
    # depth_snap (default): the points in front of or on the 1.5 m wall were moved onto it
    snapped = int(values_of(output)['last snapped points'])
    assert snapped == node.worker.last_snapped and 0 < snapped <= 2048
    assert np.count_nonzero(np.isclose(cloud['points'][:, 2], 1.5, rtol=1e-5)) >= snapped
    assert all(s.hardware_id for s in statuses.values())
    assert values_of(statuses['nova3r: inference'])['windows published'] == '1'
    # the micro checkpoint has no confidence head: the density filter picks the points
    assert values_of(statuses['nova3r: inference'])['keep'] == 'density'


def test_colorize_without_usable_camera_info_warns_on_diagnostics(make_node):
    """The cloud lost its rgb field without a word when CameraInfo was missing or broken."""
    node = make_node(window_size=1, keyframe_min_interval=0.0, keyframe_change_threshold=0.0,
                     num_points=64, num_steps=1, colorize=True, skip_without_subscribers=False)
    published = []
    node.pub_points.publish = published.append
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    header = Header(frame_id='cam_optical', stamp=stamp_msg(5 * NS))
    _callback(node, '/image')(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
    deadline = time.monotonic() + 60
    while not published and time.monotonic() < deadline:
        time.sleep(0.05)
    assert published and 'rgb' not in [f.name for f in published[0].fields]
    inputs = next(s for s in build_statuses(node).status if s.name == 'nova3r: inputs')
    assert level_of(inputs) == 1 and 'no camera_info arrived' in inputs.message
    _callback(node, '/camera_info')(CameraInfo(width=64, height=48))  # K all zero
    header = Header(frame_id='cam_optical', stamp=stamp_msg(6 * NS))
    _callback(node, '/image')(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
    while len(published) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    inputs = next(s for s in build_statuses(node).status if s.name == 'nova3r: inputs')
    assert level_of(inputs) == 1 and 'no positive focal length' in inputs.message


def test_two_inputs_synchronize_again_after_time_goes_back(make_node):
    """A bag loop / sim reset with camera + depth at unequal rates: sets form again."""
    node = make_node(depth_topic='depth', queue_size=10, slop=0.05)
    assert node.sync is not None
    image_cb, depth_cb = _callback(node, '/image'), _callback(node, '/depth')
    rgb = np.zeros((8, 8, 3), np.uint8)
    depth = np.ones((8, 8), np.float32)

    def play(start_ms):
        before = node.sets_synced
        events = sorted([(start_ms + i * 33, 0) for i in range(60)]
                        + [(start_ms + i * 67 + 7, 1) for i in range(30)])
        for t_ms, index in events:
            header = Header(frame_id='cam_optical', stamp=stamp_msg(t_ms * 1_000_000))
            if index == 0:
                image_cb(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
            else:
                depth_cb(msgs.numpy_to_image_msg(depth, '32FC1', header))
        return node.sets_synced - before

    first = play(100_000)
    assert first >= 25
    assert [play(t) for t in (100_037, 0, 1_000)] == [first] * 3  # each one back in time
    inputs = values_of({s.name: s for s in build_statuses(node).status}['nova3r: inputs'])
    assert inputs['sync resets (time went backwards)'] == '3'


def test_an_invalid_stamp_never_reaches_the_synchronizer(make_node):
    """message_filters builds an rclpy Time from each stamp, which raises on sec < 0."""
    node = make_node(depth_topic='depth', queue_size=10, slop=0.05)
    image_cb, depth_cb = _callback(node, '/image'), _callback(node, '/depth')
    reached = []
    for flt in node._filters:
        flt.signalMessage = lambda msg, flt=flt: reached.append(msg)
    rgb = np.zeros((8, 8, 3), np.uint8)
    header = Header(frame_id='cam_optical', stamp=stamp_msg(NS))
    header.stamp.sec = -2
    image_cb(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
    header.stamp.sec, header.stamp.nanosec = 1, 1_500_000_000
    depth_cb(msgs.numpy_to_image_msg(np.ones((8, 8), np.float32), '32FC1', header))
    assert reached == [] and node.intake.bad_frames == 2
    assert 'nanosec 1500000000 is not in [0, 1e9)' in node.intake.last_bad_frame
    image_cb(msgs.numpy_to_image_msg(rgb, 'rgb8', Header(frame_id='c', stamp=stamp_msg(NS))))
    assert len(reached) == 1 and node.intake.bad_frames == 2


def test_incompatible_qos_shows_on_diagnostics(make_node):
    node = make_node(input_reliability='reliable')
    inputs = {s.name: s for s in build_statuses(node).status}['nova3r: inputs']
    assert values_of(inputs)['incompatible QoS events'] == '0'
    assert 'incompatible' not in inputs.message
    node._on_incompatible_qos(0, SimpleNamespace(last_policy_kind=1))  # a best-effort driver
    inputs = {s.name: s for s in build_statuses(node).status}['nova3r: inputs']
    assert values_of(inputs)['incompatible QoS events'] == '1' and level_of(inputs) == 1
    assert '1 publisher(s) with incompatible QoS' in inputs.message
    assert 'input_reliability:=best_available' in inputs.message


def test_empty_or_body_frame_id_is_a_diagnostics_warning(make_node):
    node = make_node()
    rgb = np.zeros((8, 8, 3), np.uint8)

    def inputs_after(frame_id, stamp_ns):
        header = Header(frame_id=frame_id, stamp=stamp_msg(stamp_ns))
        node.intake.handle((msgs.numpy_to_image_msg(rgb, 'rgb8', header),), 0)
        return {s.name: s for s in build_statuses(node).status}['nova3r: inputs']

    inputs = inputs_after('', NS)
    assert level_of(inputs) >= 1 and 'empty header.frame_id' in inputs.message
    # v4l2_camera's default: a body-convention frame, the cloud would be turned 90 degrees
    inputs = inputs_after('camera', 2 * NS)
    assert level_of(inputs) >= 1 and 'does not look like an optical frame' in inputs.message
    assert values_of(inputs)['camera 0 frame_id'] == 'camera'
    inputs = inputs_after('camera_optical_frame', 3 * NS)
    assert 'optical frame' not in inputs.message
    assert values_of(inputs)['camera 0 frame_id'] == 'camera_optical_frame'


def test_a_subscriber_the_clouds_cannot_reach_is_a_diagnostics_warning(make_node):
    """A reliable subscriber (RViz by default) never gets a best_effort output: WARN."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import PointCloud2

    node = make_node(output_reliability='best_effort')
    probe = rclpy.create_node('reliable_viewer')
    probe.create_subscription(PointCloud2, '/nova3r/points', lambda _msg: None,
                              QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    try:
        deadline = time.monotonic() + 10
        while not node.output_qos_incompatible and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.remove_node(node)
        executor.remove_node(probe)
        probe.destroy_node()
    assert node.output_qos_incompatible >= 1
    output = {s.name: s for s in build_statuses(node).status}['nova3r: output']
    assert level_of(output) == 1 and 'receive nothing' in output.message
    assert int(values_of(output)['incompatible QoS events (subscribers)']) >= 1


def test_an_input_under_min_input_rate_is_a_diagnostics_warning(make_node):
    from nova3r_ros.ros.diagnostics import RateMeter

    node = make_node(min_input_rate=10.0)
    now = [0]
    meter = RateMeter(monotonic_ns=lambda: now[0])
    node.input_meters[0] = meter

    def inputs_at(hz):
        for _ in range(int(6 * hz)):  # 6 s of frames at `hz`: the 5 s window holds only them
            now[0] += int(NS / hz)
            meter.tick()
        return {s.name: s for s in build_statuses(node).status}['nova3r: inputs']

    inputs = inputs_at(5.0)  # a camera throttled to half its rate
    assert level_of(inputs) >= 1 and 'at 5.0 Hz, under min_input_rate 10 Hz' in inputs.message
    assert 'under min_input_rate' not in inputs_at(9.5).message  # within the 10 % tolerance
    assert 'under min_input_rate' not in inputs_at(30.0).message
    assert node.set_parameters([Parameter('min_input_rate', value=0.0)])[0].successful
    assert 'under min_input_rate' not in inputs_at(1.0).message  # 0: unchecked


def test_normalized_output_is_flagged_not_metric(make_node):
    node = make_node()
    statuses = {s.name: s for s in build_statuses(node).status}
    output = statuses['nova3r: output']
    assert level_of(output) == 1 and 'not metres' in output.message
    assert values_of(output)['metric'] == 'False'
    inputs = statuses['nova3r: inputs']
    assert level_of(inputs) == 1 and 'no messages' in inputs.message


def test_precision_parameter_sets_the_model_and_shows_on_diagnostics(make_node):
    def inference(node):
        return values_of({s.name: s for s in build_statuses(node).status}['nova3r: inference'])

    default = make_node()
    assert default.model.precision == 'auto' and inference(default)['precision'] == 'fp32'
    bf16 = make_node(precision='bf16')  # opt-in on the CPU
    assert bf16.model.uses_bf16() and inference(bf16)['precision'] == 'bf16'
    with pytest.raises(ValueError, match='precision'):
        make_node(precision='fp16')
