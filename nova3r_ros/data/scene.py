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
Procedural indoor scenes (room + furniture from primitives) as one merged triangle mesh.

World frame (`map`): x, y on the floor, z up, metres, floor at z = 0. Every primitive is a
closed `manifold3d` solid; the scene is their boolean union, so faces buried in the floor,
inside other objects or pressed against walls disappear, and only surfaces some camera
inside the room could see remain (faces outside the room are dropped afterwards).
Each triangle keeps the index of the primitive ("part") it came from, which carries the
instance id (0 floor, 1 walls/ceiling, >= 2 objects) and a procedural material.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import manifold3d as mf
from nova3r_ros.data.furniture import (
    box,
    chair_parts,
    clutter_parts,
    FURNITURE,
    Material,
    random_material,
    table_parts,
)
import numpy as np

FLOOR_ID = 0
WALL_ID = 1
FIRST_OBJECT_ID = 2


@dataclass
class Scene:
    """A merged scene mesh with per-triangle part index and per-part attributes."""

    vertices: np.ndarray  # (V, 3) float64 world metres
    faces: np.ndarray  # (F, 3) int64
    face_part: np.ndarray  # (F,) int64 index into part_* arrays
    part_instance: np.ndarray  # (n_parts,) int32 instance id
    part_color: np.ndarray  # (n_parts, 3) float32
    part_color2: np.ndarray  # (n_parts, 3) float32
    part_texture: np.ndarray  # (n_parts,) int32
    part_scale: np.ndarray  # (n_parts,) float32
    part_phase: np.ndarray  # (n_parts,) float32
    mode: str
    room_size: tuple[float, float, float] | None  # (W, D, H) metres, None in object mode
    footprints: list[tuple[float, float, float, float]] = field(default_factory=list)
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # object mode look-at

    @property
    def face_instance(self) -> np.ndarray:
        """(F,) int32 instance id per triangle."""
        return self.part_instance[self.face_part]

    @property
    def face_category(self) -> np.ndarray:
        """(F,) uint8 category per triangle: 0 floor, 1 wall, 2 object."""
        return np.minimum(self.face_instance, 2).astype(np.uint8)

    def face_normals(self) -> np.ndarray:
        """(F, 3) float64 unit outward normals (world)."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def face_areas(self) -> np.ndarray:
        """(F,) float64 triangle areas in m^2."""
        tri = self.vertices[self.faces]
        return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


class SceneBuilder:
    """Collects primitives (solid + instance + material) and merges them by boolean union."""

    def __init__(self) -> None:
        self.solids: list[mf.Manifold] = []
        self.instances: list[int] = []
        self.materials: list[Material] = []

    def add(self, solid: mf.Manifold, instance: int, material: Material) -> None:
        self.solids.append(solid.as_original())
        self.instances.append(instance)
        self.materials.append(material)

    def build(self, mode: str, room_size: tuple[float, float, float] | None,
              footprints: list, center: np.ndarray) -> Scene:
        ids = {s.original_id(): i for i, s in enumerate(self.solids)}
        mesh = mf.Manifold.batch_boolean(self.solids, mf.OpType.Add).to_mesh()
        verts = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
        faces = np.asarray(mesh.tri_verts, dtype=np.int64)
        face_part = np.empty(len(faces), dtype=np.int64)
        run_index = np.asarray(mesh.run_index) // 3  # run_index counts vertex indices
        for i, oid in enumerate(np.asarray(mesh.run_original_id)):
            face_part[run_index[i]:run_index[i + 1]] = ids[int(oid)]
        if room_size is not None:
            # Drop the outside of the room shell: faces whose centroid leaves the interior.
            w, d, h = room_size
            c = verts[faces].mean(axis=1)
            eps = 1e-4
            inside = ((c[:, 0] > -eps) & (c[:, 0] < w + eps) & (c[:, 1] > -eps)
                      & (c[:, 1] < d + eps) & (c[:, 2] > -eps) & (c[:, 2] < h + eps))
            faces, face_part = faces[inside], face_part[inside]
        mats = self.materials
        return Scene(
            vertices=verts, faces=faces, face_part=face_part,
            part_instance=np.asarray(self.instances, dtype=np.int32),
            part_color=np.array([m.color for m in mats], dtype=np.float32),
            part_color2=np.array([m.color2 for m in mats], dtype=np.float32),
            part_texture=np.array([m.texture for m in mats], dtype=np.int32),
            part_scale=np.array([m.scale for m in mats], dtype=np.float32),
            part_phase=np.array([m.phase for m in mats], dtype=np.float32),
            mode=mode, room_size=room_size, footprints=footprints, center=center)


def _place(parts, builder: SceneBuilder, instance: int, yaw_deg: float, x: float, y: float,
           z: float = 0.0) -> None:
    for solid, mat in parts:
        builder.add(solid.rotate([0.0, 0.0, float(yaw_deg)]).translate([x, y, z]), instance, mat)


def _footprint(x, y, w, d, yaw_deg, margin=0.0):
    c, s = abs(np.cos(np.radians(yaw_deg))), abs(np.sin(np.radians(yaw_deg)))
    hx, hy = c * w / 2 + s * d / 2 + margin, s * w / 2 + c * d / 2 + margin
    return (x - hx, y - hy, x + hx, y + hy)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _local_to_world(yaw_deg, x, y, lx, ly):
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    return x + c * lx - s * ly, y + s * lx + c * ly


def _add_clutter(rng, builder, next_id, supports, count):
    """Drop `count` small items on random support rectangles (world-placed)."""
    for _ in range(count):
        if not supports:
            break
        x0, y0, x1, y1, z, yaw, ox, oy = supports[int(rng.integers(len(supports)))]
        if x1 - x0 < 0.08 or y1 - y0 < 0.08:
            continue
        lx, ly = rng.uniform(x0 + 0.04, x1 - 0.04), rng.uniform(y0 + 0.04, y1 - 0.04)
        wx, wy = _local_to_world(yaw, ox, oy, lx, ly)
        parts = clutter_parts(rng, min(x1 - x0, y1 - y0) * 0.6)
        _place(parts, builder, next_id, float(rng.uniform(0, 360)), wx, wy, z)
        next_id += 1
    return next_id


def make_room_scene(rng: np.random.Generator, ceiling: bool | None = None) -> Scene:
    """Build a furnished room: shell, furniture along walls and in the middle, clutter on tops."""
    w, d, h = rng.uniform(3.5, 7.0), rng.uniform(3.5, 8.0), rng.uniform(2.4, 3.0)
    if ceiling is None:
        ceiling = bool(rng.random() < 0.5)
    b = SceneBuilder()
    t = 0.2  # shell thickness, metres
    b.add(box((w + 2 * t, d + 2 * t, t), (w / 2, d / 2, -t / 2)), FLOOR_ID,
          random_material(rng, 'floor'))
    wall_mat = random_material(rng, 'wall')
    top = h + t if ceiling else h
    for cx, cy, sx, sy in ((w / 2, -t / 2, w + 2 * t, t), (w / 2, d + t / 2, w + 2 * t, t),
                           (-t / 2, d / 2, t, d + 2 * t), (w + t / 2, d / 2, t, d + 2 * t)):
        b.add(box((sx, sy, top + t), (cx, cy, (top - t) / 2)), WALL_ID, wall_mat)
    if ceiling:
        b.add(box((w + 2 * t, d + 2 * t, t), (w / 2, d / 2, h + t / 2)), WALL_ID,
              random_material(rng, 'wall'))

    footprints: list[tuple[float, float, float, float]] = []
    supports: list[tuple] = []
    next_id = FIRST_OBJECT_ID

    def try_place(parts, size, sup, candidates, margin=0.05):
        nonlocal next_id
        for yaw, x, y in candidates:
            fp = _footprint(x, y, size[0], size[1], yaw, margin)
            if fp[0] < -0.01 - margin or fp[1] < -0.01 - margin or fp[2] > w + 0.01 + margin \
                    or fp[3] > d + 0.01 + margin:
                continue
            if any(_overlaps(fp, f) for f in footprints):
                continue
            _place(parts, b, next_id, yaw, x, y)
            footprints.append(_footprint(x, y, size[0], size[1], yaw))
            supports.extend((*s, yaw, x, y) for s in sup)
            next_id += 1
            return (yaw, x, y)
        return None

    # Furniture against the walls: back pushed 5 mm into the wall so the union removes it.
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(['shelf', 'cabinet', 'sofa_bed', 'shelf', 'cabinet', 'primitive'])
        parts, size, sup = FURNITURE[kind](rng)
        cands = []
        for _ in range(20):
            wall = int(rng.integers(4))
            half = size[1] / 2 - 0.005
            if wall == 0:
                cands.append((0.0, rng.uniform(0, w), half))
            elif wall == 1:
                cands.append((180.0, rng.uniform(0, w), d - half))
            elif wall == 2:
                cands.append((-90.0, half, rng.uniform(0, d)))
            else:
                cands.append((90.0, w - half, rng.uniform(0, d)))
        try_place(parts, size, sup, cands, margin=-0.004)

    # Free-standing furniture: a table with chairs, then a few other pieces.
    def free_candidates(n=25):
        return [(float(rng.uniform(0, 360)), rng.uniform(0.3, w - 0.3), rng.uniform(0.3, d - 0.3))
                for _ in range(n)]

    if rng.random() < 0.85:
        parts, size, sup = table_parts(rng)
        placed = try_place(parts, size, sup, free_candidates(), margin=0.5)
        if placed is not None:
            yaw, x, y = placed
            for side in rng.permutation(4)[: int(rng.integers(0, 4))]:
                cparts, csize, _ = chair_parts(rng)
                ang = [0.0, 90.0, 180.0, 270.0][side]
                reach = (size[1] if side % 2 == 0 else size[0]) / 2 + csize[1] * 0.25
                lx, ly = -np.sin(np.radians(ang)) * reach, np.cos(np.radians(ang)) * reach
                cx, cy = _local_to_world(yaw, x, y, lx, ly)
                # A chair at the table faces its centre (local front is +y).
                _place(cparts, b, next_id, yaw + ang + 180.0, cx, cy)
                footprints.append(_footprint(cx, cy, csize[0], csize[1], yaw + ang))
                next_id += 1
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.choice(['primitive', 'primitive', 'chair', 'cabinet', 'sofa_bed', 'shelf'])
        parts, size, sup = FURNITURE[kind](rng)
        try_place(parts, size, sup, free_candidates(), margin=0.15)
    next_id = _add_clutter(rng, b, next_id, supports, int(rng.integers(3, 12)))
    return b.build('room', (float(w), float(d), float(h)), footprints,
                   np.array([w / 2, d / 2, h / 2]))


def make_object_scene(rng: np.random.Generator) -> Scene:
    """One composite object centred on the origin (standing on z = 0), no room."""
    b = SceneBuilder()
    kind = rng.choice(['table', 'chair', 'shelf', 'cabinet', 'sofa_bed', 'primitive'])
    parts, size, sup = FURNITURE[kind](rng)
    _place(parts, b, FIRST_OBJECT_ID, float(rng.uniform(0, 360)), 0.0, 0.0)
    bounds = mf.Manifold.batch_boolean(b.solids, mf.OpType.Add).bounding_box()
    center = 0.5 * (np.array(bounds[:3]) + np.array(bounds[3:]))
    return b.build('object', None, [], center)


def make_scene(rng: np.random.Generator, mode: str = 'room') -> Scene:
    """Dispatch on `mode` ('room' or 'object')."""
    if mode == 'room':
        return make_room_scene(rng)
    if mode == 'object':
        return make_object_scene(rng)
    raise ValueError(f"unknown scene mode {mode!r}; expected 'room' or 'object'")
