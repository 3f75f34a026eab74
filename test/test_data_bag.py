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

"""Rosbag export round trip: rosbags reader and rclpy deserialisation see what was written."""

from nova3r_ros.data.bag_export import export_bag, GT_FIELDS, GT_POINT_STEP
from nova3r_ros.data.render import RayCaster, render_views
from nova3r_ros.data.sample import rng_streams
from nova3r_ros.data.scene import make_room_scene
from nova3r_ros.io.pointcloud import dtype_from_fields
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores
from sensor_msgs.msg import Image, PointCloud2

TS = get_typestore(Stores.ROS2_JAZZY)
W, H, FRAMES, RATE = 96, 72, 8, 15.0


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp('bags') / 'room'
    info = export_bag(out, seed=3, num_frames=FRAMES, rate_hz=RATE, width=W, height=H,
                      gt_points=4000, progress=False)
    msgs = {}
    with Reader(out) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, ns, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(
                (ns, raw, TS.deserialize_cdr(raw, conn.msgtype)))
    return info, msgs, qos, types


def _stamp_ns(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _matrix(tf):
    x, y, z, w = (tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w)
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = [tf.translation.x, tf.translation.y, tf.translation.z]
    return t


def test_topics_types_counts_and_latching(bag):
    _, msgs, qos, types = bag
    assert types['/camera/image_raw'] == 'sensor_msgs/msg/Image'
    assert types['/tf'] == types['/tf_static'] == 'tf2_msgs/msg/TFMessage'
    assert types['/gt/points'] == 'sensor_msgs/msg/PointCloud2'
    for topic in ('/camera/image_raw', '/camera/depth/image_raw', '/camera/camera_info', '/tf'):
        assert len(msgs[topic]) == FRAMES
    assert len(msgs['/gt/points']) == len(msgs['/tf_static']) == 1
    for topic in ('/tf_static', '/gt/points'):
        assert qos[topic][0].durability == QosDurability.TRANSIENT_LOCAL


def test_stamps_monotonic_and_frame_ids(bag):
    info, msgs, _, _ = bag
    for topic in ('/camera/image_raw', '/camera/depth/image_raw', '/camera/camera_info'):
        stamps = np.array([_stamp_ns(m) for _, _, m in msgs[topic]])
        np.testing.assert_array_equal(stamps, [ns for ns, _, _ in msgs[topic]])
        np.testing.assert_array_equal(stamps, info['stamps_ns'])
        assert (np.diff(stamps) > 0).all()
        np.testing.assert_allclose(np.diff(stamps), 1e9 / RATE, atol=1)
        assert {m.header.frame_id for _, _, m in msgs[topic]} == {'camera_optical_frame'}
    assert msgs['/gt/points'][0][2].header.frame_id == 'map'
    statics = {(t.header.frame_id, t.child_frame_id)
               for t in msgs['/tf_static'][0][2].transforms}
    assert statics == {('map', 'odom'), ('base_link', 'camera_link'),
                       ('camera_link', 'camera_optical_frame')}
    dyn = {(t.header.frame_id, t.child_frame_id) for _, _, m in msgs['/tf'] for t in m.transforms}
    assert dyn == {('odom', 'base_link')}


def test_tf_chain_gives_the_rendered_camera_pose(bag):
    info, msgs, _, _ = bag
    st = {(t.header.frame_id, t.child_frame_id): _matrix(t.transform)
          for t in msgs['/tf_static'][0][2].transforms}
    mount = st[('base_link', 'camera_link')] @ st[('camera_link', 'camera_optical_frame')]
    for i, (_, _, m) in enumerate(msgs['/tf']):
        pose = st[('map', 'odom')] @ _matrix(m.transforms[0].transform) @ mount
        np.testing.assert_allclose(pose, info['cam_to_world'][i], atol=1e-6)
    # The optical frame looks along the camera_link x axis (REP-103).
    np.testing.assert_allclose(st[('camera_link', 'camera_optical_frame')][:3, 2], [1, 0, 0],
                               atol=1e-9)


def test_images_depth_info_and_gt_round_trip(bag):
    info, msgs, _, _ = bag
    scene = make_room_scene(rng_streams(3)[0])
    k_mat = info['intrinsics']
    i = FRAMES - 1
    view = render_views(RayCaster(scene), k_mat[None], info['cam_to_world'][i:i + 1], W, H)
    img = msgs['/camera/image_raw'][i][2]
    assert (img.encoding, img.height, img.width, img.step) == ('rgb8', H, W, 3 * W)
    np.testing.assert_array_equal(img.data.reshape(H, W, 3), view.images[0])
    dep = msgs['/camera/depth/image_raw'][i][2]
    assert (dep.encoding, dep.step, dep.is_bigendian) == ('32FC1', 4 * W, 0)
    np.testing.assert_array_equal(dep.data.view('<f4').reshape(H, W), view.depths[0])
    cam = msgs['/camera/camera_info'][i][2]
    np.testing.assert_allclose(cam.k.reshape(3, 3), k_mat)
    np.testing.assert_allclose(cam.p.reshape(3, 4)[:, :3], k_mat)
    gt = msgs['/gt/points'][0][2]
    assert (gt.point_step, gt.width, gt.height, gt.is_dense) == (GT_POINT_STEP, 4000, 1, True)
    assert [(f.name, f.offset, f.datatype) for f in gt.fields] == [
        (f.name, f.offset, f.datatype) for f in GT_FIELDS]
    cloud = gt.data.view(dtype_from_fields(GT_FIELDS, GT_POINT_STEP))
    xyz = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1)
    np.testing.assert_array_equal(xyz, info['gt_points'])
    np.testing.assert_array_equal(cloud['visibility'], info['gt_visible'])
    np.testing.assert_array_equal(cloud['category'], info['gt_category'])
    assert 0 < info['gt_visible'].mean() < 1


def test_rclpy_reads_image_and_pointcloud_payloads(bag):
    info, msgs, _, _ = bag
    raw_img = msgs['/camera/image_raw'][0][1]
    img = deserialize_message(bytes(raw_img), Image)
    assert (img.encoding, img.height, img.width, img.header.frame_id) == (
        'rgb8', H, W, 'camera_optical_frame')
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8),
                                  msgs['/camera/image_raw'][0][2].data)
    cloud = deserialize_message(bytes(msgs['/gt/points'][0][1]), PointCloud2)
    assert cloud.header.frame_id == 'map' and cloud.width == 4000
    arr = np.frombuffer(bytes(cloud.data), dtype_from_fields(cloud.fields, cloud.point_step))
    np.testing.assert_array_equal(arr['x'], info['gt_points'][:, 0])
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'visibility', 'category']


def test_sqlite3_storage_and_bad_arguments(tmp_path):
    export_bag(tmp_path / 'sq', seed=4, num_frames=2, rate_hz=10.0, width=48, height=36,
               storage='sqlite3', gt_points=500, progress=False)
    with Reader(tmp_path / 'sq') as reader:
        assert reader.message_count == 2 * 5 + 2
    with pytest.raises(ValueError, match='exists'):
        export_bag(tmp_path / 'sq', seed=4, num_frames=2, progress=False)
    with pytest.raises(ValueError, match='rate_hz'):
        export_bag(tmp_path / 'x', seed=4, rate_hz=100.0, progress=False)
    with pytest.raises(ValueError, match='speed'):
        export_bag(tmp_path / 'x', seed=4, speed=float('nan'), progress=False)
    with pytest.raises(ValueError, match='16..4096'):
        export_bag(tmp_path / 'x', seed=4, width=100_000, height=100_000, progress=False)


def test_a_failed_export_leaves_no_partial_bag(tmp_path, monkeypatch):
    from nova3r_ros.data import bag_export

    def broken(*_args, **_kwargs):
        raise RuntimeError('render failed')

    monkeypatch.setattr(bag_export, 'render_views', broken)
    with pytest.raises(RuntimeError, match='render failed'):
        export_bag(tmp_path / 'b', seed=4, num_frames=1, width=48, height=36, gt_points=500,
                   progress=False)
    assert not (tmp_path / 'b').exists()  # a rerun with the same path would say "exists"


def test_bag_make_renders_at_a_presets_input_size(tmp_path):
    from nova3r_ros.ros import bag as bag_cli

    out = tmp_path / 'micro'
    assert bag_cli.main(['make', '--out', str(out), '--preset', 'micro', '--frames', '1',
                         '--gt-points', '500']) == 0
    with Reader(out) as reader:
        infos = [TS.deserialize_cdr(raw, conn.msgtype) for conn, _, raw in reader.messages()
                 if conn.topic == '/camera/camera_info']
    assert [(m.width, m.height) for m in infos] == [(42, 28)]  # get_preset('micro')'s input
