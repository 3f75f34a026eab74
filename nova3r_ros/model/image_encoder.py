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
Stage-2 image encoder: K images -> scene tokens Z (B, M, C) (digest §3.2).

- `DinoBackbone`: a DINOv2-shaped ViT with register tokens and DINOv2's public parameter names
  (`patch_embed.proj.weight`, `cls_token`, `register_tokens`, `pos_embed`, `blocks.i.attn.qkv`,
  `blocks.i.ls1.gamma`, `norm.weight`, ...), so real DINOv2 weights map 1:1
  (`load_backbone_safetensors`). Outputs normed patch tokens and the normed CLS token.
- `Aggregator`: VGGT-style alternating frame / global attention. Each frame gets 1 camera token
  and R register tokens (slot 0 for frame 1, slot 1 for the others); 2-D RoPE on
  (row + 1, col + 1) for patches, (0, 0) for special and scene tokens. M learnable scene tokens
  are conditioned on frame 1's CLS token (`Token3DEmbedMLP`-like adaLN) and, on every
  `scene_stride`-th layer (0-based i = stride-1, 2*stride-1, ...), join global attention with all
  frames' tokens and then get a self-attention block that reuses frame block i - 1's weights
  (`share_3d_attn`). At the last such layer, [scene after that block, scene after global] is
  projected to C.

Choices: the CLS condition is detached (as released). Freezing the backbone (paper) is the
trainer's job (requires_grad); the tiny preset trains its small backbone. When the backbone
width differs from the aggregator's, a linear `patch_proj` maps it (Identity when equal).
"""

from __future__ import annotations

from safetensors.torch import load_file
import torch
from torch import nn
import torch.nn.functional as F

from .configs import Nova3rConfig
from .layers import Block, Mlp, modulate


class PatchEmbed(nn.Module):
    """Conv patchify: (B, 3, H, W) -> (B, H/p * W/p, D); DINOv2 name `patch_embed.proj`."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoBackbone(nn.Module):
    """DINOv2-with-registers-shaped ViT (parameter names as the public DINOv2 checkpoints)."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        b = cfg.backbone
        self.patch_size = cfg.patch_size
        self.pos_grid = b.pos_embed_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, b.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, b.embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, b.num_register_tokens, b.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_grid ** 2, b.embed_dim))
        self.blocks = nn.ModuleList(
            Block(b.embed_dim, b.num_heads, b.mlp_ratio, qkv_bias=True,
                  layerscale_init=b.layerscale_init) for _ in range(b.depth))
        self.norm = nn.LayerNorm(b.embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def _pos_embed(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """Patch position embedding resized (bicubic) from the square grid to rows x cols."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (rows, cols) != (self.pos_grid, self.pos_grid):
            grid = patch_pos.reshape(1, self.pos_grid, self.pos_grid, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid.float(), size=(rows, cols), mode='bicubic',
                                 align_corners=False)
            patch_pos = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([cls_pos, patch_pos.to(cls_pos.dtype)], dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) ImageNet-normalised -> (patch tokens (N, P, D), cls (N, D))."""
        n, _, h, w = images.shape
        rows, cols = h // self.patch_size, w // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1).to(x.dtype), x], dim=1)
        x = x + self._pos_embed(rows, cols, x.dtype)
        regs = self.register_tokens.expand(n, -1, -1).to(x.dtype)
        x = torch.cat([x[:, :1], regs, x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + regs.shape[1]:], x[:, 0]


class SceneTokenConditioner(nn.Module):
    """Token3DEmbedMLP-like: x <- x + gate * MLP(LN(x) * (1 + scale) + shift), from cond."""

    def __init__(self, dim: int, cond_dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 3 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """X (B, M, D) scene tokens, cond (B, cond_dim) frame-1 CLS -> (B, M, D)."""
        shift, scale, gate = self.modulation(cond)[:, None].chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


def aggregator_block(cfg: Nova3rConfig) -> Block:
    """One frame or global attention block of the aggregator (also what `AggregatorTop` copies)."""
    a = cfg.aggregator
    return Block(a.dim, a.num_heads, a.mlp_ratio, qkv_bias=True, qk_norm=a.qk_norm,
                 rope_freq=a.rope_freq, layerscale_init=a.layerscale_init)


class Aggregator(nn.Module):
    """Alternating frame/global attention over K views plus M scene tokens -> Z (B, M, C)."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        a = cfg.aggregator
        self.stride = a.scene_stride
        self.depth = a.depth
        self.num_special = 1 + a.num_register_tokens
        self.patch_proj = (nn.Identity() if cfg.backbone.embed_dim == a.dim
                           else nn.Linear(cfg.backbone.embed_dim, a.dim))
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, a.dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, a.num_register_tokens, a.dim) * 1e-6)

        self.frame_blocks = nn.ModuleList(aggregator_block(cfg) for _ in range(a.depth))
        self.global_blocks = nn.ModuleList(aggregator_block(cfg) for _ in range(a.depth))
        self.scene_tokens = nn.Parameter(torch.empty(cfg.num_scene_tokens, a.dim))
        nn.init.trunc_normal_(self.scene_tokens, std=0.02)
        self.scene_conditioner = SceneTokenConditioner(a.dim, cfg.backbone.embed_dim,
                                                       a.cond_mlp_ratio)
        self.token_proj = nn.Linear(2 * a.dim, cfg.latent_dim)
        nn.init.trunc_normal_(self.token_proj.weight, std=0.02)
        nn.init.zeros_(self.token_proj.bias)

    def forward(self, patch_tokens: torch.Tensor, cls_first: torch.Tensor,
                grid: tuple[int, int], frames: bool = False, tap: int | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        patch_tokens (B, K, P, Db); cls_first (B, Db) of frame 1; grid (rows, cols).

        With `frames` also the patch tokens (B, K, P, D) that the scene tokens last attended to
        (the last scene layer's global-attention input; what comes after it feeds no output), for
        probes and heads that read what each view sees (`train.visibility_bound`); with
        `tap` instead every view's tokens entering layer `tap`, special tokens included (B, K,
        T, D), which an `AggregatorTop` carries on from.
        """
        b, k, p, _ = patch_tokens.shape
        x = self.patch_proj(patch_tokens)
        d = x.shape[-1]
        slots = torch.cat([self.camera_token, self.register_token], dim=2)  # (1, 2, S, D)
        special = torch.cat([slots[:, :1], slots[:, 1:].expand(-1, k - 1, -1, -1)], dim=1)
        x = torch.cat([special.expand(b, -1, -1, -1).to(x.dtype), x], dim=2)
        t = x.shape[2]
        pos = token_positions(self.num_special, grid, x.device)  # (T, 2)
        frame_pos = pos.expand(b * k, -1, -1)
        m = self.scene_tokens.shape[0]
        scene = self.scene_conditioner(self.scene_tokens.expand(b, -1, -1).to(x.dtype),
                                       cls_first.detach().to(x.dtype))
        global_pos_img = pos.repeat(k, 1)
        global_pos = torch.cat([global_pos_img, torch.zeros(m, 2, dtype=torch.long,
                                                            device=x.device)])
        global_pos = global_pos.expand(b, -1, -1)
        scene_pos = torch.zeros(b, m, 2, dtype=torch.long, device=x.device)
        out = seen = entering = None
        for i in range(self.depth):
            if i == tap:
                entering = x.reshape(b, k, t, d)
            x = self.frame_blocks[i](x.reshape(b * k, t, d), frame_pos).reshape(b, k * t, d)
            if i % self.stride == self.stride - 1:
                seen = x  # the frame tokens the scene tokens attend to at this layer
                joint = self.global_blocks[i](torch.cat([x, scene], dim=1), global_pos)
                x, scene_global = joint[:, :k * t], joint[:, k * t:]
                scene = self.frame_blocks[i - 1](scene_global, scene_pos)
                out = torch.cat([scene, scene_global], dim=-1)
            else:
                x = self.global_blocks[i](x, global_pos[:, :k * t])
            x = x.reshape(b, k, t, d)
        assert out is not None  # depth >= stride is validated by the config
        if frames and tap is not None:
            if entering is None:
                raise ValueError(f"tap {tap} outside the aggregator's {self.depth} layers")
            return self.token_proj(out), entering
        if frames:
            return self.token_proj(out), seen.reshape(b, k, t, d)[:, :, self.num_special:]
        return self.token_proj(out)


def token_positions(num_special: int, grid: tuple[int, int], device: torch.device
                    ) -> torch.Tensor:
    """Positions (T, 2) for RoPE of one view's tokens: special tokens at 0, patches from (1, 1)."""
    rows, cols = grid
    yy, xx = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device),
                            indexing='ij')
    return torch.cat([torch.zeros(num_special, 2, dtype=torch.long, device=device),
                      torch.stack([yy.flatten(), xx.flatten()], -1) + 1])


class AggregatorTop(nn.Module):
    """
    A copy of the aggregator's last `layers` layers, up to the tokens the scene tokens last read.

    Why: the surface head fine-tunes these for view-1 depth (`decoder.surface_top`) while the
    scene tokens keep the shared encoder; what enters the copy is the shared encoder's (one
    encoder pass, `Aggregator.forward(tap=...)`), and its global blocks let view 1's tokens
    learn depth from the other views. Only layers whose global block has no scene tokens are
    copied (the config checks), so the copy needs no scene tokens.
    """

    def __init__(self, cfg: Nova3rConfig, layers: int) -> None:
        super().__init__()
        a = cfg.aggregator
        self.start = cfg.last_scene_layer + 1 - layers
        self.num_special = 1 + a.num_register_tokens

        self.frame_blocks = nn.ModuleList(aggregator_block(cfg) for _ in range(layers))
        self.global_blocks = nn.ModuleList(aggregator_block(cfg) for _ in range(layers - 1))

    def copy_from(self, aggregator: Aggregator) -> AggregatorTop:
        """Load the aggregator's own weights for these layers (the copy then starts equal)."""
        for j, blk in enumerate(self.frame_blocks):
            blk.load_state_dict(aggregator.frame_blocks[self.start + j].state_dict())
        for j, blk in enumerate(self.global_blocks):
            blk.load_state_dict(aggregator.global_blocks[self.start + j].state_dict())
        return self

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens entering layer `start` (B, K, T, D) -> patch tokens (B, K, P, D)."""
        b, k, t, d = x.shape
        pos = token_positions(self.num_special, grid, x.device)
        if pos.shape[0] != t:
            raise ValueError(f'{t} tokens per view, the grid {grid} has {pos.shape[0]}')
        frame_pos, global_pos = pos.expand(b * k, -1, -1), pos.repeat(k, 1).expand(b, -1, -1)
        for j, frame in enumerate(self.frame_blocks):
            x = frame(x.reshape(b * k, t, d), frame_pos)
            if j < len(self.global_blocks):
                x = self.global_blocks[j](x.reshape(b, k * t, d), global_pos)
        return x.reshape(b, k, t, d)[:, :, self.num_special:]


class ImageEncoder(nn.Module):
    """Images (B, K, 3, H, W) in [0, 1] -> scene tokens Z (B, M, C)."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        self.cfg_image = (cfg.image_height, cfg.image_width, cfg.patch_size, cfg.max_views)
        self.image_mean = tuple(cfg.image_mean)
        self.image_std = tuple(cfg.image_std)
        self.backbone = DinoBackbone(cfg)
        self.aggregator = Aggregator(cfg)

    def forward(self, images: torch.Tensor, frames: bool = False, tap: int | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Images -> Z; with `frames` also each view's tokens (`Aggregator.forward`)."""
        h, w, patch, max_views = self.cfg_image
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f'images must be (B, K, 3, H, W), got {tuple(images.shape)}')
        b, k = images.shape[:2]
        if not 1 <= k <= max_views:
            raise ValueError(f'number of views K={k} outside [1, {max_views}]')
        if images.shape[-2:] != (h, w):
            raise ValueError(f'images are {images.shape[-1]}x{images.shape[-2]} (WxH); the model '
                             f'expects {w}x{h}: use preprocess.prepare_images')
        mean = images.new_tensor(self.image_mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.image_std).view(1, 3, 1, 1)
        flat = (images.reshape(b * k, 3, h, w) - mean) / std
        patches, cls = self.backbone(flat)
        patches = patches.reshape(b, k, patches.shape[1], patches.shape[2])
        cls_first = cls.reshape(b, k, -1)[:, 0]
        return self.aggregator(patches, cls_first, (h // patch, w // patch), frames, tap)


# DINOv2 checkpoint tensors that this backbone does not use (masked-image-modelling token).
_DINO_UNUSED = ('mask_token',)


def load_backbone_safetensors(backbone: DinoBackbone, path: str) -> None:
    """
    Load DINOv2-named weights (e.g. converted `dinov2_vitl14_reg`) from a local file.

    Names must match exactly (after dropping `mask_token`); shapes are checked by the
    checkpoint module's rules. Raises ValueError listing every problem.
    """
    from .checkpoint import check_tensor_spec  # local import: checkpoint imports the model

    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f'{path}: not a readable safetensors file ({exc})') from exc
    tensors = {k: v for k, v in tensors.items() if k not in _DINO_UNUSED}
    expected = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    check_tensor_spec(expected, {k: tuple(v.shape) for k, v in tensors.items()}, path)
    backbone.load_state_dict(tensors)
