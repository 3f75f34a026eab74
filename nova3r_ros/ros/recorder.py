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
Record topics to an MCAP rosbag2 with ``rosbags``, like ``ros2 bag record`` (serialized).

Subscriptions are ``raw=True`` (the callback gets the CDR bytes; nothing is deserialised) and
every message is written with its receive time on this node's clock as the log time (bag time
with ``use_sim_time``, like ``ros2 bag record --use-sim-time``). Subscriptions are reliable,
volatile, keep-last ``depth`` (they match reliable publishers, volatile or transient-local);
``best_effort=True`` for best-effort publishers.

Stopping (whichever comes first):
- ``duration`` wall seconds after recording started;
- SIGINT / SIGTERM (the CLI sets ``stop``);
- the player ended: once ``/clock`` has been seen, ``clock_silence`` wall seconds without a
  ``/clock`` message end recording, after ``linger`` more seconds (or as soon as ``linger``
  seconds pass with no recorded message) so the node's last output is still taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
from pathlib import Path
import threading
import time
from typing import Any

from nova3r_ros.ros.player import message_class
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from rosgraph_msgs.msg import Clock

DEFAULT_TOPICS = {
    '/nova3r/points': 'sensor_msgs/msg/PointCloud2',
    '/nova3r/occluded_points': 'sensor_msgs/msg/PointCloud2',
    '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
}


@dataclass
class RecordOptions:
    """Recording settings (module docstring). ``topics``: name -> ``pkg/msg/Type``."""

    topics: dict[str, str]
    duration: float = 0.0  # wall seconds, 0 = no limit
    clock_silence: float = 0.0  # wall seconds of /clock silence that mean "player ended"; 0 = off
    linger: float = 5.0  # wall seconds to keep recording after the player ended
    depth: int = 100
    best_effort: bool = False

    def validate(self) -> None:
        """Raise ValueError on impossible settings or unknown types."""
        if not self.topics:
            raise ValueError('no topics to record')
        for name in ('duration', 'clock_silence', 'linger'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):  # NaN would pass `< 0`
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')
        if self.depth < 1:
            raise ValueError(f'depth must be >= 1, got {self.depth}')
        for topic, msgtype in self.topics.items():
            if message_class(msgtype) is None:
                raise ValueError(f'{topic}: message type {msgtype!r} is not importable')


def _offered(reliable: bool) -> list[Qos]:
    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1,
                QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
                QosDurability.VOLATILE, zero, zero, QosLiveliness.AUTOMATIC, zero, False)]


class BagRecorder:
    """
    Subscribes on ``node`` and writes an MCAP bag at ``out`` (a directory that must not exist).

    ``start()`` opens the bag and subscribes; spin the node; ``done()`` says when a stop
    condition holds; ``close()`` writes the bag footer and returns counts per topic.
    """

    def __init__(self, node: Node, out: str | Path, options: RecordOptions,
                 log: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.node, self.out, self.options = node, Path(out), options
        if self.out.exists():
            raise ValueError(f'{self.out} exists; rosbag2 writes a new directory')
        self.log = log or node.get_logger().info
        self.stop = False
        self.counts = dict.fromkeys(options.topics, 0)
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._conns: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._started = 0.0
        self._last_clock: float | None = None
        self._player_ended_at: float | None = None

    def start(self) -> None:
        """Open the bag and create the subscriptions."""
        ts = get_typestore(Stores.ROS2_JAZZY)
        self._writer = Writer(self.out, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        reliability = (ReliabilityPolicy.BEST_EFFORT if self.options.best_effort
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.options.depth,
                         reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        for topic, msgtype in self.options.topics.items():
            self._conns[topic] = self._writer.add_connection(
                topic, msgtype, typestore=ts,
                offered_qos_profiles=_offered(not self.options.best_effort))
            self._subs.append(self.node.create_subscription(
                message_class(msgtype), topic, self._callback(topic), qos, raw=True))
        if self.options.clock_silence > 0:
            self._subs.append(self.node.create_subscription(
                Clock, '/clock', self._on_clock,
                QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)))
        self._started = time.monotonic()

    def _callback(self, topic: str) -> Callable[[bytes], None]:
        conn = self._conns[topic]

        def callback(raw: bytes) -> None:
            stamp = self.node.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is None:
                    return
                self._writer.write(conn, stamp, raw)
                self.counts[topic] += 1
        return callback

    def _on_clock(self, _msg: Clock) -> None:
        self._last_clock = time.monotonic()

    def done(self) -> bool:
        """Return True once a stop condition holds (see the module docstring)."""
        now = time.monotonic()
        if self.stop:
            return True
        if self.options.duration and now - self._started >= self.options.duration:
            return True
        if self.options.clock_silence and self._last_clock is not None:
            if self._player_ended_at is None and \
                    now - self._last_clock >= self.options.clock_silence:
                self._player_ended_at = now
                self.log('player ended (/clock silent); draining the last outputs')
            if self._player_ended_at is not None:
                if now - self._player_ended_at >= self.options.linger:
                    return True
        return False

    def close(self) -> dict[str, int]:
        """Destroy the subscriptions, finish the bag; returns messages written per topic."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs.clear()
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.log(f'recorded {self.out}: ' + ', '.join(f'{t} {n}' for t, n in self.counts.items()))
        return dict(self.counts)
