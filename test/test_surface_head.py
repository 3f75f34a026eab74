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

"""Surface head: ray features, the fused visibility, checkpoints, the fit and its callers."""

from __future__ import annotations

import argparse
import dataclasses
import json

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model import surface as sf
from nova3r_ros.train import surface_head as sh
import numpy as np
import pytest
from safetensors.torch import load_file
import torch


def _plane(z: float = 2.0, n: int = 9) -> torch.Tensor:
    """Return a fronto-parallel pointmap at depth z, n x n rays over +-0.5 rad."""
    t = torch.linspace(-0.5, 0.5, n)
    yy, xx = torch.meshgrid(t, t, indexing='ij')
    return torch.stack([xx * z, yy * z, torch.full_like(xx, z)], dim=-1).reshape(1, -1, 3)


def test_ray_features_in_front_behind_and_outside() -> None:
    surface = _plane()
    ray = surface[0, 40] / surface[0, 40].norm()  # the centre ray (0, 0, 1)
    points = torch.stack([ray * 1.0, ray * 4.0, torch.tensor([1.0, 0.0, 0.0])])[None]
    rays = sf.ray_features(surface, points)[0]
    assert rays[0, 0] == pytest.approx(np.log(2.0), abs=1e-5)  # in front of the wall
    assert rays[1, 0] == pytest.approx(np.log(0.5), abs=1e-5)  # behind it
    assert rays[0, 1] == pytest.approx(0.0, abs=1e-3)
    assert rays[1, 1] == pytest.approx(0.0, abs=1e-3)
    assert rays[2, 1] > 0.8  # a direction view 1 does not see
    nan = sf.ray_features(surface, torch.full((1, 2, 3), float('nan')))
    assert torch.isfinite(nan).all()


def test_ray_features_chunks_give_the_same_answer(monkeypatch) -> None:
    surface = _plane(3.0)
    points = torch.randn(1, 50, 3, generator=torch.Generator().manual_seed(0))
    points = points + torch.tensor([0.0, 0.0, 3.0])
    whole = sf.ray_features(surface, points)
    monkeypatch.setattr(sf, 'CHUNK', 7)
    chunked = sf.ray_features(surface, points)
    # the chord is sqrt(2 - 2 cos): a rounding of cos near 1 moves it by ~1e-4
    assert torch.allclose(chunked[..., 0], whole[..., 0], atol=1e-4)
    assert torch.allclose(chunked[..., 1], whole[..., 1], atol=2e-3)


def test_ray_features_neighbours_and_centring() -> None:
    surface = _plane()
    surface[0, [31, 39, 41, 49]] *= 2.0  # the centre's four neighbours are a far patch
    ray = torch.tensor([0.0, 0.0, 1.0])
    points = torch.stack([ray * 1.0, ray * 4.0, ray * 2.0])[None]
    plain = sf.ray_features(surface, points)
    rich = sf.ray_features(surface, points, neighbours=3, centred=True)
    assert rich.shape == (1, 3, sf.feature_width(3, True)) == (1, 3, 5)
    assert torch.equal(rich[..., :2], plain)  # the first two columns stay the tenth's
    # the 2nd and 3rd nearest directions are two of the centre's neighbours: the far patch
    far = np.log(surface[0, 41].norm().item())
    assert rich[0, 0, 2:4].tolist() == pytest.approx([far, far], abs=1e-4)
    assert rich[0, 0, 0] == pytest.approx(np.log(2.0), abs=1e-5)
    median = rich[0, :, 0].median()
    assert torch.allclose(rich[0, :, 4], rich[0, :, 0] - median)
    placed = sf.ray_features(surface, points, neighbours=3, centred=True, position=True)
    assert placed.shape[-1] == sf.feature_width(3, True, True) == 9
    assert torch.equal(placed[..., :5], rich)
    assert torch.allclose(placed[0, :, 5:8], ray.expand(3, 3))  # the direction from view 1
    assert torch.allclose(placed[0, :, 8], torch.tensor([1.0, 4.0, 2.0]).log())
    with pytest.raises(ValueError, match='neighbours must be in'):
        sf.ray_features(surface, points, neighbours=0)


def test_surface_head_shape_depth_and_token_count() -> None:
    torch.manual_seed(0)
    head = sf.SurfaceHead(16, (3, 4), 8)
    out = head(torch.randn(2, 12, 16))
    assert out.shape == (2, 3 * sf.SUB * 4 * sf.SUB, 3) and (out[..., 2] > 0).all()
    with pytest.raises(ValueError, match='expected 3 x 4'):
        head(torch.randn(2, 11, 16))
    target = out.detach()
    mask = torch.ones(target.shape[:2], dtype=torch.bool)
    assert float(sf.pointmap_loss(target, target, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(sf.pointmap_loss(target * 1.5, target, mask)) > 0.3


def test_stem_refines_from_zero_and_reads_the_image() -> None:
    torch.manual_seed(0)
    plain = sf.SurfaceHead(16, (3, 4), 8)
    stem = sf.SurfaceHead(16, (3, 4), 8, stem=6)
    missing, unexpected = stem.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(('stem.', 'lift.', 'refine.')) for k in missing)
    tokens, image = torch.randn(2, 12, 16), torch.randn(2, 3, 21, 28)
    # the refinement starts at zero: the stem head begins where the token head is
    assert torch.allclose(stem(tokens, image), plain(tokens), atol=1e-6)
    with pytest.raises(ValueError, match='needs view 1 images'):
        stem(tokens)
    with pytest.raises(ValueError, match='needs view 1 images'):
        stem(tokens, image[:1])
    torch.nn.init.normal_(stem.refine[-1].weight, std=0.1)
    out = stem(tokens, image)
    assert (out[..., 2] > 0).all() and not torch.allclose(out, plain(tokens))
    # the image matters once the refinement is trained
    assert not torch.allclose(out, stem(tokens, image.flip(-1)))


def _micro(surface_hidden: int, stem: int = 0, layers: int = 2, top: int = 0) -> Nova3r:
    cfg = get_preset('micro')
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, surface_hidden=surface_hidden, surface_stem=stem, surface_layers=layers,
        surface_top=top))
    torch.manual_seed(0)
    return Nova3r(cfg).eval()


def test_model_with_a_stem_feeds_view_1_to_the_head(tmp_path) -> None:
    model = _micro(8, stem=4)
    torch.nn.init.normal_(model.surface_head.refine[-1].weight, std=0.1)
    cfg = model.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width)
    _, surface = model.encode_views(images)
    _, frames = model.encode_images(images, frames=True)
    assert torch.equal(surface, model.surface_head(frames[:, 0], images[:, 0]))
    path = tmp_path / 'stem.safetensors'
    model.save_checkpoint(path)
    again = Nova3r.from_checkpoint(path)
    assert again.cfg.decoder.surface_stem == 4
    assert torch.equal(again.encode_views(images)[1], surface)
    with pytest.raises(ValueError, match='surface_stem must be >= 0'):
        _micro(8, stem=-1)


def test_surface_layers_build_the_head_and_round_trip(tmp_path) -> None:
    model = _micro(8, layers=3)
    assert len(model.surface_head.ctx.layers) == 3
    assert len(_micro(8).surface_head.ctx.layers) == 2  # older files: two layers
    path = tmp_path / 'deep.safetensors'
    model.save_checkpoint(path)
    again = Nova3r.from_checkpoint(path)
    assert again.cfg.decoder.surface_layers == 3
    images = torch.rand(1, 2, 3, model.cfg.image_height, model.cfg.image_width)
    assert torch.equal(again.encode_views(images)[1], model.encode_views(images)[1])
    with pytest.raises(ValueError, match='surface_layers must be in'):
        _micro(8, layers=0)


def test_surface_top_starts_as_the_shared_tokens_and_is_its_own_copy(tmp_path) -> None:
    base = _micro(8)
    images = torch.rand(1, 3, 3, base.cfg.image_height, base.cfg.image_width)
    _, seen = base.encode_images(images, frames=True)
    for top in (1, 2):
        model = sh.with_surface(base, 8, top=top)
        assert model.surface_top.start == base.cfg.last_scene_layer + 1 - top
        _, entering = model.encode_images(images, frames=True, tap=model.surface_top.start)
        assert entering.shape[:2] == (1, 3)  # every view, special tokens included
        # the copy carries the entering tokens to exactly what the head read before
        assert torch.allclose(model.top_frames(entering), seen, atol=1e-5)
        tokens, surface = model.encode_views(images)
        assert torch.equal(tokens, base.encode_images(images))
        assert torch.allclose(surface, model.surface_head(seen[:, 0]), atol=1e-5)
    # it is a copy: changing it moves the pointmap, never the scene tokens
    with torch.no_grad():
        for w in model.surface_top.parameters():
            w.add_(0.05 * torch.randn_like(w))
    tokens, moved = model.encode_views(images)
    assert torch.equal(tokens, base.encode_images(images))
    assert not torch.allclose(moved, surface, atol=1e-3)
    path = tmp_path / 'top.safetensors'
    model.save_checkpoint(path)
    again = Nova3r.from_checkpoint(path)
    assert again.cfg.decoder.surface_top == 2
    assert torch.allclose(again.encode_views(images)[1], moved, atol=1e-6)
    # a copy needing the scene tokens (a scene layer's global block) or past the layers: refused
    with pytest.raises(ValueError, match='surface_top must be in'):
        _micro(8, top=3)
    with pytest.raises(ValueError, match='surface_top needs a surface head'):
        _micro(0, top=1)
    with pytest.raises(ValueError, match='tap 5 outside'):
        base.encode_images(images, frames=True, tap=5)
    with pytest.raises(ValueError, match='no surface top'):
        base.top_frames(entering)


def test_fit_with_a_top_trains_it_one_k_at_a_time(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    cache = tmp_path / 'cache'
    out = tmp_path / 'top.safetensors'
    argv = ['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset), '--out',
            str(out), '--hidden', '8', '--top', '2', '--top-lr', '1e-3',
            '--surface-scenes', '2', '--surface-steps', '6', '--views', '1', '2', '--fusion-start',
            '2', '--train-scenes', '1', '--val-scenes', '2', '--num-points', '128',
            '--num-steps', '2', '--keep', '32', '--iters', '5', '--threads', '1',
            '--no-progress', '--cache', str(cache)]
    assert sh.main(argv) == 0
    base, model = Nova3r.from_checkpoint(micro_checkpoint), Nova3r.from_checkpoint(out)
    meta = json.loads(model.checkpoint_metadata['surface_head'])
    assert meta['top'] == 2 and meta['top_lr'] == 1e-3 and model.cfg.decoder.surface_top == 2
    # the copy trained; the shared encoder (the scene tokens) did not
    agg = base.image_encoder.aggregator
    assert not torch.equal(model.surface_top.frame_blocks[0].mlp.fc1.weight,
                           agg.frame_blocks[0].mlp.fc1.weight)
    assert all(torch.equal(a, b) for a, b in zip(base.image_encoder.state_dict().values(),
                                                 model.image_encoder.state_dict().values(),
                                                 strict=True))
    # the cache holds every view's entering tokens, zero past each scene's K
    train = [p for p in cache.iterdir() if '_train_0_2_' in p.name]
    assert len(train) == 1 and train[0].name.endswith('_tap0.safetensors')
    got = load_file(str(train[0]))
    assert got['views'].tolist() == [1, 2] and got['tokens'].shape[1] == 2
    assert not got['tokens'][0, 1].any() and got['tokens'][1, 1].any()
    # its AbsRel groups scenes by K (a mixed batch is refused)
    data = tuple(got[n] for n in ('tokens', 'pointmaps', 'valid', 'views'))
    assert sh.absrel(model.surface_head, data, model.surface_top) > 0
    with pytest.raises(ValueError, match='one K at a time'):
        sh.run_head(model.surface_head, data, torch.arange(2), model.surface_top)
    with pytest.raises(SystemExit):
        sh.main([*argv, '--stem', '4'])
    assert '--top does not combine' in capsys.readouterr().err
    # a paused fit writes no model, keeps its state, and a rerun finishes it
    again = tmp_path / 'again.safetensors'
    argv[argv.index(str(out))] = str(again)
    assert sh.main([*argv, '--pause-at', '4']) == 0
    assert 'paused at step 4 of 6' in capsys.readouterr().out
    state = tmp_path / 'again_fit_state.safetensors'
    assert state.exists() and not again.exists()
    assert sh.main(argv) == 0
    assert again.exists() and not state.exists()
    finished = Nova3r.from_checkpoint(again).surface_top.state_dict()
    assert all(torch.equal(v, model.surface_top.state_dict()[k]) for k, v in finished.items())


def test_a_fit_resumed_from_its_state_equals_one_uninterrupted(tmp_path) -> None:
    base = _micro(8)
    rows, cols = sh.grid_of(base)
    gen = torch.Generator().manual_seed(1)
    t = base.cfg.aggregator.num_register_tokens + 1 + rows * cols
    data = (torch.randn(6, 2, t, base.cfg.aggregator.dim, generator=gen),
            torch.rand(6, rows * cols * sf.SUB ** 2, 3, generator=gen) + 0.5,
            torch.ones(6, rows * cols * sf.SUB ** 2, dtype=torch.bool),
            torch.tensor([1, 2, 2, 1, 2, 2]))

    def fit(state, until=None, seed=0):
        torch.manual_seed(seed)  # a different init: what the state holds must win
        model = sh.with_surface(base, 8, top=2)
        sh.fit_surface(model.surface_head, data, 6, seed=0, batch=2, progress=False,
                       dropout=0.1, top=model.surface_top, state=state, save_every=2,
                       until=until)
        return {**model.surface_head.state_dict(), **model.surface_top.state_dict()}

    whole = fit(None)
    state = tmp_path / 'fit_state.safetensors'
    paused = fit(state, until=3)
    assert any(not torch.equal(paused[k], whole[k]) for k in whole)
    resumed = fit(state, seed=5)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    # a state from other settings is refused, not continued
    model = sh.with_surface(base, 8, top=2)
    with pytest.raises(ValueError, match='holds another fit'):
        sh.fit_surface(model.surface_head, data, 7, seed=0, batch=2, progress=False,
                       top=model.surface_top, state=state)


def test_model_fuses_visibility_only_with_a_surface(tmp_path) -> None:
    model = _micro(8)
    cfg = model.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width)
    tokens, surface = model.encode_views(images)
    assert torch.equal(tokens, model.encode_images(images))
    rows, cols = sh.grid_of(model)
    assert surface.shape == (1, rows * cols * sf.SUB ** 2, 3)
    gen = torch.Generator().manual_seed(0)
    fused = model.sample(tokens, 64, 2, generator=gen, surface=surface)
    plain = model.sample(tokens, 64, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fused['points'], plain['points'])  # geometry untouched
    assert torch.equal(fused['visibility_head_logits'], plain['visibility_logits'])
    rays = sf.ray_features(surface, fused['points'])
    expected = model.visibility_fusion(torch.cat([plain['visibility_logits'][..., None], rays],
                                                 dim=-1))
    assert torch.allclose(fused['visibility_logits'], expected)
    with pytest.raises(ValueError, match='surface must be'):
        model.sample(tokens, 64, 2, surface=surface[0])
    # the fused model round-trips; a model without the head ignores a surface
    path = tmp_path / 'surface.safetensors'
    model.save_checkpoint(path)
    again = Nova3r.from_checkpoint(path)
    assert again.cfg.decoder.surface_hidden == 8
    assert torch.equal(again.encode_views(images)[1], surface)
    bare = _micro(0)
    assert bare.encode_views(images)[1] is None
    out = bare.sample(bare.encode_images(images), 32, 2, surface=surface)
    assert 'visibility_head_logits' not in out
    assert set(model.reconstruct(images, 32, 2)) >= {'visibility_logits',
                                                     'visibility_head_logits'}


def test_fit_adds_only_the_surface_and_the_evaluation_uses_it(
        small_dataset, micro_checkpoint, tmp_path) -> None:
    from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
    from nova3r_ros.evaluation.baselines import ModelMethod
    from nova3r_ros.model.preprocess import prepare_images

    out = tmp_path / 'surface.safetensors'
    argv = ['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset), '--out', str(out),
            '--hidden', '8', '--surface-scenes', '3', '--surface-steps', '5',
            '--train-scenes', '3', '--val-scenes', '2', '--num-points', '128', '--num-steps', '2',
            '--keep', '64', '--iters', '20', '--threads', '1', '--no-progress']
    assert sh.main(argv) == 0
    before, after = load_file(str(micro_checkpoint)), load_file(str(out))
    added = set(after) - set(before)
    assert added and all(k.startswith(('surface_head.', 'visibility_fusion.')) for k in added)
    assert all(torch.equal(before[k], after[k]) for k in before)
    model = Nova3r.from_checkpoint(out)
    meta = json.loads(model.checkpoint_metadata['surface_head'])
    assert meta['surface_scenes'] == 3 and meta['hidden'] == 8 and meta['val_depth_absrel'] > 0
    assert meta['layers'] == 2 and model.cfg.decoder.surface_layers == 2
    fit = json.loads((tmp_path / 'surface_fit.json').read_text())
    assert fit['fusion_rows'] == 3 * 64 and 0 <= fit['val_auroc_fused'] <= 1
    # the evaluation's model row publishes the fused logits
    split = small_dataset / 'val'
    sample = select_views(load_sample(split / read_manifest(split)['samples'][0]['file']), 2)
    pred = ModelMethod(model, num_steps=2).predict(sample, 64, seed=3)
    images, _ = prepare_images(list(sample['images']), model.cfg)
    tokens, surface = model.encode_views(images[None])
    ours = model.sample(tokens, 64, 2, generator=torch.Generator().manual_seed(3),
                        surface=surface)
    assert np.allclose(pred['visibility_scores'], ours['visibility_logits'][0].numpy())
    assert not np.allclose(pred['visibility_scores'], ours['visibility_head_logits'][0].numpy())


def test_fit_with_a_stem_warm_starts_from_the_token_head(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    common = ['--data', str(small_dataset), '--hidden', '8', '--surface-scenes', '3',
              '--surface-steps', '4', '--train-scenes', '2', '--val-scenes', '2',
              '--num-points', '128', '--num-steps', '2', '--keep', '32', '--iters', '5',
              '--threads', '1', '--no-progress', '--cache', str(tmp_path / 'cache')]
    first = tmp_path / 'tokens.safetensors'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(first), *common]) == 0
    # a warm start needs a surface head of the same width
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(tmp_path / 'x.st'),
                    '--warm-start', *common]) == 2
    assert 'needs a checkpoint with a surface head of width 8' in capsys.readouterr().err
    # ... and as many layers
    assert sh.main(['--checkpoint', str(first), '--out', str(tmp_path / 'x.st'),
                    '--warm-start', '--layers', '3', *common]) == 2
    assert 'needs a surface head of 3 layers' in capsys.readouterr().err
    second = tmp_path / 'stem.safetensors'
    assert sh.main(['--checkpoint', str(first), '--out', str(second), '--stem', '4',
                    '--warm-start', '--dropout', '0.1', *common, '--surface-steps', '1']) == 0
    model = Nova3r.from_checkpoint(second)
    meta = json.loads(model.checkpoint_metadata['surface_head'])
    assert meta['stem'] == 4 and meta['warm_start'] and meta['dropout'] == 0.1
    assert model.cfg.decoder.surface_stem == 4
    # the token path started from the first head, so after one step it is still close to it
    old = Nova3r.from_checkpoint(first).surface_head.state_dict()
    new = model.surface_head.state_dict()
    assert all((new[k] - v).abs().max() < 0.01 for k, v in old.items())
    cached = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert any(name.endswith('_images.safetensors') for name in cached)


def test_cache_keeps_the_tokens_and_starts_pick_the_scenes(
        small_dataset, micro_checkpoint, tmp_path) -> None:
    model = Nova3r.from_checkpoint(micro_checkpoint)
    split, cache = small_dataset / 'train', tmp_path / 'cache'
    fresh = sh.surface_cache(model, split, 2, [2], progress=False, start=1)
    first = sh.cached_surface(model, micro_checkpoint, cache, split, 2, [2], False, 1)
    files = list(cache.iterdir())
    assert len(files) == 1 and '_train_1_2_k2.' in files[0].name
    # the second call reads the file (a model that would encode differently is not asked)
    other = _micro(0)
    again = sh.cached_surface(other, micro_checkpoint, cache, split, 2, [2], False, 1)
    for a, b, c in zip(fresh, first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)
    # start 1 skips scene 0: its first row is scene 1's, not scene 0's
    zero = sh.surface_cache(model, split, 1, [2], progress=False)
    assert not torch.equal(zero[1][0], fresh[1][0])
    assert torch.equal(sh.surface_cache(model, split, 1, [2], progress=False, start=1)[1][0],
                       fresh[1][0])
    with pytest.raises(ValueError, match='from index 2'):
        sh.split_files(split, 2, start=2)


def test_tokens_from_reuses_an_older_files_cache_only_if_it_encodes_alike(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    cache = tmp_path / 'cache'
    common = ['--data', str(small_dataset), '--hidden', '8', '--surface-scenes', '2',
              '--surface-steps', '2', '--fusion-start', '2', '--train-scenes', '1',
              '--val-scenes', '2', '--num-points', '128', '--num-steps', '2', '--keep', '32',
              '--iters', '5', '--threads', '1', '--no-progress', '--cache', str(cache)]
    first = tmp_path / 'first.safetensors'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(first), *common]) == 0
    names = sorted(p.name for p in cache.iterdir())
    # a warm start from the new file reads the tokens cached under the old file's digest
    warm = tmp_path / 'warm.safetensors'
    assert sh.main(['--checkpoint', str(first), '--out', str(warm), '--warm-start',
                    '--tokens-from', str(micro_checkpoint), *common]) == 0
    assert sorted(p.name for p in cache.iterdir()) == names
    # a file whose encoder differs is refused, as is one that is not a checkpoint
    model = Nova3r.from_checkpoint(micro_checkpoint)
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(0.01)
    other = tmp_path / 'other.safetensors'
    model.save_checkpoint(other)
    assert sh.main(['--checkpoint', str(first), '--out', str(warm), '--warm-start',
                    '--tokens-from', str(other), *common]) == 2
    assert 'encodes differently from --checkpoint' in capsys.readouterr().err
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'not a checkpoint')
    assert sh.main(['--checkpoint', str(first), '--out', str(warm), '--warm-start',
                    '--tokens-from', str(junk), *common]) == 2
    assert 'error: --tokens-from' in capsys.readouterr().err


def test_several_surface_ranges_train_on_their_union_each_cached(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    out, cache = tmp_path / 'ranges.safetensors', tmp_path / 'cache'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
                    '--out', str(out), '--hidden', '8', '--surface-start', '2', '0',
                    '--surface-scenes', '1', '1', '--surface-steps', '2', '--fusion-start', '1',
                    '--train-scenes', '2', '--val-scenes', '2', '--num-points', '128',
                    '--num-steps', '2', '--keep', '32', '--iters', '5', '--threads', '1',
                    '--no-progress', '--cache', str(cache)]) == 0
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 3  # two surface ranges and the validation scenes
    assert any('_train_2_1_' in n for n in names) and any('_train_0_1_' in n for n in names)
    meta = json.loads(Nova3r.from_checkpoint(out).checkpoint_metadata['surface_head'])
    assert meta['surface_ranges'] == [[2, 1], [0, 1]] and meta['surface_scenes'] == 2
    # the fusion's scenes 1-2 include surface scene 2: fitted, but said
    assert "overlap the surface head's [(2, 1), (0, 1)]" in capsys.readouterr().err
    # the union is what the head trains on: scene 2's rows, then scene 0's
    model = Nova3r.from_checkpoint(micro_checkpoint)
    args = argparse.Namespace(surface_start=[2, 0], surface_scenes=[1, 1])
    parts = [sh.cached_surface(model, micro_checkpoint, None, small_dataset / 'train', n, [2],
                               False, start) for start, n in sh.surface_ranges(args)]
    both = sh.surface_cache(model, small_dataset / 'train', 3, [2], progress=False)
    joined = sh.concat(parts)
    assert torch.equal(joined[1][0], both[1][2]) and torch.equal(joined[1][1], both[1][0])


def test_own_encoder_starts_as_the_shared_one_and_leaves_the_scene_tokens(
        small_dataset, micro_checkpoint, tmp_path) -> None:
    first = tmp_path / 'tokens.safetensors'
    common = ['--data', str(small_dataset), '--hidden', '8', '--surface-scenes', '3',
              '--train-scenes', '2', '--val-scenes', '2', '--num-points', '128',
              '--num-steps', '2', '--keep', '32', '--iters', '5', '--threads', '1',
              '--no-progress']
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(first), *common,
                    '--surface-steps', '3']) == 0
    shared = Nova3r.from_checkpoint(first)
    cfg = shared.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width,
                        generator=torch.Generator().manual_seed(0))
    # a warm copy gives the same pointmap before any fine-tuning (to rounding: a frozen
    # transformer layer takes PyTorch's fused path)
    warm = sh.with_surface(shared, 8, warm=True, encoder=True)
    assert torch.equal(warm.surface_frames(images), shared.encode_images(images, frames=True)[1])
    assert torch.allclose(warm.encode_views(images)[1], shared.encode_views(images)[1],
                          atol=1e-5)
    with pytest.raises(ValueError, match='no surface encoder'):
        shared.surface_frames(images)
    second = tmp_path / 'encoder.safetensors'
    assert sh.main(['--checkpoint', str(first), '--out', str(second), '--encoder',
                    '--warm-start', '--encoder-lr', '1e-3', '--lr', '5e-4', '--batch', '2',
                    '--val-every', '2',
                    '--surface-steps', '4', '--views', '1', '2', *common]) == 0
    before, after = load_file(str(first)), load_file(str(second))
    added = set(after) - set(before)
    assert added and all(k.startswith('surface_encoder.') for k in added)
    assert all(torch.equal(before[k], after[k]) for k in before
               if not k.startswith(('surface_head.', 'visibility_fusion.')))
    assert any(not torch.equal(after[k], after['surface_encoder.' + k[len('image_encoder.'):]])
               for k in after if k.startswith('image_encoder.'))  # it was fine-tuned
    model = Nova3r.from_checkpoint(second)
    assert model.cfg.decoder.surface_encoder
    meta = json.loads(model.checkpoint_metadata['surface_head'])
    assert meta['encoder'] and meta['batch'] == 2 and meta['val_depth_absrel'] > 0
    assert meta['lr'] == 5e-4
    tokens, surface = model.encode_views(images)
    assert torch.equal(tokens, shared.encode_images(images))  # the scene tokens are untouched
    assert torch.equal(surface, model.surface_head(model.surface_frames(images)[:, 0]))
    assert not torch.allclose(surface, shared.encode_views(images)[1])


def test_view_set_holds_each_k_scale_and_the_encoder_fit_learns(small_dataset) -> None:
    from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
    from nova3r_ros.model.preprocess import prepare_images

    model = sh.with_surface(_micro(0), 8, encoder=True)
    split = small_dataset / 'train'
    data = sh.view_set(model, split, 2, [2, 1], progress=False)
    images, pointmaps, valid, scales, ks = data
    assert images.dtype == torch.uint8 and images.shape[1] == 2 and ks.tolist() == [2, 1]
    sample = load_sample(split / read_manifest(split)['samples'][1]['file'])
    for k in (1, 2):
        chosen = select_views(sample, k)
        assert float(scales[1, k - 1]) == pytest.approx(float(chosen['median3_scale']))
        target, mask = sh.view1_pointmap(chosen, sh.grid_of(model))
        assert torch.allclose(pointmaps[1] * scales[1, k - 1], torch.from_numpy(target),
                              rtol=1e-5, atol=1e-5)
        assert torch.equal(valid[1], torch.from_numpy(mask))
    expected, _ = prepare_images(list(sample['images'][:2]), model.cfg)
    assert (images[1].float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-6
    start = sh.encoder_absrel(model, data)
    sh.fit_encoder(model, data, [1, 2], 30, seed=0, lr=1e-2, encoder_lr=1e-3, batch=2,
                   progress=False)
    assert not model.surface_encoder.training and not model.surface_head.training
    assert sh.encoder_absrel(model, data) < 0.7 * start  # two scenes: it must fit them


def test_fusion_only_refit_reads_the_richer_features(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    common = ['--data', str(small_dataset), '--hidden', '8', '--surface-scenes', '3',
              '--surface-steps', '3', '--train-scenes', '2', '--val-scenes', '2',
              '--num-points', '128', '--num-steps', '2', '--keep', '32', '--iters', '5',
              '--threads', '1', '--no-progress']
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(tmp_path / 'x.st'),
                    '--fusion-only', *common]) == 2
    assert '--fusion-only needs a checkpoint with a surface head' in capsys.readouterr().err
    first = tmp_path / 'first.safetensors'
    assert sh.main(['--checkpoint', str(micro_checkpoint), '--out', str(first), *common]) == 0
    second = tmp_path / 'rich.safetensors'
    assert sh.main(['--checkpoint', str(first), '--out', str(second), '--fusion-only',
                    '--neighbours', '4', '--centred', '--position', *common]) == 0
    before, after = load_file(str(first)), load_file(str(second))
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith('visibility_fusion.') for k in changed)
    model = Nova3r.from_checkpoint(second)
    d = model.cfg.decoder
    assert (d.fusion_neighbours, d.fusion_centred, d.fusion_position) == (4, True, True)
    meta = json.loads(model.checkpoint_metadata['surface_head'])
    assert meta['fusion_only'] and meta['fusion_neighbours'] == 4 and meta['fusion_centred']
    assert meta['surface_scenes'] == 3  # the surface head's own record carries over
    cfg = model.cfg
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width)
    tokens, surface = model.encode_views(images)
    out = model.sample(tokens, 64, 2, generator=torch.Generator().manual_seed(0),
                       surface=surface)
    rays = sf.ray_features(surface, out['points'], 4, True, True)
    expected = model.visibility_fusion(torch.cat([out['visibility_head_logits'][..., None],
                                                  rays], dim=-1))
    assert torch.allclose(out['visibility_logits'], expected)


def test_dropout_acts_only_while_the_head_trains() -> None:
    torch.manual_seed(0)
    head = sf.SurfaceHead(16, (2, 3), 8)
    x = torch.randn(4, 6, 16)
    y = head(x).detach() + 0.1
    data = (x, y, torch.ones(4, y.shape[1], dtype=torch.bool))
    sh.fit_surface(head, data, 2, seed=0, batch=2, progress=False, dropout=0.5)
    drops = [m for m in head.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(m.p == 0.5 for m in drops)
    assert not head.training  # eval: the dropout is off, two calls agree
    assert torch.equal(head(x), head(x))


@pytest.mark.parametrize('extra, message', [
    (['--hidden', '6'], '--hidden must be a multiple of 4'),
    (['--iters', '0'], '--iters must be >= 1'),
    (['--dropout', '1'], '--dropout must be in [0, 1)'),
    (['--stem', '-2'], '--stem must be >= 0'),
    (['--fusion-start', '-1'], '--fusion-start must be >= 0'),
    (['--encoder-lr', '0'], '--encoder-lr must be > 0'),
    (['--lr', 'nan'], '--lr must be > 0'),
    (['--batch', '0'], '--batch must be >= 1'),
    (['--views', '2', '0'], '--views must be >= 1'),
    (['--neighbours', '0'], '--neighbours must be in [1, 16]'),
    (['--layers', '0'], '--layers must be in [1, 12]'),
    (['--fusion-only', '--encoder'], '--fusion-only keeps the checkpoint'),
    (['--surface-start', '0', '10'], 'give one count per start'),
    (['--surface-start', '0', '5', '--surface-scenes', '10', '3'], 'ranges overlap'),
    (['--surface-scenes', '0'], '--surface-scenes must be >= 1'),
    (['--surface-start', '-1'], '--surface-start must be >= 0'),
])
def test_fit_refuses_bad_arguments(capsys, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit):
        sh.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', *extra])
    assert message in capsys.readouterr().err


def test_diagnostics_name_the_visibility_source() -> None:
    from nova3r_ros.ros.node_diagnostics import visibility_source

    assert visibility_source(_micro(8)) == 'head + view-1 surface'
    assert visibility_source(_micro(0)) == 'head'
    assert visibility_source(None) == 'head'
