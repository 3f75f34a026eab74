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
View-1 surface head and the visibility fusion that reads it (our addition; NOVA3R has neither).

Why: the visibility head reads only the decoder's features, and the scene tokens were trained
to match the stage-1 autoencoder, whose input (the complete GT cloud) knows nothing of what
the cameras see. What view 1 sees is its depth: a point behind view 1's surface along its ray
is hidden from view 1. The surface head predicts view 1's pointmap (normalised view-1 units,
`SUB` x `SUB` points per patch) from the patch tokens the scene tokens read
(`ImageEncoder(frames=True)`); `ray_features` compares each sampled point with the pointmap
point nearest to its ray direction, so no intrinsics are needed (the pointmap carries them);
`VisibilityFusion` maps (head logit, those features) to the published logit; the config's
`fusion_*` settings add the difference against more pointmap directions, centred on the window's
median, and the point's own direction and range (twelfth release on: 8 directions, centred).
`train/visibility_bound.py` measures why this helps; `train/surface_head.py` fits both.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

SUB = 4  # pointmap points per patch side
CLIP = 2.0  # log-range difference clip
CHUNK = 1024  # points per direction search: CHUNK x pointmap floats (small: stays in cache)


class SurfaceHead(nn.Module):
    """
    View-1 patch tokens (B, P, D) -> pointmap (B, rows*SUB * cols*SUB, 3), z > 0.

    With `stem` > 0 a small convolutional stem also reads view 1's normalised image (B, 3, H, W)
    and refines the token pointmap at its own resolution (a residual, zero at init): the frozen
    tokens were never trained for depth and hold one vector per 14-pixel patch.
    """

    def __init__(self, dim: int, grid: tuple[int, int], hidden: int, layers: int = 2,
                 stem: int = 0) -> None:
        super().__init__()
        self.grid = grid
        self.inp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden))
        self.pos = nn.Parameter(torch.zeros(1, grid[0] * grid[1], hidden))
        layer = nn.TransformerEncoderLayer(hidden, 4, 2 * hidden, 0.0, batch_first=True,
                                           norm_first=True)
        self.ctx = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, SUB * SUB * 3)
        self.stem: nn.Module | None = None
        if stem > 0:
            half = max(stem // 2, 1)
            self.stem = nn.Sequential(
                nn.Conv2d(3, half, 3, stride=2, padding=1), nn.GELU(),
                nn.Conv2d(half, stem, 3, stride=2, padding=1), nn.GELU(),
                nn.Conv2d(stem, stem, 3, padding=1), nn.GELU())
            self.lift = nn.Linear(hidden, stem)
            self.refine = nn.Sequential(
                nn.Conv2d(2 * stem + 3, stem, 3, padding=1), nn.GELU(),
                nn.Conv2d(stem, stem, 3, padding=1), nn.GELU(),
                nn.Conv2d(stem, 3, 1))
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        b, (rows, cols) = tokens.shape[0], self.grid
        if tokens.shape[1] != rows * cols:
            raise ValueError(f'surface head: {tokens.shape[1]} patch tokens, expected '
                             f'{rows} x {cols}')
        feats = self.ctx(self.inp(tokens.float()) + self.pos)
        y = self.out(feats)
        y = y.view(b, rows, cols, SUB, SUB, 3).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, rows * SUB, cols * SUB, 3)
        if self.stem is not None:
            if image is None or image.dim() != 4 or image.shape[:2] != (b, 3):
                got = None if image is None else tuple(image.shape)
                raise ValueError(f'surface head with a stem needs view 1 images ({b}, 3, H, W), '
                                 f'got {got}')
            size = (rows * SUB, cols * SUB)
            pix = F.interpolate(self.stem(image.float()), size=size, mode='bilinear',
                                align_corners=False)
            tok = self.lift(feats).transpose(1, 2).reshape(b, -1, rows, cols)
            tok = F.interpolate(tok, size=size, mode='bilinear', align_corners=False)
            base = y.permute(0, 3, 1, 2)
            y = (base + self.refine(torch.cat([pix, tok, base], dim=1))).permute(0, 2, 3, 1)
        z = torch.exp(y[..., 2:3].clamp(-8.0, 8.0))  # depth as exp(log depth): always ahead
        return torch.cat([y[..., :2] * z, z], dim=-1).reshape(b, -1, 3)


def pointmap_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 of log depth plus L1 of the ray slope (x/z, y/z), over valid points (B, R)."""
    zp, zt = pred[..., 2].clamp_min(1e-4), target[..., 2].clamp_min(1e-4)
    err = ((zp.log() - zt.log()).abs()
           + (pred[..., :2] / zp[..., None] - target[..., :2] / zt[..., None]).abs().sum(-1))
    mask = mask.float()
    return (err * mask).sum() / mask.sum().clamp_min(1)


class PointmapHead(nn.Module):
    """
    Every view's patch tokens (B, K, P, D) -> its pointmap in view 1's frame (B, K, R, 3).

    Why: NOVA3R's encoder starts from VGGT, whose frame tokens were trained to say where each
    pixel lies in view 1's frame; ours is trained from scratch through the latent and flow
    losses alone, which never say it. This head (one MLP per patch, `SUB` x `SUB` points) gives
    stage 2 that dense signal (`train`: `pointmap_weight`); the points are free (a view other
    than the first may see them behind its camera), so no depth parameterisation.
    """

    def __init__(self, dim: int, grid: tuple[int, int], hidden: int) -> None:
        super().__init__()
        self.grid = grid
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, SUB * SUB * 3))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, k, p, _ = frames.shape
        rows, cols = self.grid
        if p != rows * cols:
            raise ValueError(f'pointmap head: {p} patch tokens, expected {rows} x {cols}')
        y = self.net(frames.float()).view(b, k, rows, cols, SUB, SUB, 3)
        y = y.permute(0, 1, 2, 4, 3, 5, 6)  # (rows, SUB, cols, SUB): image row-major
        return y.reshape(b, k, rows * SUB * cols * SUB, 3)


def world_pointmap_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                        ) -> torch.Tensor:
    """Mean L1 distance (summed over x, y, z) over valid points; pred/target (B, K, R, 3)."""
    err = (pred.float() - target.float()).abs().sum(-1)
    mask = mask.float()
    return (err * mask).sum() / mask.sum().clamp_min(1)


def ray_features(surface: torch.Tensor, points: torch.Tensor, neighbours: int = 1,
                 centred: bool = False, position: bool = False) -> torch.Tensor:
    """
    (log range of the surface along each point's ray - log range of the point, ray distance).

    surface (B, R, 3), points (B, N, 3), both in the model's frame -> (B, N, `width`) float32.
    The first is > 0 in front of the surface; the second is the chord between the point's
    direction and the nearest pointmap direction (large outside view 1's frustum). With
    `neighbours` n > 1 also the first feature against the 2nd..n-th nearest directions (at a
    depth edge the nearest one alone is a coin toss); with `centred` also the first minus its
    median over the sample's points (a pointmap whose scale is off shifts every point alike);
    with `position` also the point's unit direction and log range from view 1 (where in the
    room a point lies says how likely something stands between it and the camera).
    """
    if neighbours < 1 or neighbours > surface.shape[1]:
        raise ValueError(f'neighbours must be in [1, {surface.shape[1]}], got {neighbours}')
    surface = torch.nan_to_num(surface.float())
    points = torch.nan_to_num(points.float())
    rs = surface.norm(dim=-1).clamp_min(1e-6)
    ds = surface / rs[..., None]
    out = []
    for start in range(0, points.shape[1], CHUNK):
        p = points[:, start:start + CHUNK]
        rp = p.norm(dim=-1).clamp_min(1e-6)
        cos, idx = torch.bmm(p / rp[..., None], ds.transpose(1, 2)).topk(neighbours, dim=-1)
        chord = (2.0 - 2.0 * cos[..., 0].clamp(-1.0, 1.0)).clamp_min(0.0).sqrt()
        ranges = torch.gather(rs[:, None].expand(-1, p.shape[1], -1), 2, idx)
        diff = (ranges.log() - rp.log()[..., None]).clamp(-CLIP, CLIP)
        out.append(torch.cat([diff[..., :1], chord[..., None], diff[..., 1:]], dim=-1))
    feats = torch.cat(out, dim=1)
    if centred:
        centre = feats[..., 0].median(dim=1, keepdim=True).values
        feats = torch.cat([feats, (feats[..., 0] - centre)[..., None]], dim=-1)
    if position:
        rp = points.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        feats = torch.cat([feats, points / rp, rp.log().clamp(-4.0, 4.0)], dim=-1)
    return feats


def feature_width(neighbours: int = 1, centred: bool = False, position: bool = False) -> int:
    """Columns of `ray_features` with these settings."""
    return 1 + neighbours + int(centred) + 4 * int(position)


class VisibilityFusion(nn.Module):
    """(visibility logit, `ray_features`) (..., 1 + `rays`) -> fused logit (...)."""

    def __init__(self, hidden: int = 64, rays: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1 + rays, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.float()).squeeze(-1)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(groups, cout), nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.GELU())


class PixelSurface(nn.Module):
    """
    View-1 image (B, 3, H, W) in [0, 1] -> pointmap (B, rows*SUB * cols*SUB, 3), z > 0.

    Why: a small U-Net on the pixels, trained on every view's depth, instead of the frozen
    patch tokens, which were trained to match the autoencoder and hold one vector per 14-pixel
    patch (the surface head on them stops near depth AbsRel 0.2; the visibility bound asks for
    ~0.1). It reads the image at twice the pointmap's resolution; a pooled summary of the whole
    image joins the coarsest level, since the normalised scale is a property of the room.
    With `mirror` it also reads the mirrored image and averages the two (x/z, y/z, log z) maps,
    the mirrored one mirrored back: a left-right symmetric answer, as the scenes are.
    """

    def __init__(self, grid: tuple[int, int], width: int = 16, mirror: bool = False) -> None:
        super().__init__()
        if width < 8 or width % 8:
            raise ValueError(f'pixel surface width must be a multiple of 8 >= 8, got {width}')
        self.grid = grid
        self.mirror = mirror
        c = [width, 2 * width, 4 * width, 6 * width, 8 * width]
        self.down = nn.ModuleList([_block(3, c[0])] + [_block(c[i], c[i + 1], 2)
                                                       for i in range(4)])
        self.context = nn.Linear(c[4], c[4])
        self.up = nn.ModuleList([_block(c[i + 1] + c[i], c[i]) for i in (3, 2, 1)])
        self.out = nn.Conv2d(c[1], 3, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f'pixel surface needs images (B, 3, H, W), got {tuple(image.shape)}')
        rows, cols = self.grid[0] * SUB, self.grid[1] * SUB
        x = image.float()
        if x.shape[-2:] != (2 * rows, 2 * cols):
            x = F.interpolate(x, size=(2 * rows, 2 * cols), mode='bilinear',
                              align_corners=False, antialias=True)
        if self.mirror:  # one pass over both; the principal point is the image centre
            b = x.shape[0]
            y = self._map(torch.cat([x, x.flip(-1)]))
            back = y[b:].flip(2) * y.new_tensor([-1.0, 1.0, 1.0])
            y = 0.5 * (y[:b] + back)
        else:
            y = self._map(x)
        z = torch.exp(y[..., 2:3])
        return torch.cat([y[..., :2] * z, z], dim=-1).reshape(image.shape[0], -1, 3)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, rows, cols, 3): x/z, y/z and log z, clamped, from images at twice the grid."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = x + self.context(x.mean(dim=(2, 3)))[..., None, None]
        for block, skip in zip(self.up, reversed(skips[1:4]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        y = self.out(x).permute(0, 2, 3, 1)
        return torch.cat([y[..., :2], y[..., 2:3].clamp(-8.0, 8.0)], dim=-1)
