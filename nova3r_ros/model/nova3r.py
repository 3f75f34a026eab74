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
The full NOVA3R model: exactly two compositions share one joint flow decoder.

- Stage 1 (point autoencoder): `encode_points` (complete cloud -> Z) + decoder.
- Stage 2 (images): `encode_images` (K views -> Z) + the frozen stage-1 decoder (+ the
  visibility head, trained in stage 2 from GT labels).

Sampling: N noise points x0 ~ U[-1, 1]^3 at t = 0 are integrated to t = 1 with the decoder's
velocity (`flow.sample_ode`); with `oversample` > 1 more are drawn and the most isolated dropped
(`density`). Visibility: one extra decoder call at t = 1 on the final points;
its point features feed `VisibilityHead` (in training the same call runs on GT points); with a
surface head (`surface.py`, `encode_views`) the published logit also reads where the point lies
along its ray relative to view 1's predicted pointmap (read from the scene tokens' encoder, or
from its own fine-tuned copy with `decoder.surface_encoder`, or through a fine-tuned copy of the
aggregator's last layers with `decoder.surface_top`).
Precision (`set_precision`): by default the networks run under bf16 autocast on a CUDA device
with native bf16 and in fp32 elsewhere; 'bf16' also autocasts on the CPU (worth it where the CPU
has bf16 instructions: ~1.1x per window, ~1.3x per stage-2 step here, docs/speed.md), 'fp32'
never autocasts (GPUs without bf16, debugging). The ODE state always stays fp32.

All points are median_3-normalised, in the view-1 optical frame (x right, y down, z forward).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import functools
import math
import os

import torch
from torch import nn
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import density, flow
from .confidence import ConfidenceHead, geometry_features, ISOLATION_NEIGHBOURS, VELOCITY_DIM
from .configs import Nova3rConfig
from .flow_decoder import JointFlowDecoder, VisibilityHead
from .image_encoder import AggregatorTop, ImageEncoder
from .point_autoencoder import PointEncoder
from .surface import (
    feature_width,
    PixelSurface,
    PointmapHead,
    ray_features,
    SurfaceHead,
    VisibilityFusion,
)

KEEP_POLICIES = ('auto', 'confidence', 'density')
PRECISIONS = ('auto', 'fp32', 'bf16')  # compute precision, see set_precision
ISOLATION_COLUMN = ISOLATION_NEIGHBOURS.index(8)  # log isolation at 8 neighbours


def _noise(shape: Sequence[int], generator: torch.Generator | None,
           device: torch.device) -> torch.Tensor:
    """U[-1, 1] noise drawn on the generator's device (reproducible), then moved."""
    gen_device = generator.device if generator is not None else device
    return flow.sample_noise(shape, generator, gen_device).to(device)


class Nova3r(nn.Module):
    """NOVA3R: point encoder, image encoder, joint flow decoder, visibility head."""

    def __init__(self, cfg: Nova3rConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.point_encoder = PointEncoder(cfg)
        self.image_encoder = ImageEncoder(cfg)
        self.decoder = JointFlowDecoder(cfg)
        self.visibility_head = VisibilityHead(cfg.decoder.width, cfg.decoder.visibility_hidden)
        # fitted after stage 2 on sampled points (train/confidence_head.py); absent when 0
        self.confidence_head = (ConfidenceHead(cfg.decoder.width, cfg.decoder.confidence_hidden)
                                if cfg.decoder.confidence_hidden > 0 else None)
        # fitted after stage 2 (train/surface_head.py); absent when 0
        self.surface_head: SurfaceHead | None = None
        self.visibility_fusion: VisibilityFusion | None = None
        self.surface_encoder: ImageEncoder | None = None
        self.pixel_surface: PixelSurface | None = None
        grid = (cfg.image_height // cfg.patch_size, cfg.image_width // cfg.patch_size)
        if cfg.decoder.surface_hidden > 0:
            self.surface_head = SurfaceHead(cfg.aggregator.dim, grid, cfg.decoder.surface_hidden,
                                            layers=cfg.decoder.surface_layers,
                                            stem=cfg.decoder.surface_stem)
            if cfg.decoder.surface_encoder:
                self.surface_encoder = ImageEncoder(cfg)
        if cfg.decoder.surface_pixel > 0:
            self.pixel_surface = PixelSurface(grid, cfg.decoder.surface_pixel,
                                              mirror=cfg.decoder.surface_pixel_mirror)
        sources = int(self.surface_head is not None) + int(self.pixel_surface is not None)
        if sources:
            self.visibility_fusion = VisibilityFusion(rays=sources * feature_width(
                cfg.decoder.fusion_neighbours, cfg.decoder.fusion_centred,
                cfg.decoder.fusion_position))
        # stage-2 training signal only (`encode_pointmaps`); absent when 0
        pointmap = cfg.aggregator.pointmap_hidden
        self.pointmap_head = (PointmapHead(cfg.aggregator.dim, grid, pointmap)
                              if pointmap > 0 else None)
        self.surface_top: AggregatorTop | None = None
        if cfg.decoder.surface_hidden > 0 and cfg.decoder.surface_top > 0:
            self.surface_top = AggregatorTop(cfg, cfg.decoder.surface_top)
        # Mean stage-1 latent over the training set: the "trivial prior" baseline (DESIGN §8).
        self.register_buffer('mean_scene_tokens',
                             torch.zeros(cfg.num_scene_tokens, cfg.latent_dim))
        self.checkpoint_metadata: dict[str, str] = {}
        self.checkpoint_storage = 'float32'  # how the loaded file stored its weights
        self.precision = 'auto'
        if cfg.image_tokens == 'mean_residual':
            # zero projection: Z starts at the mean latent; its gradient is still non-zero
            nn.init.zeros_(self.image_encoder.aggregator.token_proj.weight)

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.mean_scene_tokens.device

    def set_precision(self, precision: str) -> Nova3r:
        """Choose the compute precision (one of `PRECISIONS`, see the module doc); returns self."""
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        self.precision = precision
        return self

    def uses_bf16(self) -> bool:
        """Whether the networks run under bf16 autocast on the current device."""
        if self.precision == 'auto':
            return self.device.type == 'cuda' and cuda_has_native_bf16(self.device)
        return self.precision == 'bf16'

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when `uses_bf16`, else a no-op (fp32)."""
        if self.uses_bf16():
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check_tokens(self, scene_tokens: torch.Tensor) -> None:
        want = (self.cfg.num_scene_tokens, self.cfg.latent_dim)
        if scene_tokens.dim() != 3 or tuple(scene_tokens.shape[1:]) != want:
            raise ValueError(f'scene_tokens must be (B, {want[0]}, {want[1]}), '
                             f'got {tuple(scene_tokens.shape)}')

    @staticmethod
    def _check_points(points: torch.Tensor, name: str) -> None:
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
            raise ValueError(f'{name} must be (B, N>0, 3), got {tuple(points.shape)}')
        if not bool(torch.isfinite(points).all()):
            raise ValueError(f'{name} contains NaN/Inf')

    # ------------------------------------------------------------------ encoders
    def encode_points(self, points: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Stage 1. points (B, P, 3) normalised view-1 -> scene_tokens (B, M, C) float32."""
        self._check_points(points, 'points')
        with self.autocast():
            return self.point_encoder(points.float(), generator).float()

    def encode_images(self, images: torch.Tensor, frames: bool = False, tap: int | None = None
                      ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Stage 2. images (B, K, 3, H, W) float in [0, 1], K in 1..max_views -> (B, M, C).

        With `cfg.image_tokens == 'mean_residual'` the encoder's output is an offset from
        `mean_scene_tokens` (the trivial prior), so an untrained encoder already gives the prior.
        With `frames` also every view's patch tokens that the scene tokens last read, (B, K, P,
        D) float32 row-major over the patch grid, for probes of what the image tokens carry
        (with `tap`, the tokens entering that aggregator layer: `Aggregator.forward`).
        """
        with self.autocast():
            out = self.image_encoder(images.float(), frames=frames, tap=tap)
        tokens = (out[0] if frames else out).float()
        if self.cfg.image_tokens == 'mean_residual':
            tokens = tokens + self.mean_scene_tokens
        return (tokens, out[1].float()) if frames else tokens

    def encode_pointmaps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scene tokens (B, M, C) and every view's pointmap in view 1's frame (B, K, R, 3)."""
        if self.pointmap_head is None:
            raise ValueError('this model has no pointmap head (aggregator.pointmap_hidden)')
        tokens, frames = self.encode_images(images, frames=True)
        with self.autocast():
            return tokens, self.pointmap_head(frames).float()

    def encode_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Scene tokens (B, M, C) and, with a surface head, view 1's pointmap (B, R, 3).

        One encoder pass (two with `cfg.decoder.surface_encoder`); pass the pointmap to
        `sample(surface=...)` so the published visibility reads it. With a pixel net as well
        (`cfg.decoder.surface_pixel`) both pointmaps come concatenated (B, 2R, 3), the head's
        first; with the pixel net alone, its own. Without either the second value is None (and
        `sample` ignores it).
        """
        if self.surface_head is None:
            tokens = self.encode_images(images)
            return tokens, (None if self.pixel_surface is None
                            else self.pixel_surface(images[:, 0]))
        if self.surface_top is not None:
            tokens, entering = self.encode_images(images, frames=True,
                                                  tap=self.surface_top.start)
            frames = self.top_frames(entering)
        elif self.surface_encoder is None:
            tokens, frames = self.encode_images(images, frames=True)
        else:
            tokens = self.encode_images(images)
            frames = self.surface_frames(images)
        view1 = images[:, 0] if self.surface_head.stem is not None else None
        surface = self.surface_head(frames[:, 0], view1)
        if self.pixel_surface is not None:  # both pointmaps, the head's first
            surface = torch.cat([surface, self.pixel_surface(images[:, 0])], dim=1)
        return tokens, surface

    def ray_features(self, surface: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """`surface.ray_features` with this model's fusion settings (what its fusion reads)."""
        d = self.cfg.decoder
        surface = surface.to(points.device)
        parts = ([surface] if self.surface_head is None or self.pixel_surface is None
                 else list(surface.chunk(2, dim=1)))  # the head's pointmap, the pixel net's
        return torch.cat([ray_features(part, points, d.fusion_neighbours, d.fusion_centred,
                                       d.fusion_position) for part in parts], dim=-1)

    def top_frames(self, entering: torch.Tensor) -> torch.Tensor:
        """`surface_top` on the tokens entering its layers (B, K, T, D) -> (B, K, P, D) float32."""
        if self.surface_top is None:
            raise ValueError('this model has no surface top (decoder.surface_top)')
        with self.autocast():
            return self.surface_top(entering, self.cfg.patch_grid).float()

    def surface_frames(self, images: torch.Tensor) -> torch.Tensor:
        """Every view's patch tokens (B, K, P, D) float32 from the surface head's own encoder."""
        if self.surface_encoder is None:
            raise ValueError('this model has no surface encoder (decoder.surface_encoder)')
        with self.autocast():
            return self.surface_encoder(images.float(), frames=True)[1].float()

    def prior_scene_tokens(self, batch_size: int) -> torch.Tensor:
        """Return the trivial prior: `mean_scene_tokens` repeated (B, M, C)."""
        return self.mean_scene_tokens[None].expand(batch_size, -1, -1).clone()

    # ------------------------------------------------------------------ decoder
    def velocity(self, scene_tokens: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
                 ) -> torch.Tensor:
        """
        Return the decoder's velocity field, (B, N, 3) float32.

        Evaluated at points xt (B, N, 3), time t (B,) in [0, 1].
        """
        with self.autocast():
            return self.decoder(scene_tokens, xt, t)[0].float()

    def visibility_logits(self, scene_tokens: torch.Tensor, points: torch.Tensor
                          ) -> torch.Tensor:
        """
        Logit (B, N) that each point (B, N, 3) is visible in some input view.

        Runs the decoder once at t = 1 on `points` and feeds its final point features to the
        visibility head (the "visibility" stage in latency reports).
        """
        features = self.point_features(scene_tokens, points)
        with self.autocast():
            return self.visibility_head(features).float()

    def point_features(self, scene_tokens: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """
        Return the decoder's final point features (B, N, width) at t = 1.

        They are the visibility head's input, exposed so the head can be fitted on cached
        features of sampled points.
        """
        self._check_tokens(scene_tokens)
        self._check_points(points, 'points')
        t = torch.ones(points.shape[0], device=points.device)
        with self.autocast():
            return self.decoder(scene_tokens, points.float(), t)[1]

    def flow_loss(self, scene_tokens: torch.Tensor, target_points: torch.Tensor,
                  generator: torch.Generator | None = None,
                  t: torch.Tensor | None = None, coupling: str = 'independent'
                  ) -> torch.Tensor:
        """
        Flow-matching MSE on the configured path; one t ~ U[0, 1] per sample.

        target_points (B, N, 3) normalised view-1 (x1); noise x0 ~ U[-1, 1]^3, paired with the
        targets by `coupling` ('independent': at random; 'ot': `flow.couple`).
        """
        self._check_tokens(scene_tokens)
        self._check_points(target_points, 'target_points')
        b = target_points.shape[0]
        x1 = target_points.float()
        x0 = flow.couple(_noise(x1.shape, generator, x1.device), x1, coupling)
        if t is None:
            gen_device = generator.device if generator is not None else x1.device
            t = torch.rand(b, generator=generator, device=gen_device).to(x1.device)
        xt, target = flow.path_sample(x0, x1, t, self.cfg.flow.path)
        pred = self.velocity(scene_tokens, xt, t)
        return F.mse_loss(pred, target)

    def visibility_loss(self, scene_tokens: torch.Tensor, points: torch.Tensor,
                        visible: torch.Tensor) -> torch.Tensor:
        """BCE of the visibility head on GT points (B, N, 3) with GT labels `visible` (B, N)."""
        logits = self.visibility_logits(scene_tokens, points)
        return F.binary_cross_entropy_with_logits(logits, visible.float())

    @torch.no_grad()
    def sample(self, scene_tokens: torch.Tensor, num_points: int, num_steps: int | None = None,
               method: str | None = None, schedule: str | Sequence[float] | None = None,
               generator: torch.Generator | None = None, visibility: bool = True,
               oversample: float = 1.0, neighbours: int = 8, keep: str = 'auto',
               features: bool = False, surface: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
        """
        Generate N points from Z by integrating the flow from noise (t=0) to data (t=1).

        scene_tokens (B, M, C). Defaults for steps/method/schedule come from `cfg.flow`.
        `oversample` > 1 draws ceil(N * oversample) points and keeps N of them: by `keep` =
        'confidence' the most confident (needs the confidence head), 'density' the N whose
        `neighbours` nearest points are closest (`density.keep_densest`), 'auto' confidence when
        the model has the head, else density. Confidence ranks by the head's logit plus
        `cfg.decoder.confidence_coverage` x log isolation. 1 keeps every drawn point.
        Returns dict(points (B, N, 3) float32 normalised view-1, visibility_logits (B, N),
        confidence_logits (B, N) when the confidence head ranked them, point_features (B, N,
        width) with `features`: what the visibility head reads); with `visibility=False` no
        visibility logits (the head's extra decoder call is skipped when nothing needs it).
        `surface` (B, R, 3), view 1's pointmap from `encode_views`: with a surface head the
        visibility logits are the fusion of the head's logit and the point's place along its ray
        (`surface.py`); `visibility_head_logits` then keeps the head's own.
        """
        self._check_tokens(scene_tokens)
        if num_points < 1:
            raise ValueError(f'num_points must be >= 1, got {num_points}')
        drawn = density.drawn_points(num_points, oversample)
        if neighbours < 1:
            raise ValueError(f'neighbours must be >= 1, got {neighbours}')
        if keep not in KEEP_POLICIES:
            raise ValueError(f'keep must be one of {KEEP_POLICIES}, got {keep!r}')
        if keep == 'confidence' and self.confidence_head is None:
            raise ValueError("keep='confidence' needs a checkpoint with a confidence head")
        by_confidence = drawn > num_points and keep != 'density' and (
            self.confidence_head is not None)
        if not by_confidence:
            points = self.draw(scene_tokens, drawn, num_steps, method, schedule, generator)[0]
            if drawn > num_points:
                order = density.keep_densest(points, num_points, min(neighbours, drawn - 1))
                points = torch.gather(points, 1, order[..., None].expand(-1, -1, 3))
            out = {'points': points}
            if visibility or features:
                feats = self.point_features(scene_tokens, points)
                if features:
                    out['point_features'] = feats.float()
                if visibility:
                    out.update(self._visibility(feats, points, surface))
            return out
        points, inputs = self.draw(scene_tokens, drawn, num_steps, method, schedule, generator,
                                   head_inputs=True)
        with self.autocast():
            confidence = self.confidence_head(inputs).float()
        rank = confidence + self.cfg.decoder.confidence_coverage * inputs[..., ISOLATION_COLUMN
                                                                          + self._head_offset]
        rank = rank.masked_fill(~torch.isfinite(points).all(dim=-1), -math.inf)
        order = torch.sort(torch.topk(rank, num_points, dim=-1).indices, dim=-1).values
        points = torch.gather(points, 1, order[..., None].expand(-1, -1, 3))
        out = {'points': points, 'confidence_logits': torch.gather(confidence, 1, order)}
        # the decoder features of the kept points, from the call that ranked them
        width = self.cfg.decoder.width
        feats = torch.gather(inputs[..., :width], 1, order[..., None].expand(-1, -1, width))
        if features:
            out['point_features'] = feats
        if visibility:
            out.update(self._visibility(feats, points, surface))
        return out

    def _visibility(self, feats: torch.Tensor, points: torch.Tensor,
                    surface: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Return the head's visibility logits, fused with `surface` when the model can."""
        with self.autocast():
            logits = self.visibility_head(feats).float()
        if surface is None or self.visibility_fusion is None:
            return {'visibility_logits': logits}
        if surface.dim() != 3 or surface.shape[0] != points.shape[0] or surface.shape[2] != 3:
            raise ValueError(f'surface must be (B, R, 3) for {points.shape[0]} samples, got '
                             f'{tuple(surface.shape)}')
        rays = self.ray_features(surface, points)
        fused = self.visibility_fusion(torch.cat([logits[..., None], rays], dim=-1))
        return {'visibility_logits': fused, 'visibility_head_logits': logits}

    @property
    def _head_offset(self) -> int:
        """Column where the geometry features start in the confidence head's input."""
        return self.cfg.decoder.width + VELOCITY_DIM

    @torch.no_grad()
    def draw(self, scene_tokens: torch.Tensor, count: int, num_steps: int | None = None,
             method: str | None = None, schedule: str | Sequence[float] | None = None,
             generator: torch.Generator | None = None, head_inputs: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Integrate `count` points per sample (B, count, 3), unfiltered.

        With `head_inputs` also return the confidence head's input for each point (B, count,
        width + 6 + geometry): decoder features at t = 1, the last two Euler velocities and the
        cloud's local geometry (`confidence.py`); the head-refit script caches exactly these.
        """
        self._check_tokens(scene_tokens)
        num_steps = self.cfg.flow.num_steps if num_steps is None else num_steps
        method = method or self.cfg.flow.method
        schedule = schedule if schedule is not None else self.cfg.flow.schedule
        grid = flow.time_grid(num_steps, schedule)
        b = scene_tokens.shape[0]
        x0 = _noise((b, count, 3), generator, scene_tokens.device)
        velocities: list[torch.Tensor] = []

        def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            v = self.velocity(scene_tokens, x, t)
            if head_inputs:
                velocities[:] = [velocities[-1], v] if velocities else [v, v]
            return v

        points = flow.sample_ode(field, x0, grid, method, self.cfg.flow.path)
        if not head_inputs:
            return points, None
        t = torch.ones(b, device=points.device)
        finite = torch.where(torch.isfinite(points), points, torch.zeros_like(points))
        with self.autocast():
            features = self.decoder(scene_tokens, finite, t)[1].float()
        geometry = torch.stack([geometry_features(p) for p in points])
        inputs = torch.cat([features, velocities[1].float(), velocities[0].float(), geometry],
                           dim=-1)
        return points, torch.nan_to_num(inputs, nan=0.0, posinf=0.0, neginf=0.0)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, num_points: int, num_steps: int | None = None,
                    method: str | None = None, schedule: str | Sequence[float] | None = None,
                    generator: torch.Generator | None = None, oversample: float = 1.0
                    ) -> dict[str, torch.Tensor]:
        """Images (B, K, 3, H, W) in [0, 1] -> `sample` dict (stage 2 end to end)."""
        tokens, surface = self.encode_views(images)
        return self.sample(tokens, num_points, num_steps, method, schedule, generator,
                           oversample=oversample, surface=surface)

    # ------------------------------------------------------------------ parameters
    def stage_modules(self, stage: int) -> dict[str, nn.Module]:
        """
        Return the modules a stage trains.

        Stage 1: point encoder + decoder; stage 2: image encoder + head.
        """
        if stage == 1:
            return {'point_encoder': self.point_encoder, 'decoder': self.decoder}
        if stage == 2:
            modules = {'image_encoder': self.image_encoder,
                       'visibility_head': self.visibility_head}
            if self.pointmap_head is not None:
                modules['pointmap_head'] = self.pointmap_head
            return modules
        raise ValueError(f'stage must be 1 or 2, got {stage}')

    def named_blocks(self) -> Iterator[tuple[str, nn.Module | nn.Parameter]]:
        """Top-level pieces for per-block parameter counts."""
        agg = self.image_encoder.aggregator
        yield 'point_encoder', self.point_encoder
        yield 'decoder', self.decoder
        yield 'visibility_head', self.visibility_head
        if self.confidence_head is not None:
            yield 'confidence_head', self.confidence_head
        if self.surface_head is not None:
            yield 'surface_head', self.surface_head
        if self.pixel_surface is not None:
            yield 'pixel_surface', self.pixel_surface
        if self.pointmap_head is not None:
            yield 'pointmap_head', self.pointmap_head
        if self.visibility_fusion is not None:
            yield 'visibility_fusion', self.visibility_fusion
        if self.surface_encoder is not None:
            yield 'surface_encoder', self.surface_encoder
        if self.surface_top is not None:
            yield 'surface_top', self.surface_top
        yield 'backbone', self.image_encoder.backbone
        yield 'aggregator.frame_blocks', agg.frame_blocks
        yield 'aggregator.global_blocks', agg.global_blocks
        yield 'aggregator.scene_conditioner', agg.scene_conditioner
        yield 'aggregator.scene_tokens', agg.scene_tokens
        yield 'aggregator.token_proj', agg.token_proj
        yield 'aggregator.special_tokens+patch_proj', nn.ParameterList(
            [agg.camera_token, agg.register_token, *agg.patch_proj.parameters()])

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike,
                        metadata: dict[str, str] | None = None,
                        storage: str = 'float32') -> None:
        """One safetensors file with all weights and the resolved config in its metadata."""
        ckpt.save_state(path, self.state_dict(), self.cfg.to_dict(), metadata, storage)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike,
                        map_location: str | torch.device = 'cpu') -> Nova3r:
        """Rebuild from the file alone (config from metadata), validated; returns eval mode."""
        try:
            cfg = Nova3rConfig.from_dict(ckpt.read_config(path))
        except (TypeError, ValueError) as exc:
            raise ValueError(f'{os.fspath(path)}: bad config in checkpoint: {exc}') from exc
        with torch.device('meta'):
            model = cls(cfg)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        dtypes = {k: v.dtype for k, v in model.state_dict().items()}
        state = ckpt.load_state(path, expected, map_location, dtypes)
        model.load_state_dict(state, assign=True)
        meta, _ = ckpt.read_header(path)
        # the reserved keys stay out, so a refit can pass this metadata on to save_checkpoint
        model.checkpoint_metadata = {k: v for k, v in meta.items() if k not in ckpt.RESERVED}
        model.checkpoint_storage = meta.get('storage', 'float32')
        return model.eval()

    def extra_repr(self) -> str:
        return f'preset={self.cfg.name!r}'


@functools.lru_cache(maxsize=16)  # asked on every autocast, i.e. every decoder call
def cuda_has_native_bf16(device: torch.device) -> bool:
    """
    Whether a CUDA device computes bf16 natively (compute capability 8.0+: Ampere, Orin, Hopper).

    Older GPUs (Volta in a Jetson Xavier, Turing, Pascal) emulate it slowly or not at all, so
    'auto' precision runs them in fp32.
    """
    return torch.cuda.get_device_capability(device)[0] >= 8


def count_parameters(module: nn.Module | nn.Parameter) -> int:
    """Count the scalar parameters (works on the meta device)."""
    if isinstance(module, nn.Parameter):
        return module.numel()
    return sum(p.numel() for p in module.parameters())
