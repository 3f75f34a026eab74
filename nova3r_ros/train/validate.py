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
Validation through the evaluation toolkit, and the stage-1 mean latent (trivial prior).

Stage 1 is scored as an autoencoder (encode the sample's complete GT, decode N points); stage 2
as the model on the images (`evaluation.baselines.ModelMethod`). Both go through
`evaluation.scoring.score_prediction` with the toolkit's chamfer alignment, so the numbers are
comparable with `nova3r_eval` (at the validation's smaller N and fewer ODE steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nova3r_ros.evaluation.baselines import ModelMethod, subsample_indices, TrivialPrior
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import Nova3r
import numpy as np
import torch

from .data import TrainSet

KEYS = ('complete/fscore@0.1', 'complete/fscore@0.05', 'complete/chamfer',
        'occluded/fscore@0.1', 'visibility/auroc')


class AutoencoderMethod:
    """
    Stage-1 reconstruction as an evaluation method: complete GT -> Z -> N points.

    The encoder sees `encoder_points` GT points of the (view-selected) sample, median_3
    normalised; the output is in normalised units.
    """

    name = 'autoencoder'

    def __init__(self, model: Nova3r, encoder_points: int, num_steps: int | None = None
                 ) -> None:
        self.model, self.encoder_points, self.num_steps = model, encoder_points, num_steps

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        pts = sample['points']
        idx = subsample_indices(len(pts), self.encoder_points, seed)
        enc = torch.from_numpy((pts[idx] * float(sample['median3_scale'])).astype(np.float32))
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            tokens = self.model.encode_points(enc[None].to(self.model.device), generator)
            result = self.model.sample(tokens, num_points, self.num_steps, generator=generator)
        return {'points': result['points'][0].float().cpu().numpy(), 'visibility': None,
                'units': 'normalized'}


@torch.no_grad()
def validate(model: Nova3r, dataset: TrainSet, stage: int, views: Sequence[int],
             num_samples: int, num_points: int, num_steps: int, encoder_points: int,
             with_prior: bool = False) -> dict[str, float]:
    """
    Mean of `KEYS` over the first `num_samples` samples, per K: keys `val/k{K}/<metric>`.

    With `with_prior`, the trivial prior (decoder from `mean_scene_tokens`) is scored too
    (`val_prior/k{K}/<metric>`), the bar a stage-2 model must clear.
    """
    was_training = model.training
    model.eval()
    if stage == 1:
        methods = {'val': AutoencoderMethod(model, encoder_points, num_steps)}
    else:
        methods = {'val': ModelMethod(model, num_steps)}
    if with_prior:
        methods['val_prior'] = TrivialPrior(model, num_steps)
    sums: dict[str, list[float]] = {}
    count = min(num_samples, len(dataset))
    for k in views:
        for i in range(count):
            sample = dataset.load(i, k)
            gt = ground_truth(sample)
            seed = int(sample['seed'])
            for prefix, method in methods.items():
                scored = score_prediction(method.predict(sample, num_points, seed), sample, gt,
                                          'chamfer', seed=seed)
                for key in KEYS:
                    value = scored.metrics.get(key)
                    if value is not None and np.isfinite(value):
                        sums.setdefault(f'{prefix}/k{k}/{key}', []).append(float(value))
    model.train(was_training)
    return {key: float(np.mean(values)) for key, values in sums.items()}


@torch.no_grad()
def mean_scene_tokens(model: Nova3r, dataset: TrainSet, num_samples: int, views: Sequence[int],
                      encoder_points: int, batch_size: int = 8, seed: int = 0) -> torch.Tensor:
    """
    Mean stage-1 latent (M, C) over the first `num_samples` training samples.

    Sample i is cropped to K = views[i % len(views)] views (the mix the decoder is trained on)
    and encoded from `encoder_points` GT points, as in training.
    """
    count = min(num_samples, len(dataset))
    if count < 1:
        raise ValueError('mean_scene_tokens needs at least one sample')
    total = torch.zeros(model.cfg.num_scene_tokens, model.cfg.latent_dim)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    for start in range(0, count, batch_size):
        clouds = []
        for i in range(start, min(count, start + batch_size)):
            s = dataset.load(i, views[i % len(views)])
            idx = subsample_indices(len(s['points']), encoder_points, seed + i)
            clouds.append(s['points'][idx] * float(s['median3_scale']))
        batch = torch.from_numpy(np.stack(clouds).astype(np.float32)).to(model.device)
        total += model.encode_points(batch, generator).sum(0).cpu()
    model.train(was_training)
    return total / count
