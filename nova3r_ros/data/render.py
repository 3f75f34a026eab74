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
Pinhole cameras, robot trajectories and a vectorised Embree ray-cast renderer.

Poses are `cam_to_world` 4x4 matrices from the camera optical frame (x right, y down,
z forward) to the world frame (z up). Rays are cast with unnormalised directions
R @ [(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1], so Embree's hit parameter is directly the
depth along optical z (metres).
"""

from __future__ import annotations

from dataclasses import dataclass

from embreex import rtcore_scene as rtcs
from embreex.mesh_construction import TriangleMesh
from nova3r_ros.data.furniture import TEX_CHECKER, TEX_NOISE, TEX_STRIPES, TEX_WOOD
from nova3r_ros.data.scene import Scene
import numpy as np

LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def intrinsics_from_fov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """(3, 3) float64 pinhole matrix, square pixels, principal point at the image centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def pose_from_yaw_pitch(position, yaw: float, pitch: float) -> np.ndarray:
    """
    Return the (4, 4) optical->world pose of a camera at `position`.

    The camera heads `yaw` (rad, about world z, 0 = +x) and is tilted up by `pitch` (rad).
    """
    cp, sp, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    t = np.eye(4)
    t[:3, :3] = np.stack([right, down, forward], axis=1)
    t[:3, 3] = position
    return t


def pose_look_at(position, target) -> np.ndarray:
    """(4, 4) optical->world pose looking from `position` at `target` (world z up)."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    yaw = np.arctan2(forward[1], forward[0])
    pitch = np.arcsin(np.clip(forward[2], -1.0, 1.0))
    return pose_from_yaw_pitch(position, yaw, pitch)


@dataclass
class RenderOutput:
    """Rendered views: arrays stacked over K views."""

    images: np.ndarray  # (K, H, W, 3) uint8 RGB
    depths: np.ndarray  # (K, H, W) float32 metres along optical z, 0 = no hit
    instance_ids: np.ndarray  # (K, H, W) int32, -1 = no hit


class RayCaster:
    """Embree scene over a `Scene` mesh; casts batches of rays (no per-ray Python)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._embree = rtcs.EmbreeScene()
        tris = scene.vertices[scene.faces].astype(np.float32)
        TriangleMesh(self._embree, tris)
        self.normals = scene.face_normals()

    def cast(self, origins: np.ndarray, directions: np.ndarray):
        """
        Find the first hits of rays with origins/directions (N, 3).

        Returns (t (N,) float64 in units of the direction length, inf on miss; face index (N,)
        int64, -1 on miss).
        """
        o = np.ascontiguousarray(origins, dtype=np.float32)
        dr = np.ascontiguousarray(directions, dtype=np.float32)
        res = self._embree.run(o, dr, output=1)
        face = res['primID'].astype(np.int64)
        t = res['tfar'].astype(np.float64)
        t[face < 0] = np.inf
        return t, face


def _texture(points: np.ndarray, normals: np.ndarray, scene: Scene, part: np.ndarray):
    """Procedural colour (N, 3) float in [0, 1] at world points on the given parts."""
    scale = scene.part_scale[part][:, None].astype(np.float64)
    phase = scene.part_phase[part].astype(np.float64)
    # Triplanar 2D coordinates: drop the dominant normal axis.
    axis = np.argmax(np.abs(normals), axis=1)
    a_idx = np.where(axis == 0, 1, 0)
    b_idx = np.where(axis == 2, 1, 2)
    rows = np.arange(len(points))
    uv = np.stack([points[rows, a_idx], points[rows, b_idx]], axis=1) / scale
    u, v = uv[:, 0] + phase, uv[:, 1] - phase
    tex = scene.part_texture[part]
    mix = np.zeros(len(points))
    patterns = {
        TEX_CHECKER: lambda u, v, ph: (np.floor(u) + np.floor(v)) % 2,
        TEX_STRIPES: lambda u, v, ph: (np.floor(u * 2) % 2) * 0.8,
        TEX_WOOD: lambda u, v, ph: 0.5 + 0.5 * np.sin(6.0 * u + 1.5 * np.sin(1.7 * v + ph)
                                                      + 0.6 * np.sin(3.1 * v)),
        TEX_NOISE: lambda u, v, ph: 0.5 + 0.25 * (np.sin(3.1 * u + 1.3 * np.sin(2.3 * v))
                                                  + np.sin(5.3 * v + 0.7 * u)),
    }
    for kind, pattern in patterns.items():  # evaluate each pattern only where it is used
        m = tex == kind
        if m.any():
            mix[m] = pattern(u[m], v[m], phase[m])
    c1, c2 = scene.part_color[part], scene.part_color2[part]
    return c1 * (1 - mix[:, None]) + c2 * mix[:, None]


def pixel_rays(intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H*W, 3) optical-frame ray directions with z = 1 through the pixel centres."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    k = intrinsics
    return np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)],
                    axis=-1).reshape(-1, 3)


def render_views(caster: RayCaster, intrinsics: np.ndarray, cam_to_world: np.ndarray,
                 width: int, height: int, background: np.ndarray | None = None,
                 noise_std: float = 0.0, rng: np.random.Generator | None = None
                 ) -> RenderOutput:
    """
    Render K views.

    intrinsics (K, 3, 3), cam_to_world (K, 4, 4). `noise_std` is the Gaussian RGB noise in
    8-bit units (needs `rng`).
    """
    scene = caster.scene
    n_views = len(cam_to_world)
    hw = width * height
    dirs, origins = [], []
    for k in range(n_views):
        d_cam = pixel_rays(intrinsics[k], width, height)
        dirs.append(d_cam @ cam_to_world[k][:3, :3].T)
        origins.append(np.broadcast_to(cam_to_world[k][:3, 3], (hw, 3)))
    dirs_w, orig_w = np.concatenate(dirs), np.concatenate(origins)
    t, face = caster.cast(orig_w, dirs_w)
    hit = face >= 0
    depth = np.where(hit, t, 0.0).astype(np.float32)
    part = scene.face_part[np.where(hit, face, 0)]
    inst = np.where(hit, scene.part_instance[part], -1).astype(np.int32)

    rgb = np.empty((len(t), 3))
    rgb[:] = background if background is not None else 0.0
    fh = face[hit]
    pts = orig_w[hit] + dirs_w[hit] * t[hit, None]
    n = caster.normals[fh]
    ray_unit = dirs_w[hit] / np.linalg.norm(dirs_w[hit], axis=1, keepdims=True)
    n = np.where((np.sum(n * ray_unit, axis=1) > 0)[:, None], -n, n)  # face the camera
    albedo = _texture(pts, n, scene, scene.face_part[fh])
    lambert = np.clip(n @ LIGHT_DIR, 0.0, 1.0)
    headlight = np.abs(np.sum(n * ray_unit, axis=1))
    falloff = 1.0 / (1.0 + 0.02 * t[hit] ** 2)
    shade = 0.45 + 0.3 * lambert + 0.4 * headlight * falloff
    rgb[hit] = albedo * shade[:, None]
    rgb = rgb * 255.0
    if noise_std > 0:
        if rng is None:
            raise ValueError('noise_std > 0 needs an rng for reproducible noise')
        rgb = rgb + rng.normal(0.0, noise_std, rgb.shape)
    images = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return RenderOutput(images.reshape(n_views, height, width, 3),
                        depth.reshape(n_views, height, width),
                        inst.reshape(n_views, height, width))
