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

"""Visibility bounds: the z-test, the GT pointmap, the two-fold learned AUROC, the CLI."""

from __future__ import annotations

import dataclasses
import json

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.train import surface_head as sh
from nova3r_ros.train import visibility_bound as vb
import numpy as np
import pytest
import torch


def _one_view(depth: np.ndarray) -> dict[str, np.ndarray]:
    k = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    return {'cam_to_view1': np.eye(4, dtype=np.float32)[None], 'intrinsics': k[None],
            'depths': depth[None].astype(np.float32)}


def test_ztest_signs_frame_and_no_hit() -> None:
    depth = np.full((80, 100), 2.0)
    depth[:, :10] = 0.0  # no hit in the left columns
    sample = _one_view(depth)
    points = np.array([[0.0, 0.0, 1.0],    # in front of the wall
                       [0.0, 0.0, 3.0],    # behind it
                       [5.0, 0.0, 1.0],    # outside the frame
                       [0.0, 0.0, -1.0],   # behind the camera
                       [-0.45, 0.0, 1.0]])  # u = 5: a pixel that hit nothing
    score = vb.ztest(points, sample, 1)
    assert score[0] == pytest.approx(1.0) and score[1] == pytest.approx(-1.0)
    assert score[2] == -np.inf and score[3] == -np.inf
    assert score[4] == vb.NO_HIT


def test_ztest_takes_the_best_view() -> None:
    sample = _one_view(np.full((80, 100), 2.0))
    second = np.eye(4, dtype=np.float32)
    second[2, 3] = 2.5  # camera 2 sits 2.5 m ahead of camera 1, looking the same way
    sample = {'cam_to_view1': np.stack([sample['cam_to_view1'][0], second]),
              'intrinsics': np.repeat(sample['intrinsics'], 2, axis=0),
              'depths': np.stack([np.full((80, 100), 2.0), np.full((80, 100), 4.0)])}
    point = np.array([[0.0, 0.0, 3.0]])  # behind view 1's wall, 0.5 m in front of camera 2
    assert vb.ztest(point, sample, 1)[0] == pytest.approx(-1.0)
    assert vb.ztest(point, sample, 2)[0] == pytest.approx(3.5)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('vb')
    cfg = GeneratorConfig(width=112, height=84, num_points=4096, num_views=2)
    generate(root / 'data', 'test', [2_000_000, 2_000_001, 2_000_002], cfg, progress=False)
    return root


def test_ztest_separates_the_generators_own_visible_points(scenes) -> None:
    split = scenes / 'data' / 'test'
    path = split / read_manifest(split)['samples'][0]['file']
    sample = select_views(load_sample(path), 2)
    score = vb.ztest(np.asarray(sample['points'], dtype=np.float64), sample, 2)
    visible = np.asarray(sample['points_visible'], dtype=bool)
    assert 0.0 < visible.mean() < 1.0
    assert auroc(score, visible) > 0.95  # GT depth and GT labels agree
    assert np.median(np.abs(score[visible])) < 0.05  # visible points lie on the depth map


def test_view1_pointmap_reprojects_to_its_pixels(scenes) -> None:
    split = scenes / 'data' / 'test'
    sample = select_views(load_sample(split / read_manifest(split)['samples'][1]['file']), 1)
    points, mask = sh.view1_pointmap(sample, (6, 8))
    assert points.shape == (24 * 32, 3) and mask.shape == (24 * 32,) and mask.mean() > 0.5
    metres = points[mask] / float(sample['median3_scale'])
    k = sample['intrinsics'][0]
    u = k[0, 0] * metres[:, 0] / metres[:, 2] + k[0, 2]
    cols = np.nonzero(mask)[0] % 32  # row-major, as SurfaceHead lays its points out
    assert np.allclose(u, (cols + 0.5) * 112 / 32, atol=1e-3)
    assert vb.ztest(metres.astype(np.float64), sample, 1) == pytest.approx(0.0, abs=1e-4)


def test_to_view_places_view_2s_gt_pointmap(scenes) -> None:
    split = scenes / 'data' / 'test'
    sample = select_views(load_sample(split / read_manifest(split)['samples'][0]['file']), 2)
    s1 = vb.view_scale(sample, 0)
    assert s1 == float(sample['median3_scale'])
    local, mask = sh.view_pointmap(sample, (6, 8), 1)  # view 2's frame, its own units
    local = local[mask].astype(np.float64) * s1 / vb.view_scale(sample, 1)
    pose = np.asarray(sample['cam_to_view1'][1], dtype=np.float64)
    in_view1 = (local / s1) @ pose[:3, :3].T * s1 + pose[:3, 3] * s1
    assert np.abs(in_view1 - local).max() > 0.1  # the views differ: the test can fail
    assert np.allclose(vb.to_view(in_view1, sample, 1, s1), local, atol=1e-6)
    # and view 2's own GT depth then z-tests to zero in metres
    assert vb.ztest(in_view1 / s1, {**sample, 'cam_to_view1': sample['cam_to_view1'][1:],
                                    'intrinsics': sample['intrinsics'][1:],
                                    'depths': sample['depths'][1:]}, 1) == pytest.approx(
        0.0, abs=1e-4)


def _pixel_micro(path) -> None:
    cfg = get_preset('micro')
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, surface_hidden=16, surface_pixel=8, fusion_neighbours=2,
        fusion_centred=True))
    torch.manual_seed(0)
    Nova3r(cfg).save_checkpoint(path)


def test_cli_pointmaps_end_to_end_and_refusal(scenes, tmp_path, capsys) -> None:
    ckpt = tmp_path / 'pixel.safetensors'
    _pixel_micro(ckpt)
    split = scenes / 'data' / 'test'
    out = tmp_path / 'pm'
    argv = ['--data', str(split), '--limit', '2', '--num-points', '128', '--num-steps', '2',
            '--learn-iters', '20', '--threads', '1', '--no-progress', '--pointmaps']
    assert vb.main(argv + ['--checkpoint', str(ckpt), '--out', str(out)]) == 0
    assert '| learned(head, GT view-1 rays) |' in capsys.readouterr().out
    result = json.loads((out / 'bound.json').read_text())['result']
    assert set(result) == {
        'fused (published)', 'learned(head)', 'learned(head, model rays)',
        'learned(head, GT view-1 rays)', 'learned(head, model rays, GT rays views 2..K)',
        'learned(head, GT rays every view)',
        'learned(head, model rays, pixel-net rays views 2..K at GT pose)',
        'learned(head, ztest_view1)', 'learned(head, GT view-1 rays, aligned points)',
        'learned(head, model rays, aligned points)',
        'learned(head, model rays, points fitted to the pixel pointmap)',
        'learned(head, model rays, own z-buffer)', 'learned(head, model rays, scene context)',
        'visible_fraction', 'align_scale', 'align_shift', 'self_error'}
    assert all(0.0 <= v <= 1.0 for k, v in result.items()
               if not k.startswith(('align', 'self')))
    assert result['align_scale'] > 0 and result['align_shift'] >= 0 <= result['self_error']
    model = Nova3r.from_checkpoint(str(ckpt)).eval()
    sample = select_views(load_sample(split / read_manifest(split)['samples'][0]['file']), 2)
    rows = vb.pointmap_rows(model, sample, 64, 2, 1.0, seed=0)
    width = 1 + 2 + 1  # fusion_neighbours 2, centred
    assert rows['rays_model'].shape == (64, 2 * width)  # the head's and the pixel net's
    assert rows['rays_model_aligned'].shape == rows['rays_model'].shape
    for key in ('rays_gt1', 'rays_gt1_aligned', 'rays_gt2', 'rays_pix2'):
        assert rows[key].shape == (64, width)
    assert not np.allclose(rows['fused'], rows['head'])  # the published logit is the fusion's
    assert rows['rays_self'].shape == (64, 1 + vb.SELF_NEIGHBOURS)
    assert rows['rays_self'][:, 0] == pytest.approx(0.0, abs=1e-5)  # each point is its own ray
    assert rows['scene_context'].shape == (64, 12)
    assert np.ptp(rows['scene_context'], axis=0).max() == 0.0  # one row per scene, repeated
    plain = tmp_path / 'plain.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(plain)
    assert vb.main(argv + ['--checkpoint', str(plain), '--out', str(tmp_path / 'x')]) == 1
    assert 'needs a checkpoint with a pixel net' in capsys.readouterr().err


def test_fit_to_surface_recovers_scale_and_shift_despite_hidden_points() -> None:
    gen = torch.Generator().manual_seed(0)
    # a room corner's visible surface (back wall, floor, side wall), as a pointmap holds it
    u, v = torch.rand(2, 600, generator=gen) * 2 - 1
    wall = torch.stack([2 * u, v, torch.full_like(u, 3.0)], dim=-1)
    floor = torch.stack([2 * u, torch.ones_like(u), 1.5 + 1.5 * (v + 1) / 2], dim=-1)
    side = torch.stack([torch.full_like(u, 2.0), v, 1.5 + 1.5 * (u + 1) / 2], dim=-1)
    surface = torch.cat([wall, floor, side])
    # and what no camera sees: the far side of a box standing in the middle
    hidden = torch.stack([0.3 * u[:200], 0.5 + 0.2 * v[:200], torch.full_like(u[:200], 2.2)],
                         dim=-1)
    truth = torch.cat([surface, hidden])  # the cloud also holds what no camera sees
    s, t = 1.1, torch.tensor([0.2, -0.1, 0.3])
    cloud = ((truth - t) / s)[None]  # where the model put it
    cloud[0, 5] = float('nan')
    scale, shift = vb.fit_to_surface(cloud, surface[None], iters=100)  # it slides along planes
    assert scale.shape == (1,) and shift.shape == (1, 3)
    assert abs(float(scale[0]) - s) < 0.02
    assert torch.allclose(shift[0], t, atol=0.05)
    start = (cloud[0, 6:] - truth[6:]).norm(dim=-1).mean()
    moved = scale[0] * cloud[0, 6:] + shift[0]
    assert (moved - truth[6:]).norm(dim=-1).mean() < 0.1 * start
    with pytest.raises(ValueError, match='fit_to_surface needs'):
        vb.fit_to_surface(cloud[0], surface[None])


def test_noisy_depths_log_std_holes_and_seed() -> None:
    depth = np.full((2, 84, 112), 3.0, dtype=np.float32)
    depth[:, :5] = 0.0
    sample = {'depths': depth, 'other': 1}
    noisy = vb.noisy_depths(sample, 0.2, 14, np.random.default_rng(0))
    assert noisy['other'] == 1 and noisy['depths'].shape == depth.shape
    assert (noisy['depths'][:, :5] == 0).all() and (noisy['depths'][:, 5:] > 0).all()
    logs = np.log(noisy['depths'][:, 5:] / 3.0)
    assert len(np.unique(np.round(logs[0, 9:23, 14:28], 6))) == 1  # constant over a patch
    assert 0.1 < logs.std() < 0.3
    again = vb.noisy_depths(sample, 0.2, 14, np.random.default_rng(0))
    assert np.array_equal(again['depths'], noisy['depths'])
    assert np.array_equal(sample['depths'], depth)  # the input is left as it was


def test_learned_auroc_finds_a_non_monotone_score_and_holds_scenes_out() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=(8 * 500, 1))
    labels = np.abs(x[:, 0]) < 1.0  # visible in a band: no monotone score can rank it
    scene = np.repeat(np.arange(8), 500)
    assert auroc(x[:, 0], labels) == pytest.approx(0.5, abs=0.05)
    assert vb.learned_auroc(x, labels, scene, seed=0, iters=300) > 0.97
    noise = rng.normal(size=(8 * 500, 1))  # nothing to learn: held-out scenes stay at chance
    assert vb.learned_auroc(noise, labels, scene, seed=0, iters=300) < 0.6


def test_encode_images_frames_are_the_same_pass() -> None:
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    cfg = model.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width)
    with torch.no_grad():
        plain = model.encode_images(images)
        tokens, frames = model.encode_images(images, frames=True)
    rows, cols = sh.grid_of(model)
    assert torch.equal(plain, tokens)
    assert frames.shape == (1, 2, rows * cols, cfg.aggregator.dim)
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all()


def test_cli_end_to_end_on_micro_model(scenes, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(ckpt)
    split = scenes / 'data' / 'test'
    out = tmp_path / 'bound'
    argv = ['--checkpoint', str(ckpt), '--data', str(split), '--limit', '2', '--num-points',
            '128', '--num-steps', '2', '--probe-data', str(split), '--probe-scenes', '3',
            '--probe-steps', '3', '--learn-iters', '20', '--depth-noise', '0.1', '--threads', '1',
            '--no-progress', '--out', str(out)]
    assert vb.main(argv) == 0
    assert '| learned(head, probe) |' in capsys.readouterr().out
    result = json.loads((out / 'bound.json').read_text())['result']
    expected = (set(vb.RAW) | set(vb.LEARNED) | set(vb.LEARNED_PROBE)
                | {'learned(head, ztest_all~0.1)'})
    assert expected | {'visible_fraction', 'probe_absrel', 'depth_absrel~0.1'} == set(result)
    assert 0.02 < result['depth_absrel~0.1'] < 0.2
    assert all(0.0 <= result[k] <= 1.0 for k in expected)
    assert result['probe_absrel'] > 0
    assert (out / 'bound.md').read_text().startswith('Visibility AUROC bounds: 2 scenes')


def test_cli_refuses_bad_inputs(tmp_path, capsys) -> None:
    ckpt = tmp_path / 'c.safetensors'
    ckpt.write_bytes(b'x')
    cases = [(['--checkpoint', str(tmp_path / 'none.safetensors')], 'no such file'),
             (['--checkpoint', str(ckpt)], 'no manifest.json'),
             (['--checkpoint', str(ckpt), '--limit', '1'], '--limit must be >= 2'),
             (['--checkpoint', str(ckpt), '--oversample', '0.5'], '--oversample must be >= 1'),
             (['--checkpoint', str(ckpt), '--depth-noise', '0'], '--depth-noise values')]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            vb.main(argv + ['--data', str(tmp_path)])
        assert message in capsys.readouterr().err
