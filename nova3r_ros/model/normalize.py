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
`median_3` normalisation (digest §1): scale so the median distance to camera 1 is 3.

s = 3 / clip(median(||p||), 0.01, 100); normalised points = clamp(s * p, -1000, 1000).
No recentring: camera 1 stays at the origin. Works on numpy arrays and torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch

MEDIAN_TARGET = 3.0
MEDIAN_CLIP = (0.01, 100.0)  # metres (clip of the median norm, as released)
COORD_CLAMP = 1000.0  # normalised units


def median3_scale(points: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor | float:
    """
    Scale factor s for points (..., P, 3) in metres, view-1 frame -> shape (...).

    Returns a Python float for a single numpy cloud (P, 3), an array / tensor otherwise.
    The median is the mean of the two middle values for even P (numpy semantics).
    """
    if points.shape[-1] != 3 or points.ndim < 2 or points.shape[-2] == 0:
        raise ValueError(f'points must be (..., P>0, 3), got {tuple(points.shape)}')
    if isinstance(points, torch.Tensor):
        norms = torch.linalg.vector_norm(points.double(), dim=-1)
        med = torch.quantile(norms, 0.5, dim=-1)
        scale = MEDIAN_TARGET / med.clamp(*MEDIAN_CLIP)
        return scale.to(points.dtype if points.is_floating_point() else torch.float32)
    norms = np.linalg.norm(np.asarray(points, dtype=np.float64), axis=-1)
    scale = MEDIAN_TARGET / np.clip(np.median(norms, axis=-1), *MEDIAN_CLIP)
    return float(scale) if np.ndim(scale) == 0 else scale.astype(np.float32)


def normalize_median3(points: np.ndarray | torch.Tensor
                      ) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | float]:
    """(normalised points clamped to +-1000, scale s); see `median3_scale`."""
    scale = median3_scale(points)
    if isinstance(points, torch.Tensor):
        return (points * scale[..., None, None]).clamp(-COORD_CLAMP, COORD_CLAMP), scale
    s = np.asarray(scale, dtype=np.float64)[..., None, None]
    out = np.clip(points * s, -COORD_CLAMP, COORD_CLAMP).astype(np.float32)
    return out, scale
