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
Read the two bags of a replay evaluation with ``rosbags`` (no ROS installation needed).

- the input bag (``nova3r_ros.data.bag_export``): images, depth, CameraInfo, camera poses from
  ``/tf`` + ``/tf_static`` (``TfTree``), the world-frame GT cloud ``/gt/points``;
- the recording (``nova3r_bag record``): the node's clouds by view-1 stamp and ``/diagnostics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from nova3r_ros.io.images import image_to_numpy, to_depth_metres, to_rgb8
from nova3r_ros.io.pointcloud import cloud_array, unpack_points
import numpy as np

NS_PER_S = 1_000_000_000
GT_TOPIC = '/gt/points'
IMAGE = 'sensor_msgs/msg/Image'
CLOUD = 'sensor_msgs/msg/PointCloud2'
TF = 'tf2_msgs/msg/TFMessage'


# ---- reading, with clear errors -----------------------------------------------------------------
def _messages(path: str | Path, types: dict[str, str], what: str,
              required: tuple[str, ...] = ()) -> Iterator[tuple[str, int, Any]]:
    """
    Yield (topic, log time ns, deserialised message) of the ``types`` topics in log order.

    ValueError (one line, naming the bag) instead of a rosbags traceback when the bag cannot
    be read (truncated or corrupt file), a topic has another type than ``types`` says, a
    message does not deserialise as its type, or a ``required`` topic is absent.
    """
    from rosbags.rosbag2 import Reader, ReaderError
    from rosbags.typesys import get_typestore, Stores

    ts = get_typestore(Stores.ROS2_JAZZY)
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if c.topic in types]
            for conn in conns:
                if conn.msgtype != types[conn.topic]:
                    raise ValueError(f'{what} {path}: topic {conn.topic} has type '
                                     f'{conn.msgtype}, expected {types[conn.topic]}')
            for topic in required:
                if not any(c.topic == topic for c in conns):
                    raise ValueError(f'{what} {path} has no {topic}')
            for conn, log_ns, raw in reader.messages(connections=conns):
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds
                    raise ValueError(f'{what} {path}: a message on {conn.topic} at {log_ns} ns '
                                     f'is not a valid {conn.msgtype} ({type(exc).__name__})'
                                     ) from None
                yield conn.topic, log_ns, msg
    except (ReaderError, OSError) as exc:  # truncated/corrupt file, no metadata.yaml
        raise ValueError(f'cannot read {what} {path}: {exc}') from None


# ---- input bag ----------------------------------------------------------------------------------
def _stamp(header: Any) -> int:
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


def _matrix(tf: Any) -> np.ndarray:
    """4x4 from a geometry_msgs/Transform (child pose in the parent frame)."""
    x, y, z, w = tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w
    t = np.eye(4)
    t[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    t[:3, 3] = [tf.translation.x, tf.translation.y, tf.translation.z]
    return t


class TfTree:
    """
    Static + time-stamped transforms; ``lookup(target, source, stamp)`` like tf2's.

    Dynamic transforms are taken at the nearest stamp within ``tolerance_ns`` (the bag writes
    one per frame at the frame's stamp); outside it, ValueError.
    """

    def __init__(self, tolerance_ns: int = 5_000_000) -> None:
        self.static: dict[str, tuple[str, np.ndarray]] = {}
        self.dynamic: dict[str, tuple[str, list[int], list[np.ndarray]]] = {}
        self.tolerance_ns = tolerance_ns

    def add(self, msg: Any, static: bool) -> None:
        for t in msg.transforms:
            parent, child, mat = t.header.frame_id, t.child_frame_id, _matrix(t.transform)
            if static:
                self.static[child] = (parent, mat)
            else:
                entry = self.dynamic.setdefault(child, (parent, [], []))
                entry[1].append(_stamp(t.header))
                entry[2].append(mat)

    def _to_root(self, frame: str, stamp_ns: int) -> tuple[str, np.ndarray]:
        pose = np.eye(4)
        for _ in range(64):
            if frame in self.static:
                parent, mat = self.static[frame]
            elif frame in self.dynamic:
                parent, stamps, mats = self.dynamic[frame]
                i = int(np.argmin(np.abs(np.asarray(stamps) - stamp_ns)))
                if abs(stamps[i] - stamp_ns) > self.tolerance_ns:
                    raise ValueError(f'no transform {parent} -> {frame} near {stamp_ns} ns')
                mat = mats[i]
            else:
                return frame, pose
            pose = mat @ pose
            frame = parent
        raise ValueError('TF tree has a loop')

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """4x4 mapping points of ``source`` into ``target`` at ``stamp_ns``."""
        root_t, t_pose = self._to_root(target, stamp_ns)
        root_s, s_pose = self._to_root(source, stamp_ns)
        if root_t != root_s:
            raise ValueError(f'frames {target} and {source} are not connected in TF')
        return np.linalg.inv(t_pose) @ s_pose


@dataclass
class InputBag:
    """
    What the evaluation needs from the replayed bag.

    Fields:
        stamps_ns: (F,) int64 image stamps; frame_id: the images' optical frame.
        images: uint8 (F, H, W, 3) RGB; depths: float32 (F, H, W) metres, 0 = invalid.
        intrinsics: (3, 3) pixels (CameraInfo K of the colour camera).
        cam_to_gt: (F, 4, 4) optical frame -> GT cloud frame at each stamp.
        gt_points: float32 (P, 3) GT frame, metres; gt_category: uint8 (P,).
    """

    stamps_ns: np.ndarray
    frame_id: str
    images: np.ndarray
    depths: np.ndarray
    intrinsics: np.ndarray
    cam_to_gt: np.ndarray
    gt_points: np.ndarray
    gt_category: np.ndarray


def read_input_bag(path: str | Path, image_topic: str = '/camera/image_raw',
                   depth_topic: str = '/camera/depth/image_raw',
                   info_topic: str = '/camera/camera_info') -> InputBag:
    """Read images, depth, intrinsics, poses (TF) and the GT cloud of a ``bag_export`` bag."""
    tf = TfTree()
    images: dict[int, np.ndarray] = {}
    depths: dict[int, np.ndarray] = {}
    frame_id, k_mat, gt = None, None, None
    types = {image_topic: IMAGE, depth_topic: IMAGE, info_topic: 'sensor_msgs/msg/CameraInfo',
             GT_TOPIC: CLOUD, '/tf': TF, '/tf_static': TF}
    for topic, _, msg in _messages(path, types, 'input bag'):
        if topic in ('/tf', '/tf_static'):
            tf.add(msg, static=topic == '/tf_static')
        elif topic == GT_TOPIC:
            gt = msg
        elif topic == info_topic:
            k_mat = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        else:
            array = image_to_numpy(msg.encoding, msg.height, msg.width, msg.step,
                                   bool(msg.is_bigendian), msg.data)
            if topic == image_topic:
                images[_stamp(msg.header)] = to_rgb8(array, msg.encoding)
                frame_id = msg.header.frame_id
            else:
                depths[_stamp(msg.header)] = to_depth_metres(array, msg.encoding)
    missing = [name for name, value in ((image_topic, images), (info_topic, k_mat),
                                        (GT_TOPIC, gt), (depth_topic, depths))
               if value is None or (isinstance(value, dict) and not value)]
    if missing:
        raise ValueError(f'input bag {path} lacks {missing}')
    stamps = np.array(sorted(images), dtype=np.int64)
    if set(depths) != set(images):
        raise ValueError('input bag: depth and image stamps differ')
    cloud = unpack_points(gt.data, gt.fields, gt.point_step, gt.width, gt.height, gt.row_step,
                          bool(gt.is_bigendian), drop_invalid=True)
    arr_names = [f.name for f in gt.fields]
    category = np.zeros(len(cloud['points']), np.uint8)
    if 'category' in arr_names:
        category = np.asarray(cloud_array(gt.data, gt.fields, gt.point_step, gt.width,
                                          gt.height, gt.row_step)['category'], np.uint8)
    poses = np.stack([tf.lookup(gt.header.frame_id, frame_id, int(s)) for s in stamps])
    return InputBag(stamps, frame_id, np.stack([images[s] for s in stamps]),
                    np.stack([depths[s] for s in stamps]), k_mat, poses,
                    cloud['points'], category)


# ---- recording ----------------------------------------------------------------------------------
@dataclass
class Recording:
    """
    Clouds by view-1 stamp and the diagnostics of the node.

    Fields:
        clouds: view-1 stamp ns -> dict(points float32 (N, 3), visibility bool (N,), frame_id,
            received_ns (log time: bag time when recorded with use_sim_time)).
        diagnostics: status name -> list of (log time ns, {key: value}) in order.
    """

    clouds: dict[int, dict[str, Any]]
    diagnostics: dict[str, list[tuple[int, dict[str, str]]]]


def read_recording(path: str | Path, points_topic: str = '/nova3r/points') -> Recording:
    """Read the node's clouds and diagnostics from a recorded bag."""
    clouds: dict[int, dict[str, Any]] = {}
    diags: dict[str, list[tuple[int, dict[str, str]]]] = {}
    types = {points_topic: CLOUD, '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray'}
    for topic, log_ns, msg in _messages(path, types, 'recording', required=(points_topic,)):
        if topic == points_topic:
            out = unpack_points(msg.data, msg.fields, msg.point_step, msg.width, msg.height,
                                msg.row_step, bool(msg.is_bigendian), drop_invalid=True)
            vis = out['visibility']
            clouds[_stamp(msg.header)] = {
                'points': out['points'], 'frame_id': msg.header.frame_id,
                'visibility': None if vis is None else vis.astype(bool),
                'received_ns': int(log_ns)}
        else:
            for status in msg.status:
                diags.setdefault(status.name, []).append(
                    (int(log_ns), {kv.key: kv.value for kv in status.values}))
    return Recording(clouds, diags)


def last_value(recording: Recording, task: str, key: str) -> str | None:
    """Return the last reported value of ``key`` in the status whose name ends with ``task``."""
    for name, entries in recording.diagnostics.items():
        if name.endswith(task):
            for _, values in reversed(entries):
                if key in values:
                    return values[key]
    return None


def number(text: str | None) -> float:
    """Parse a diagnostics value as float (NaN when absent or not a number)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
