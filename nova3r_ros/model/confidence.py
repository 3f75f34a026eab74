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
Surface confidence: which of the drawn points to keep when the sampler oversamples.

Why: the small decoder leaves a share of its samples between surfaces. The density filter
(`density.py`) drops the most isolated, but isolation alone is weak evidence. A small head,
fitted after training on the points the sampler actually draws, estimates P(point within tau
of a real surface) from the decoder's own features at the point, the last two Euler
velocities (a point still moving at the end has not settled), and the cloud's local geometry
(isolation at several scales, local planarity, range). Keeping the most confident raises
precision *and* occluded recall over the density filter (`checkpoints/MODEL_CARD.md`).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
import torch
from torch import nn

ISOLATION_NEIGHBOURS = (4, 8, 32, 64)
SHAPE_NEIGHBOURS = (16, 64)
GEOMETRY_DIM = len(ISOLATION_NEIGHBOURS) + 4 + 5 * len(SHAPE_NEIGHBOURS)
VELOCITY_DIM = 6  # the last two Euler velocities


def geometry_features(points: torch.Tensor) -> torch.Tensor:
    """
    Local geometry of every point of one cloud, (N, 3) -> (N, GEOMETRY_DIM) float32.

    Log mean distance to the k nearest others (k in ISOLATION_NEIGHBOURS); the position and
    its log range; for k in SHAPE_NEIGHBOURS the neighbours' normalised covariance eigenvalues,
    their log total variance and the point's distance to their plane over the plane's
    thickness. Computed on CPU (k-d tree) whatever the device; returned on the input's device.
    Non-finite points get zeros (the caller drops them).
    """
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f'points must be (N, 3), got {tuple(points.shape)}')
    n = points.shape[0]
    kmax = max(ISOLATION_NEIGHBOURS + SHAPE_NEIGHBOURS)
    if n <= kmax:
        raise ValueError(f'geometry features need more than {kmax} points, got {n}')
    cloud = points.detach().double().cpu().numpy()
    finite = np.isfinite(cloud).all(axis=1)
    cloud = np.where(finite[:, None], cloud, 0.0)
    dist, idx = cKDTree(cloud).query(cloud, k=kmax + 1, workers=-1)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop the point itself
    cols = [np.log(np.maximum(dist[:, :k].mean(axis=1), 1e-6)) for k in ISOLATION_NEIGHBOURS]
    cols += [cloud[:, 0], cloud[:, 1], cloud[:, 2],
             np.log(np.maximum(np.linalg.norm(cloud, axis=1), 1e-6))]
    for k in SHAPE_NEIGHBOURS:
        nbrs = cloud[idx[:, :k]]  # (N, k, 3)
        centre = nbrs.mean(axis=1)
        dev = nbrs - centre[:, None]
        vals, vecs = np.linalg.eigh(dev.transpose(0, 2, 1) @ dev / k)  # ascending
        total = np.maximum(vals.sum(axis=1), 1e-12)
        offset = np.abs(np.einsum('ni,ni->n', cloud - centre, vecs[:, :, 0]))
        thickness = np.sqrt(np.maximum(vals[:, 0], 1e-12))
        cols += [vals[:, 0] / total, vals[:, 1] / total, vals[:, 2] / total, np.log(total),
                 np.log1p(offset / thickness)]
    out = np.stack(cols, axis=1)
    out[~finite] = 0.0
    return torch.from_numpy(out).float().to(points.device)


class ConfidenceHead(nn.Module):
    """Logit that a drawn point lies on a surface (decoder features, velocities, geometry)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        dim = width + VELOCITY_DIM + GEOMETRY_DIM
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(..., width + VELOCITY_DIM + GEOMETRY_DIM) -> (...) logits."""
        return self.net(inputs).squeeze(-1)
