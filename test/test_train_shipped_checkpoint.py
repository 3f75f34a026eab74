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
The shipped model (checkpoints/nova3r_tiny.safetensors) loads from the file alone.

It reconstructs finite points in a sane range of median_3 units.
"""

from __future__ import annotations

import json
from pathlib import Path

from nova3r_ros.model import Nova3r, prepare_images
import numpy as np
import pytest
import torch

CHECKPOINT = Path(__file__).resolve().parents[1] / 'checkpoints' / 'nova3r_tiny.safetensors'


@pytest.fixture(scope='module')
def model() -> Nova3r:
    torch.set_num_threads(2)
    return Nova3r.from_checkpoint(CHECKPOINT)


def test_file_size_and_metadata(model: Nova3r) -> None:
    # a bound on what every clone downloads (eighth release: 49.2 MiB, the 12-block backbone,
    # the 6-layer aggregator and the confidence head; tenth: + the surface head; fourteenth:
    # 55.6 MiB with that head 256 wide and 3 deep; fifteenth: 59.2 MiB with the pixel net;
    # session 28: 29.6 MiB, the same weights stored in float16 and widened on load;
    # seventeenth: 29.8 MiB with the pointmap head)
    assert CHECKPOINT.stat().st_size <= 31 * 1024 * 1024
    assert model.checkpoint_storage == 'float16'
    assert all(v.dtype != torch.float16 for v in model.state_dict().values())
    meta = model.checkpoint_metadata
    assert 'stored in float16 since session 28' in meta['release']
    assert int(meta['step']) > 0
    train_cfg = json.loads(meta['train_config'])
    assert train_cfg['preset'] == 'tiny'
    # ninth to sixteenth release: the decoder refitted alone in a stage-1 run with OT coupling,
    # sampled by the ddim step; seventeenth: that decoder frozen, the image encoder trained on
    # in stage 2 with every view's pointmap in view 1's frame as an extra signal
    assert meta['stage'] == '2' and train_cfg['train_modules'] == []
    assert train_cfg['coupling'] == 'ot' and 'seventeenth' in meta['release']
    assert train_cfg['pointmap_weight'] > 0 and model.pointmap_head is not None
    assert model.cfg.flow.method == 'ddim'
    # its scenes (seeds 9 630-12 829) are none the fusion or its validation reads
    run = (train_cfg['train_start'], train_cfg['train_samples'])
    # tenth release on: a view-1 surface head whose pointmap the published visibility reads;
    # eleventh: refitted on 3 000 scenes, the fusion on scenes the surface head never saw
    assert model.surface_head is not None and model.visibility_fusion is not None
    surface = json.loads(meta['surface_head'])
    assert surface['val_auroc_fused'] > surface['val_auroc_head']
    # thirteenth: the surface head on 9 130 scenes in two ranges around the fusion's and the
    # validation's (3 000-3 499), so neither reads a scene the head learnt
    assert surface['surface_scenes'] == 9130 and surface['stem'] == 0
    # fourteenth: that head 256 wide with 3 layers (was 192 / 2), which under-fitted
    assert (model.cfg.decoder.surface_hidden, model.cfg.decoder.surface_layers) == (256, 3)
    assert (surface['hidden'], surface['layers']) == (256, 3)
    ranges = surface['surface_ranges']
    assert sum(n for _, n in ranges) == surface['surface_scenes']
    for start, count in ((surface['fusion_start'], surface['fusion_train_scenes']),
                         (surface['val_start'], surface['val_scenes'])):
        assert all(start + count <= a or a + n <= start for a, n in ranges + [run])
    # twelfth on: the fusion fitted on 400 such scenes, reading the depth difference against
    # the 8 nearest pointmap directions and centred on the window's median
    d = model.cfg.decoder
    assert surface['fusion_train_scenes'] == 400 and surface['val_split'] == 'train'
    assert (d.fusion_neighbours, d.fusion_centred, d.fusion_position) == (8, True, False)
    assert not d.surface_encoder
    # fifteenth: a pixel net for view 1's pointmap beside the head, fitted on every view's depth
    # of training scenes clear of the fusion's and the validation's; the fusion reads both
    assert model.pixel_surface is not None and d.surface_pixel == 16
    pixel = surface['pixel']
    assert not pixel['pixel_only'] and pixel['width'] == 16 and pixel['fit']['views'] == 4
    fit = pixel['fit']
    # sixteenth: that net on all 9 130 such scenes for 12 000 steps (was 6 130 / 6 000)
    assert sum(fit['train_scenes']) == 9130 and fit['steps'] == 12000
    assert not d.surface_pixel_mirror and not pixel['mirror']
    for a, n in zip(fit['train_start'], fit['train_scenes'], strict=True):
        for start, count in ((surface['fusion_start'], surface['fusion_train_scenes']),
                             (surface['val_start'], surface['val_scenes'])):
            assert start + count <= a or a + n <= start
    assert model.visibility_fusion.mlp[0].in_features == 1 + 2 * (1 + 8 + 1)
    assert model.cfg.flow.method == 'ddim' and model.cfg.flow.num_steps == 4
    assert model.cfg.name == 'tiny'
    assert (model.cfg.image_width, model.cfg.image_height) == (224, 168)
    # the trivial prior ships with it: a real mean latent, not the zero init
    assert float(model.mean_scene_tokens.abs().mean()) > 1e-3
    # eighth release on: the sampler keeps the drawn points its confidence head ranks highest
    assert model.confidence_head is not None and model.cfg.decoder.confidence_coverage > 0
    assert json.loads(meta['confidence_head'])['tau'] == 0.1


@pytest.mark.slow
def test_reconstructs_finite_points_in_sane_range(model: Nova3r) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (168, 224, 3), dtype=np.uint8) for _ in range(2)]
    tensor, _ = prepare_images(images, model.cfg)
    out = model.reconstruct(tensor[None], num_points=1024, num_steps=4, oversample=2.0,
                            generator=torch.Generator().manual_seed(0))
    points, logits = out['points'][0], out['visibility_logits'][0]
    assert bool(torch.isfinite(out['confidence_logits']).all())  # ranked by the head
    assert 'visibility_head_logits' in out  # fused with the view-1 surface (tenth release)
    assert points.shape == (1024, 3) and logits.shape == (1024,)
    assert bool(torch.isfinite(points).all()) and bool(torch.isfinite(logits).all())
    radius = points.norm(dim=1)
    # median_3 units: training targets have median distance 3 to camera 1
    assert 0.5 < float(radius.median()) < 12.0
    assert float(radius.max()) < 50.0
    # points lie in front of the first camera (z forward), as every training target does
    assert float((points[:, 2] > 0).float().mean()) > 0.8
