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
Keyframe intake: bad frames, time going backwards, depth cleaning, windows into the slot.

Drives ``KeyframeIntake.handle`` directly with real sensor_msgs messages (no DDS), so every
bad-input case is deterministic.
"""

import array

from doubles import RecordingLogger
from nova3r_ros.ros import msgs
from nova3r_ros.ros.intake import camera_info_intrinsics, camera_info_problem, KeyframeIntake
from nova3r_ros.ros.keyframes import KeyframeSelector
from nova3r_ros.ros.window import LatestWindowSlot, WindowBuilder
import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

NS = 1_000_000_000


def header(stamp_ns, frame='cam0_optical'):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    return h


def image(stamp_ns, shape=(24, 32), frame='cam0_optical', value=None, seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.integers(0, 256, (*shape, 3), dtype=np.uint8) if value is None
            else np.full((*shape, 3), value, np.uint8))
    return msgs.numpy_to_image_msg(data, 'rgb8', header(stamp_ns, frame))


def make_intake(num_cameras=1, window_size=2, with_depth=False, info=None):
    logger = RecordingLogger()
    slot = LatestWindowSlot()
    intake = KeyframeIntake(num_cameras, with_depth,
                            KeyframeSelector(min_interval=0.0, max_interval=1.0,
                                             change_threshold=0.0),
                            WindowBuilder(window_size, 1, num_cameras), slot,
                            lambda: info, logger)
    return intake, slot, logger


def test_good_frames_make_windows_with_view1_first():
    intake, slot, _ = make_intake(num_cameras=2)
    for i in range(3):
        intake.handle((image(i * NS // 10, seed=i), image(i * NS // 10 + 5, frame='cam1',
                                                          seed=i + 9)), received_ns=i)
    assert intake.keyframes == 3 and intake.windows == 2 and intake.bad_frames == 0
    window = slot.get(timeout=0)
    assert window.view1.frame_id == 'cam0_optical' and window.view1.stamp_ns == NS // 10
    assert [v.camera_index for v in window.views] == [0, 1, 0, 1]
    assert window.views[0].payload.rgb.shape == (24, 32, 3)
    assert slot.stats().dropped == 1  # the first window was replaced by the newest


def _bad_image(encoding='rgb8', height=24, width=32, step=None, nbytes=None):
    msg = Image(header=header(NS), encoding=encoding, height=height, width=width,
                step=width * 3 if step is None else step)
    size = msg.step * height if nbytes is None else nbytes
    msg.data = array.array('B', bytes(size))
    return msg


def test_unknown_encoding_zero_size_and_buffer_mismatch_are_dropped_and_counted():
    intake, slot, logger = make_intake(window_size=1)
    intake.handle((_bad_image(encoding='yuv422_weird'),), 0)
    intake.handle((_bad_image(height=0, width=0, nbytes=0),), 0)
    intake.handle((_bad_image(nbytes=100),), 0)
    assert intake.bad_frames == 3 and intake.windows == 0
    assert 'yuv422_weird' in intake.last_bad_frame or any(
        'yuv422_weird' in m for _, m in logger.records)
    assert slot.stats().offered == 0
    intake.handle((image(2 * NS),), 0)  # the next good frame still works
    assert intake.windows == 1


def test_bad_second_camera_drops_the_whole_set():
    intake, slot, _ = make_intake(num_cameras=2, window_size=1)
    intake.handle((image(NS), _bad_image(nbytes=10)), 0)
    assert intake.bad_frames == 1 and intake.keyframes == 0 and slot.stats().offered == 0


def test_different_sizes_across_cameras_are_kept_per_view():
    intake, slot, _ = make_intake(num_cameras=2, window_size=1)
    intake.handle((image(NS, shape=(24, 32)), image(NS, shape=(60, 40), frame='cam1')), 0)
    window = slot.get(timeout=0)
    assert [v.payload.rgb.shape for v in window.views] == [(24, 32, 3), (60, 40, 3)]


def test_time_going_backwards_resets_buffers_and_resumes():
    intake, slot, logger = make_intake(window_size=2)
    for t in (10, 11, 12):
        intake.handle((image(t * NS, seed=t),), 0)
    assert intake.windows == 2 and slot.stats().pending == 1  # the worker has not taken it
    intake.handle((image(1 * NS, seed=1),), 0)  # bag loop
    assert intake.time_resets == 1
    assert intake.windows == 2  # the buffer was cleared: no window mixes old and new frames
    # nor does a window of the old timeline publish after the jump
    assert slot.stats().pending == 0 and slot.get(timeout=0) is None
    assert any('pending window dropped' in m for _, m in logger.records)
    intake.handle((image(2 * NS, seed=2),), 0)
    assert intake.windows == 3
    window = slot.get(timeout=0)
    assert [v.stamp_ns for v in window.views] == [1 * NS, 2 * NS]


def depth(stamp_ns, shape=(24, 32)):
    data = np.full(shape, 2.0, np.float32)
    return msgs.numpy_to_image_msg(data, '32FC1', header(stamp_ns))


def test_a_late_synchronized_match_is_dropped_not_taken_for_a_time_jump():
    """An older set emitted late by ApproximateTime is dropped; only a real jump resets."""
    from nova3r_ros.ros import sync

    intake, slot, logger = make_intake(window_size=2, with_depth=True)
    filters = [sync.SimpleFilter(), sync.SimpleFilter()]
    synchronizer = sync.ApproximateTimeSynchronizer(filters, 10, 0.05)
    guard = sync.TimeJumpGuard(synchronizer, 2)
    synchronizer.registerCallback(lambda *m: intake.handle(m, 0, guard.resets))
    ms = NS // 1000

    def arrive(index, msg):
        guard.check(index, msg)
        filters[index].signalMessage(msg)

    # colour at 0 and 33 ms, then depth at 17.5 and 34.2 ms: the greedy match pairs the
    # 33 ms image first, then the 0 ms one with the 34.2 ms depth (within the 50 ms slop)
    arrive(0, image(0, seed=0))
    arrive(0, image(33 * ms, seed=1))
    arrive(1, depth(17 * ms + ms // 2))
    arrive(1, depth(34 * ms + ms // 5))
    assert intake.sets_processed == 2
    assert intake.time_resets == 0 and intake.sets_out_of_order == 1
    assert not any('time went backwards' in m for _, m in logger.records)
    assert any('late ApproximateTime match' in m for _, m in logger.records)
    # later sets carry on in the same buffers
    arrive(0, image(100 * ms, seed=2))
    arrive(1, depth(101 * ms))
    assert intake.time_resets == 0 and intake.keyframes == 2 and intake.windows == 1
    # a real jump (an input's own stamps go back) still resets
    arrive(0, image(5 * ms, seed=3))
    arrive(1, depth(6 * ms))
    assert guard.resets >= 1 and intake.time_resets == 1


def test_without_a_synchronizer_any_older_set_is_a_time_jump():
    intake, _, _ = make_intake(window_size=2, num_cameras=2)
    intake.handle((image(2 * NS), image(2 * NS, frame='cam1')), 0, 0)
    intake.handle((image(NS), image(NS, frame='cam1')), 0, 1)  # an input went back: reset
    assert intake.time_resets == 1 and intake.sets_out_of_order == 0
    intake.handle((image(NS // 2), image(NS // 2, frame='cam1')), 0, 1)  # same count: late
    assert intake.time_resets == 1 and intake.sets_out_of_order == 1
    single, _, _ = make_intake(window_size=2)
    single.handle((image(2 * NS),), 0)
    single.handle((image(NS),), 0)  # one input, no synchronizer: stamps in order or a jump
    assert single.time_resets == 1 and single.sets_out_of_order == 0


def test_repeated_stamps_and_frame_ids_that_would_mislead_are_reported():
    intake, _, logger = make_intake(window_size=2)
    for _ in range(3):  # a driver that never stamps: one keyframe, then nothing
        intake.handle((image(5 * NS, seed=1),), 0)
    assert intake.keyframes == 1 and intake.duplicate_stamps == 2
    assert any('stamps repeat' in m for _, m in logger.records)
    assert intake.view1_frame_id == 'cam0_optical'
    assert not any('frame' in m and 'optical' in m for _, m in logger.records)
    for t, frame in ((6, 'camera'), (7, 'camera'), (8, '')):
        intake.handle((image(t * NS, frame=frame, seed=t),), 0)
    warnings = [m for _, m in logger.records if 'cloud' in m]
    assert len(warnings) == 2  # once per distinct frame id, not per frame
    assert "'camera' does not look like an optical frame" in warnings[0]
    assert 'empty header.frame_id' in warnings[1]
    assert intake.view1_frame_id == ''


def test_depth_nan_inf_negative_become_invalid_and_intrinsics_attached():
    info = CameraInfo(width=32, height=24)
    info.k = [30.0, 0.0, 15.5, 0.0, 30.0, 11.5, 0.0, 0.0, 1.0]
    intake, slot, _ = make_intake(window_size=1, with_depth=True, info=info)
    depth = np.full((24, 32), 2.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, np.inf, -1.0, 0.0
    depth_msg = msgs.numpy_to_image_msg(depth, '32FC1', header(NS))
    intake.handle((image(NS), depth_msg), 0)
    frame = slot.get(timeout=0).view1.payload
    assert np.all(np.isfinite(frame.depth))
    np.testing.assert_array_equal(frame.depth[0, :4], 0.0)
    assert frame.depth[5, 5] == 2.0
    assert frame.intrinsics_size == (32, 24) and frame.intrinsics[0, 2] == 15.5
    # a depth image with an unsupported encoding drops the set
    bad_depth = msgs.numpy_to_image_msg(np.zeros((24, 32, 3), np.uint8), 'rgb8', header(2 * NS))
    intake.handle((image(2 * NS), bad_depth), 0)
    assert intake.bad_frames == 1


def test_camera_info_validation():
    assert camera_info_intrinsics(None) is None
    assert camera_info_intrinsics(CameraInfo(width=32, height=24)) is None  # K all zero
    info = CameraInfo(width=32, height=24)
    info.k = [30.0, 0.0, 15.5, 0.0, 30.0, 11.5, 0.0, 0.0, 1.0]
    k, size = camera_info_intrinsics(info)
    assert size == (32, 24) and k[1, 1] == 30.0
    assert camera_info_problem(info) is None
    assert 'no positive focal' in camera_info_problem(CameraInfo(width=32, height=24))
    nan_k = CameraInfo(width=32, height=24)
    nan_k.k = [float('nan')] + list(info.k[1:])
    assert 'NaN' in camera_info_problem(nan_k)
    no_size = CameraInfo()
    no_size.k = info.k
    assert 'no image size (0x0)' in camera_info_problem(no_size)


def test_an_unusable_camera_info_is_reported_once_and_cleared_when_fixed():
    good = CameraInfo(width=32, height=24)
    good.k = [30.0, 0.0, 15.5, 0.0, 30.0, 11.5, 0.0, 0.0, 1.0]
    current = {'info': CameraInfo(width=32, height=24)}  # K all zero: used to pass silently
    logger = RecordingLogger()
    intake = KeyframeIntake(1, False, KeyframeSelector(min_interval=0.0, max_interval=1.0,
                                                       change_threshold=0.0),
                            WindowBuilder(1, 1, 1), LatestWindowSlot(), lambda: current['info'],
                            logger)
    for t in (1, 2):
        intake.handle((image(t * NS, seed=t),), 0)
    assert 'no positive focal length' in intake.camera_info_problem
    assert sum('no intrinsics' in m for _, m in logger.records) == 1
    current['info'] = good
    intake.handle((image(3 * NS, seed=3),), 0)
    assert intake.camera_info_problem == '' and intake.windows == 3


def test_a_frame_id_change_never_mixes_frames_in_a_window():
    intake, slot, logger = make_intake(window_size=2)
    for t in (1, 2):
        intake.handle((image(t * NS, frame='left_optical', seed=t),), 0)
    assert intake.windows == 1 and intake.frame_changes == 0
    intake.handle((image(3 * NS, frame='right_optical', seed=3),), 0)
    assert intake.frame_changes == 1 and intake.windows == 1  # left + right never paired
    assert any("'left_optical' -> 'right_optical'" in m for _, m in logger.records)
    intake.handle((image(4 * NS, frame='right_optical', seed=4),), 0)
    window = slot.get(timeout=0)
    assert intake.windows == 2 and {v.frame_id for v in window.views} == {'right_optical'}


def test_an_invalid_stamp_drops_the_set_and_a_foreign_depth_frame_warns():
    intake, slot, logger = make_intake(window_size=1, with_depth=True)
    depth = np.full((24, 32), 2.0, np.float32)
    bad = image(NS)
    bad.header.stamp.nanosec = 3_000_000_000  # would be normalised to 3 s later
    intake.handle((bad, msgs.numpy_to_image_msg(depth, '32FC1', header(NS))), 0)
    assert intake.bad_frames == 1 and intake.keyframes == 0
    assert 'nanosec 3000000000 is not in [0, 1e9)' in intake.last_bad_frame
    bad_depth = msgs.numpy_to_image_msg(depth, '32FC1', header(NS))
    bad_depth.header.stamp.nanosec = 1_000_000_000
    intake.handle((image(NS), bad_depth), 0)
    assert intake.bad_frames == 2 and intake.last_bad_frame.startswith('depth image')
    before_epoch = image(NS)
    before_epoch.header.stamp.sec = -1  # int32 allows it; rclpy's Time refuses it
    intake.handle((before_epoch, msgs.numpy_to_image_msg(depth, '32FC1', header(NS))), 0)
    assert intake.bad_frames == 3 and 'sec -1 is negative' in intake.last_bad_frame
    unregistered = msgs.numpy_to_image_msg(depth, '32FC1', header(2 * NS, 'cam0_depth_optical'))
    intake.handle((image(2 * NS), unregistered), 0)
    assert intake.windows == 1 and slot.get(timeout=0).view1.payload.depth is not None
    assert any("depth frame_id 'cam0_depth_optical' differs" in m for _, m in logger.records)


def test_offer_is_bounded_and_thread_processes():
    intake, slot, _ = make_intake(window_size=1)
    for i in range(10):
        intake.offer((image((i + 1) * NS, seed=i),), i)
    assert intake.sets_offered == 10 and intake.sets_dropped == 6  # queue of 4, oldest dropped
    intake.start()
    deadline = __import__('time').monotonic() + 20
    while intake.sets_processed < 4 and __import__('time').monotonic() < deadline:
        __import__('time').sleep(0.01)
    assert intake.stop(timeout=5)
    assert intake.sets_processed == 4 and intake.windows == 4
    assert slot.get(timeout=0).view1.stamp_ns == 10 * NS  # the newest set made the window


def test_a_frame_the_model_cannot_take_is_dropped_once_not_in_every_window():
    from functools import partial

    from nova3r_ros.model import get_preset
    from nova3r_ros.model.preprocess import input_size_problem

    logger = RecordingLogger()
    slot = LatestWindowSlot()
    intake = KeyframeIntake(1, False, KeyframeSelector(min_interval=0.0, max_interval=1.0,
                                                       change_threshold=0.0),
                            WindowBuilder(2, 1, 1), slot, lambda: None, logger,
                            input_check=partial(input_size_problem, cfg=get_preset('tiny')))
    intake.handle((image(1 * NS, seed=1),), 0)
    intake.handle((image(2 * NS, shape=(4, 400), seed=2),), 0)  # a strip: no crop can fit it
    assert intake.bad_frames == 1 and 'not a model input' in intake.last_bad_frame
    assert intake.keyframes == 1 and intake.windows == 0
    intake.handle((image(3 * NS, seed=3),), 0)
    window = slot.get(timeout=0)  # the next good frame pairs with the first: no failed window
    assert [v.stamp_ns for v in window.views] == [1 * NS, 3 * NS]
