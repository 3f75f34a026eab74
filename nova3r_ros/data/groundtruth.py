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

"""Complete ground truth: uniform surface samples, frustum crop, per-view visibility."""

from __future__ import annotations

from nova3r_ros.data.render import RayCaster
from nova3r_ros.data.scene import Scene
import numpy as np

NEAR = 0.05  # metres, near plane of the crop frustum


def sample_surface(scene: Scene, rng: np.random.Generator, count: int,
                   _cdf: np.ndarray | None = None):
    """
    `count` i.i.d. points uniform on the scene surface (area weighted).

    Returns (points (count, 3) float64 world metres, face index (count,) int64).
    """
    cdf = np.cumsum(scene.face_areas()) if _cdf is None else _cdf
    face = np.searchsorted(cdf, rng.random(count) * cdf[-1], side='right')
    face = np.minimum(face, len(cdf) - 1)
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    f = scene.faces[face]
    v = scene.vertices
    pts = (1 - s)[:, None] * v[f[:, 0]] + (s * (1 - r2))[:, None] * v[f[:, 1]]
    pts += (s * r2)[:, None] * v[f[:, 2]]
    return pts, face


def project(points_world: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray):
    """Project world points into each view. Returns (uv (K, N, 2) pixels, z (K, N) metres)."""
    uvs, zs = [], []
    for k_mat, pose in zip(intrinsics, cam_to_world, strict=True):
        p = (points_world - pose[:3, 3]) @ pose[:3, :3]  # world -> optical: R^T (p - c)
        z = p[:, 2]
        zs_safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
        u = k_mat[0, 0] * p[:, 0] / zs_safe + k_mat[0, 2]
        v = k_mat[1, 1] * p[:, 1] / zs_safe + k_mat[1, 2]
        uvs.append(np.stack([u, v], axis=1))
        zs.append(z)
    return np.stack(uvs), np.stack(zs)


def _projection_matrices(intrinsics: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """(K, 3, 4) world -> homogeneous pixel matrices K [R^T | -R^T c]."""
    rot_t = np.transpose(cam_to_world[:, :3, :3], (0, 2, 1))
    trans = -np.einsum('kij,kj->ki', rot_t, cam_to_world[:, :3, 3])
    return intrinsics @ np.concatenate([rot_t, trans[:, :, None]], axis=2)


def _plane_tests(points_world: np.ndarray, proj: np.ndarray, width: int, height: int,
                 max_depth: float) -> np.ndarray:
    """(K, 6, N) bool: inside each of the 6 frustum half-spaces (division-free)."""
    hom = np.concatenate([points_world, np.ones((len(points_world), 1))], axis=1)
    uvw = np.einsum('kij,nj->kin', proj.astype(np.float32), hom.astype(np.float32))
    u, v, z = uvw[:, 0], uvw[:, 1], uvw[:, 2]
    return np.stack([z > NEAR, z <= max_depth, u >= 0, u < width * z, v >= 0,
                     v < height * z], axis=1)


def in_frustum(points_world: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray,
               width: int, height: int, max_depth: float) -> np.ndarray:
    """(N, K) bool: NEAR < z <= max_depth and the projection falls inside the image."""
    proj = _projection_matrices(intrinsics, cam_to_world)
    return _plane_tests(points_world, proj, width, height, max_depth).all(axis=1).T


def faces_touching_frusta(scene: Scene, intrinsics: np.ndarray, cam_to_world: np.ndarray,
                          width: int, height: int, max_depth: float) -> np.ndarray:
    """
    Flag the faces that may touch a view frustum: (F,) bool, conservative.

    False only for faces with all three vertices outside one plane of every view's frustum
    (such faces hold no point of the crop).
    """
    proj = _projection_matrices(intrinsics, cam_to_world)
    inside = _plane_tests(scene.vertices, proj, width, height, max_depth)  # (K, 6, V)
    per_face = inside[:, :, scene.faces]  # (K, 6, F, 3)
    culled = (~per_face.any(axis=3)).any(axis=1)  # (K, F): some plane has all 3 outside
    return (~culled).any(axis=0)


def visible_in(caster: RayCaster, points_world: np.ndarray, in_view: np.ndarray,
               cam_to_world: np.ndarray) -> np.ndarray:
    """
    Return visibility (N, K) bool per point and view.

    True when the point is in view k and the first surface hit from camera k's centre towards
    the point is the point itself (within 5 mm + 0.2 % of the distance).
    """
    vis = np.zeros_like(in_view)
    for k, pose in enumerate(cam_to_world):
        idx = np.flatnonzero(in_view[:, k])
        if idx.size == 0:
            continue
        centre = pose[:3, 3]
        ray = points_world[idx] - centre  # unnormalised: the point sits at t = 1
        dist = np.linalg.norm(ray, axis=1)
        t, face = caster.cast(np.broadcast_to(centre, ray.shape), ray)
        tol = 0.005 + 0.002 * dist
        vis[idx, k] = (face < 0) | (t * dist >= dist - tol)
    return vis


def sample_cropped(scene: Scene, rng: np.random.Generator, count: int,
                   intrinsics: np.ndarray, cam_to_world: np.ndarray, width: int, height: int,
                   max_depth: float, max_candidates: int = 20_000_000):
    """
    `count` points uniform on the part of the surface inside the union of the frusta.

    Candidates are drawn i.i.d. until `count` of them fall in the crop; the first `count`
    kept are returned, so they stay i.i.d. uniform on the cropped surface.
    Returns (points (count, 3) world, face (count,), in_view (count, K) bool).
    """
    # Restricting to faces that can reach a frustum leaves the cropped distribution unchanged.
    areas = scene.face_areas() * faces_touching_frusta(scene, intrinsics, cam_to_world,
                                                       width, height, max_depth)
    if areas.sum() <= 0:
        raise RuntimeError('no scene surface lies inside the camera frusta')
    cdf = np.cumsum(areas)
    kept_p, kept_f, kept_v = [], [], []
    have, drawn, batch = 0, 0, min(8192, 2 * count)  # a pilot batch measures the crop rate
    while have < count:
        if drawn >= max_candidates:
            raise RuntimeError(f'only {have} of {count} surface samples fall in the views '
                               f'after {drawn} candidates')
        pts, face = sample_surface(scene, rng, batch, cdf)
        inv = in_frustum(pts, intrinsics, cam_to_world, width, height, max_depth)
        keep = inv.any(axis=1)
        kept_p.append(pts[keep])
        kept_f.append(face[keep])
        kept_v.append(inv[keep])
        have += int(keep.sum())
        drawn += batch
        frac = max(have / drawn, 1e-3)
        batch = int(min(max_candidates, np.ceil((count - have) / frac * 1.2) + 1024))
    pts = np.concatenate(kept_p)[:count]
    face = np.concatenate(kept_f)[:count]
    inv = np.concatenate(kept_v)[:count]
    return pts, face, inv


def median3_scale(points: np.ndarray) -> np.float32:
    """S = 3 / clip(median(||p||), 0.01, 100) for view-1 points (N, 3) in metres."""
    if len(points) == 0:
        raise ValueError('median3_scale needs at least one point')
    med = np.clip(np.median(np.linalg.norm(points, axis=1)), 0.01, 100.0)
    return np.float32(3.0 / med)
