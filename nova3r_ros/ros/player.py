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
Publish a rosbag2 (MCAP or sqlite3, read with ``rosbags``) over DDS, like ``ros2 bag play``.

What it shares with ``ros2 bag play <bag> --clock 40 -r RATE --start-offset S [--loop]``:

- messages go out in log-time order with their original spacing divided by ``rate``;
- ``/clock`` (rosgraph_msgs/Clock, best effort) carries the bag time of the playback at
  ``clock_hz``, so nodes with ``use_sim_time`` run on bag time; it is published before the first
  message;
- each topic's publisher offers the QoS recorded in the bag (``offered_qos_profiles``): latched
  topics (``/tf_static``, ``/gt/points``) are reliable + transient-local, so a late subscriber
  still gets them; topics without recorded QoS get reliable, volatile, keep-last 10;
- ``remaps`` rename topics (``/camera/image_raw:=/image``);
- messages before ``start_offset`` are skipped, except transient-local ones, which are published
  at the start (they describe state that holds for the whole bag: static TF, the GT cloud).

Messages are re-published from their CDR bytes (``Publisher.publish(bytes)`` publishes a
serialized message in rclpy), so nothing is deserialised on the way. A topic whose type has no
Python module here (``tf2_msgs`` is not on PyPI) is skipped with one warning that lists them.

Extras for unattended pipelines (not in ``ros2 bag play``): ``wait_for`` holds playback until
topics have enough subscribers (e.g. the node's image input, which exists only once the model
is loaded), and ``clock_tail`` keeps ``/clock`` running after the last message so nodes on sim
time finish their timers (diagnostics) for the last window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import importlib
import math
from pathlib import Path
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader, ReaderError
from rosgraph_msgs.msg import Clock

NS_PER_S = 1_000_000_000
DEFAULT_DEPTH = 10  # keep-last depth for topics without recorded QoS


@dataclass
class PlayOptions:
    """
    Playback settings (see the module docstring).

    Attributes
    ----------
    rate
        playback speed factor (> 0); 0.5 = half speed.
    start_offset
        seconds into the bag to start from (>= 0).
    loop
        replay from the start when the end is reached (until ``stop`` is set).
    clock_hz
        /clock rate in wall Hz; 0 = no /clock.
    remaps
        bag topic -> published topic.
    topics
        play only these bag topics (None = all).
    delay
        wall seconds to wait before the first message (after ``wait_for``).
    wait_for
        published topic -> subscriber count to wait for before playing.
    wait_timeout
        seconds to wait for ``wait_for``; then play anyway (with a warning).
    clock_tail
        wall seconds of /clock after the last message (bag time keeps advancing).

    """

    rate: float = 1.0
    start_offset: float = 0.0
    loop: bool = False
    clock_hz: float = 40.0
    remaps: dict[str, str] = field(default_factory=dict)
    topics: list[str] | None = None
    delay: float = 0.0
    wait_for: dict[str, int] = field(default_factory=dict)
    wait_timeout: float = 60.0
    clock_tail: float = 0.0

    def validate(self) -> None:
        """Raise ValueError on impossible settings."""
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f'rate must be > 0, got {self.rate}')
        for name in ('start_offset', 'clock_hz', 'delay', 'wait_timeout', 'clock_tail'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):  # NaN would pass `< 0`
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')


def message_class(msgtype: str) -> Any | None:
    """Return the rclpy message class of a rosbag2 type (``pkg/msg/Name``), or None if absent."""
    parts = msgtype.split('/')
    if len(parts) != 3:
        return None
    try:
        return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])
    except (ImportError, AttributeError):
        return None


def qos_from_offered(offered: list[Any]) -> QoSProfile:
    """
    Derive the publisher QoS from a bag connection's offered profiles (rosbags ``Qos`` tuples).

    Reliable/transient-local when the recorded publisher offered it; keep-last with the
    recorded depth (at least 1). No profile: reliable, volatile, keep-last 10.
    """
    if not offered:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEFAULT_DEPTH,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    q = offered[0]
    best_effort = q.reliability == QosReliability.BEST_EFFORT
    latched = q.durability == QosDurability.TRANSIENT_LOCAL
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=max(1, int(q.depth)),
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def clock_msg(stamp_ns: int) -> Clock:
    """rosgraph_msgs/Clock for integer ns (no float on the way)."""
    return Clock(clock=TimeMsg(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S))


@dataclass
class _Topic:
    name: str  # published name (after remap)
    msgtype: str
    qos: QoSProfile
    latched: bool
    cls: Any = None  # rclpy message class of msgtype
    publisher: Any = None
    sent: int = 0
    checked: bool = False  # first message deserialised once as msgtype


class BagPlayer:
    """
    Plays one bag through ``node``'s publishers (call ``play`` from any thread).

    Parameters
    ----------
    node
        an rclpy node that owns the publishers (no executor needed to publish).
    bag
        rosbag2 directory (MCAP or sqlite3).
    options
        ``PlayOptions``.
    log
        callable for progress lines (default: the node's logger at info).

    """

    def __init__(self, node: Node, bag: str | Path, options: PlayOptions,
                 log: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.node, self.bag, self.options = node, Path(bag), options
        self.log = log or node.get_logger().info
        self.stop = False  # set from another thread (signal handler) to end playback
        if not self.bag.exists():
            raise ValueError(f'bag {self.bag} does not exist')
        self.topics: dict[str, _Topic] = {}
        self.skipped: dict[str, str] = {}
        try:
            self._create_publishers()
        except (ReaderError, OSError) as exc:  # truncated/corrupt file, no metadata.yaml
            raise ValueError(f'cannot read bag {self.bag}: {exc}') from None
        if options.topics is not None:
            missing = set(options.topics) - set(self.topics) - set(self.skipped)
            if missing:
                raise ValueError(f'topics not in the bag: {sorted(missing)}')
        if self.skipped:
            node.get_logger().warning(
                'skipping topics whose message types are not importable in this Python '
                f'(install the ROS packages to play them): {self.skipped}')
        self.clock_pub = None
        if options.clock_hz > 0:
            self.clock_pub = node.create_publisher(
                Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))

    def _create_publishers(self) -> None:
        """Read the bag's connections; one publisher per playable topic."""
        node, options = self.node, self.options
        with Reader(self.bag) as reader:
            self.start_ns = reader.start_time
            self.end_ns = reader.end_time
            for conn in reader.connections:
                if options.topics is not None and conn.topic not in options.topics:
                    continue
                if conn.topic in self.topics or conn.topic in self.skipped:
                    continue
                cls = message_class(conn.msgtype)
                if cls is None:
                    self.skipped[conn.topic] = conn.msgtype
                    continue
                offered = list(getattr(conn.ext, 'offered_qos_profiles', []) or [])
                qos = qos_from_offered(offered)
                topic = _Topic(options.remaps.get(conn.topic, conn.topic), conn.msgtype, qos,
                               qos.durability == DurabilityPolicy.TRANSIENT_LOCAL, cls)
                topic.publisher = node.create_publisher(cls, topic.name, qos)
                self.topics[conn.topic] = topic

    # ---- waiting --------------------------------------------------------------------------------
    def _publisher_for(self, name: str) -> Any:
        if name == '/clock' and self.clock_pub is not None:
            return self.clock_pub
        for topic in self.topics.values():
            if topic.name == name:
                return topic.publisher
        raise ValueError(f'wait_for topic {name} is not played (played: '
                         f'{sorted(t.name for t in self.topics.values())})')

    def wait_for_subscribers(self) -> bool:
        """Block until every ``wait_for`` topic has its subscriber count; False on timeout."""
        wanted = [(self._publisher_for(n), n, c) for n, c in self.options.wait_for.items()]
        deadline = time.monotonic() + self.options.wait_timeout
        while not self.stop:
            missing = [(n, p.get_subscription_count(), c) for p, n, c in wanted
                       if p.get_subscription_count() < c]
            if not missing:
                return True
            if time.monotonic() > deadline:
                self.node.get_logger().warning(f'playing without all subscribers: {missing}')
                return False
            time.sleep(0.05)
        return False

    # ---- playback -------------------------------------------------------------------------------
    def _sleep_until(self, wall_target: float, wall0: float, bag0_ns: int) -> None:
        """Sleep until ``wall_target`` (monotonic s), publishing /clock on its period."""
        period = 1.0 / self.options.clock_hz if self.clock_pub is not None else None
        while not self.stop:
            now = time.monotonic()
            if period is not None and now >= self._next_clock:
                bag_now = bag0_ns + int((now - wall0) * self.options.rate * NS_PER_S)
                self.clock_pub.publish(clock_msg(bag_now))
                self._next_clock = now + period
            if now >= wall_target:
                return
            wake = wall_target if period is None else min(wall_target, self._next_clock)
            time.sleep(max(0.0, min(wake - now, 0.05)))

    def _play_once(self) -> None:
        opts = self.options
        bag0_ns = self.start_ns + int(opts.start_offset * NS_PER_S)
        wall0 = time.monotonic()
        self._next_clock = wall0
        if self.clock_pub is not None:  # time exists before the first message arrives
            self.clock_pub.publish(clock_msg(bag0_ns))
            self._next_clock = wall0 + 1.0 / opts.clock_hz
        try:
            self._publish_messages(bag0_ns, wall0)
        except (ReaderError, OSError) as exc:  # e.g. a chunk that does not decompress
            raise ValueError(f'cannot read bag {self.bag}: {exc}') from None
        if opts.clock_tail > 0 and not self.stop:
            self._sleep_until(time.monotonic() + opts.clock_tail, wall0, bag0_ns)

    def _check_first(self, topic: _Topic, bag_topic: str, raw: Any) -> None:
        """
        Raise ValueError when a topic's first message is not a ``topic.msgtype``.

        Such a topic is mislabelled: subscribers could not deserialise it. One message per
        topic is checked, so the CDR bytes of the others still go out untouched.
        """
        try:
            deserialize_message(bytes(raw), topic.cls)
        except Exception:  # noqa: BLE001 - rclpy raises RMWError/RuntimeError variants
            raise ValueError(f'bag {self.bag}: the first message on {bag_topic} is not a '
                             f'valid {topic.msgtype} (wrong message type on the topic?)'
                             ) from None
        topic.checked = True

    def _publish_messages(self, bag0_ns: int, wall0: float) -> None:
        opts = self.options
        with Reader(self.bag) as reader:
            conns = [c for c in reader.connections if c.topic in self.topics]
            for conn, stamp_ns, raw in reader.messages(connections=conns):
                if self.stop:
                    return
                topic = self.topics[conn.topic]
                if not topic.checked:
                    self._check_first(topic, conn.topic, raw)
                if stamp_ns < bag0_ns:
                    if not topic.latched:
                        continue
                    stamp_ns = bag0_ns  # latched state published at the start
                target = wall0 + (stamp_ns - bag0_ns) / NS_PER_S / opts.rate
                self._sleep_until(target, wall0, bag0_ns)
                topic.publisher.publish(bytes(raw))
                topic.sent += 1

    def play(self) -> dict[str, Any]:
        """
        Wait, send the bag (looping if asked) and return a summary.

        The summary holds the messages sent per topic, the skipped ones and the times.
        """
        waited = self.wait_for_subscribers() if self.options.wait_for else True
        if self.options.delay and not self.stop:
            time.sleep(self.options.delay)
        started = time.monotonic()
        loops = 0
        while not self.stop:
            self._play_once()
            loops += 1
            if not self.options.loop:
                break
        for topic in self.topics.values():  # let reliable readers take the last messages
            if topic.qos.reliability == ReliabilityPolicy.RELIABLE:
                from rclpy.duration import Duration
                topic.publisher.wait_for_all_acked(Duration(seconds=2))
        summary = {
            'bag': str(self.bag),
            'rate': self.options.rate,
            'loops': loops,
            'interrupted': self.stop,
            'subscribers_ready': waited,
            'wall_s': time.monotonic() - started,
            'bag_duration_s': (self.end_ns - self.start_ns) / NS_PER_S,
            'topics': {bag_topic: {'published_as': t.name, 'type': t.msgtype, 'sent': t.sent,
                                   'reliable': t.qos.reliability == ReliabilityPolicy.RELIABLE,
                                   'transient_local': t.latched}
                       for bag_topic, t in self.topics.items()},
            'skipped_topics': dict(self.skipped),
        }
        self.log(f'played {self.bag} in {summary["wall_s"]:.1f} s (rate {self.options.rate}, '
                 f'{loops} loop(s)): ' + ', '.join(f'{t.name} {t.sent}'
                                                   for t in self.topics.values()))
        return summary
