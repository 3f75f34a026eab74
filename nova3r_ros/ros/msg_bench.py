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

"""Timing of the PointCloud2 message path (used by ``nova3r_bench pack``; rclpy side only)."""

from __future__ import annotations

from collections.abc import Callable
import statistics
import time

from nova3r_ros.io import pointcloud as io_cloud
from nova3r_ros.ros import msgs
import numpy as np
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cloud_msg_builder(frame_id: str = 'camera_optical'
                      ) -> Callable[[np.ndarray, np.ndarray], PointCloud2]:
    """
    Return the node's message build, timed as the packing stage of ``nova3r_bench model --ros``.

    The builder maps ``(points (N, 3) float32, visibility (N,) bool) -> PointCloud2``.
    """
    header = Header(frame_id=frame_id)
    return lambda points, visibility: msgs.points_to_cloud_msg(points, header, visibility)


def pack_benchmark(num_points: int = 100_000, repeats: int = 50, with_rgb: bool = False,
                   checked_bytes: bool = True, seed: int = 0) -> dict:
    """
    Pack/unpack a random cloud through a real ``PointCloud2``; returns timings in ms.

    Keys: ``pack_ms``, ``unpack_ms``, ``bit_exact``, ``num_bytes``, ``point_step``,
    ``array_fill_ms`` (``array.array('B').frombytes``), ``bytes_fill_ms`` (``msg.data = bytes``,
    field checks off as by default) and, if ``checked_bytes``, ``bytes_checked_fill_ms``
    (``check_fields=True``, as with ``ROS_PYTHON_CHECK_FIELDS=1``; 3 repeats, it is slow).
    """
    rng = np.random.default_rng(seed)
    points = rng.normal(0.0, 3.0, (num_points, 3)).astype(np.float32)
    visibility = rng.random(num_points) < 0.5
    rgb = rng.integers(0, 256, (num_points, 3), dtype=np.uint8) if with_rgb else None
    header = Header(frame_id='camera_optical')
    msg = msgs.points_to_cloud_msg(points, header, visibility, rgb)
    back = msgs.cloud_msg_to_points(msg)
    exact = (np.array_equal(back['points'].view(np.uint32), points.view(np.uint32))
             and np.array_equal(back['visibility'], visibility.astype(np.uint8))
             and (rgb is None or np.array_equal(back['rgb'], rgb)))
    body = io_cloud.pack_points(points, visibility, rgb).data

    def fill_array() -> None:
        PointCloud2().data = msgs.to_uint8_array(body)

    def fill_bytes(check: bool) -> Callable[[], None]:
        def run() -> None:
            PointCloud2(check_fields=check).data = body.tobytes()
        return run

    result = {
        'num_points': num_points,
        'num_bytes': len(msg.data),
        'point_step': msg.point_step,
        'bit_exact': bool(exact),
        'pack_ms': median_ms(lambda: msgs.points_to_cloud_msg(points, header, visibility, rgb),
                             repeats),
        'unpack_ms': median_ms(lambda: msgs.cloud_msg_to_points(msg), repeats),
        'array_fill_ms': median_ms(fill_array, repeats),
        'bytes_fill_ms': median_ms(fill_bytes(False), repeats),
        'repeats': repeats,
    }
    if checked_bytes:
        result['bytes_checked_fill_ms'] = median_ms(fill_bytes(True), 3)
    return result
