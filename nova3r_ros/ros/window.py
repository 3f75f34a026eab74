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
Keyframe windows and the newest-wins hand-off to the inference worker (ROS-free).

A *keyframe* is a synchronized set of C views (one per camera). ``WindowBuilder`` keeps the
last ``window_size`` keyframes and emits a ``Window`` every ``window_stride`` keyframes, so a
window holds C x ``window_size`` views (at most ``MAX_VIEWS`` = 8, the model's limit).

View order inside a window (the model's view order): keyframes oldest first, and inside one
keyframe by camera index. View 1 is therefore camera 0 of the oldest keyframe; the output cloud
is expressed in its optical frame and carries its ``frame_id`` and stamp. Ordering by keyframe
rather than by each view's own stamp keeps camera 0 first even when a synchronized partner
was captured a few milliseconds earlier (within the sync slop).

``LatestWindowSlot`` is the single-slot buffer between the executor thread (producer) and the
inference worker (consumer): a new window replaces a pending one, which is counted as dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
import threading
from typing import Any

import numpy as np

MAX_VIEWS = 8  # views per window the model accepts
TF_CACHE_S = 10.0  # tf2 BufferCore default cache time, seconds
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class View:
    """
    One camera's frame inside a keyframe, not yet decoded.

    Attributes
    ----------
    stamp_ns
        acquisition stamp (header stamp) in integer nanoseconds.
    frame_id
        the camera's optical frame (header frame_id).
    camera_index
        0..C-1, position of the camera in the ``image_topics`` list.
    payload
        the raw image (message or bytes), decoded later in the worker.
    depth
        optional raw depth image registered to this camera, decoded later.
    camera_info
        optional CameraInfo (or intrinsics) for this camera.

    """

    stamp_ns: int
    frame_id: str
    camera_index: int
    payload: Any
    depth: Any = None
    camera_info: Any = None


@dataclass(frozen=True)
class Window:
    """
    ``window_size`` keyframes of C views each, in model view order (see module docstring).

    Attributes
    ----------
    views
        C x window_size views; ``views[0]`` is view 1.
    keyframe_stamps_ns
        each keyframe's stamp (earliest of its views), oldest first.
    num_cameras
        C.
    sequence
        0-based count of windows emitted by the builder (resets do not restart it).

    """

    views: tuple[View, ...]
    keyframe_stamps_ns: tuple[int, ...]
    num_cameras: int
    sequence: int

    @property
    def view1(self) -> View:
        """Return the reference view: camera 0 of the oldest keyframe."""
        return self.views[0]

    @property
    def span_ns(self) -> int:
        """Newest minus oldest view stamp, nanoseconds."""
        stamps = [view.stamp_ns for view in self.views]
        return max(stamps) - min(stamps)

    @property
    def span_s(self) -> float:
        """Newest minus oldest view stamp, seconds (for reporting only)."""
        return self.span_ns / NS_PER_S

    @property
    def newest_stamp_ns(self) -> int:
        """Stamp of the newest view, nanoseconds."""
        return max(view.stamp_ns for view in self.views)


@dataclass(frozen=True)
class PushResult:
    """What ``WindowBuilder.push`` did: a window when one is due, and whether time went back."""

    window: Window | None
    time_reset: bool = False


def tf_cache_warning(
    span_s: float, processing_s: float, cache_s: float = TF_CACHE_S, fraction: float = 0.5
) -> str | None:
    """
    Return a warning text when window span + processing exceeds ``fraction`` of the TF cache.

    The cloud is stamped with view 1's stamp, so consumers look TF up that far in the past;
    past tf2's cache (10 s by default) they fail with "extrapolation into the past".
    Returns None when the margin is fine.
    """
    total_s = span_s + processing_s
    if total_s <= fraction * cache_s:
        return None
    return (
        f'window span {span_s:.2f} s + processing {processing_s:.2f} s = {total_s:.2f} s is '
        f'over {fraction:.0%} of the {cache_s:.0f} s TF cache: consumers may fail to transform '
        'the cloud (lower window_size or the keyframe max_interval)'
    )


class WindowBuilder:
    """
    Collects keyframes and emits windows of ``window_size`` every ``window_stride``.

    With N keyframes pushed since the last reset, the number of windows emitted is
    ``0 if N < window_size else 1 + (N - window_size) // window_stride``.

    Not thread-safe: push from one thread only (the one that runs keyframe selection).

    Parameters
    ----------
    window_size
        keyframes per window (>= 1).
    window_stride
        keyframes between the starts of consecutive windows (>= 1).
    num_cameras
        views per keyframe C (>= 1); C x window_size must be <= 8.

    """

    def __init__(self, window_size: int, window_stride: int = 1, num_cameras: int = 1) -> None:
        for name, value in (('window_size', window_size), ('window_stride', window_stride),
                            ('num_cameras', num_cameras)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
        if num_cameras * window_size > MAX_VIEWS:
            raise ValueError(
                f'num_cameras x window_size = {num_cameras} x {window_size} = '
                f'{num_cameras * window_size} views, but the model takes at most {MAX_VIEWS} '
                'views per window: lower window_size or use fewer cameras'
            )
        self.window_size = int(window_size)
        self.window_stride = int(window_stride)
        self.num_cameras = int(num_cameras)
        self._keyframes: deque[tuple[int, tuple[View, ...]]] = deque(maxlen=self.window_size)
        self._count = 0  # keyframes since the last reset
        self.windows_emitted = 0
        self.keyframes_pushed = 0
        self.resets = 0

    def reset(self) -> None:
        """Drop the buffered keyframes; the next window needs ``window_size`` new ones."""
        self._keyframes.clear()
        self._count = 0

    @property
    def buffered(self) -> int:
        """Keyframes currently held (at most ``window_size``)."""
        return len(self._keyframes)

    def push(self, keyframe: Sequence[View]) -> PushResult:
        """
        Add one keyframe (C views, one per camera, any order); maybe emit a window.

        A keyframe stamped earlier than the newest buffered one (bag loop, simulator reset)
        clears the buffer first and sets ``time_reset``; it then starts the new sequence.
        Raises ValueError for a keyframe that does not hold exactly one view per camera.
        """
        views = self._validated(keyframe)
        stamp_ns = min(view.stamp_ns for view in views)
        time_reset = bool(self._keyframes) and stamp_ns < self._keyframes[-1][0]
        if time_reset:
            self.resets += 1
            self.reset()
        self._keyframes.append((stamp_ns, views))
        self._count += 1
        self.keyframes_pushed += 1
        due = (self._count >= self.window_size
               and (self._count - self.window_size) % self.window_stride == 0)
        if not due:
            return PushResult(None, time_reset)
        window = Window(
            views=tuple(view for _, kf_views in self._keyframes for view in kf_views),
            keyframe_stamps_ns=tuple(stamp for stamp, _ in self._keyframes),
            num_cameras=self.num_cameras,
            sequence=self.windows_emitted,
        )
        self.windows_emitted += 1
        return PushResult(window, time_reset)

    def _validated(self, keyframe: Sequence[View]) -> tuple[View, ...]:
        if len(keyframe) != self.num_cameras:
            raise ValueError(
                f'a keyframe needs {self.num_cameras} views (one per camera), got {len(keyframe)}'
            )
        for view in keyframe:
            if not isinstance(view, View):
                raise ValueError(f'keyframe items must be View, got {type(view).__name__}')
            stamp = view.stamp_ns
            if isinstance(stamp, bool) or not isinstance(stamp, int | np.integer):
                raise ValueError(
                    f'View.stamp_ns must be integer nanoseconds, got {type(stamp).__name__}'
                )
        views = tuple(sorted(keyframe, key=lambda view: view.camera_index))
        indices = [view.camera_index for view in views]
        if indices != list(range(self.num_cameras)):
            raise ValueError(
                f'a keyframe needs camera indices 0..{self.num_cameras - 1} once each, '
                f'got {indices}'
            )
        return views


@dataclass(frozen=True)
class SlotStats:
    """Counters of a ``LatestWindowSlot``: offered = run + dropped + pending always."""

    offered: int
    run: int
    dropped: int
    pending: int


class LatestWindowSlot:
    """
    Thread-safe single-slot, newest-wins hand-off from the executor to the worker.

    ``put`` never blocks (safe in a subscription callback); ``get`` blocks the worker until a
    window arrives, the timeout passes or the slot is closed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self._waiting = 0  # get() calls blocked right now
        self._offered = 0
        self._run = 0
        self._dropped = 0

    def put(self, item: Any) -> bool:
        """
        Offer a window; returns True when it replaced (dropped) a pending one.

        After ``close`` the item is discarded and counted as dropped. ``None`` is refused
        (ValueError): ``get`` uses it to mean "nothing" (timeout or closed).
        """
        if item is None:
            raise ValueError('LatestWindowSlot.put(None): None is reserved for "no window"')
        with self._cond:
            self._offered += 1
            if self._closed:
                self._dropped += 1
                return False
            replaced = self._has_item
            if replaced:
                self._dropped += 1
            self._item = item
            self._has_item = True
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> Any:
        """
        Return the pending window (counted as run), or None on timeout or once closed.

        Parameters
        ----------
        timeout
            seconds to wait; None waits until a window arrives or ``close``.

        """
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._has_item or self._closed, timeout=timeout)
            finally:
                self._waiting -= 1
            if self._closed or not self._has_item:
                return None
            item = self._item
            self._item = None
            self._has_item = False
            self._run += 1
            return item

    def clear(self) -> bool:
        """Drop the pending window (counted as dropped); True when there was one."""
        with self._cond:
            return self._drop_pending()

    def _drop_pending(self) -> bool:
        # caller holds self._cond
        if not self._has_item:
            return False
        self._item = None
        self._has_item = False
        self._dropped += 1
        return True

    def close(self) -> None:
        """Wake every waiting ``get`` (returns None) for shutdown; a pending window is dropped."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._drop_pending()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Return True after ``close``."""
        with self._cond:
            return self._closed

    @property
    def worker_waiting(self) -> bool:
        """Return True while a ``get`` is blocked waiting (the worker is idle), for diagnostics."""
        with self._cond:
            return self._waiting > 0

    def stats(self) -> SlotStats:
        """Return a consistent snapshot of the counters."""
        with self._cond:
            return SlotStats(self._offered, self._run, self._dropped, int(self._has_item))
