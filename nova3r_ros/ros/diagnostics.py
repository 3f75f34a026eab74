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
Diagnostics: rolling timing statistics, input rate meters and the DiagnosticArray builder.

diagnostic_updater is not installable here, so the node publishes
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` itself, one status per task, named
``"<node>: <task>"`` with a non-empty ``hardware_id`` like the updater does. Every duration is
measured on the steady (monotonic) clock; only output age uses the node clock (sim time aware).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # DiagnosticStatus levels as ints (the msg uses bytes)
NS_PER_S = 1_000_000_000


class RollingStats:
    """The last ``size`` samples of a quantity (thread-safe append / summary)."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))
            self.count += 1

    def values(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._values, dtype=np.float64)

    def summary(self) -> dict[str, float] | None:
        """mean, p50, p95, p99, max of the held samples, or None when empty."""
        values = self.values()
        if values.size == 0:
            return None
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {'mean': float(values.mean()), 'p50': float(p50), 'p95': float(p95),
                'p99': float(p99), 'max': float(values.max()), 'n': int(values.size)}


class RateMeter:
    """Events per second over the last ``window_s`` seconds of the steady clock."""

    def __init__(self, window_s: float = 5.0,
                 monotonic_ns=time.monotonic_ns) -> None:
        self._window_ns = int(window_s * NS_PER_S)
        self._times: deque[int] = deque()
        self._lock = threading.Lock()
        self._monotonic_ns = monotonic_ns
        self.total = 0
        self.last_ns: int | None = None

    def tick(self, now_ns: int | None = None) -> None:
        now_ns = self._monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            self._times.append(now_ns)
            self.total += 1
            self.last_ns = now_ns
            self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        while self._times and now_ns - self._times[0] > self._window_ns:
            self._times.popleft()

    def rate(self, now_ns: int | None = None) -> float:
        """Hz over the window (0 when fewer than two events in it)."""
        now_ns = self._monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            self._trim(now_ns)
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) * NS_PER_S / span if span > 0 else 0.0

    def silent_for(self, now_ns: int | None = None) -> float | None:
        """Seconds since the last event (None when there never was one)."""
        now_ns = self._monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            return None if self.last_ns is None else (now_ns - self.last_ns) / NS_PER_S


@dataclass
class Status:
    """One DiagnosticStatus before conversion: level only ever rises (worst reason wins)."""

    task: str
    level: int = OK
    messages: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    def raise_level(self, level: int, message: str) -> None:
        self.level = max(self.level, level)
        self.messages.append(message)

    def set(self, key: str, value) -> None:  # noqa: A003 - name used by all callers
        self.values[key] = _fmt(value)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def add_timing(status: Status, prefix: str, summary: Mapping[str, float] | None,
               unit_scale: float, unit: str, keys: Iterable[str] = ('mean', 'p50', 'p95')
               ) -> None:
    """Add ``<prefix> <key> [unit]`` values from a ``RollingStats.summary``."""
    if summary is None:
        status.set(f'{prefix} [{unit}]', 'no samples')
        return
    for key in keys:
        status.set(f'{prefix} {key} [{unit}]', summary[key] * unit_scale)


def to_array(statuses: Iterable[Status], node_name: str, hardware_id: str,
             stamp) -> DiagnosticArray:
    """Build a DiagnosticArray: ``stamp`` (node clock), one DiagnosticStatus per ``Status``."""
    array = DiagnosticArray()
    array.header.stamp = stamp
    for item in statuses:
        msg = DiagnosticStatus()
        msg.level = bytes([item.level])
        msg.name = f'{node_name}: {item.task}'
        msg.hardware_id = hardware_id or node_name
        msg.message = '; '.join(item.messages) if item.messages else 'OK'
        msg.values = [KeyValue(key=k, value=v) for k, v in item.values.items()]
        array.status.append(msg)
    return array


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    """Convert the KeyValue list to a dict (for tests and tools reading /diagnostics)."""
    return {kv.key: kv.value for kv in status.values}


def level_of(status: DiagnosticStatus) -> int:
    """Return the level as an int whatever rclpy's byte representation is."""
    level = status.level
    return level[0] if isinstance(level, bytes) else int(level)
