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
Small building blocks, one concern each: embeddings, attention, transformer blocks, adaLN.

All attention goes through `F.scaled_dot_product_attention`. Parameter names of `Attention`,
`Mlp`, `LayerScale` and `Block` follow the public DINOv2 / VGGT naming (`attn.qkv`,
`attn.proj`, `attn.q_norm`, `ls1.gamma`, `mlp.fc1`, ...), so released weights can be mapped.
No module here owns non-persistent buffers: models are built on the meta device and
materialised from a checkpoint (`load_state_dict(assign=True)`), so derived constants are
computed on the fly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


class FourierEmbedding(nn.Module):
    """
    Fourier features of 3-D points: [x, sin(f_k x), cos(f_k x)] -> 3 * (2F + 1) channels.

    `pi_factor=False`: f_k = 2^k (TripoSG `FrequencyPositionalEmbedding`, stage-1 encoder).
    `pi_factor=True`: f_k = pi * 2^k (Hunyuan `FourierEmbedder`, flow decoder queries).
    """

    def __init__(self, num_freqs: int = 8, pi_factor: bool = False) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.pi_factor = pi_factor
        self.out_dim = 3 * (2 * num_freqs + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X (..., 3) -> (..., 3 * (2F + 1)), ordered [xyz, sin (xyz-major), cos]."""
        freqs = 2.0 ** torch.arange(self.num_freqs, device=x.device, dtype=x.dtype)
        if self.pi_factor:
            freqs = freqs * math.pi
        angles = (x[..., :, None] * freqs).flatten(-2)  # (..., 3F)
        return torch.cat([x, angles.sin(), angles.cos()], dim=-1)


def timestep_embedding(t: torch.Tensor, channels: int, max_period: float = 10000.0
                       ) -> torch.Tensor:
    """
    Sinusoidal embedding [cos, sin] of t (the released decoder feeds the raw t in [0, 1]).

    t: any shape -> (*t.shape, channels); frequencies from 1 down to 1 / max_period.
    """
    half = channels // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    if channels % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal(scale * t) -> Linear -> SiLU -> Linear (digest §2.2: scale 1, raw t)."""

    def __init__(self, width: int, channels: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(channels, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """T (...) in [0, 1] -> (..., width)."""
        emb = timestep_embedding(t * self.scale, self.channels).to(self.mlp[0].weight.dtype)
        return self.mlp(emb)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Apply the AdaLN modulation x * (1 + scale) + shift (shift/scale broadcast to x)."""
    return x * (1 + scale) + shift


class AdaLNModulation(nn.Module):
    """
    Conditioning c (..., width) -> `chunks` tensors of (..., dim): Linear, SiLU, Linear.

    The last layer is zero-initialised so a fresh block starts as plain LN (DiT practice).
    """

    def __init__(self, width: int, dim: int, chunks: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.net = nn.Sequential(nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, chunks * dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(c).chunk(self.chunks, dim=-1)


def rope_2d(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """
    Rotate x (B, H, T, Dh) by 2-D positions pos (B, T, 2) = (row, col).

    The first half of Dh encodes the row, the second the column (1-D rotary each, as in
    CroCo/VGGT). Position (0, 0) leaves a token unrotated.
    """
    head_dim = x.shape[-1]
    quarter = head_dim // 4
    inv = 1.0 / (base ** (torch.arange(quarter, device=x.device, dtype=torch.float32) / quarter))
    out = []
    for axis, part in enumerate(x.float().split(head_dim // 2, dim=-1)):
        ang = pos[..., axis].float()[:, None, :, None] * inv  # (B, 1, T, Dh/4)
        cos, sin = ang.cos(), ang.sin()
        a, b = part[..., :quarter], part[..., quarter:]
        out.append(torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1))
    return torch.cat(out, dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv (DINOv2/VGGT names), optional QK-norm and RoPE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 qk_norm: bool = False, rope_freq: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rope_freq = rope_freq
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """X (B, T, dim); pos (B, T, 2) int patch positions for RoPE or None."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(
            2, 0, 3, 1, 4)
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        if self.rope_freq > 0 and pos is not None:
            q, k = rope_2d(q, pos, self.rope_freq), rope_2d(k, pos, self.rope_freq)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries x (B, T, dim) attend to context (B, S, ctx_dim)."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None,
                 qkv_bias: bool = False, qk_norm: bool = False) -> None:
        super().__init__()
        context_dim = context_dim or dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        s = context.shape[1]
        q = self.q(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(b, s, 2, self.num_heads, self.head_dim).permute(
            2, 0, 3, 1, 4)
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (DINOv2 names); `tanh_gelu` for the flow decoder."""

    def __init__(self, dim: int, hidden: int, tanh_gelu: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate='tanh' if tanh_gelu else 'none')
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale `gamma` (DINOv2/VGGT name `ls1.gamma`)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """
    Pre-norm ViT block (DINOv2 / VGGT): x += ls1(attn(norm1 x)); x += ls2(mlp(norm2 x)).

    `layerscale_init=None` drops LayerScale (TripoSG-style encoder blocks).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_norm: bool = False, rope_freq: float = 0.0,
                 layerscale_init: float | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm,
                              rope_freq=rope_freq)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layerscale_init is None:
            self.ls1, self.ls2 = nn.Identity(), nn.Identity()
        else:
            self.ls1, self.ls2 = LayerScale(dim, layerscale_init), LayerScale(dim, layerscale_init)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block with a LayerNorm on the keys/values (TripoSG encoder)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm_context = nn.LayerNorm(dim, eps=eps)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))
