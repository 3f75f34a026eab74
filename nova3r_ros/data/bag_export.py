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
Write a camera drive through one synthetic room as a rosbag2 (MCAP or sqlite3).

    python -m nova3r_ros.data.bag_export --out bags/room_7 --seed 7 --frames 90 --rate 15

Topics (frame ids after the colon):
  /camera/image_raw          sensor_msgs/Image rgb8 : camera_optical_frame
  /camera/depth/image_raw    sensor_msgs/Image 32FC1 metres along optical z, 0 = no hit
  /camera/camera_info        sensor_msgs/CameraInfo (plumb_bob, zero distortion); also
  /camera/depth/camera_info  (depth is registered to the colour camera)
  /tf                        tf2_msgs/TFMessage odom -> base_link per frame
  /tf_static                 map -> odom, base_link -> camera_link, camera_link ->
                             camera_optical_frame (transient-local, "latched")
  /gt/points                 sensor_msgs/PointCloud2 : map, once, transient-local: the complete
                             GT surface sample cropped to the union of all frames' frusta;
                             fields x,y,z f32 @0/4/8, visibility u8 @12 (1 = first hit in at
                             least one frame of the bag), category u8 @13 (0 floor, 1 wall,
                             2 object), point_step 16.
Messages are serialised with the rosbags Jazzy typestore (tf2_msgs included), so no ROS
installation is needed to write or read the bag.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil

from nova3r_ros.data.cameras import is_free, view_is_open
from nova3r_ros.data.groundtruth import sample_cropped, visible_in
from nova3r_ros.data.render import intrinsics_from_fov, RayCaster, render_views
from nova3r_ros.data.sample import image_size, PRESET_HELP, rng_streams
from nova3r_ros.data.scene import make_room_scene
from nova3r_ros.io.images import numpy_to_image
from nova3r_ros.io.pointcloud import dtype_from_fields, Field, UINT8, XYZV_FIELDS
import numpy as np
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
from tqdm import tqdm

FRAMES = {'map': 'map', 'odom': 'odom', 'base': 'base_link', 'camera': 'camera_link',
          'optical': 'camera_optical_frame'}
GT_FIELDS = XYZV_FIELDS + (Field('category', 13, UINT8),)
GT_POINT_STEP = 16
START_TIME_NS = 1_700_000_000 * 10**9  # fixed, so a seed gives the same bag every time
# camera_link (x forward, y left, z up) -> optical (x right, y down, z forward), REP-103.
LINK_TO_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _transform(rot: np.ndarray, trans) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, trans
    return t


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def quaternion_from_matrix(rot: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a 3x3 rotation (w >= 0)."""
    m = rot
    w = np.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = np.copysign(x, m[2, 1] - m[1, 2])
    y = np.copysign(y, m[0, 2] - m[2, 0])
    z = np.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)


def drive(rng: np.random.Generator, scene, caster: RayCaster, k_mat: np.ndarray, width: int,
          height: int, num_frames: int, rate_hz: float, speed: float = 0.3,
          max_tries: int = 300):
    """
    Plan a smooth drive through the room.

    Returns (base poses (N, 3) x, y, yaw in odom = map, camera height m, camera pitch rad (up
    positive)). The robot moves at `speed` m/s and weaves in yaw.
    """
    w, d, _ = scene.room_size
    centre = np.array([w / 2, d / 2])
    dt = 1.0 / rate_hz
    for attempt in range(max_tries):
        relax = attempt > max_tries // 2
        start = rng.uniform([0.35, 0.35], [w - 0.35, d - 0.35])
        if not is_free(scene, start, 0.3):
            continue
        yaw0 = np.arctan2(*(centre - start)[::-1]) + rng.uniform(-0.8, 0.8)
        amp, period = rng.uniform(0.1, 0.6), rng.uniform(3.0, 8.0)
        phase = rng.uniform(0, 2 * np.pi)
        cam_h, pitch = rng.uniform(0.5, 1.5), np.radians(rng.uniform(-20.0, 5.0))
        v = speed * (0.5 if relax else 1.0)
        xy, poses, ok = start.copy(), [], True
        for i in range(num_frames):
            yaw = yaw0 + amp * np.sin(2 * np.pi * i * dt / period + phase)
            if i > 0:
                xy = xy + v * dt * np.array([np.cos(yaw), np.sin(yaw)])
            if not is_free(scene, xy, 0.25):
                ok = False
                break
            poses.append((xy[0], xy[1], yaw))
        if not ok:
            continue
        cams = camera_poses(np.array(poses), cam_h, pitch)
        if all(view_is_open(caster, c, k_mat, width, height, 0.6) for c in cams[::5]):
            return np.array(poses), float(cam_h), float(pitch)
    raise RuntimeError(f'no valid drive of {num_frames} frames found in {max_tries} tries')


def static_transforms(cam_h: float, pitch: float) -> dict[tuple[str, str], np.ndarray]:
    """Return the fixed 4x4 transforms parent -> child (the child frame's pose in the parent)."""
    return {
        ('map', 'odom'): np.eye(4),
        ('base_link', 'camera_link'): _transform(_rot_y(-pitch), [0.0, 0.0, cam_h]),
        ('camera_link', 'camera_optical_frame'): _transform(LINK_TO_OPTICAL, [0.0, 0.0, 0.0]),
    }


def camera_poses(base: np.ndarray, cam_h: float, pitch: float) -> np.ndarray:
    """(N, 4, 4) camera_optical_frame -> map through the TF chain of the bag."""
    st = static_transforms(cam_h, pitch)
    mount = st[('base_link', 'camera_link')] @ st[('camera_link', 'camera_optical_frame')]
    return np.stack([st[('map', 'odom')] @ _transform(_rot_z(yaw), [x, y, 0.0]) @ mount
                     for x, y, yaw in base])


def _latched() -> list[Qos]:
    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                zero, zero, QosLiveliness.AUTOMATIC, zero, False)]


def pack_gt_cloud(points: np.ndarray, visible: np.ndarray, category: np.ndarray) -> np.ndarray:
    """(N*16,) uint8 bytes of the /gt/points layout (see module docstring)."""
    cloud = np.zeros(len(points), dtype_from_fields(GT_FIELDS, GT_POINT_STEP))
    for i, name in enumerate('xyz'):
        cloud[name] = points[:, i]
    cloud['visibility'] = visible
    cloud['category'] = category
    return cloud.view(np.uint8).reshape(-1)


def export_bag(out: str | Path, seed: int, num_frames: int = 60, rate_hz: float = 15.0,
               width: int = 224, height: int = 168, storage: str = 'mcap',
               gt_points: int = 200_000, max_depth: float = 8.0, speed: float = 0.3,
               progress: bool = True) -> dict:
    """
    Render `num_frames` frames of a drive through room `seed` into a rosbag2 at `out`.

    `out` is a directory that must not exist. Returns a summary with the arrays written.
    """
    if not 10.0 <= rate_hz <= 30.0:
        raise ValueError(f'rate_hz must be in 10..30, got {rate_hz}')
    if num_frames < 1 or gt_points < 1:
        raise ValueError('num_frames and gt_points must be positive')
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError(f'image size must be 16..4096 px a side, got {width}x{height}')
    if not 0.0 < speed <= 3.0:  # (NaN fails this too; it made the drive search fail)
        raise ValueError(f'speed must be in (0, 3] m/s, got {speed}')
    if not 0.1 < max_depth <= 100.0:
        raise ValueError(f'max_depth must be in (0.1, 100] m, got {max_depth}')
    plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    out = Path(out)
    if out.exists():
        raise ValueError(f'{out} exists; rosbag2 writes a new directory')
    r_scene, r_cam, r_pts, _, _ = rng_streams(seed)
    scene = make_room_scene(r_scene)
    caster = RayCaster(scene)
    k_mat = intrinsics_from_fov(width, height, r_cam.uniform(55.0, 75.0))
    base, cam_h, pitch = drive(r_cam, scene, caster, k_mat, width, height, num_frames,
                               rate_hz, speed)
    poses = camera_poses(base, cam_h, pitch)
    intr = np.repeat(k_mat[None], num_frames, axis=0)
    pts, face, inv = sample_cropped(scene, r_pts, gt_points, intr, poses, width, height,
                                    max_depth)
    visible = visible_in(caster, pts, inv, poses).any(axis=1)
    category = scene.face_category[face]

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    stamps = START_TIME_NS + np.round(np.arange(num_frames) * 1e9 / rate_hz).astype(np.int64)

    def header(ns: int, frame: str):
        return T['std_msgs/msg/Header'](
            stamp=T['builtin_interfaces/msg/Time'](sec=int(ns // 10**9),
                                                   nanosec=int(ns % 10**9)), frame_id=frame)

    def tf_msg(ns, parent, child, mat):
        q = quaternion_from_matrix(mat[:3, :3])
        return T['geometry_msgs/msg/TransformStamped'](
            header=header(ns, parent), child_frame_id=child,
            transform=T['geometry_msgs/msg/Transform'](
                translation=T['geometry_msgs/msg/Vector3'](*map(float, mat[:3, 3])),
                rotation=T['geometry_msgs/msg/Quaternion'](*map(float, q))))

    def image_msg(ns, array, encoding):
        f = numpy_to_image(array, encoding)
        return T['sensor_msgs/msg/Image'](
            header=header(ns, FRAMES['optical']), height=f['height'], width=f['width'],
            encoding=f['encoding'], is_bigendian=int(f['is_bigendian']), step=f['step'],
            data=np.asarray(f['data'], dtype=np.uint8))

    p_mat = np.zeros((3, 4))
    p_mat[:, :3] = k_mat
    roi = T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)

    def info_msg(ns):
        return T['sensor_msgs/msg/CameraInfo'](
            header=header(ns, FRAMES['optical']), height=height, width=width,
            distortion_model='plumb_bob', d=np.zeros(5), k=k_mat.reshape(-1).astype(float),
            r=np.eye(3).reshape(-1), p=p_mat.reshape(-1), binning_x=0, binning_y=0, roi=roi)

    writer = Writer(out, version=9, storage_plugin=plugins[storage])
    try:
        with writer:
            def conn(topic, msgtype, latched=False):
                return writer.add_connection(topic, msgtype, typestore=ts,
                                             offered_qos_profiles=_latched() if latched else [])

            c = {'tf_static': conn('/tf_static', 'tf2_msgs/msg/TFMessage', True),
                 'gt': conn('/gt/points', 'sensor_msgs/msg/PointCloud2', True),
                 'tf': conn('/tf', 'tf2_msgs/msg/TFMessage'),
                 'info': conn('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
                 'dinfo': conn('/camera/depth/camera_info', 'sensor_msgs/msg/CameraInfo'),
                 'rgb': conn('/camera/image_raw', 'sensor_msgs/msg/Image'),
                 'depth': conn('/camera/depth/image_raw', 'sensor_msgs/msg/Image')}

            def write(key, ns, msg):
                writer.write(c[key], int(ns), ts.serialize_cdr(msg, msg.__msgtype__))

            t0 = int(stamps[0])
            statics = [tf_msg(t0, p, ch, m)
                       for (p, ch), m in static_transforms(cam_h, pitch).items()]
            write('tf_static', t0, T['tf2_msgs/msg/TFMessage'](transforms=statics))
            gt = T['sensor_msgs/msg/PointCloud2'](
                header=header(t0, FRAMES['map']), height=1, width=len(pts),
                fields=[T['sensor_msgs/msg/PointField'](name=f.name, offset=f.offset,
                                                        datatype=f.datatype, count=f.count)
                        for f in GT_FIELDS],
                is_bigendian=False, point_step=GT_POINT_STEP, row_step=GT_POINT_STEP * len(pts),
                data=pack_gt_cloud(pts, visible, category), is_dense=True)
            write('gt', t0, gt)
            for i in tqdm(range(num_frames), desc='bag', disable=not progress):
                ns = int(stamps[i])
                view = render_views(caster, intr[i:i + 1], poses[i:i + 1], width, height)
                x, y, yaw = base[i]
                odom_base = _transform(_rot_z(yaw), [x, y, 0.0])
                write('tf', ns, T['tf2_msgs/msg/TFMessage'](
                    transforms=[tf_msg(ns, 'odom', 'base_link', odom_base)]))
                write('info', ns, info_msg(ns))
                write('dinfo', ns, info_msg(ns))
                write('rgb', ns, image_msg(ns, view.images[0], 'rgb8'))
                write('depth', ns, image_msg(ns, view.depths[0], '32FC1'))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a partial bag would block a rerun ("exists")
        raise
    return {'path': str(out), 'stamps_ns': stamps, 'cam_to_world': poses, 'intrinsics': k_mat,
            'base': base, 'camera_height': cam_h, 'camera_pitch': pitch,
            'gt_points': pts.astype(np.float32), 'gt_visible': visible,
            'gt_category': category}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m nova3r_ros.data.bag_export',
                                description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='bag directory to create')
    p.add_argument('--seed', type=int, default=2_000_000, help='room seed (default: test split)')
    p.add_argument('--frames', type=int, default=90)
    p.add_argument('--rate', type=float, default=15.0, help='frame rate, Hz (10..30)')
    p.add_argument('--preset', default=None, help=PRESET_HELP)
    p.add_argument('--width', type=int, default=None, help='image width, px')
    p.add_argument('--height', type=int, default=None, help='image height, px')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                   help='rosbag2 storage format')
    p.add_argument('--gt-points', type=int, default=200_000)
    p.add_argument('--speed', type=float, default=0.3, help='robot speed, m/s')
    args = p.parse_args(argv)
    try:
        width, height = image_size(args.preset, args.width, args.height)
        info = export_bag(args.out, args.seed, args.frames, args.rate, width, height,
                          args.storage, args.gt_points, speed=args.speed)
    except ValueError as exc:
        p.error(str(exc))
    print(f"wrote {args.frames} frames + {len(info['gt_points'])} GT points to {info['path']}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
