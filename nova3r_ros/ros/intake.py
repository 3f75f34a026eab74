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
From synchronized message sets to keyframe windows, on a thread of its own.

Subscription callbacks only call ``offer`` (stamp the steady receive time, append to a bounded
drop-oldest queue: a few microseconds). This thread then, per set:

1. runs the keyframe selector on camera 0 (decoding camera 0 only when the selector may need
   the image, ``KeyframeSelector.wants_image``); with several cameras the rig moves as one, so
   camera 0 decides for the whole set;
2. a stamp earlier than the previous one (bag loop, simulator reset) clears the selector and the
   window buffer, counted in ``time_resets`` and logged (throttled); so does a change of camera
   0's ``frame_id`` (``frame_changes``: a window's views must share view 1's frame); a stamp
   that is not a valid time (negative ``sec``, ``nanosec`` >= 1e9) drops the set;
3. decodes the other cameras and the depth image of a keyframe (a bad one drops the set, counted
   in ``bad_frames``), attaches camera 0's latest CameraInfo;
4. pushes the keyframe to the ``WindowBuilder`` and a due window into the newest-wins slot.

Decoding (JPEG/PNG, colour conversion) therefore never runs on the executor thread; resizing to
the model input happens in the inference worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
import threading
import time
from typing import Any

from nova3r_ros.ros import msgs
from nova3r_ros.ros.keyframes import KeyframeSelector
from nova3r_ros.ros.pipeline import Frame
from nova3r_ros.ros.sync import stamp_ns, stamp_problem
from nova3r_ros.ros.window import LatestWindowSlot, tf_cache_warning, View, WindowBuilder
import numpy as np

LOG_THROTTLE_S = 5.0


def camera_info_problem(info: Any) -> str | None:
    """Why a received CameraInfo cannot give intrinsics (logged and on diagnostics), or None."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)):
        return 'camera_info K holds NaN or Inf'
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        return f'camera_info K has no positive focal length (fx {k[0, 0]:g}, fy {k[1, 1]:g})'
    if int(info.width) <= 0 or int(info.height) <= 0:
        return f'camera_info has no image size ({int(info.width)}x{int(info.height)})'
    return None


def camera_info_intrinsics(info: Any) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(K (3, 3) float64, (width, height)) from a CameraInfo, or None if unusable."""
    if info is None or camera_info_problem(info) is not None:
        return None
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    return k, (int(info.width), int(info.height))


def frame_id_problem(frame_id: str) -> str | None:
    """
    Why view 1's ``frame_id`` would mislead the cloud's users, or None when it looks right.

    The cloud is published in this frame in the optical convention (x right, y down, z
    forward). An empty id cannot be placed by tf2 or RViz; a body-convention camera frame
    (REP-103: x forward; v4l2_camera's ``camera``, usb_cam's ``default_cam``) turns the cloud
    by 90 degrees for every consumer that trusts it.
    """
    if not frame_id.strip():
        return ('camera 0 images have an empty header.frame_id: the cloud cannot be placed '
                "(tf2/RViz); set the driver's frame_id to the camera's optical frame")
    if 'optical' not in frame_id.lower():
        return (f'camera 0 frame {frame_id!r} does not look like an optical frame; the cloud '
                'uses the optical convention (x right, y down, z forward): publish images in '
                'the optical frame or the cloud will appear rotated')
    return None


class KeyframeIntake:
    """
    Owns the keyframe selector and window builder; feeds ``slot``.

    Parameters
    ----------
    num_cameras
        C (message sets hold C images, then the depth image if ``with_depth``).
    selector, builder, slot
        the ROS-free stages (this thread is their only user).
    get_camera_info
        returns camera 0's latest CameraInfo (or None).
    logger
        rclpy logger.
    queue_length
        sets waiting for this thread; the oldest is dropped when full.
    expected_latency_s
        used for the TF-cache margin warning.

    """

    def __init__(self, num_cameras: int, with_depth: bool, selector: KeyframeSelector,
                 builder: WindowBuilder, slot: LatestWindowSlot,
                 get_camera_info: Callable[[], Any], logger: Any,
                 queue_length: int = 4,
                 input_check: Callable[[int, int], str | None] | None = None) -> None:
        self.num_cameras = int(num_cameras)
        # (width, height) -> why the model cannot take that image, or None: an odd frame is
        # dropped here once instead of failing every window it would sit in
        self._input_check = input_check
        self.with_depth = bool(with_depth)
        self.selector = selector
        self.builder = builder
        self.slot = slot
        self._get_camera_info = get_camera_info
        self._logger = logger
        self._queue: deque[tuple[tuple, int, int | None]] = deque()
        self._queue_length = int(queue_length)
        self._cond = threading.Condition()
        self._closed = False
        self.lock = threading.Lock()  # held while the selector/builder are in use
        self._thread: threading.Thread | None = None
        self.expected_latency_s = 0.0
        self.sets_offered = 0
        self.sets_dropped = 0  # this thread fell behind (queue full)
        self.sets_processed = 0
        self.keyframes = 0
        self.windows = 0
        self.bad_frames = 0
        self.time_resets = 0
        self.frame_changes = 0  # camera 0's frame_id changed: buffers cleared
        self.camera_info_problem = ''  # why the latest CameraInfo is unusable ('' = fine)
        self.last_bad_frame = ''
        self.last_span_s = 0.0
        self._last_stamp_ns: int | None = None
        self.duplicate_stamps = 0  # sets whose view-1 stamp equals the previous one's
        self.sets_out_of_order = 0  # synchronized sets older than the last, no time jump
        self._last_time_jumps: int | None = None
        self.view1_frame_id: str | None = None  # of the latest set (checked once per value)

    # ---- producer side (executor thread) ------------------------------------------------------
    def offer(self, messages: Sequence[Any], received_ns: int,
              time_jumps: int | None = None) -> None:
        """
        Queue one set (C images [+ depth]); never blocks.

        ``time_jumps``: with a synchronizer, how many times an input's own stamps have gone
        backwards so far (``sync.TimeJumpGuard.resets``); None for a single input.
        """
        with self._cond:
            self.sets_offered += 1
            if len(self._queue) >= self._queue_length:
                self._queue.popleft()
                self.sets_dropped += 1
            self._queue.append((tuple(messages), received_ns, time_jumps))
            self._cond.notify()

    # ---- thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name='nova3r_intake', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                item = self._queue.popleft()
            try:
                with self.lock:
                    self.handle(*item)
            except Exception as exc:  # noqa: BLE001 - never let the thread die on one set
                self.bad_frames += 1
                self.last_bad_frame = f'{type(exc).__name__}: {exc}'
                self._logger.error(f'frame set dropped: {self.last_bad_frame}',
                                   throttle_duration_sec=LOG_THROTTLE_S)

    def reject(self, what: str, exc: Exception) -> None:
        """Count and log one dropped frame (the node also calls it, for stamps it stops early)."""
        self.bad_frames += 1
        self.last_bad_frame = f'{what}: {exc}'
        self._logger.warning(f'bad frame dropped ({self.last_bad_frame})',
                             throttle_duration_sec=LOG_THROTTLE_S)

    def _time_reset(self, stamp: int) -> None:
        self.time_resets += 1
        self.selector.reset()
        self.builder.reset()
        # a window from before the jump would publish a stamp from the old timeline
        pending = ', the pending window dropped' if self.slot.clear() else ''
        self._logger.warning(
            f'time went backwards ({self._last_stamp_ns} -> {stamp} ns: bag loop or sim '
            f'reset): keyframe and window buffers cleared{pending} (reset #{self.time_resets})',
            throttle_duration_sec=LOG_THROTTLE_S)

    def _frame_change(self, old: str, new: str) -> None:
        self.frame_changes += 1
        self.selector.reset()
        self.builder.reset()
        self._logger.warning(
            f'camera 0 frame_id changed ({old!r} -> {new!r}): a window never mixes frames, '
            f'keyframe and window buffers cleared (change #{self.frame_changes})',
            throttle_duration_sec=LOG_THROTTLE_S)

    def handle(self, messages: tuple, received_ns: int, time_jumps: int | None = None) -> None:
        """
        Process one set (called by the thread; tests may call it directly).

        A synchronized set older than the last one is a time jump only when an input's own
        stamps went back (``time_jumps`` grew). Otherwise ApproximateTime merely emitted an
        older match late (it matches greedily around the newest message, so e.g. a depth
        stream faster than the colour one can pair an earlier image after a later one): that
        set is dropped and counted, and the buffers stay.
        """
        self.sets_processed += 1
        images = messages[:self.num_cameras]
        depth_msg = messages[self.num_cameras] if self.with_depth else None
        for index, msg in enumerate(messages):
            problem = stamp_problem(msg.header.stamp)
            if problem:
                name = 'depth image' if index == self.num_cameras else f'camera {index} image'
                self.reject(name, ValueError(f'{problem}: not a valid time'))
                return
        stamps = [stamp_ns(m.header.stamp) for m in images]
        stamp = stamps[0]
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:
            if time_jumps is not None and time_jumps == self._last_time_jumps:
                self.sets_out_of_order += 1
                self._logger.info(
                    f'synchronized set {self._last_stamp_ns - stamp} ns older than the last '
                    'one (late ApproximateTime match, not a time jump): dropped',
                    throttle_duration_sec=LOG_THROTTLE_S)
                return
            self._time_reset(stamp)
        self._last_time_jumps = time_jumps
        if stamp == self._last_stamp_ns:
            self.duplicate_stamps += 1
            self._logger.warning(
                'camera 0 stamps repeat (a driver that does not stamp its frames?): a frame '
                'with the previous stamp is never a keyframe', throttle_duration_sec=30.0)
        self._last_stamp_ns = stamp
        frame_id = images[0].header.frame_id
        if frame_id != self.view1_frame_id:  # checked once per change of frame id
            if self.view1_frame_id is not None:
                self._frame_change(self.view1_frame_id, frame_id)
            self.view1_frame_id = frame_id
            problem = frame_id_problem(frame_id)
            if problem:
                self._logger.warning(problem, throttle_duration_sec=30.0)
        rgb0 = None
        if self.selector.wants_image(stamp):
            try:
                rgb0 = msgs.any_image_to_rgb8(images[0])
            except ValueError as exc:
                self.reject(f'camera 0 image ({getattr(images[0], "encoding", "compressed")})',
                            exc)
                return
        decision = self.selector.update(stamp, rgb0)
        if not decision.is_keyframe:
            return
        frames = self._decode_keyframe(images, rgb0, depth_msg, received_ns)
        if frames is None:
            return
        views = [View(stamp_ns=s, frame_id=m.header.frame_id, camera_index=i, payload=f)
                 for i, (s, m, f) in enumerate(zip(stamps, images, frames, strict=True))]
        self.keyframes += 1
        result = self.builder.push(views)
        if result.window is None:
            return
        self.windows += 1
        self.last_span_s = result.window.span_s
        warning = tf_cache_warning(self.last_span_s, self.expected_latency_s)
        if warning:
            self._logger.warning(warning, throttle_duration_sec=30.0)
        self.slot.put(result.window)

    def _decode_keyframe(self, images: Sequence[Any], rgb0: np.ndarray | None,
                         depth_msg: Any, received_ns: int) -> list[Frame] | None:
        decoded = []
        for index, msg in enumerate(images):
            try:
                rgb = rgb0 if index == 0 and rgb0 is not None else msgs.any_image_to_rgb8(msg)
            except ValueError as exc:
                self.reject(f'camera {index} image', exc)
                return None
            problem = self._input_check(rgb.shape[1], rgb.shape[0]) if self._input_check else None
            if problem:
                self.reject(f'camera {index} image', ValueError(f'not a model input: {problem}'))
                return None
            decoded.append(rgb)
        depth = None
        if depth_msg is not None:
            try:
                depth = msgs.image_msg_to_depth(depth_msg)
            except ValueError as exc:
                self.reject('depth image', exc)
                return None
            # 0 = invalid everywhere; a 32FC1 image may still carry NaN/Inf/negative values.
            depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
            if depth_msg.header.frame_id != images[0].header.frame_id:
                self._logger.warning(
                    f"depth frame_id {depth_msg.header.frame_id!r} differs from camera 0's "
                    f'{images[0].header.frame_id!r}: the scale assumes a depth image '
                    'registered to camera 0 (e.g. aligned_depth_to_color)',
                    throttle_duration_sec=30.0)
        info = self._get_camera_info()
        problem = '' if info is None else camera_info_problem(info) or ''
        if problem != self.camera_info_problem:  # logged once per change
            self.camera_info_problem = problem
            if problem:
                self._logger.warning(f'{problem}: no intrinsics (depth scale and colour need '
                                     'them)', throttle_duration_sec=LOG_THROTTLE_S)
        intrinsics = None if problem else camera_info_intrinsics(info)
        frames = []
        for index, rgb in enumerate(decoded):
            extra = {}
            if index == 0:
                extra = {'depth': depth,
                         'intrinsics': None if intrinsics is None else intrinsics[0],
                         'intrinsics_size': None if intrinsics is None else intrinsics[1]}
            frames.append(Frame(rgb=rgb, received_ns=received_ns, **extra))
        return frames


def steady_ns() -> int:
    """Steady clock in ns (the receive stamp of a set)."""
    return time.monotonic_ns()
