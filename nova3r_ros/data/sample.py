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

"""One dataset sample from a seed: scene -> cameras -> render -> ground truth (docs/dataset.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math

from nova3r_ros.data.cameras import object_orbit, room_trajectory
from nova3r_ros.data.groundtruth import median3_scale, sample_cropped, visible_in
from nova3r_ros.data.render import intrinsics_from_fov, RayCaster, render_views
from nova3r_ros.data.scene import make_scene, Scene
import numpy as np

FORMAT_VERSION = 1
GENERATOR_VERSION = '1.0.0'
_STREAM_TAG = 0x4E3A  # mixes into every SeedSequence so seeds do not collide with other uses


@dataclass
class GeneratorConfig:
    """Generator parameters; stored in manifest.json. Defaults fit the `tiny` model input."""

    num_views: int = 2
    width: int = 224
    height: int = 168
    mode: str = 'room'
    num_points: int = 32768
    max_depth: float = 8.0  # metres
    baseline: float = 0.35  # metres of forward motion between views (room mode)
    yaw_step_deg: float = 15.0  # max yaw change between views (room mode)
    orbit_step_deg: float = 35.0  # azimuth step between views (object mode)
    hfov_min_deg: float = 55.0
    hfov_max_deg: float = 75.0
    noise_std: float = 0.0  # Gaussian RGB noise, 8-bit units

    def validate(self) -> None:
        if not 1 <= self.num_views <= 8:
            raise ValueError(f'num_views must be in 1..8, got {self.num_views}')
        if self.width < 8 or self.height < 8:
            raise ValueError(f'image size too small: {self.width}x{self.height}')
        if self.mode not in ('room', 'object'):
            raise ValueError(f"mode must be 'room' or 'object', got {self.mode!r}")
        if self.num_points < 1:
            raise ValueError(f'num_points must be positive, got {self.num_points}')
        for name in ('max_depth', 'baseline', 'yaw_step_deg', 'orbit_step_deg', 'noise_std'):
            value = getattr(self, name)  # NaN would pass every comparison below
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')
        if self.max_depth <= 0.1:
            raise ValueError(f'max_depth must exceed 0.1 m, got {self.max_depth}')
        if not 0 < self.hfov_min_deg <= self.hfov_max_deg < 170:
            raise ValueError('need 0 < hfov_min_deg <= hfov_max_deg < 170')

    def to_dict(self) -> dict:
        return asdict(self)


PRESET_HELP = ("render at this model preset's input size (micro, tiny, paper; default: tiny's "
               '224 x 168); --width/--height override it')


def image_size(preset: str | None = None, width: int | None = None,
               height: int | None = None) -> tuple[int, int]:
    """
    Return (width, height) to render at: explicit pixels, else the preset's input, else tiny's.

    Data for a larger preset must be rendered at its input size (stage 2 refuses anything else),
    so the commands take the preset's name rather than its numbers.
    """
    if preset is not None:
        from nova3r_ros.model.configs import get_preset  # imports torch: only when asked

        cfg = get_preset(preset)  # ValueError names the presets
        width = cfg.image_width if width is None else width
        height = cfg.image_height if height is None else height
    defaults = GeneratorConfig()
    return (defaults.width if width is None else width,
            defaults.height if height is None else height)


def rng_streams(seed: int, count: int = 5) -> list[np.random.Generator]:
    """Independent generators for scene, cameras, points, alt points, noise."""
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    children = np.random.SeedSequence([int(seed), _STREAM_TAG]).spawn(count)
    return [np.random.default_rng(c) for c in children]


def build_views(seed: int, cfg: GeneratorConfig):
    """Scene, ray caster, intrinsics (K,3,3) and poses (K,4,4) for a seed (no rendering)."""
    cfg.validate()
    r_scene, r_cam, *_ = rng_streams(seed)
    scene: Scene = make_scene(r_scene, cfg.mode)
    caster = RayCaster(scene)
    hfov = r_cam.uniform(cfg.hfov_min_deg, cfg.hfov_max_deg)
    k_mat = intrinsics_from_fov(cfg.width, cfg.height, hfov)
    intr = np.repeat(k_mat[None], cfg.num_views, axis=0)
    if cfg.mode == 'room':
        poses = room_trajectory(r_cam, scene, caster, k_mat, cfg.width, cfg.height,
                                cfg.num_views, cfg.baseline, cfg.yaw_step_deg)
    else:
        poses = object_orbit(r_cam, scene, cfg.num_views, cfg.orbit_step_deg)
    return scene, caster, intr, poses


def _gt(caster, rng, cfg, intr, poses, world_to_v1):
    pts, face, inv = sample_cropped(caster.scene, rng, cfg.num_points, intr, poses,
                                    cfg.width, cfg.height, cfg.max_depth)
    vis = visible_in(caster, pts, inv, poses)
    rot, trans = world_to_v1[:3, :3], world_to_v1[:3, 3]
    normals = caster.normals[face] @ rot.T
    return {
        '': (pts @ rot.T + trans).astype(np.float32),
        '_normals': normals.astype(np.float32),
        '_category': caster.scene.face_category[face],
        '_in_view': inv,
        '_visible_in': vis,
    }


def make_sample(seed: int, cfg: GeneratorConfig | None = None) -> dict[str, np.ndarray]:
    """All arrays of one sample (keys and meaning: docs/dataset.md)."""
    cfg = cfg or GeneratorConfig()
    scene, caster, intr, poses = build_views(seed, cfg)
    _, _, r_pts, r_alt, r_noise = rng_streams(seed)
    background = None
    if cfg.mode == 'object':
        background = np.full(3, 0.25 + 0.5 * r_noise.random())
    out = render_views(caster, intr, poses, cfg.width, cfg.height, background,
                       cfg.noise_std, r_noise)
    world_to_v1 = np.linalg.inv(poses[0])
    cam_to_v1 = world_to_v1[None] @ poses
    cam_to_v1[0] = np.eye(4)
    sample = {
        'format_version': np.int64(FORMAT_VERSION),
        'seed': np.int64(seed),
        'num_views': np.int64(cfg.num_views),
        'max_depth': np.float32(cfg.max_depth),
        'images': out.images,
        'depths': out.depths,
        'instance_ids': out.instance_ids,
        'intrinsics': intr.astype(np.float32),
        'cam_to_world': poses.astype(np.float32),
        'cam_to_view1': cam_to_v1.astype(np.float32),
    }
    for prefix, rng in (('points', r_pts), ('points_alt', r_alt)):
        for suffix, arr in _gt(caster, rng, cfg, intr, poses, world_to_v1).items():
            sample[prefix + suffix] = arr
    sample['median3_scale'] = median3_scale(sample['points'])
    return sample
