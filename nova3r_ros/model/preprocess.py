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
Image preprocessing rule of the model config: resize to cover, then centre crop.

Rule 'resize_center_crop': scale each image by s = max(W_m / W, H_m / H) (so it covers the
model's W_m x H_m), resize with antialiased bilinear interpolation to round(W s) x round(H s),
then crop the centre W_m x H_m window. Nothing is padded and the aspect ratio is kept; content
outside the model's aspect is cut off symmetrically. Pixel-centre convention for intrinsics:
u' = (u + 0.5) * s_x - 0.5 - x0 (s_x, s_y are the exact per-axis ratios after rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .configs import Nova3rConfig


@dataclass(frozen=True)
class PreprocessInfo:
    """How one image was mapped to the model input (for intrinsics and back-projection)."""

    src_width: int
    src_height: int
    scale_x: float  # resized_width / src_width
    scale_y: float  # resized_height / src_height
    crop_x: int  # left column of the crop in the resized image (pixels)
    crop_y: int  # top row of the crop in the resized image (pixels)
    out_width: int
    out_height: int


# The resize keeps the aspect ratio and the crop keeps the model's, so a strip-shaped image
# (2 x 100 000 px: a few hundred bytes as PNG) would be resized to gigabytes before the crop.
# Refused above this many times the model input's area (aspect ratios up to ~21:1 at 4:3).
MAX_RESIZED_AREA = 16


def _plan(w: int, h: int, out_w: int, out_h: int) -> PreprocessInfo:
    s = max(out_w / w, out_h / h)
    rw, rh = max(out_w, round(w * s)), max(out_h, round(h * s))
    if rw * rh > MAX_RESIZED_AREA * out_w * out_h:
        raise ValueError(f"{w}x{h}: aspect ratio too far from the model input's "
                         f'{out_w}x{out_h} (the centre crop would keep under '
                         f'1/{MAX_RESIZED_AREA} of it)')
    return PreprocessInfo(w, h, rw / w, rh / h, (rw - out_w) // 2, (rh - out_h) // 2,
                          out_w, out_h)


def input_size_problem(width: int, height: int, cfg: Nova3rConfig) -> str | None:
    """
    Why an image of this size cannot be a model input, or None when it can.

    Why: the node checks each frame on arrival, so one odd frame is dropped once instead of
    failing every window it would sit in.
    """
    if height < 2 or width < 2:
        return f'too small ({width}x{height})'
    try:
        _plan(width, height, cfg.image_width, cfg.image_height)
    except ValueError as exc:
        return str(exc)
    return None


def prepare_images(images: Sequence[np.ndarray], cfg: Nova3rConfig
                   ) -> tuple[torch.Tensor, list[PreprocessInfo]]:
    """
    K uint8 RGB images (H_i, W_i, 3) -> (tensor (K, 3, H_m, W_m) float32 in [0, 1], infos).

    Images may differ in size; each gets its own `PreprocessInfo` (same order).
    """
    if len(images) == 0:
        raise ValueError('prepare_images needs at least one image')
    out_h, out_w = cfg.image_height, cfg.image_width
    tensors, infos = [], []
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f'image {i}: expected uint8 (H, W, 3) RGB, got {arr.dtype} '
                             f'{arr.shape}')
        h, w = arr.shape[:2]
        problem = input_size_problem(w, h, cfg)
        if problem:
            raise ValueError(f'image {i}: {problem}')
        info = _plan(w, h, out_w, out_h)
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float() / 255.0
        rw, rh = round(w * info.scale_x), round(h * info.scale_y)
        if (rw, rh) != (w, h):
            x = F.interpolate(x, size=(rh, rw), mode='bilinear', align_corners=False,
                              antialias=True)
        x = x[..., info.crop_y:info.crop_y + out_h, info.crop_x:info.crop_x + out_w]
        tensors.append(x.clamp(0, 1)[0])
        infos.append(info)
    return torch.stack(tensors), infos


def adjust_intrinsics(intrinsics: np.ndarray, info: PreprocessInfo) -> np.ndarray:
    """Pinhole K (3, 3) in source pixels -> K of the model input image (float64)."""
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f'intrinsics must be (3, 3), got {k.shape}')
    out = k.copy()
    out[0, 0] = k[0, 0] * info.scale_x
    out[0, 1] = k[0, 1] * info.scale_x
    out[1, 1] = k[1, 1] * info.scale_y
    out[0, 2] = (k[0, 2] + 0.5) * info.scale_x - 0.5 - info.crop_x
    out[1, 2] = (k[1, 2] + 0.5) * info.scale_y - 0.5 - info.crop_y
    return out
