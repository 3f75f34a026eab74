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

"""Stage-2 latent distillation loss and the mean-residual image tokens."""

from __future__ import annotations

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.train.losses import match_tokens, matched_latent_loss
import torch


def test_matching_recovers_a_known_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 20, 8, generator=g)
    perm = torch.stack([torch.randperm(20, generator=g) for _ in range(3)])
    pred = torch.gather(target, 1, perm[..., None].expand(-1, -1, 8))
    # pred[b, i] = target[b, perm[b, i]]: the matching must find perm exactly
    assert torch.equal(match_tokens(pred, target), perm)
    assert float(matched_latent_loss(pred, target)) == 0.0


def test_matched_loss_is_order_free_and_below_the_unmatched_one() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 16, 4, generator=g)
    pred = target[:, torch.randperm(16, generator=g)] + 0.1 * torch.randn(2, 16, 4, generator=g)
    pred.requires_grad_(True)
    loss = matched_latent_loss(pred, target)
    assert float(loss.detach()) < 0.02 < float((pred.detach() - target).square().mean())
    loss.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    shuffled = pred.detach()[:, torch.randperm(16, generator=g)]
    assert abs(float(matched_latent_loss(shuffled, target)) - float(loss.detach())) < 1e-6


def test_mean_residual_tokens_start_at_the_prior() -> None:
    cfg = get_preset('micro')
    cfg.image_tokens = 'mean_residual'
    torch.manual_seed(0)
    model = Nova3r(cfg).eval()
    with torch.no_grad():
        model.mean_scene_tokens.copy_(torch.randn_like(model.mean_scene_tokens))
    images = torch.rand(2, 2, 3, cfg.image_height, cfg.image_width)
    tokens = model.encode_images(images)
    assert torch.allclose(tokens, model.prior_scene_tokens(2), atol=1e-6)
    # ... and the zero projection still receives a gradient, so training moves away from it
    model.train()
    model.encode_images(images).square().sum().backward()
    grad = model.image_encoder.aggregator.token_proj.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    assert get_preset('tiny').image_tokens == 'mean_residual'
    assert get_preset('paper').image_tokens == 'absolute'
