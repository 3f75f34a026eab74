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
Stage-1 point encoder: complete cloud (B, P, 3) -> scene tokens Z (B, M, C) (digest §2.2).

Hybrid query: M points are picked by farthest point sampling (FPS) from a random pre-subset of
`presubset_factor * M` input points; their Fourier embedding (2^k frequencies, raw xyz kept) is
concatenated with M learnable tokens and merged by a linear layer. A shared `proj_in` lifts
queries and all P input points to width D; one cross-attention block (queries -> all points),
L self-attention blocks, a final LayerNorm and `token_proj` (D -> C) give Z. No KL.

Choices where the digest is open (§8.5): when P <= presubset_factor * M all points go into FPS
(no subset, so the encoder is invariant to point order up to the FPS start); otherwise a subset
is drawn without replacement. FPS starts at the first point of the (subset) cloud, as the
released code's deterministic start.
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import Nova3rConfig
from .layers import Block, CrossBlock, FourierEmbedding


def farthest_point_sample(points: torch.Tensor, num_samples: int,
                          start_index: int = 0) -> torch.Tensor:
    """
    Batched FPS. points (B, P, 3) -> indices (B, num_samples) int64 into dim 1.

    One loop over the selected points; each iteration is a batched tensor update of the
    running min-distance, so cost is O(num_samples * P) on any device. If num_samples > P the
    selection repeats points once all are taken (distances are then all zero).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be (B, P, 3), got {tuple(points.shape)}')
    b, p, _ = points.shape
    if p == 0:
        raise ValueError('cannot run FPS on an empty cloud')
    pts = points.float()
    idx = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    dist = torch.full((b, p), float('inf'), device=points.device)
    cur = torch.full((b,), start_index % p, dtype=torch.long, device=points.device)
    batch = torch.arange(b, device=points.device)
    for i in range(num_samples):
        idx[:, i] = cur
        d = (pts - pts[batch, cur][:, None, :]).square().sum(-1)
        dist = torch.minimum(dist, d)
        cur = dist.argmax(dim=1)
    return idx


def random_subset(points: torch.Tensor, num: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random subset without replacement: (B, P, 3) -> (B, min(num, P), 3), batched."""
    b, p, _ = points.shape
    if p <= num:
        return points
    device = generator.device if generator is not None else points.device
    keys = torch.rand(b, p, generator=generator, device=device).to(points.device)
    idx = keys.topk(num, dim=1).indices
    return torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))


class PointEncoder(nn.Module):
    """Hybrid-query transformer encoder (TripoSGEncoder-shaped)."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        e = cfg.point_encoder
        self.num_tokens = cfg.num_scene_tokens
        self.presubset_factor = e.presubset_factor
        self.embed = FourierEmbedding(e.num_freqs, pi_factor=False)
        emb = self.embed.out_dim
        self.query_tokens = nn.Parameter(torch.randn(self.num_tokens, emb))
        self.token_merge = nn.Linear(2 * emb, emb)
        self.proj_in = nn.Linear(emb, e.width)
        self.cross_block = CrossBlock(e.width, e.num_heads, e.mlp_ratio)
        self.blocks = nn.ModuleList(
            Block(e.width, e.num_heads, e.mlp_ratio, qkv_bias=False, eps=1e-5)
            for _ in range(e.num_self_layers))
        self.norm = nn.LayerNorm(e.width)
        self.token_proj = nn.Linear(e.width, cfg.latent_dim)

    def select_queries(self, points: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Select the M FPS query points (B, M, 3) of the cloud (after the random pre-subset)."""
        subset = random_subset(points, self.presubset_factor * self.num_tokens, generator)
        idx = farthest_point_sample(subset, self.num_tokens)
        return torch.gather(subset, 1, idx[..., None].expand(-1, -1, 3))

    def forward(self, points: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Points (B, P, 3), median_3-normalised view-1 frame -> Z (B, M, C)."""
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
            raise ValueError(f'points must be (B, P>0, 3), got {tuple(points.shape)}')
        queries = self.select_queries(points, generator)
        b = points.shape[0]
        q = torch.cat([self.embed(queries),
                       self.query_tokens.expand(b, -1, -1).to(queries.dtype)], dim=-1)
        q = self.proj_in(self.token_merge(q))
        context = self.proj_in(self.embed(points))
        x = self.cross_block(q, context)
        for block in self.blocks:
            x = block(x)
        return self.token_proj(self.norm(x))
