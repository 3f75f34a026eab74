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
Model configuration: typed dataclasses and the three presets (`micro`, `tiny`, `paper`).

The config owns the input contract (`image_height`, `image_width`, `patch_size`,
`preprocessing`, ImageNet mean/std), so the node and the data generator read it from a
checkpoint instead of guessing. Every config is JSON-serialisable via `to_dict()` /
`from_dict()`; the resolved dict is stored in every checkpoint's metadata.

Sizes of `paper` follow nova3r-digest §2.2, §3.2 (released-code defaults): point encoder
D=512 / 8 heads / 8 self layers, latent 768 x 128, joint decoder 128 wide / 8 heads / 3 layers,
DINOv2-L/14 with 4 registers, 16-layer 1024-wide VGGT-style aggregator, 518 x 392 input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PRESETS = ('micro', 'tiny', 'paper')
PREPROCESSING_RULES = ('resize_center_crop',)
IMAGE_TOKEN_MODES = ('absolute', 'mean_residual')


@dataclass
class PointEncoderConfig:
    """Stage-1 encoder (TripoSG-style, hybrid query)."""

    width: int = 512  # D
    num_heads: int = 8
    num_self_layers: int = 8
    num_freqs: int = 8  # Fourier frequencies 2^0..2^(F-1), raw xyz kept
    mlp_ratio: float = 4.0
    presubset_factor: int = 4  # random pre-subset of factor*M points before FPS


@dataclass
class DecoderConfig:
    """Joint flow-matching decoder (PointJointFMDecoderV2-shaped)."""

    width: int = 128
    num_heads: int = 8
    num_layers: int = 3
    num_freqs: int = 8  # Fourier frequencies pi*2^k, raw xyz kept
    mlp_ratio: float = 4.0
    time_channels: int = 256  # sinusoidal channels of time_scale * t
    # 1.0 = the released decoder (raw t in [0, 1], coarse time resolution); 1000 = DiT practice
    time_scale: float = 1.0
    visibility_hidden: int = 64  # hidden width of the visibility MLP head
    # hidden width of the surface-confidence head (confidence.py); 0 = no head (density filter)
    confidence_hidden: int = 0
    # ranking score = confidence logit + this x log isolation (8 neighbours): favours confident
    # points where the kept cloud would be thin, so coverage (recall) is not traded away
    confidence_coverage: float = 0.0
    # hidden width of the view-1 surface head and its visibility fusion (surface.py, fitted
    # after stage 2 by train/surface_head.py); 0 = none (the visibility head alone)
    surface_hidden: int = 0
    # transformer layers of the surface head (two up to the thirteenth release)
    surface_layers: int = 2
    # channels of the surface head's convolutional stem on view 1's image; 0 = tokens only
    surface_stem: int = 0
    # the surface head reads its own copy of the image encoder, fine-tuned for view-1 depth
    # (the scene tokens' encoder was never trained for depth); False = the shared encoder
    surface_encoder: bool = False
    # the surface head reads its own fine-tuned copy of the aggregator's last this-many layers
    # (every view's tokens entering them are the shared encoder's), so its view-1 tokens mix
    # what the other views see for depth; 0 = the shared tokens (cheap middle ground between
    # the frozen tokens and `surface_encoder`)
    surface_top: int = 0
    # what the visibility fusion reads besides the head's logit (`surface.ray_features`): the
    # depth difference against this many nearest pointmap directions, and whether also the
    # difference minus its median over the window's points; (1, False) = the tenth release's
    fusion_neighbours: int = 1
    fusion_centred: bool = False
    # ... and the point's direction and log range from view 1
    fusion_position: bool = False
    # channels of a pixel U-Net for view 1's pointmap (surface.PixelSurface, fitted by
    # train/pixel_surface.py on every view's depth); the fusion then reads its pointmap too
    # (beside the surface head's when there is one); 0 = none
    surface_pixel: int = 0
    # ... and whether it averages its pointmap with the one of the mirrored image (twice the
    # pixel net's cost; the fusion must be fitted on the same setting)
    surface_pixel_mirror: bool = False


@dataclass
class BackboneConfig:
    """DINOv2-shaped ViT patch embedding (public DINOv2 parameter names)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    pos_embed_size: int = 518  # pos_embed covers (pos_embed_size / patch)^2 patches + cls
    layerscale_init: float = 1e-5


@dataclass
class AggregatorConfig:
    """VGGT-style alternating frame/global attention with scene tokens (digest §3.2)."""

    dim: int = 1024
    depth: int = 16  # frame blocks = global blocks = depth
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    rope_freq: float = 100.0  # 2-D RoPE base frequency; 0 disables RoPE
    layerscale_init: float = 0.01
    num_register_tokens: int = 4
    scene_stride: int = 2  # scene tokens join global attention on layers stride-1, 2*stride-1..
    cond_mlp_ratio: float = 2.0  # Token3DEmbedMLP hidden ratio
    # > 0: a head on the frame tokens predicts every view's pointmap in view 1's frame, a
    # stage-2 training signal (`surface.PointmapHead`; 0 = none, as in every release to date)
    pointmap_hidden: int = 0


@dataclass
class FlowConfig:
    """Probability path and default sampler (released-code convention, digest §2.2)."""

    path: str = 'cosine'  # 'cosine' | 'linear'
    method: str = 'euler'
    num_steps: int = 25
    schedule: str = 'uniform'


@dataclass
class Nova3rConfig:
    """The whole model: stage-1 point autoencoder + stage-2 image encoder, one decoder."""

    name: str = 'paper'
    num_scene_tokens: int = 768  # M
    latent_dim: int = 128  # C
    image_height: int = 392
    image_width: int = 518
    patch_size: int = 14
    preprocessing: str = 'resize_center_crop'
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    max_views: int = 8
    # How stage 2 forms Z: 'absolute' (the aggregator's projection is Z, as released) or
    # 'mean_residual' (Z = mean_scene_tokens + projection, projection zero-initialised: stage 2
    # starts exactly at the trivial prior and learns what the images add to it).
    image_tokens: str = 'absolute'
    point_encoder: PointEncoderConfig = field(default_factory=PointEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for inconsistent sizes (checked once, at construction)."""
        if self.image_height % self.patch_size or self.image_width % self.patch_size:
            raise ValueError(
                f'image {self.image_width}x{self.image_height} is not a multiple of '
                f'patch_size {self.patch_size}')
        if self.preprocessing not in PREPROCESSING_RULES:
            raise ValueError(f'preprocessing {self.preprocessing!r} not in {PREPROCESSING_RULES}')
        for label, width, heads in (
                ('point_encoder', self.point_encoder.width, self.point_encoder.num_heads),
                ('decoder', self.decoder.width, self.decoder.num_heads),
                ('backbone', self.backbone.embed_dim, self.backbone.num_heads),
                ('aggregator', self.aggregator.dim, self.aggregator.num_heads)):
            if width % heads:
                raise ValueError(f'{label}: width {width} not divisible by {heads} heads')
        head_dim = self.aggregator.dim // self.aggregator.num_heads
        if self.aggregator.rope_freq > 0 and head_dim % 4:
            raise ValueError(f'aggregator head dim {head_dim}: 2-D RoPE needs a multiple of 4')
        if self.aggregator.depth < self.aggregator.scene_stride:
            raise ValueError('aggregator depth must be >= scene_stride (scene tokens never join)')
        if self.flow.path not in ('cosine', 'linear'):
            raise ValueError(f"flow.path must be 'cosine' or 'linear', got {self.flow.path!r}")
        if self.image_tokens not in IMAGE_TOKEN_MODES:
            raise ValueError(f'image_tokens must be one of {IMAGE_TOKEN_MODES}, '
                             f'got {self.image_tokens!r}')
        if self.decoder.surface_hidden < 0 or self.decoder.surface_stem < 0:
            raise ValueError('decoder.surface_hidden and surface_stem must be >= 0')
        if self.aggregator.pointmap_hidden < 0:
            raise ValueError('aggregator.pointmap_hidden must be >= 0')
        pixel = self.decoder.surface_pixel
        if pixel < 0 or (pixel and pixel % 8):
            raise ValueError(f'decoder.surface_pixel must be 0 or a multiple of 8, got {pixel}')
        if not 1 <= self.decoder.surface_layers <= 12:
            raise ValueError(f'decoder.surface_layers must be in [1, 12], '
                             f'got {self.decoder.surface_layers}')
        top, last = self.decoder.surface_top, self.last_scene_layer
        if not 0 <= top <= last + 1:
            raise ValueError(f'decoder.surface_top must be in [0, {last + 1}], got {top}')
        if top and not self.decoder.surface_hidden:
            raise ValueError('decoder.surface_top needs a surface head (surface_hidden > 0)')
        if top and self.decoder.surface_encoder:
            raise ValueError('decoder.surface_top and surface_encoder exclude each other')
        stride = self.aggregator.scene_stride
        scene = [i for i in range(last + 1 - top, last) if i % stride == stride - 1]
        if scene:
            raise ValueError(f'decoder.surface_top={top} copies aggregator layer {scene[0]}, '
                             f'whose global block also reads the scene tokens')
        if not 1 <= self.decoder.fusion_neighbours <= 16:
            raise ValueError(f'decoder.fusion_neighbours must be in [1, 16], '
                             f'got {self.decoder.fusion_neighbours}')
        if not 1 <= self.max_views <= 64:
            raise ValueError(f'max_views must be in [1, 64], got {self.max_views}')

    @property
    def last_scene_layer(self) -> int:
        """Index of the aggregator's last layer whose global block the scene tokens join."""
        stride = self.aggregator.scene_stride
        return self.aggregator.depth // stride * stride - 1

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of patches per view."""
        return self.image_height // self.patch_size, self.image_width // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Nova3rConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError (a stale or foreign config)."""
        subs = {'point_encoder': PointEncoderConfig, 'decoder': DecoderConfig,
                'backbone': BackboneConfig, 'aggregator': AggregatorConfig, 'flow': FlowConfig}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f'unknown Nova3rConfig keys: {sorted(unknown)}')
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in subs:
                sub_known = {f.name for f in dataclasses.fields(subs[key])}
                bad = set(value) - sub_known
                if bad:
                    raise ValueError(f'unknown {key} keys: {sorted(bad)}')
                kwargs[key] = subs[key](**value)
            elif key in ('image_mean', 'image_std'):
                kwargs[key] = tuple(float(v) for v in value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def get_preset(name: str) -> Nova3rConfig:
    """Return a fresh config for preset `name` ('micro', 'tiny' or 'paper')."""
    if name == 'paper':
        return Nova3rConfig()
    if name == 'tiny':
        # CPU-shippable; widths from `python -m nova3r_ros.model.summary` (decoder cost at
        # N=8192 dominates inference; see the report in the model README section).
        return Nova3rConfig(
            name='tiny', num_scene_tokens=256, latent_dim=64,
            image_height=168, image_width=224, patch_size=14, max_views=8,
            image_tokens='mean_residual',
            point_encoder=PointEncoderConfig(width=128, num_heads=4, num_self_layers=4),
            # time_scale 1000: a small decoder learns sharp surfaces much faster than with the
            # released raw-t embedding (stage-1 overfit test: F@0.05 0.53 -> 0.79 at 400 steps)
            decoder=DecoderConfig(width=64, num_heads=4, num_layers=3, time_channels=128,
                                  time_scale=1000.0, visibility_hidden=64),
            backbone=BackboneConfig(embed_dim=192, depth=4, num_heads=3,
                                    pos_embed_size=224, layerscale_init=1e-1),
            aggregator=AggregatorConfig(dim=192, depth=4, num_heads=4, rope_freq=100.0),
        )
    if name == 'micro':
        # For unit tests: every code path, seconds on CPU.
        return Nova3rConfig(
            name='micro', num_scene_tokens=16, latent_dim=16,
            image_height=28, image_width=42, patch_size=14, max_views=8,
            point_encoder=PointEncoderConfig(width=32, num_heads=2, num_self_layers=1,
                                             num_freqs=4),
            decoder=DecoderConfig(width=32, num_heads=2, num_layers=2, num_freqs=4,
                                  time_channels=32, time_scale=1000.0, visibility_hidden=16),
            backbone=BackboneConfig(embed_dim=32, depth=1, num_heads=2, num_register_tokens=4,
                                    pos_embed_size=42, layerscale_init=1e-1),
            aggregator=AggregatorConfig(dim=32, depth=2, num_heads=2, rope_freq=100.0),
        )
    raise ValueError(f'unknown preset {name!r}; choose one of {PRESETS}')
