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
Joint flow-matching decoder (PointJointFMDecoderV2-shaped, digest §2.2) and visibility head.

Inputs: scene tokens Z (B, M, C), noisy query points x_t (B, N, 3), time t (B,) or (B, N).
Each of the `num_layers` layers, in order:
  1. tokens <- points cross-attention. Queries: tokens after a non-affine LN (eps 1e-6).
     Keys/values: point features after an affine LN, modulated per point by a time-dependent
     (shift, scale). Residual, then a residual MLP (4x, tanh-GELU), no gating.
  2. token self-attention (pre-norm non-affine LN, residual MLP, no time conditioning).
  3. points <- tokens cross-attention with DiT adaLN on the point stream (shift/scale/gate for
     attention and MLP from the per-point time embedding); tokens affine-LN-normed as context.
Output Linear(width -> 3) is the velocity (no activation).

Point i's velocity depends on the whole query set through the tokens (the decoder is *joint*),
but not on the order of the queries: the decoder is permutation-equivariant in its points.
The released state dict also holds an unused `virual_tracks` (512 x 128) tensor; it is not
reproduced here, so the paper-preset decoder counts ~0.07 M fewer parameters than the digest.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .configs import Nova3rConfig
from .layers import (
    AdaLNModulation,
    CrossAttention,
    FourierEmbedding,
    Mlp,
    modulate,
    TimestepEmbedder,
)
from .layers import Attention as SelfAttention


class JointLayer(nn.Module):
    """One joint decoder layer: tokens<-points, tokens self, points<-tokens (see module doc)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        # 1. tokens <- points
        self.t2p_norm_tokens = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.t2p_norm_points = nn.LayerNorm(width, eps=1e-6)
        self.t2p_modulation = AdaLNModulation(width, width, 2)
        self.t2p_attn = CrossAttention(width, num_heads)
        self.t2p_norm_mlp = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.t2p_mlp = Mlp(width, hidden, tanh_gelu=True)
        # 2. token self-attention
        self.self_norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(width, num_heads, qkv_bias=False)
        self.self_norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_mlp = Mlp(width, hidden, tanh_gelu=True)
        # 3. points <- tokens with DiT adaLN
        self.p2t_norm_tokens = nn.LayerNorm(width, eps=1e-6)
        self.p2t_norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.p2t_modulation = AdaLNModulation(width, width, 6)
        self.p2t_attn = CrossAttention(width, num_heads)
        self.p2t_norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.p2t_mlp = Mlp(width, hidden, tanh_gelu=True)

    def forward(self, tokens: torch.Tensor, points: torch.Tensor, temb: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Tokens (B, M, W), points (B, N, W), temb (B, 1|N, W) -> updated (tokens, points).

        Same maths as the module doc; the per-point adaLN work is fused for speed (one
        LayerNorm call with the per-sample modulation folded into its weight and bias, gated
        residuals as one addcmul), equal to the plain formula within float rounding.
        """
        shift, scale = self.t2p_modulation(temb)
        kv = norm_modulate(self.t2p_norm_points, points, shift, scale)
        tokens = tokens + self.t2p_attn(self.t2p_norm_tokens(tokens), kv)
        tokens = tokens + self.t2p_mlp(self.t2p_norm_mlp(tokens))

        tokens = tokens + self.self_attn(self.self_norm1(tokens))
        tokens = tokens + self.self_mlp(self.self_norm2(tokens))

        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.p2t_modulation(temb)
        context = self.p2t_norm_tokens(tokens)
        attn = self.p2t_attn(norm_modulate(self.p2t_norm1, points, sh_a, sc_a), context)
        points = torch.addcmul(points, g_a, attn)
        mlp = self.p2t_mlp(norm_modulate(self.p2t_norm2, points, sh_m, sc_m))
        return tokens, torch.addcmul(points, g_m, mlp)


def norm_modulate(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """
    `modulate(norm(x), shift, scale)` for x (B, N, W), shift/scale (B, 1|N, W).

    With one (shift, scale) per sample (the decoder's shared t), LN(x) * (1 + scale) + shift
    is a LayerNorm whose weight is (1 + scale) * gamma and bias beta * (1 + scale) + shift, so
    it runs as one `F.layer_norm` per sample instead of norm + mul + add over all N points.
    Per-point conditioning (B, N, W) takes the plain path.
    """
    if shift.shape[1] != 1:
        return modulate(norm(x), shift, scale)
    weight, bias = 1 + scale[:, 0], shift[:, 0]  # (B, W)
    if norm.weight is not None:
        bias = torch.addcmul(bias, norm.bias, weight)
        weight = weight * norm.weight
    shape = norm.normalized_shape
    if x.shape[0] == 1:
        return F.layer_norm(x, shape, weight[0], bias[0], norm.eps)
    return torch.stack([F.layer_norm(x[i], shape, weight[i], bias[i], norm.eps)
                        for i in range(x.shape[0])])


class JointFlowDecoder(nn.Module):
    """Velocity network v(x_t, t | Z) over a set of N query points."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        d = cfg.decoder
        self.token_in = nn.Linear(cfg.latent_dim, d.width)
        self.point_embed = FourierEmbedding(d.num_freqs, pi_factor=True)
        self.point_in = nn.Linear(self.point_embed.out_dim, d.width)
        self.time_embed = TimestepEmbedder(d.width, d.time_channels, d.time_scale)
        self.layers = nn.ModuleList(JointLayer(d.width, d.num_heads, d.mlp_ratio)
                                    for _ in range(d.num_layers))
        self.out = nn.Linear(d.width, 3)

    def forward(self, scene_tokens: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        scene_tokens (B, M, C); xt (B, N, 3) normalised view-1; t (B,) or (B, N) in [0, 1].

        Returns (velocity (B, N, 3), final point features (B, N, width)).
        """
        if t.dim() == 1:
            t = t[:, None]  # one t per sample: embed once, broadcast over the N points
        tokens = self.token_in(scene_tokens)
        # Fourier features in fp32 even under bf16 autocast (pi * 2^7 * x needs the mantissa)
        points = self.point_in(self.point_embed(xt.float()))
        temb = self.time_embed(t)  # (B, 1 or N, W)
        for layer in self.layers:
            tokens, points = layer(tokens, points, temb)
        return self.out(points), points


class VisibilityHead(nn.Module):
    """
    Per-point visibility logit (visible in some input view) from decoder point features.

    The features come from one extra decoder call at t = 1 on the final (or, in training,
    ground-truth) points, so training and inference see the same kind of input.
    """

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, N, width) -> logits (B, N)."""
        return self.net(features).squeeze(-1)
