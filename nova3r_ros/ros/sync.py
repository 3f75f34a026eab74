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
message_filters-compatible time synchronizers (fallback when ``message_filters`` is absent).

The algorithm is the Python ``message_filters`` one (ros2/message_filters, jazzy), step by step
(see shared/reference/ros2-conventions.md §5); the C++ ApproximateTime policy is a different,
optimal algorithm, so results can differ from C++ nodes. ``ApproximateTimeSynchronizer.add``:

1. Headerless message: dropped (logged) unless ``allow_headerless``, then stamped "now".
2. Under a non-reentrant lock: ``queue[stamp_ns] = msg`` (a duplicate stamp overwrites, keeping
   its dict position), then the smallest stamps are evicted while ``len > queue_size`` (so a
   message older than everything in a full queue is dropped at once).
3. For every *other* input, collect stamps with ``|s - stamp| <= slop`` (inclusive), sorted by
   that delta (stable: ties keep queue insertion order). Any input without one: return.
4. ``itertools.product`` over those lists (nearest first per input), the new stamp inserted at
   its index; accept the first combination with ``max - min < slop`` (strict) whose stamps are
   all still queued.
5. Emit the set *while holding the lock*, delete the matched entries, stop. Unmatched older
   messages are not pruned; only ``queue_size`` eviction removes them.

Stamps are integer nanoseconds throughout (never floats); ``slop`` seconds become
``int(slop * 1e9)`` ns as ``rclpy.duration.Duration(seconds=slop)`` does. Messages only need
``header.stamp`` with ``sec``/``nanosec`` (rclpy, rosbags or test objects) or an rclpy ``Time``.

Differences from upstream, all additive: ``add(msg, index)`` accepts an input index as well as
the queue dict; headerless "now" comes from an injectable ``clock`` (default: system time, which
is what upstream's bare ``ROSClock()`` gives; pass the node clock to honour ``use_sim_time``);
per-input receive counters and ``check_stalled()`` for a periodic "not synchronized" warning.
``TimeJumpGuard`` (used by the node with either implementation) clears the queues when an
input's stamps go back, which upstream does not do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
import itertools
import logging
import math
import threading
import time

NS_PER_S = 1_000_000_000
_LOG = logging.getLogger(__name__)


def stamp_ns(stamp) -> int:
    """``builtin_interfaces/Time``-like (sec, nanosec) or rclpy ``Time`` -> int nanoseconds."""
    if hasattr(stamp, 'nanoseconds'):
        return int(stamp.nanoseconds)
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_problem(stamp) -> str | None:
    """
    Why a ``builtin_interfaces/Time`` is not a valid ROS time, or None when it is.

    Why: rclpy's ``Time`` (which ``message_filters`` builds from every stamp) raises on a
    negative ``sec``, and a ``nanosec`` of 1e9 or more would be read as a later second.
    """
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0:
        return f'header.stamp.sec {sec} is negative'
    if not 0 <= nanosec < NS_PER_S:
        return f'header.stamp.nanosec {nanosec} is not in [0, 1e9)'
    return None


def _has_stamp(msg) -> bool:
    return hasattr(msg, 'header') and hasattr(msg.header, 'stamp')


class SimpleFilter:
    """A message_filters filter: ``registerCallback(cb, *args)`` + ``signalMessage(*msgs)``."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable, tuple]] = {}

    def registerCallback(self, cb: Callable, *args) -> int:  # noqa: N802 - upstream name
        conn = len(self.callbacks)
        self.callbacks[conn] = (cb, args)
        return conn

    def signalMessage(self, *msg) -> None:  # noqa: N802 - upstream name
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


class Subscriber(SimpleFilter):
    """
    ``message_filters.Subscriber``: an rclpy subscription that signals every message.

    Like upstream, ``qos_profile`` defaults to 10 (RELIABLE, depth 10): pass
    ``qos_profile=qos_profile_sensor_data`` (or BEST_AVAILABLE) for camera topics.
    """

    def __init__(self, node, msg_type, topic: str, **kwargs) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        kwargs.setdefault('qos_profile', 10)
        self.sub = node.create_subscription(msg_type, topic, self.callback, **kwargs)

    def callback(self, msg) -> None:
        self.signalMessage(msg)

    def getTopic(self) -> str:  # noqa: N802 - upstream name
        return self.topic


@dataclass
class SyncStats:
    """Counters since construction (``received`` per input, ``emitted`` sets)."""

    received: list[int]
    emitted: int = 0
    headerless_dropped: int = 0
    last_emit_ns: int | None = None  # monotonic clock
    window: list[int] = field(default_factory=list)  # received per input since the last check
    window_emitted: int = 0


class TimeSynchronizer(SimpleFilter):
    """
    Exact-stamp synchronizer (``message_filters.TimeSynchronizer``).

    ``fs``: input filters (anything with ``registerCallback``), or ``[]`` / None with
    ``num_inputs`` to drive it through ``add(msg, index)`` directly.
    """

    def __init__(self, fs, queue_size: int, num_inputs: int | None = None,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__()
        if int(queue_size) < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size}')
        self.queue_size = int(queue_size)
        self.lock = threading.Lock()
        self._monotonic_ns = monotonic_ns
        fs = list(fs or [])
        count = len(fs) if fs else int(num_inputs or 0)
        if count < 1 or (fs and num_inputs is not None and num_inputs != len(fs)):
            raise ValueError('give the input filters, or num_inputs >= 1 without filters')
        self.queues: list[dict[int, object]] = [{} for _ in range(count)]
        self.stats = SyncStats(received=[0] * count, window=[0] * count)
        self._last_check_ns = monotonic_ns()
        self.input_connections = [
            f.registerCallback(self.add, q, i)
            for i, (f, q) in enumerate(zip(fs, self.queues[:len(fs)], strict=True))
        ]

    # ---- helpers shared by both synchronizers -----------------------------------------------
    def _resolve(self, my_queue, my_queue_index):
        if isinstance(my_queue, int) and not isinstance(my_queue, bool):
            return self.queues[my_queue], my_queue
        return my_queue, my_queue_index

    def _count_received(self, my_queue: dict) -> None:
        for index, queue in enumerate(self.queues):
            if queue is my_queue:
                self.stats.received[index] += 1
                self.stats.window[index] += 1
                return

    def _emit(self, msgs: list) -> None:
        # Called with self.lock held, as upstream does: callbacks must be quick.
        self.stats.emitted += 1
        self.stats.window_emitted += 1
        self.stats.last_emit_ns = self._monotonic_ns()
        self.signalMessage(*msgs)

    def _insert(self, my_queue: dict, key: int, msg) -> None:
        my_queue[key] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]

    def add(self, msg, my_queue, my_queue_index: int | None = None) -> None:
        """Queue ``msg`` (``my_queue``: the input's dict, or its index) and emit complete sets."""
        my_queue, my_queue_index = self._resolve(my_queue, my_queue_index)
        with self.lock:
            self._count_received(my_queue)
            self._insert(my_queue, stamp_ns(msg.header.stamp), msg)
            common = reduce(set.intersection, [set(q) for q in self.queues])
            for t in sorted(common):
                msgs = [q[t] for q in self.queues]
                self._emit(msgs)
                for q in self.queues:
                    del q[t]

    def check_stalled(self, period_s: float = 5.0, now_ns: int | None = None) -> str | None:
        """
        Periodic "not synchronized" check, meant for a diagnostics timer.

        Returns a warning text when inputs arrived but no set was emitted during the last
        ``period_s`` seconds (monotonic), else None; resets the window counters once a period
        has elapsed. Like image_transport's "not synchronized in last N s" message.
        """
        now_ns = self._monotonic_ns() if now_ns is None else now_ns
        with self.lock:
            elapsed = (now_ns - self._last_check_ns) / NS_PER_S
            if elapsed < period_s:
                return None
            window, emitted = list(self.stats.window), self.stats.window_emitted
            self.stats.window = [0] * len(window)
            self.stats.window_emitted = 0
            self._last_check_ns = now_ns
        if emitted == 0 and any(window):
            return (
                f'not synchronized in the last {elapsed:.1f} s: received '
                f'{"/".join(str(n) for n in window)} per input, 0 sets emitted'
            )
        return None


class ApproximateTimeSynchronizer(TimeSynchronizer):
    """
    ``message_filters.ApproximateTimeSynchronizer(fs, queue_size, slop, allow_headerless)``.

    slop: seconds (float). clock: () -> int ns used to stamp headerless messages.
    """

    def __init__(self, fs, queue_size: int, slop: float, allow_headerless: bool = False,
                 num_inputs: int | None = None, clock: Callable[[], int] = time.time_ns,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(fs, queue_size, num_inputs=num_inputs, monotonic_ns=monotonic_ns)
        if not math.isfinite(slop) or slop < 0:  # int(inf * 1e9) would be an OverflowError
            raise ValueError(f'slop must be a finite number >= 0 seconds, got {slop}')
        self.slop_ns = int(slop * NS_PER_S)  # as rclpy Duration(seconds=slop)
        self.allow_headerless = bool(allow_headerless)
        self._clock = clock

    def add(self, msg, my_queue, my_queue_index: int | None = None) -> None:
        """Queue ``msg`` and emit the first acceptable set that contains it (steps 1-5 above)."""
        my_queue, my_queue_index = self._resolve(my_queue, my_queue_index)
        if not _has_stamp(msg):
            if not self.allow_headerless:
                with self.lock:
                    self.stats.headerless_dropped += 1
                _LOG.info('message without header.stamp dropped (allow_headerless is False)')
                return
            stamp = int(self._clock())
        else:
            stamp = stamp_ns(msg.header.stamp)
        with self.lock:
            self._count_received(my_queue)
            self._insert(my_queue, stamp, msg)
            if my_queue_index is None:
                search_queues = self.queues
            else:
                search_queues = (self.queues[:my_queue_index]
                                 + self.queues[my_queue_index + 1:])
            candidates: list[list[int]] = []
            for queue in search_queues:
                near = [(s, abs(s - stamp)) for s in queue if abs(s - stamp) <= self.slop_ns]
                if not near:
                    return
                near.sort(key=lambda item: item[1])  # stable: ties keep insertion order
                candidates.append([s for s, _ in near])
            for combo in itertools.product(*candidates):
                stamps = list(combo)
                if my_queue_index is not None:
                    stamps.insert(my_queue_index, stamp)
                pairs = list(zip(self.queues, stamps, strict=True))
                if (max(stamps) - min(stamps) < self.slop_ns
                        and all(t in q for q, t in pairs)):
                    msgs = [q[t] for q, t in pairs]
                    self._emit(msgs)
                    for q, t in pairs:
                        del q[t]
                    break


class TimeJumpGuard:
    """
    Clear a synchronizer's queues when an input's stamps go backwards (bag loop, sim reset).

    Why: the synchronizer never prunes unmatched messages (upstream neither), so after a jump
    back the queues keep "future" leftovers; once a queue is full, every new (older) message is
    its smallest stamp and is evicted at once, and no set forms again. Works on this module's
    synchronizers and on ``message_filters``' (the same ``queues`` and ``lock``). Call
    ``check`` from the input callbacks, one at a time (the node's callback group is mutually
    exclusive), before the message reaches the synchronizer.
    """

    def __init__(self, sync, num_inputs: int) -> None:
        self.sync = sync
        self._last: list[int | None] = [None] * num_inputs
        self.resets = 0

    def check(self, index: int, msg) -> bool:
        """Return True when ``msg`` went back in time on input ``index`` (queues cleared)."""
        if not _has_stamp(msg):
            return False
        stamp = stamp_ns(msg.header.stamp)
        last, self._last[index] = self._last[index], stamp
        if last is None or stamp >= last:
            return False
        queues, lock = getattr(self.sync, 'queues', None), getattr(self.sync, 'lock', None)
        if queues is not None and lock is not None:  # else: a message_filters of another shape
            with lock:
                for queue in queues:
                    queue.clear()
        self._last = [None] * len(self._last)
        self._last[index] = stamp
        self.resets += 1
        return True
