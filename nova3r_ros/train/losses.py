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
Stage-2 latent distillation: the image tokens regress the stage-1 encoder's tokens.

Why: the flow-matching loss through the frozen decoder is dominated by its irreducible part
(the noise pairing), so the scene-specific share of its gradient is small and a from-scratch
image encoder learns slowly from it alone. The stage-1 encoder applied to the complete GT
gives, per training scene, the exact Z the decoder reconstructs best, so regressing it is a
dense, low-variance signal. The decoder ignores token order (no positional code on tokens, all
token interactions are attention), so Z is a *set*: prediction and target are matched one to
one (Hungarian, on squared distance) before the squared error, as in DETR-style set losses.
"""

from __future__ import annotations

from nova3r_ros.model.flow import match_rows
import torch

# Z is a set: prediction rows are matched to target rows by the Hungarian assignment of least
# total squared distance, the same matching as the flow loss's OT pairing (`flow.match_rows`).
match_tokens = match_rows


def matched_latent_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """
    Compute the mean squared error between `pred` tokens and their matched `target` tokens.

    No grad to the target. pred, target: (B, M, C) -> scalar.
    """
    idx = match_tokens(pred, target)
    matched = torch.gather(target.detach(), 1, idx[..., None].expand(-1, -1, target.shape[-1]))
    return (pred - matched).square().mean()
