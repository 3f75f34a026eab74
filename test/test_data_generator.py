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

"""Synthetic data generator: determinism, GT geometry, visibility, crop, files and reader."""

import json

from nova3r_ros.data import generate as gen_cli
from nova3r_ros.data.dataset import (
    load_sample,
    sample_filename,
    save_sample,
    SceneDataset,
    select_views,
)
from nova3r_ros.data.furniture import box, Material
from nova3r_ros.data.groundtruth import in_frustum, sample_surface, visible_in
from nova3r_ros.data.render import (
    intrinsics_from_fov,
    pose_from_yaw_pitch,
    RayCaster,
    render_views,
)
from nova3r_ros.data.sample import build_views, GeneratorConfig, image_size, make_sample
from nova3r_ros.data.scene import FLOOR_ID, SceneBuilder, WALL_ID
import numpy as np
import pytest
import torch

SMALL = GeneratorConfig(width=112, height=84, num_points=4096)


@pytest.fixture(scope='module')
def sample():
    """Return a default-settings K=2 room sample."""
    return make_sample(11)


def _to_view(points_v1, cam_to_view1):
    """Points in view-1 optical frame -> view k optical frame (independent of the GT code)."""
    inv = np.linalg.inv(cam_to_view1.astype(np.float64))
    return points_v1.astype(np.float64) @ inv[:3, :3].T + inv[:3, 3]


def _pixels(p, k_mat):
    return k_mat[0, 0] * p[:, 0] / p[:, 2] + k_mat[0, 2], k_mat[1, 1] * p[:, 1] / p[:, 2] + k_mat[
        1, 2]


def test_same_seed_gives_identical_bytes(tmp_path):
    a, b, c = tmp_path / 'a.npz', tmp_path / 'b.npz', tmp_path / 'c.npz'
    save_sample(a, make_sample(5, SMALL))
    save_sample(b, make_sample(5, SMALL))
    save_sample(c, make_sample(6, SMALL))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_sample_follows_the_contract(sample, tmp_path):
    path = tmp_path / sample_filename(11)
    save_sample(path, sample)
    s = load_sample(path)
    assert s['images'].shape == (2, 168, 224, 3) and s['images'].dtype == np.uint8
    assert s['points'].shape == (32768, 3) and s['points_alt'].shape == (32768, 3)
    np.testing.assert_array_equal(s['cam_to_view1'][0], np.eye(4, dtype=np.float32))
    rel = np.linalg.inv(s['cam_to_world'][0].astype(np.float64)) @ s['cam_to_world'][1]
    np.testing.assert_allclose(s['cam_to_view1'][1], rel, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(s['points_normals'], axis=1), 1.0, atol=1e-5)
    assert set(np.unique(s['points_category'])) <= {0, 1, 2}
    for p in ('points', 'points_alt'):
        assert s[p + '_in_view'].any(axis=1).all()
        assert not (s[p + '_visible_in'] & ~s[p + '_in_view']).any()
    med = np.median(np.linalg.norm(s['points'], axis=1))
    assert s['median3_scale'] == pytest.approx(3.0 / med, rel=1e-6)
    # The two GT samples are independent draws of the same surface.
    assert not np.array_equal(s['points'], s['points_alt'])
    occ, occ_alt = ~s['points_visible_in'].any(1), ~s['points_alt_visible_in'].any(1)
    assert abs(occ.mean() - occ_alt.mean()) < 0.03


def test_no_gt_point_projects_outside_every_view(sample):
    inside_any = np.zeros(len(sample['points']), bool)
    for k in range(2):
        p = _to_view(sample['points'], sample['cam_to_view1'][k])
        u, v = _pixels(p, sample['intrinsics'][k].astype(np.float64))
        inside = (p[:, 2] > 0) & (p[:, 2] <= float(sample['max_depth'])) & (u >= 0) & (u < 224)
        inside &= (v >= 0) & (v < 168)
        np.testing.assert_array_equal(inside, sample['points_in_view'][:, k])
        inside_any |= inside
    assert inside_any.all()


def test_depth_agrees_with_gt_points_reprojected_into_view1(sample):
    p = sample['points'].astype(np.float64)
    u, v = _pixels(p, sample['intrinsics'][0].astype(np.float64))
    in1 = sample['points_in_view'][:, 0]
    ui, vi = np.floor(u[in1]).astype(int), np.floor(v[in1]).astype(int)
    depth = sample['depths'][0][vi, ui]
    z = p[in1, 2]
    vis = sample['points_visible_in'][in1, 0]
    # Visible points sit on the rendered surface (up to the slope inside one pixel).
    close = np.abs(depth[vis] - z[vis]) < 0.02 + 0.02 * z[vis]
    assert close.mean() > 0.97
    # Occluded points in view 1 lie behind the rendered surface at their pixel.
    behind = depth[~vis] < z[~vis] - 0.005
    assert behind.mean() > 0.95
    # The rendered instance at the pixel of a visible point has the point's category.
    inst = sample['instance_ids'][0][vi, ui][vis]
    assert (np.minimum(inst, 2) == sample['points_category'][in1][vis]).mean() > 0.97


def _wall_scene():
    """Floor slab z <= 0 and a wall x in [2.5, 2.7], |y| <= 2, z in [0, 2]."""
    b = SceneBuilder()
    grey = Material(np.full(3, 0.5), np.full(3, 0.3))
    b.add(box((10, 10, 0.2), (0, 0, -0.1)), FLOOR_ID, grey)
    b.add(box((0.2, 4.0, 2.0), (2.6, 0.0, 1.0)), WALL_ID, grey)
    return b.build('room', None, [], np.zeros(3))


def test_visibility_in_a_hand_built_scene():
    scene = _wall_scene()
    caster = RayCaster(scene)
    pose = pose_from_yaw_pitch([0.0, 0.0, 1.0], 0.0, np.radians(-20.0))[None]
    k_mat = intrinsics_from_fov(160, 120, 70.0)[None]
    pts = np.array([[1.5, 0.0, 0.0],    # floor in front of the wall: visible
                    [3.5, 0.0, 0.0],    # floor behind the wall: occluded
                    [2.5, 0.5, 1.0],    # wall front face: visible
                    [2.7, 0.0, 1.0],    # wall back face: occluded
                    [1.0, 0.3, 0.0]])   # floor, nearer: visible
    inv = in_frustum(pts, k_mat, pose, 160, 120, 8.0)
    assert inv.all()
    vis = visible_in(caster, pts, inv, pose)[:, 0]
    np.testing.assert_array_equal(vis, [True, False, True, False, True])
    # The rendered depth agrees: the wall is in front of the hidden floor point.
    depth = render_views(caster, k_mat, pose, 160, 120).depths[0]
    p_cam = (pts - pose[0, :3, 3]) @ pose[0, :3, :3]
    u = np.floor(k_mat[0, 0, 0] * p_cam[:, 0] / p_cam[:, 2] + 80).astype(int)
    v = np.floor(k_mat[0, 1, 1] * p_cam[:, 1] / p_cam[:, 2] + 60).astype(int)
    d = depth[v, u]
    assert d[1] < p_cam[1, 2] - 0.5 and abs(d[0] - p_cam[0, 2]) < 0.05


def test_union_removes_surfaces_nobody_can_see():
    scene = _wall_scene()
    pts, _ = sample_surface(scene, np.random.default_rng(0), 50_000)
    under_wall = (pts[:, 0] > 2.51) & (pts[:, 0] < 2.69) & (np.abs(pts[:, 1]) < 1.99)
    floor_top = (pts[:, 2] > -0.1) & (pts[:, 2] < 0.01)  # the slab's bottom is at z = -0.2
    assert (floor_top & ~under_wall).any()
    assert not (under_wall & floor_top).any()  # floor under the wall is gone
    assert not (under_wall & (pts[:, 2] > 0.01) & (pts[:, 2] < 1.99)).any()  # nothing inside


def test_select_views_restricts_to_first_view(sample):
    s1 = select_views(sample, 1)
    assert s1['images'].shape[0] == 1 and int(s1['num_views']) == 1
    assert s1['points_in_view'].shape[1] == 1 and s1['points_in_view'].all()
    np.testing.assert_array_equal(s1['points_visible'], s1['points_visible_in'][:, 0])
    assert len(s1['points']) == sample['points_in_view'][:, 0].sum()
    med = np.median(np.linalg.norm(s1['points'], axis=1))
    assert s1['median3_scale'] == pytest.approx(3.0 / med, rel=1e-6)
    with pytest.raises(ValueError, match='outside'):
        select_views(sample, 3)


def test_occluded_fraction_is_substantial_and_not_mostly_floor(sample):
    occ = ~sample['points_visible_in'].any(axis=1)
    assert 0.1 < occ.mean() < 0.6
    assert (occ & (sample['points_category'] == 0)).sum() < 0.6 * occ.sum()


def test_object_mode():
    s = make_sample(3, GeneratorConfig(width=112, height=84, num_points=4096, mode='object'))
    assert (s['points_category'] == 2).all()
    bg = s['instance_ids'] == -1
    assert bg.any() and (s['depths'][bg] == 0).all() and (s['depths'][~bg] > 0).all()


def test_load_sample_rejects_bad_files(tmp_path):
    bad = tmp_path / 'bad.npz'
    bad.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='not a readable'):
        load_sample(bad)
    s = make_sample(5, SMALL)
    del s['points_alt_normals']
    save_sample(tmp_path / 'missing.npz', s)
    with pytest.raises(ValueError, match='points_alt_normals'):
        load_sample(tmp_path / 'missing.npz')


def test_generate_resume_manifest_and_dataset(tmp_path, capsys):
    args = ['--out', str(tmp_path), '--split', 'val', '--num-samples', '2', '--width', '112',
            '--height', '84', '--num-points', '4096', '--no-progress']
    assert gen_cli.main(args) == 0
    out, err = capsys.readouterr()
    assert 'samples/s' in out and 'generate val' not in err
    split = tmp_path / 'val'
    manifest = json.loads((split / 'manifest.json').read_text())
    assert [e['seed'] for e in manifest['samples']] == [1_000_000, 1_000_001]
    assert manifest['params']['width'] == 112
    mtime = (split / sample_filename(1_000_000)).stat().st_mtime_ns
    stats = gen_cli.generate(tmp_path, 'val', [1_000_000, 1_000_001],
                             GeneratorConfig(width=112, height=84, num_points=4096),
                             progress=False)
    assert stats['skipped'] == 2 and stats['generated'] == 0
    assert (split / sample_filename(1_000_000)).stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match='other parameters'):
        gen_cli.generate(tmp_path, 'val', [1_000_000], GeneratorConfig(width=112, height=84),
                         progress=False)
    with pytest.raises(ValueError, match='outside split'):
        gen_cli.generate(tmp_path, 'val', [5], SMALL, progress=False)

    ds = SceneDataset(tmp_path, num_views=1, num_points=1000, split='val')
    item = ds[1]
    assert item['images'].shape == (1, 3, 84, 112) and item['images'].dtype == torch.float32
    assert 0.0 <= float(item['images'].min()) and float(item['images'].max()) <= 1.0
    assert item['points'].shape == (1000, 3) and item['visible'].dtype == torch.bool
    assert item['category'].dtype == torch.uint8 and item['index'] == 1
    med = float(torch.linalg.norm(item['points'], dim=1).median())
    assert med == pytest.approx(3.0, rel=0.15)
    assert torch.equal(ds[1]['points'], item['points'])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]['points'], item['points'])
    raw = SceneDataset(tmp_path / 'val', num_views=2, num_points=500, normalize=False)
    assert raw[0]['images'].shape[0] == 2


def test_robot_trajectory_is_plausible_for_eight_views():
    cfg = GeneratorConfig(num_views=8)
    for seed in (1, 2):
        scene, _, _, poses = build_views(seed, cfg)
        w, d, h = scene.room_size
        centres = poses[:, :3, 3]
        assert ((centres[:, 2] > 0.45) & (centres[:, 2] < 1.55)).all()
        assert ((centres[:, 0] > 0) & (centres[:, 0] < w) & (centres[:, 1] > 0)
                & (centres[:, 1] < d)).all()
        steps = np.linalg.norm(np.diff(centres[:, :2], axis=0), axis=1)
        assert (steps <= 1.4 * cfg.baseline + 0.06).all() and steps.sum() > cfg.baseline
        fwd = poses[:, :3, 2]  # optical z in world
        heading = np.arctan2(fwd[:, 1], fwd[:, 0])
        turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi)
        assert (turn <= np.radians(3 * cfg.yaw_step_deg) + 1e-6).all()
        # Optical frame: x right is horizontal, y points down-ish, rotation is proper.
        np.testing.assert_allclose(poses[:, 2, 0], 0.0, atol=1e-9)
        assert (poses[:, 2, 1] < -0.8).all()  # world z of the optical y axis
        np.testing.assert_allclose(np.linalg.det(poses[:, :3, :3]), 1.0, atol=1e-9)


def test_config_refuses_nan_and_negative_distances():
    # NaN passes every plain comparison: it reached manifest.json (not valid JSON) or made the
    # camera search fail deep inside with a RuntimeError
    for name in ('max_depth', 'baseline', 'yaw_step_deg', 'noise_std'):
        with pytest.raises(ValueError, match=f'{name} must be a finite number'):
            GeneratorConfig(**{name: float('nan')}).validate()
    with pytest.raises(ValueError, match='baseline'):
        GeneratorConfig(baseline=-0.1).validate()


def test_image_size_follows_a_preset_unless_pixels_are_given(tmp_path):
    from nova3r_ros.model import get_preset

    tiny, paper = get_preset('tiny'), get_preset('paper')
    defaults = GeneratorConfig()
    assert image_size() == (defaults.width, defaults.height)
    assert image_size() == (tiny.image_width, tiny.image_height)  # the shipped model's input
    assert image_size('paper') == (paper.image_width, paper.image_height) == (518, 392)
    assert image_size('paper', width=700) == (700, 392)
    assert image_size(None, 64, 48) == (64, 48)
    with pytest.raises(ValueError, match='unknown preset'):
        image_size('huge')
    args = ['--out', str(tmp_path), '--split', 'val', '--num-samples', '1', '--preset', 'micro',
            '--num-points', '512', '--no-progress']
    assert gen_cli.main(args) == 0
    manifest = json.loads((tmp_path / 'val' / 'manifest.json').read_text())
    assert (manifest['params']['width'], manifest['params']['height']) == (42, 28)
    with pytest.raises(SystemExit) as refused:
        gen_cli.main([*args[:-4], '--preset', 'huge'])
    assert refused.value.code == 2
