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

"""Stage 2's pointmap signal: GT targets in view 1's frame, the head's layout, the trainer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nova3r_ros.data.dataset import load_sample, read_manifest
from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.model import Nova3r
from nova3r_ros.model.surface import PointmapHead, SUB
from nova3r_ros.train.config import TrainConfig
from nova3r_ros.train.data import TrainSet, view1_pointmaps
from nova3r_ros.train.trainer import carried_records, Trainer
import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch


@pytest.fixture(scope='module')
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four train + one val sample, K_max=4, the micro preset's 42 x 28 input."""
    root = tmp_path_factory.mktemp('pointmap_data')
    cfg = GeneratorConfig(num_views=4, width=42, height=28, num_points=4096)
    generate(root, 'train', [0, 1, 2, 3], cfg, progress=False)
    generate(root, 'val', [1_000_000], cfg, progress=False)
    return root


def test_every_views_pointmap_lands_on_the_complete_gt(data: Path) -> None:
    split = data / 'train'
    sample = load_sample(split / read_manifest(split)['samples'][1]['file'])
    maps, valid = view1_pointmaps(sample, (2, 3))
    assert maps.shape == (4, 2 * SUB * 3 * SUB, 3) and valid.shape == maps.shape[:2]
    assert valid.mean() > 0.9
    tree = cKDTree(sample['points'])
    spacing = float(np.median(tree.query(sample['points'], k=2)[0][:, 1]))
    for view in range(4):
        near = float(np.median(tree.query(maps[view][valid[view]])[0]))
        assert near < 2 * spacing, (view, near, spacing)
    # the pose matters: views 2..4 left in their own camera frames miss the cloud
    pose = sample['cam_to_view1'][3].astype(np.float64)
    own = (maps[3] - pose[:3, 3]) @ pose[:3, :3]  # back into camera 4's frame
    assert float(np.median(tree.query(own[valid[3]])[0])) > 5 * spacing


def test_train_set_scales_pointmaps_like_the_points(data: Path) -> None:
    items = TrainSet(data / 'train', 2, pointmap_grid=(2, 3))
    plain = TrainSet(data / 'train', 2)
    item = items[(2, 3, 64, 0)]
    assert item['pointmaps'].shape == (3, 2 * SUB * 3 * SUB, 3)
    assert item['pointmaps_valid'].dtype == torch.bool
    assert 'pointmaps' not in plain[(2, 3, 64, 0)]
    # both in median_3 units: the GT points' median range is 3, the view-1 pointmap's near it
    assert abs(float(item['points'].norm(dim=-1).median()) - 3.0) < 0.6
    view1 = item['pointmaps'][0][item['pointmaps_valid'][0]]
    assert 1.5 < float(view1.norm(dim=-1).median()) < 4.5


def test_train_set_starts_at_a_manifest_index(data: Path) -> None:
    files = TrainSet(data / 'train', 2).files
    assert TrainSet(data / 'train', 2, start=1, limit=2).files == files[1:3]
    with pytest.raises(ValueError, match='from index 3'):
        TrainSet(data / 'train', 2, start=3, limit=2)


def test_pointmap_head_puts_each_patch_at_its_image_place() -> None:
    torch.manual_seed(0)
    head = PointmapHead(dim=8, grid=(2, 3), hidden=16)
    frames = torch.randn(1, 2, 6, 8)
    base = head(frames)
    poked = frames.clone()
    poked[0, 1, 1 * 3 + 2] += 1.0  # view 2, patch row 1, column 2
    moved = (head(poked) - base).abs().sum(-1).view(2, 2 * SUB, 3 * SUB) > 0
    expected = torch.zeros_like(moved)
    expected[1, SUB:2 * SUB, 2 * SUB:3 * SUB] = True
    assert torch.equal(moved, expected)


def test_pointmap_weight_needs_a_head(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='pointmap head'):
        TrainConfig(preset='micro', stage=2, out_dir=str(tmp_path), pointmap_weight=1.0,
                    init_from='unused.safetensors')
    with pytest.raises(ValueError, match='pointmap_hidden'):
        TrainConfig(preset='micro', out_dir=str(tmp_path),
                    model={'aggregator.pointmap_hidden': -1})


def test_stage2_pointmap_loss_trains_head_and_encoder(data: Path, tmp_path: Path) -> None:
    common = {'preset': 'micro', 'data_root': str(data), 'batch_size': 2,
              'num_points_min': 64, 'num_points_max': 64, 'encoder_points': 128,
              'warmup_steps': 1, 'val_every': 0, 'val_samples': 0, 'log_every': 1,
              'mean_token_samples': 2, 'threads': 1}
    head = {'decoder.confidence_hidden': 8}
    Trainer(TrainConfig(**common, out_dir=str(tmp_path / 's1'), max_steps=1, model=head),
            progress=False).train()
    init = tmp_path / 's1' / 'model_final.safetensors'
    s1 = Nova3r.from_checkpoint(init)  # as a release: fit records of its heads
    s1.save_checkpoint(init, {**s1.checkpoint_metadata, 'confidence_head': '{"tau": 0.1}',
                              'visibility_head': '{"val_auroc": 0.7}'})
    cfg = TrainConfig(**common, out_dir=str(tmp_path / 's2'), stage=2, init_from=str(init),
                      max_steps=3, views=[2, 3], pointmap_weight=0.5,
                      model={'aggregator.pointmap_hidden': 16, **head})
    run = Trainer(cfg, progress=False)
    # a head copied whole and frozen keeps its record; one of another width does not
    assert run.carried == {'confidence_head': '{"tau": 0.1}'}
    narrow = Nova3r(dataclasses.replace(
        run.model.cfg, decoder=dataclasses.replace(run.model.cfg.decoder, confidence_hidden=4)))
    assert carried_records(narrow, str(init), set()) == {'visibility_head': '{"val_auroc": 0.7}'}
    assert 'pointmap_head' in run.trained_modules()
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.train()
    train = [json.loads(line) for line in
             (tmp_path / 's2' / 'metrics.jsonl').read_text().splitlines()]
    train = [r for r in train if r['kind'] == 'train']
    assert len(train) == 3 and all(r['pointmap'] > 0 for r in train)
    assert all(abs(r['loss'] - r['flow'] - 0.1 * r['visibility'] - 0.5 * r['pointmap']) < 1e-4
               for r in train)
    model = Nova3r.from_checkpoint(tmp_path / 's2' / 'model_final.safetensors')
    assert model.pointmap_head is not None
    # the confidence head's record travels; the visibility head's (trained here) does not
    assert model.checkpoint_metadata['confidence_head'] == '{"tau": 0.1}'
    assert 'visibility_head' not in model.checkpoint_metadata
    after = model.state_dict()
    for prefix in ('pointmap_head.', 'image_encoder.backbone.'):
        assert any(not torch.equal(start[k], after[k]) for k in after if k.startswith(prefix))
    assert all(torch.equal(start[k], after[k]) for k in after if k.startswith('decoder.'))
    tokens, maps = model.encode_pointmaps(torch.rand(1, 3, 3, 28, 42))
    assert maps.shape == (1, 3, 2 * SUB * 3 * SUB, 3) and torch.isfinite(maps).all()
