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

"""Pixel net for view 1's pointmap: rows, mirroring, the fit, the model and the fusion refit."""

from __future__ import annotations

import argparse
import dataclasses
import json

from nova3r_ros.data.dataset import load_sample, read_manifest
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model import surface as sf
from nova3r_ros.ros.node_diagnostics import visibility_source
from nova3r_ros.train import pixel_surface as ps
from nova3r_ros.train import surface_head as sh
import numpy as np
import pytest
from safetensors.torch import load_file
import torch


def _micro(surface_hidden: int = 0, pixel: int = 0) -> Nova3r:
    cfg = get_preset('micro')
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, surface_hidden=surface_hidden, surface_pixel=pixel))
    torch.manual_seed(0)
    return Nova3r(cfg).eval()


def _first(root, split: str = 'train') -> dict:
    folder = root / split
    return load_sample(folder / read_manifest(folder)['samples'][0]['file'])


def test_pixel_net_shape_depth_and_refusals() -> None:
    net = sf.PixelSurface((2, 3), 8)
    out = net(torch.rand(2, 3, 28, 42))
    assert out.shape == (2, 2 * sf.SUB * 3 * sf.SUB, 3)
    assert (out[..., 2] > 0).all() and torch.isfinite(out).all()
    # the net reads the image at twice the pointmap's size: a resized input gives the same
    small = torch.nn.functional.interpolate(torch.rand(1, 3, 28, 42), size=(16, 24))
    assert torch.equal(net(small), net(small.clone()))
    with pytest.raises(ValueError, match='multiple of 8'):
        sf.PixelSurface((2, 3), 12)
    with pytest.raises(ValueError, match=r'needs images \(B, 3, H, W\)'):
        net(torch.rand(3, 28, 42))


def test_mirrored_net_answers_the_mirrored_image_with_the_mirrored_pointmap() -> None:
    torch.manual_seed(0)
    grid, image = (2, 3), torch.rand(1, 3, 28, 42)
    rows, cols = 2 * sf.SUB, 3 * sf.SUB

    def mirrored(points: torch.Tensor) -> torch.Tensor:
        out = points.view(-1, rows, cols, 3).flip(2) * torch.tensor([-1.0, 1.0, 1.0])
        return out.reshape(points.shape)

    plain = sf.PixelSurface(grid, 8).eval()
    both = sf.PixelSurface(grid, 8, mirror=True).eval()
    both.load_state_dict(plain.state_dict())  # the same weights: mirror adds none
    # the plain net is not symmetric (strided convolutions), the averaged one is, exactly
    assert not torch.allclose(plain(image.flip(-1)), mirrored(plain(image)), atol=1e-3)
    assert torch.allclose(both(image.flip(-1)), mirrored(both(image)), atol=1e-5)
    # the depth is the geometric mean of the two answers, the direction their mean
    a, b = plain(image), mirrored(plain(image.flip(-1)))
    assert torch.allclose(both(image)[..., 2], (a[..., 2] * b[..., 2]).sqrt(), rtol=1e-5)
    assert torch.allclose(both(image)[..., :2] / both(image)[..., 2:],
                          0.5 * (a[..., :2] / a[..., 2:] + b[..., :2] / b[..., 2:]), atol=1e-5)


def test_view_pointmaps_share_one_scale_rule(small_dataset) -> None:
    sample = _first(small_dataset)
    first, ok = ps.view_pointmap(sample, (2, 3), 0)
    expected, expected_ok = sh.view1_pointmap(sample, (2, 3))
    assert np.array_equal(first, expected) and np.array_equal(ok, expected_ok)
    # view 2: its own depth, scaled so the complete GT's median range from that camera is 3
    second, ok2 = ps.view_pointmap(sample, (2, 3), 1)
    to_view = np.linalg.inv(sample['cam_to_view1'][1].astype(np.float64))
    pts = sample['points'] @ to_view[:3, :3].T + to_view[:3, 3]
    scale = 3.0 / np.median(np.linalg.norm(pts, axis=-1))
    raw, _ = ps.view_pointmap({**sample, 'median3_scale': np.float32(1.0),
                               'depths': sample['depths'][[1]],
                               'intrinsics': sample['intrinsics'][[1]]}, (2, 3), 0)
    assert ok2.any()
    assert np.allclose(second[ok2], raw[ok2] * scale, rtol=1e-5)


def test_mirroring_a_row_is_the_row_of_the_mirrored_view(small_dataset) -> None:
    sample = _first(small_dataset)
    mirrored = {**sample, 'depths': sample['depths'][:, :, ::-1].copy()}
    grid = (2, 3)
    pts, ok = ps.view_pointmap(sample, grid, 0)
    flipped_pts, flipped_ok = ps.view_pointmap(mirrored, grid, 0)
    image = torch.rand(1, 3, 16, 24)
    im, t, m = ps.flip(image, torch.from_numpy(pts)[None], torch.from_numpy(ok)[None], grid)
    assert torch.equal(im, image.flip(-1))
    assert torch.allclose(t[0], torch.from_numpy(flipped_pts), atol=1e-5)
    assert torch.equal(m[0], torch.from_numpy(flipped_ok))


def test_fit_learns_its_rows_and_reports_the_edge_split() -> None:
    torch.manual_seed(0)
    grid = (2, 3)
    rows = 4
    images = (torch.rand(rows, 3, 16, 24) * 255).to(torch.uint8)
    depth = 1.0 + images[:, 0, ::2, ::2].float().reshape(rows, -1) / 255.0  # depth from pixels
    targets = torch.stack([torch.zeros_like(depth), torch.zeros_like(depth), depth], dim=-1)
    masks = torch.ones(rows, depth.shape[1], dtype=torch.bool)
    data = (images, targets, masks)
    net = sf.PixelSurface(grid, 8)
    before = ps.evaluate(net, data, grid)
    args = argparse.Namespace(steps=150, seed=0, lr=3e-3, batch=4, width=8, no_flip=True,
                              save_every=1000, val_every=0, no_progress=True)
    log = ps.fit(net, data, data, args, None)
    assert [row['step'] for row in log] == [150]  # the last step is always validated
    assert not net.training
    assert log[-1]['absrel'] < 0.5 * before['absrel']
    assert set(log[-1]) >= {'absrel', 'absrel_edges', 'absrel_rest', 'absrel_mirror', 'loss'}
    assert not net.mirror  # scoring the mirrored answer leaves the net as it was


def test_fit_writes_weights_the_fusion_refit_reads(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    pixel = tmp_path / 'pixel.safetensors'
    assert ps.main(['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
                    '--out', str(pixel), '--train-start', '0', '2', '--train-scenes', '1', '1',
                    '--val-start', '1', '--val-scenes', '1', '--views', '2', '--steps', '4',
                    '--batch', '2',
                    '--val-every', '2', '--cache', str(tmp_path / 'cache'), '--threads', '1',
                    '--no-progress']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['rows'] == 4 and np.isfinite(summary['absrel'])  # 2 scenes x 2 views
    assert len(list((tmp_path / 'cache').iterdir())) == 3  # each range cached on its own
    _, tensors = sh.read_pixel(pixel)
    assert tensors and all(torch.isfinite(v).all() for v in tensors.values())
    # --score fits nothing and scores the file, plain and mirrored
    assert ps.main(['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
                    '--out', str(pixel), '--val-start', '1', '--val-scenes', '1', '--score',
                    '--cache', str(tmp_path / 'cache'), '--no-progress']) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored['absrel'] == pytest.approx(summary['absrel'])
    assert np.isfinite(scored['absrel_mirror']) and scored['absrel_mirror'] != scored['absrel']
    assert ps.main(['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
                    '--out', str(micro_checkpoint), '--val-start', '1', '--val-scenes', '1',
                    '--score', '--no-progress']) == 2
    assert 'not a pixel net' in capsys.readouterr().err
    common = ['--data', str(small_dataset), '--train-scenes', '2', '--val-scenes', '2',
              '--num-points', '128', '--num-steps', '2', '--keep', '32', '--iters', '5',
              '--threads', '1', '--no-progress', '--neighbours', '2', '--centred']
    # the pixel net alone on a checkpoint without a surface head
    alone = tmp_path / 'alone.safetensors'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(tmp_path / 'x.st'),
                    '--pixel', str(pixel), *common]) == 2
    assert 'needs a checkpoint with a surface head' in capsys.readouterr().err
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(alone),
                    '--pixel', str(pixel), '--pixel-only', *common]) == 0
    before, after = load_file(str(micro_checkpoint)), load_file(str(alone))
    assert set(after) - set(before) == {k for k in after
                                        if k.startswith(('pixel_surface.', 'visibility_fusion.'))}
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing else moved
    assert all(torch.equal(after[f'pixel_surface.{k}'], v) for k, v in tensors.items())
    assert 'val depth AbsRel pixel net' in capsys.readouterr().out  # not the absent head's
    model = Nova3r.from_checkpoint(alone)
    assert model.surface_head is None and model.pixel_surface is not None
    record = json.loads(model.checkpoint_metadata['surface_head'])['pixel']
    assert record['pixel_only'] and record['width'] == 16 and record['fit']['steps'] == 4
    assert visibility_source(model) == 'head + view-1 surface (pixel net)'
    assert not model.pixel_surface.mirror and not record['mirror']
    # --pixel-mirror: the net averages with the mirrored image, recorded in the config
    mirror = tmp_path / 'mirror.safetensors'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(mirror),
                    '--pixel', str(pixel), '--pixel-only', '--pixel-mirror', *common]) == 0
    capsys.readouterr()
    model = Nova3r.from_checkpoint(mirror)
    assert model.cfg.decoder.surface_pixel_mirror and model.pixel_surface.mirror
    assert json.loads(model.checkpoint_metadata['surface_head'])['pixel']['mirror']
    # a model file is not a pixel net
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(tmp_path / 'y.st'),
                    '--pixel', str(micro_checkpoint), '--pixel-only', *common]) == 2
    assert 'not a pixel net' in capsys.readouterr().err


def test_model_fuses_the_head_and_the_pixel_pointmaps(tmp_path) -> None:
    model = _micro(8, pixel=8)
    cfg = model.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width)
    tokens, surface = model.encode_views(images)
    _, frames = model.encode_images(images, frames=True)
    head, pixel = model.surface_head(frames[:, 0]), model.pixel_surface(images[:, 0])
    assert torch.equal(surface, torch.cat([head, pixel], dim=1))
    out = model.sample(tokens, 64, 2, generator=torch.Generator().manual_seed(0),
                       surface=surface)
    rays = torch.cat([sf.ray_features(head, out['points']),
                      sf.ray_features(pixel, out['points'])], dim=-1)
    expected = model.visibility_fusion(torch.cat([out['visibility_head_logits'][..., None],
                                                  rays], dim=-1))
    assert torch.allclose(out['visibility_logits'], expected)
    path = tmp_path / 'both.safetensors'
    model.save_checkpoint(path)
    again = Nova3r.from_checkpoint(path)
    assert again.cfg.decoder.surface_pixel == 8
    # the reloaded convolutions may pick another kernel: equal up to rounding
    assert torch.allclose(again.encode_views(images)[1], surface, rtol=1e-5, atol=1e-6)
    alone = _micro(0, pixel=8)
    assert torch.equal(alone.encode_views(images)[1], alone.pixel_surface(images[:, 0]))
    assert _micro().encode_views(images)[1] is None
    with pytest.raises(ValueError, match='surface_pixel must be 0 or a multiple of 8'):
        _micro(pixel=4)


@pytest.mark.parametrize('extra, message', [
    (['--width', '12'], '--width must be a multiple of 8'),
    (['--steps', '0'], '--steps must be >= 1'),
    (['--lr', '0'], '--lr must be > 0'),
    (['--train-scenes', '3500'], 'training scenes [0, 3500) overlap the scenes [3400, 3500)'),
    (['--train-start', '0', '10', '--train-scenes', '20', '5'], 'overlap the scenes [10, 15)'),
    (['--train-start', '0', '10'], 'give one count per start'),
])
def test_pixel_fit_refuses_bad_arguments(capsys, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit):
        ps.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', *extra])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('flag', ['--pixel-only', '--pixel-mirror'])
def test_pixel_options_need_pixel(capsys, flag: str) -> None:
    with pytest.raises(SystemExit):
        sh.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', flag])
    assert '--pixel-only and --pixel-mirror need --pixel' in capsys.readouterr().err
