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
Keep the sampled points whose neighbourhoods are densest (oversample, then drop the isolated).

Why: a small flow decoder leaves a share of its points between surfaces rather than on them.
Those points sit where the cloud is sparse, so the mean distance to their nearest neighbours
singles them out. Drawing more points than published and dropping the most isolated raises
precision more than it costs recall (F@0.1 up; `checkpoints/MODEL_CARD.md`), and a planner
sees fewer phantom obstacles. It is the statistical outlier removal robotics stacks run anyway,
done once here so the node, the evaluation and the head refit share it.
"""

from __future__ import annotations

import math

import torch

MAX_OVERSAMPLE = 4.0


def drawn_points(num_points: int, oversample: float) -> int:
    """Points to draw so that `num_points` remain after the filter (oversample in [1, 4])."""
    if not (math.isfinite(oversample) and 1.0 <= oversample <= MAX_OVERSAMPLE):
        raise ValueError(f'oversample must be in [1, {MAX_OVERSAMPLE:g}], got {oversample!r}')
    return int(math.ceil(num_points * oversample - 1e-9))


def isolation(points: torch.Tensor, neighbours: int = 8, chunk: int = 2048) -> torch.Tensor:
    """
    Mean distance of each point to its `neighbours` nearest other points.

    points (B, N, 3) -> (B, N); a non-finite point gets +inf (dropped first), and non-finite
    neighbours never count as near. Exact: a k-d tree on CPU, chunked brute force on an
    accelerator.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be (B, N, 3), got {tuple(points.shape)}')
    n = points.shape[1]
    if not 1 <= neighbours < n:
        raise ValueError(f'neighbours must be in [1, N-1] = [1, {n - 1}], got {neighbours}')
    finite = torch.isfinite(points).all(dim=-1)  # (B, N)
    if points.device.type == 'cpu':
        return _isolation_kdtree(points, finite, neighbours)
    return _isolation_brute(points, finite, neighbours, chunk)


def _isolation_brute(points: torch.Tensor, finite: torch.Tensor, neighbours: int, chunk: int
                     ) -> torch.Tensor:
    clean = torch.where(finite[..., None], points, torch.zeros_like(points)).float()
    far = torch.finfo(torch.float32).max
    out = torch.empty(points.shape[:2], dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[1], chunk):
        # direct differences, not the |a|^2 + |b|^2 - 2ab product: in float32 that leaves the
        # self-distance at ~1e-3 and every isolation ~1 % off the CPU path's k-d tree
        dist = torch.cdist(clean[:, start:start + chunk], clean,
                           compute_mode='donot_use_mm_for_euclid_dist')  # (B, c, N)
        dist.masked_fill_(~finite[:, None, :], far)
        # the point itself is its own nearest (distance 0): take neighbours + 1, drop the first
        nearest = dist.topk(neighbours + 1, dim=-1, largest=False).values[..., 1:]
        out[:, start:start + chunk] = nearest.mean(dim=-1)
    return out.masked_fill_(~finite, math.inf)


def _isolation_kdtree(points: torch.Tensor, finite: torch.Tensor, neighbours: int
                      ) -> torch.Tensor:
    from scipy.spatial import cKDTree

    out = torch.full(points.shape[:2], math.inf, dtype=torch.float32)
    for b in range(points.shape[0]):
        ok = finite[b].numpy()
        cloud = points[b].detach().double().numpy()[ok]
        k = min(neighbours, len(cloud) - 1)
        if k < 1:
            continue  # at most one finite point: nothing to measure against
        dist, _ = cKDTree(cloud).query(cloud, k=k + 1)
        out[b, torch.from_numpy(ok)] = torch.from_numpy(dist[:, 1:].mean(axis=1)).float()
    return out


def keep_densest(points: torch.Tensor, keep: int, neighbours: int = 8) -> torch.Tensor:
    """
    Return the indices (B, keep) of the `keep` least isolated points, in their order.

    Ties are broken by index (stable), so the result is deterministic.
    """
    n = points.shape[1]
    if not 1 <= keep <= n:
        raise ValueError(f'keep must be in [1, N] = [1, {n}], got {keep}')
    if keep == n:
        return torch.arange(n, device=points.device).expand(points.shape[0], n)
    score = isolation(points, neighbours)
    order = torch.sort(score, dim=-1, stable=True).indices[:, :keep]
    return torch.sort(order, dim=-1).values
