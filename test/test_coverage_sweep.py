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

"""The coverage sweep (`tools/coverage_sweep.py`) ranks as the sampler does."""

import dataclasses

from doubles import load_tool
from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.preprocess import prepare_images
import numpy as np
import pytest
import torch


def _tool():
    return load_tool('coverage_sweep')


def test_a_weight_scores_what_the_sampler_with_that_coverage_publishes(tmp_path) -> None:
    generate(tmp_path, 'val', [1_000_000], GeneratorConfig(num_views=2, width=42, height=28,
                                                           num_points=2048), progress=False)
    split = tmp_path / 'val'
    cfg = get_preset('micro')
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, confidence_hidden=8, confidence_coverage=2.0))
    torch.manual_seed(1)
    model = Nova3r(cfg).eval()
    files = [split / read_manifest(split)['samples'][0]['file']]
    rows = _tool().sweep(model, files, 2, 200, 2, 1.5, [0.0, 2.0])
    sample = select_views(load_sample(files[0]), 2)
    images, _ = prepare_images(list(sample['images']), model.cfg)
    with torch.no_grad():
        out = model.sample(model.encode_images(images[None]), 200, 2, oversample=1.5,
                           generator=torch.Generator().manual_seed(0))
    scores = out['visibility_logits'][0].numpy()
    prediction = {'points': out['points'][0].numpy(), 'units': 'normalized',
                  'visibility': scores > 0, 'visibility_scores': scores}
    metrics = score_prediction(prediction, sample, ground_truth(sample), 'chamfer', 0).metrics
    keys = _tool().KEYS
    assert np.allclose(rows[2.0, 'rank'][0], [metrics[k] for k in keys], equal_nan=True)
    assert rows[0.0, 'rank'].shape == (1, len(keys))


def test_selection_rules_keep_n_distinct_points_and_differ_as_documented() -> None:
    tool = _tool()
    rng = np.random.default_rng(0)
    # a tight confident cluster and a far, less confident one
    points = np.concatenate([rng.normal(0, 0.005, (100, 3)),
                             rng.normal(0, 0.005, (100, 3)) + [5.0, 0, 0]]).astype(np.float32)
    logits = np.concatenate([np.full(100, 1.0), np.full(100, 0.5)]) + rng.normal(0, 1e-3, 200)
    isolation = np.zeros(200)
    for rule in tool.RULES:
        keep, kept = tool.select(rule, points, logits, isolation, 0.0, 100)
        assert len(np.unique(keep)) == 100 and np.all(np.diff(keep) > 0), rule
        assert kept.shape == (100, 3) and np.isfinite(kept).all(), rule
    rank, _ = tool.select('rank', points, logits, isolation, 0.0, 100)
    assert np.array_equal(rank, np.arange(100))  # the logits alone: the first cluster only
    # without the isolation term the kept-set pass changes nothing
    assert np.array_equal(tool.select('kept-set', points, logits, isolation, 0.0, 100)[0], rank)
    # each kept neighbour costs GREEDY_PENALTY: after the first round the far cluster wins
    greedy, _ = tool.select('greedy', points, logits, isolation, 0.0, 100)
    assert 0 < np.sum(greedy >= 100) < 100


def test_project_moves_points_onto_their_local_plane() -> None:
    tool = _tool()
    rng = np.random.default_rng(1)
    xy = rng.uniform(-1, 1, (2000, 2))
    points = np.column_stack([xy, rng.normal(0, 0.02, 2000)]).astype(np.float32)
    keep, kept = tool.select('project', points, np.zeros(2000), np.zeros(2000), 0.0, 500)
    assert np.abs(kept[:, 2]).mean() < 0.5 * np.abs(points[keep, 2]).mean()
    assert np.allclose(kept[:, :2], points[keep, :2], atol=0.05)
    with pytest.raises(ValueError, match='rule must be one of'):
        tool.select('nearest', points, np.zeros(2000), np.zeros(2000), 0.0, 500)


def test_refuses_a_ratio_without_oversampling(capsys) -> None:
    with pytest.raises(SystemExit):
        _tool().main(['--checkpoint', 'x', '--data', 'y', '--ratios', '1'])
    assert '--ratios must be in' in capsys.readouterr().err


def test_refuses_nan_weights_and_missing_inputs(tmp_path, capsys) -> None:
    ckpt = tmp_path / 'm.safetensors'
    ckpt.write_text('not weights')
    for argv, said in ((['--weights', 'nan'], '--weights must be finite'),
                       ([], 'no manifest.json')):
        with pytest.raises(SystemExit):
            _tool().main(['--checkpoint', str(ckpt), '--data', str(tmp_path), *argv])
        assert said in capsys.readouterr().err
    (tmp_path / 'manifest.json').write_text('{"params": {"num_views": 2}, "samples": []}')
    assert _tool().main(['--checkpoint', str(ckpt), '--data', str(tmp_path)]) == 2
    assert 'coverage_sweep: error' in capsys.readouterr().err  # the checkpoint is not weights
