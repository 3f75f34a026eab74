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
QoS profiles of the node's subscriptions and publishers, from its parameters.

Inputs default to sensor-data depth (keep-last 5, volatile) with ``BEST_AVAILABLE``
reliability: it matches a reliable camera driver as reliable and a best-effort one as
best-effort, so neither side sees "incompatible QoS". The cloud publishers default to reliable,
keep-last 1, volatile: the most compatible offer (RViz on Jazzy and Nav2 both match it) and no
backlog of large clouds.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

_RELIABILITY = {
    'best_available': ReliabilityPolicy.BEST_AVAILABLE,
    'best_effort': ReliabilityPolicy.BEST_EFFORT,
    'reliable': ReliabilityPolicy.RELIABLE,
}


def _reliability(name: str) -> ReliabilityPolicy:
    try:
        return _RELIABILITY[name]
    except KeyError:
        raise ValueError(
            f'reliability must be one of {", ".join(_RELIABILITY)}, got {name!r}') from None


def input_qos(reliability: str = 'best_available', depth: int = 5) -> QoSProfile:
    """Profile for image, depth and camera_info subscriptions."""
    if depth < 1:
        raise ValueError(f'input depth must be >= 1, got {depth}')
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=_reliability(reliability),
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(reliability: str = 'reliable', depth: int = 1) -> QoSProfile:
    """Profile for ``~/points`` and ``~/occluded_points``."""
    if reliability == 'best_available':
        raise ValueError('best_available is a subscription policy; publishers offer '
                         'reliable or best_effort')
    if depth < 1:
        raise ValueError(f'output depth must be >= 1, got {depth}')
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=_reliability(reliability),
                      durability=DurabilityPolicy.VOLATILE)


def diagnostics_qos() -> QoSProfile:
    """``/diagnostics``: reliable keep-last 10, as diagnostic_updater publishes it."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
