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

"""Surface confidence: geometry evidence, the sampler's keep policy, the head fit."""

import dataclasses
import json

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.confidence import (
    GEOMETRY_DIM,
    geometry_features,
    ISOLATION_NEIGHBOURS,
    VELOCITY_DIM,
)
from nova3r_ros.train import confidence_head as ch
from nova3r_ros.train.visibility_head import collect
import numpy as np
import pytest
from safetensors.torch import load_file
import torch


def _model(hidden: int, coverage: float = 0.0) -> Nova3r:
    cfg = get_preset('micro')
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, confidence_hidden=hidden, confidence_coverage=coverage))
    torch.manual_seed(3)
    return Nova3r(cfg).eval()


def test_geometry_tells_a_surface_point_from_a_stray_one() -> None:
    g = torch.Generator().manual_seed(0)
    plane = torch.rand(400, 3, generator=g) * 2
    plane[:, 2] = 3.0
    stray = torch.tensor([[1.0, 1.0, 1.5]])  # 1.5 in front of the plane's middle
    points = torch.cat([plane, stray, torch.tensor([[float('nan'), 0.0, 0.0]])])
    feats = geometry_features(points)
    assert feats.shape == (402, GEOMETRY_DIM) and bool(torch.isfinite(feats).all())
    iso8 = ISOLATION_NEIGHBOURS.index(8)
    assert feats[400, iso8] > feats[:400, iso8].max()  # the stray point is the most isolated
    planarity = len(ISOLATION_NEIGHBOURS) + 4  # smallest normalised eigenvalue, 16 neighbours
    assert float(feats[:400, planarity].median()) < 1e-6  # flat neighbourhoods on the plane
    assert bool((feats[401] == 0).all())  # non-finite input: zeros, never NaN
    with pytest.raises(ValueError, match='more than'):
        geometry_features(points[:20])


def test_sampler_keeps_the_most_confident_of_the_drawn_points() -> None:
    model = _model(16)
    tokens = model.prior_scene_tokens(1)
    out = model.sample(tokens, 200, 2, generator=torch.Generator().manual_seed(4),
                       oversample=1.5)
    points, inputs = model.draw(tokens, 300, 2, generator=torch.Generator().manual_seed(4),
                                head_inputs=True)
    with torch.no_grad():
        logits = model.confidence_head(inputs)[0]
    top = torch.sort(torch.topk(logits, 200).indices).values
    assert torch.equal(out['points'][0], points[0, top])
    assert torch.allclose(out['confidence_logits'][0], logits[top])
    assert out['visibility_logits'].shape == (1, 200)
    # every kept point is at least as confident as every dropped one
    dropped = torch.ones(300, dtype=torch.bool)
    dropped[top] = False
    assert float(logits[top].min()) >= float(logits[dropped].max())


def test_coverage_favours_confident_points_where_the_cloud_is_thin() -> None:
    model = _model(16, coverage=2.0)
    tokens = model.prior_scene_tokens(1)
    out = model.sample(tokens, 200, 2, generator=torch.Generator().manual_seed(6),
                       oversample=2.0)
    _, inputs = model.draw(tokens, 400, 2, generator=torch.Generator().manual_seed(6),
                           head_inputs=True)
    with torch.no_grad():
        logits = model.confidence_head(inputs)[0]
    column = model.cfg.decoder.width + VELOCITY_DIM + ISOLATION_NEIGHBOURS.index(8)
    rank = logits + 2.0 * inputs[0, :, column]  # + coverage x log isolation
    top = torch.sort(torch.topk(rank, 200).indices).values
    assert torch.allclose(out['confidence_logits'][0], logits[top])
    plain = torch.sort(torch.topk(logits, 200).indices).values
    assert not torch.equal(top, plain)  # the isolation term changed which points survive


def test_density_policy_and_a_model_without_the_head_are_unchanged() -> None:
    with_head, without = _model(16), _model(0)
    state = {k: v for k, v in with_head.state_dict().items()
             if not k.startswith('confidence_head.')}
    without.load_state_dict(state)
    tokens = with_head.prior_scene_tokens(1)

    def run(model: Nova3r, keep: str) -> dict[str, torch.Tensor]:
        return model.sample(tokens, 150, 2, generator=torch.Generator().manual_seed(5),
                            oversample=1.25, keep=keep)

    density_kept = run(with_head, 'density')
    plain = run(without, 'auto')  # no head: auto falls back to the density filter
    assert torch.equal(density_kept['points'], plain['points'])
    assert 'confidence_logits' not in plain
    with pytest.raises(ValueError, match='confidence head'):
        run(without, 'confidence')
    with pytest.raises(ValueError, match='keep must be'):
        run(with_head, 'nearest')


def test_fit_adds_only_the_head_and_the_result_samples_by_it(small_dataset, micro_checkpoint,
                                                             tmp_path) -> None:
    out = tmp_path / 'conf.safetensors'
    argv = ['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset), '--out', str(out),
            '--train-scenes', '3', '--val-scenes', '2', '--num-points', '256',
            '--num-steps', '2', '--keep', '128', '--hidden', '8', '--epochs', '2',
            '--batch', '64', '--last', '--precision', 'bf16', '--no-progress']
    assert ch.main(argv) == 0
    before, after = load_file(str(micro_checkpoint)), load_file(str(out))
    added = set(after) - set(before)
    assert added and all(k.startswith('confidence_head.') for k in added)
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    model = Nova3r.from_checkpoint(out)
    assert model.cfg.decoder.confidence_hidden == 8
    meta = json.loads(model.checkpoint_metadata['confidence_head'])
    assert meta['tau'] == 0.1 and meta['train_scenes'] == 3
    assert meta['precision'] == 'bf16'  # the cache was sampled under bf16 autocast
    assert model.cfg.decoder.confidence_coverage == 3.0 == meta['coverage']
    fit = json.loads((tmp_path / 'conf_fit.json').read_text())
    assert fit['train_rows'] == 3 * 128 and 0 < fit['on_surface_fraction'] < 1
    assert fit['val_auroc'] == fit['log'][-1]['val_auroc']  # --last: the schedule's end
    result = model.sample(model.prior_scene_tokens(1), 100, 2, oversample=2.0,
                          generator=torch.Generator().manual_seed(0))
    assert result['confidence_logits'].shape == (1, 100)
    assert bool(torch.isfinite(result['points']).all())


def test_refuses_bad_arguments(capsys) -> None:
    with pytest.raises(SystemExit):
        ch.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', '--oversample', '1'])
    assert '--oversample must be in' in capsys.readouterr().err
    with pytest.raises(SystemExit):  # validation scenes 150-165 are also training scenes
        ch.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', '--val-split', 'train',
                 '--val-start', '150'])
    assert 'overlap the training scenes' in capsys.readouterr().err


def test_a_range_reads_the_same_rows_as_the_whole_split(small_dataset) -> None:
    seeds: list[int] = []

    def rows(sample: dict[str, np.ndarray], seed: int) -> tuple[torch.Tensor, np.ndarray]:
        seeds.append(seed)
        mean = torch.tensor([[float(sample['images'].mean()), float(len(sample['images']))]])
        return mean, np.array([True])

    split = small_dataset / 'train'
    whole = collect(split, 3, [1, 2], rows, 7, progress=False)
    tail = collect(split, 2, [1, 2], rows, 7, progress=False, start=1)
    assert seeds == [7, 8, 9, 8, 9]  # the seed follows the split index
    assert torch.equal(tail.features, whole.features[1:])  # same scenes, same K
    assert tail.scene.tolist() == [1, 2]
    with pytest.raises(ValueError, match='2 samples from index 1, asked for 3'):
        collect(split, 3, [1], rows, 0, progress=False, start=1)


@pytest.mark.parametrize('hidden', [0, 16])
def test_visibility_reads_the_features_the_sampler_returns(hidden: int) -> None:
    model = _model(hidden)
    out = model.sample(model.prior_scene_tokens(1), 120, 2, oversample=1.5, features=True,
                       generator=torch.Generator().manual_seed(7))
    assert out['point_features'].shape == (1, 120, model.cfg.decoder.width)
    with torch.no_grad():
        again = model.visibility_head(out['point_features'])
    assert torch.allclose(again, out['visibility_logits'])  # what the head refit caches


def test_diagnostics_name_the_keep_policy() -> None:
    from nova3r_ros.ros.node_diagnostics import keep_policy

    assert keep_policy(_model(8), 1.5) == 'confidence'
    assert keep_policy(_model(0), 1.5) == 'density'
    assert keep_policy(_model(8), 1.0) == 'all'
