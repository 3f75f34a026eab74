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

"""Bag evaluation: TF lookups, frusta, per-window GT from the bag, scoring a known recording."""

import json
import math

from nova3r_ros.data.bag_export import export_bag
from nova3r_ros.evaluation import bag_eval
from nova3r_ros.evaluation.baselines import VisibleOracle
from nova3r_ros.io.pointcloud import pack_points
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from scipy.spatial import cKDTree

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
W, H = 64, 48


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp('bag_eval') / 'in'
    info = export_bag(out, seed=11, num_frames=6, rate_hz=15.0, width=W, height=H,
                      gt_points=30000, progress=False)
    return out, info, bag_eval.read_input_bag(out)


def _tf(parent, child, mat, ns=0):
    from nova3r_ros.data.bag_export import quaternion_from_matrix
    q = quaternion_from_matrix(mat[:3, :3])
    return T['geometry_msgs/msg/TransformStamped'](
        header=T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
            sec=ns // 10**9, nanosec=ns % 10**9), frame_id=parent),
        child_frame_id=child,
        transform=T['geometry_msgs/msg/Transform'](
            translation=T['geometry_msgs/msg/Vector3'](*map(float, mat[:3, 3])),
            rotation=T['geometry_msgs/msg/Quaternion'](*map(float, q))))


def _pose(yaw, t):
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = t
    return m


def test_tf_tree_chains_static_and_stamped_transforms():
    tree = bag_eval.TfTree(tolerance_ns=1000)
    a, b, c = _pose(0.3, [1, 2, 0]), _pose(-0.5, [0, 0, 1]), _pose(1.0, [0.2, 0, 0])
    tree.add(T['tf2_msgs/msg/TFMessage'](transforms=[_tf('map', 'odom', a)]), static=True)
    tree.add(T['tf2_msgs/msg/TFMessage'](transforms=[_tf('odom', 'base', b, ns=10**9)]),
             static=False)
    tree.add(T['tf2_msgs/msg/TFMessage'](transforms=[_tf('odom', 'base', c, ns=2 * 10**9)]),
             static=False)
    tree.add(T['tf2_msgs/msg/TFMessage'](transforms=[_tf('base', 'cam', c)]), static=True)
    np.testing.assert_allclose(tree.lookup('map', 'cam', 10**9), a @ b @ c, atol=1e-9)
    np.testing.assert_allclose(tree.lookup('map', 'cam', 2 * 10**9), a @ c @ c, atol=1e-9)
    np.testing.assert_allclose(tree.lookup('cam', 'odom', 10**9), np.linalg.inv(b @ c),
                               atol=1e-9)
    with pytest.raises(ValueError, match='no transform'):
        tree.lookup('map', 'cam', 1_500_000_000)
    with pytest.raises(ValueError, match='not connected'):
        tree.lookup('map', 'elsewhere', 10**9)


def test_frustum_and_visibility_known_points():
    k = np.array([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]])
    depth = np.full((10, 10), 2.0, np.float32)
    depth[0, 0] = 0.0  # invalid pixel: nothing there is visible
    pts = np.array([[0, 0, 2.0],      # centre, on the surface: visible
                    [0, 0, 3.0],      # behind the surface: in frustum, occluded
                    [10, 0, 2.0],     # outside the image
                    [0, 0, 9.0],      # beyond max_depth
                    [0, 0, -1.0],     # behind the camera
                    [-0.9, -0.9, 2.0]])  # pixel (0.5, 0.5) -> (0, 0): invalid depth
    inside, visible = bag_eval.frustum_and_visibility(pts, depth, k, max_depth=8.0)
    assert inside.tolist() == [True, True, False, False, False, True]
    assert visible.tolist() == [True, False, False, False, False, False]


def test_input_bag_poses_images_and_gt_match_the_export(exported):
    _, info, bag = exported
    np.testing.assert_array_equal(bag.stamps_ns, info['stamps_ns'])
    np.testing.assert_allclose(bag.cam_to_gt, info['cam_to_world'], atol=1e-6)
    np.testing.assert_allclose(bag.intrinsics, info['intrinsics'])
    np.testing.assert_array_equal(bag.gt_points, info['gt_points'])
    np.testing.assert_array_equal(bag.gt_category, info['gt_category'])
    assert bag.images.shape == (6, H, W, 3) and bag.depths.shape == (6, H, W)
    assert bag.frame_id == 'camera_optical_frame'


def test_window_sample_puts_gt_where_the_depth_images_see_it(exported):
    _, _, bag = exported
    sample = bag_eval.window_sample(bag, [1, 4])
    assert sample['view1_stamp_ns'] == bag.stamps_ns[1]
    np.testing.assert_allclose(sample['cam_to_view1'][0], np.eye(4), atol=1e-6)
    # The GT in view 1's frame, mapped back with view 1's pose, is the world GT.
    back = sample['points'] @ bag.cam_to_gt[1][:3, :3].T + bag.cam_to_gt[1][:3, 3]
    d, _ = cKDTree(bag.gt_points).query(back)
    assert d.max() < 1e-4
    # The visible oracle (depth back-projected, poses from TF) lies on the visible GT.
    oracle = VisibleOracle().predict(sample, 4000, seed=0)['points']
    d, _ = cKDTree(sample['points'][sample['points_visible']]).query(oracle)
    assert np.median(d) < 0.05
    assert 0.1 < sample['points_visible'].mean() < 0.95
    assert abs(len(sample['points']) - len(sample['points_alt'])) <= 1
    assert sample['median3_scale'] == pytest.approx(
        3 / np.median(np.linalg.norm(sample['points'], axis=1)), rel=1e-5)


def _write_recording(path, bag, clouds, diag_values):
    """Write a recording like the node's: PointCloud2 per window + one DiagnosticArray."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        pc = w.add_connection('/nova3r/points', 'sensor_msgs/msg/PointCloud2', typestore=TS)
        dg = w.add_connection('/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray',
                              typestore=TS)
        last = 0
        for stamp, frame_id, points in clouds:
            packed = pack_points(points, np.ones(len(points), bool))
            header = T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)
            msg = T['sensor_msgs/msg/PointCloud2'](
                header=header, height=1, width=packed.width,
                fields=[T['sensor_msgs/msg/PointField'](name=f.name, offset=f.offset,
                                                        datatype=f.datatype, count=1)
                        for f in packed.fields],
                is_bigendian=False, point_step=packed.point_step,
                row_step=packed.point_step * packed.width, data=packed.data, is_dense=True)
            last = stamp + 300_000_000
            w.write(pc, last, TS.serialize_cdr(msg, msg.__msgtype__))
        header = T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
            sec=0, nanosec=0), frame_id='')
        statuses = [T['diagnostic_msgs/msg/DiagnosticStatus'](
            level=0, name=f'nova3r: {task}', message='OK', hardware_id='cpu',
            values=[T['diagnostic_msgs/msg/KeyValue'](key=k, value=str(v))
                    for k, v in values.items()]) for task, values in diag_values.items()]
        msg = T['diagnostic_msgs/msg/DiagnosticArray'](header=header, status=statuses)
        w.write(dg, last, TS.serialize_cdr(msg, msg.__msgtype__))


@pytest.mark.slow
def test_metric_recording_scores_as_metric(exported, tmp_path):
    """
    Check that an exactly metric recorded cloud keeps a chamfer scale of ~1.

    The recorded cloud is the visible oracle of each window; it keeps a fitted chamfer scale
    of ~1 and small errors in metres; a wrong frame_id is not scored.
    """
    path, _, bag = exported
    clouds = []
    for i in (0, 2):
        sample = bag_eval.window_sample(bag, [i])
        pts = VisibleOracle().predict(sample, 3000, seed=i)['points']
        clouds.append((int(bag.stamps_ns[i]), bag.frame_id, pts))
    clouds.append((int(bag.stamps_ns[4]), 'wrong_frame', clouds[0][2]))
    diag = {'inference': {'windows formed': 3, 'windows dropped': 0, 'latency p50 [ms]': 120.5,
                          'latency p95 [ms]': 180.0},
            'output': {'metric': True, 'scale mode': 'depth', 'output age p50 [ms]': 400.0},
            'inputs': {'/camera/image_raw received': 6}}
    _write_recording(tmp_path / 'rec', bag, clouds, diag)
    player = {'rate': 0.5, 'topics': {'/camera/image_raw': {
        'published_as': '/camera/image_raw', 'sent': 6}}}
    content = bag_eval.evaluate_bag(path, tmp_path / 'rec', tmp_path / 'out',
                                    player_summary=player, num_plots=1, pictures=1,
                                    progress=False)
    assert content['units'] == 'metric'
    stream = content['stream']
    assert stream['windows evaluated'] == 2
    assert stream['clouds not evaluated']['frame_id differs'] == 1
    assert stream['latency p50 [ms]'] == 120.5 and stream['windows dropped'] == 0
    assert stream['delivery']['/camera/image_raw'] == {'sent': 6, 'received by node': 6.0}
    assert stream['recorded age [s]']['p50'] == pytest.approx(0.3)
    node = content['summary']['node[chamfer]']
    assert node['align/scale']['mean'] == pytest.approx(1.0, abs=0.05)
    metres = content['metric_summary']['node[none]']
    assert metres['complete/accuracy']['mean'] < 0.03  # metres: the cloud lies on the GT
    for key in ('complete/fscore@0.1', 'occluded/recall@0.1', 'occluded/fscore@0.1'):
        assert math.isfinite(node[key]['mean'])
    out = tmp_path / 'out'
    report_md = (out / 'report.md').read_text()
    assert '| node[chamfer] |' in report_md and 'pictures/' in report_md
    assert len(list((out / 'pictures').glob('*.png'))) == 1
    assert list((out / 'ply').glob('*.ply'))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert set(metrics['windows']) == {f'w{s}' for s, _, _ in clouds[:2]}
    assert bag_eval.main(['--bag-input', str(path), '--bag-recording',
                          str(tmp_path / 'none'), '--out', str(tmp_path / 'x')]) == 2


def test_nova3r_eval_hands_bag_arguments_to_the_bag_mode(tmp_path, capsys):
    from nova3r_ros.evaluation import cli

    assert cli.main(['--bag-input', str(tmp_path / 'a'), '--bag-recording',
                     str(tmp_path / 'b'), '--out', str(tmp_path / 'o')]) == 2
    assert f'{tmp_path / "a"} does not exist' in capsys.readouterr().err


def test_occluded_recovery_counts_gt_points_with_a_cloud_point_within_tau():
    from nova3r_ros.evaluation.bag_report import occluded_recovery

    hidden = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [5.0, 5.0, 5.0]])
    cloud = np.array([[0.0, 0.0, 1.05], [0.0, 0.0, 2.2]])
    assert occluded_recovery(cloud, hidden, 0.1).tolist() == [True, False, False]
    assert occluded_recovery(cloud, hidden, 0.3).tolist() == [True, True, False]
    assert occluded_recovery(np.zeros((0, 3)), hidden, 1.0).tolist() == [False] * 3
    assert occluded_recovery(cloud, np.zeros((0, 3)), 1.0).shape == (0,)
