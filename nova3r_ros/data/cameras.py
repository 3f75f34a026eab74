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

"""Camera paths: a robot driving through a room, or an orbit around a single object."""

from __future__ import annotations

from nova3r_ros.data.render import pixel_rays, pose_from_yaw_pitch, pose_look_at, RayCaster
from nova3r_ros.data.scene import Scene
import numpy as np


def is_free(scene: Scene, xy: np.ndarray, clearance: float) -> bool:
    """Tell whether floor point xy is inside the room and `clearance` metres from furniture."""
    w, d, _ = scene.room_size
    x, y = xy
    if not (clearance <= x <= w - clearance and clearance <= y <= d - clearance):
        return False
    return not any(f[0] - clearance < x < f[2] + clearance and f[1] - clearance < y < f[3]
                   + clearance for f in scene.footprints)


def view_is_open(caster: RayCaster, pose: np.ndarray, intrinsics: np.ndarray, width: int,
                 height: int, min_median_depth: float) -> bool:
    """Coarse 16x12 ray grid: reject views staring into a nearby wall or object."""
    k = intrinsics.copy()
    k[0] *= 16 / width
    k[1] *= 12 / height
    d = pixel_rays(k, 16, 12) @ pose[:3, :3].T
    t, face = caster.cast(np.broadcast_to(pose[:3, 3], d.shape), d)
    if np.mean(face < 0) > 0.02 or np.quantile(t, 0.1) < 0.35:
        return False
    return float(np.median(t)) >= min_median_depth


def room_trajectory(rng: np.random.Generator, scene: Scene, caster: RayCaster,
                    intrinsics: np.ndarray, width: int, height: int, num_views: int,
                    baseline: float = 0.35, yaw_step_deg: float = 15.0,
                    max_tries: int = 200) -> np.ndarray:
    """
    (K, 4, 4) optical->world poses along a plausible robot path.

    Camera height 0.5-1.5 m (fixed per path, +-3 cm jitter), pitch -25..+5 deg; between views
    the robot drives forward `baseline` * U(0.6, 1.4) metres and turns by up to
    `yaw_step_deg` (shorter steps and wider turns when blocked). Every view must look into the
    room (median depth >= 1.2 m, relaxed to 0.8 m after many failed tries).
    """
    if scene.room_size is None:
        raise ValueError('room_trajectory needs a room scene')
    w, d, _ = scene.room_size
    centre = np.array([w / 2, d / 2])
    for attempt in range(max_tries):
        # After many failures relax the clearance/openness demands instead of giving up.
        relax = attempt > max_tries // 2
        clearance = 0.15 if relax else 0.3
        min_depth = 0.8 if relax else 1.2
        start = rng.uniform([0.35, 0.35], [w - 0.35, d - 0.35])
        if not is_free(scene, start, clearance):
            continue
        # Look at a piece of furniture most of the time (that is where occlusion happens),
        # otherwise across the room.
        target = centre
        if scene.footprints and rng.random() < 0.75:
            f = scene.footprints[int(rng.integers(len(scene.footprints)))]
            target = np.array([(f[0] + f[2]) / 2, (f[1] + f[3]) / 2])
        if np.linalg.norm(target - start) < 1.0:
            target = centre
        yaw = np.arctan2(*(target - start)[::-1]) + rng.uniform(-0.5, 0.5)
        cam_h = rng.uniform(0.5, 1.5)
        pitch0 = np.radians(rng.uniform(-25.0, 5.0))
        xy, poses = start.copy(), []
        for k in range(num_views):
            # Greedy: a few local retries per step (shorter steps, wider turns) before the whole
            # path is abandoned, as a robot blocked ahead turns more and drives less.
            pose = None
            for retry in range(8 if k > 0 else 1):
                nxy, nyaw = xy, yaw
                if k > 0:
                    step = baseline * rng.uniform(0.6, 1.4) * (1.0 - retry / 8)
                    lateral = rng.uniform(-0.05, 0.05)
                    heading = np.array([np.cos(yaw), np.sin(yaw)])
                    nxy = xy + step * heading + lateral * np.array([-heading[1], heading[0]])
                    turn = yaw_step_deg * (1 + retry / 4)
                    nyaw = yaw + np.radians(rng.uniform(-turn, turn))
                    if not is_free(scene, nxy, clearance):
                        continue
                pitch = pitch0 + np.radians(rng.uniform(-3.0, 3.0))
                pos = np.array([nxy[0], nxy[1], cam_h + rng.uniform(-0.03, 0.03)])
                candidate = pose_from_yaw_pitch(pos, nyaw, pitch)
                if view_is_open(caster, candidate, intrinsics, width, height, min_depth):
                    pose = candidate
                    break
            if pose is None:
                break
            xy, yaw = nxy, nyaw
            poses.append(pose)
        if len(poses) == num_views:
            return np.stack(poses)
    raise RuntimeError(f'no valid camera path found in {max_tries} tries')


def object_orbit(rng: np.random.Generator, scene: Scene, num_views: int,
                 step_deg: float = 35.0) -> np.ndarray:
    """(K, 4, 4) poses on an orbit around the object, elevation 10-45 deg, looking at it."""
    extent = np.ptp(scene.vertices, axis=0)
    radius = np.linalg.norm(extent) / 2 * rng.uniform(1.6, 2.6)
    azim = rng.uniform(0, 2 * np.pi)
    elev = np.radians(rng.uniform(10.0, 45.0))
    poses = []
    for k in range(num_views):
        if k > 0:
            azim += np.radians(step_deg * rng.uniform(0.6, 1.4))
            elev = np.clip(elev + np.radians(rng.uniform(-8, 8)), np.radians(5), np.radians(60))
        pos = scene.center + radius * np.array(
            [np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
        target = scene.center + rng.uniform(-0.05, 0.05, 3) * np.linalg.norm(extent)
        poses.append(pose_look_at(pos, target))
    return np.stack(poses)
