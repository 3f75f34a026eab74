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
Primitives, procedural materials and furniture built from them (local object frames).

Every generator returns parts as closed `manifold3d` solids in the object's local frame:
centred on x/y, standing on z = 0, front towards +y; metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import manifold3d as mf
import numpy as np

TEX_PLAIN, TEX_CHECKER, TEX_STRIPES, TEX_WOOD, TEX_NOISE = range(5)


@dataclass
class Material:
    """Procedural material: colour mix of `color` and `color2` by a texture pattern."""

    color: np.ndarray  # (3,) float RGB in [0, 1]
    color2: np.ndarray  # (3,) float RGB in [0, 1]
    texture: int = TEX_PLAIN
    scale: float = 0.2  # metres per pattern period
    phase: float = 0.0  # radians, decorrelates patterns between parts


# ----------------------------------------------------------------------------- primitives

def box(size, center=(0.0, 0.0, 0.0)) -> mf.Manifold:
    """Axis-aligned box of `size` (x, y, z) metres centred on `center`."""
    return mf.Manifold.cube(list(map(float, size)), center=True).translate(
        list(map(float, center)))


def cylinder(radius: float, height: float, base=(0.0, 0.0, 0.0), segments: int = 20,
             radius_top: float | None = None) -> mf.Manifold:
    """Upright (z) cylinder or cone standing on `base`."""
    top = radius if radius_top is None else radius_top
    return mf.Manifold.cylinder(float(height), float(radius), float(top), segments).translate(
        list(map(float, base)))


def sphere(radius: float, center=(0.0, 0.0, 0.0)) -> mf.Manifold:
    """Build a geodesic sphere of 16 segments centred on `center`."""
    return mf.Manifold.sphere(float(radius), 16).translate(list(map(float, center)))


def random_material(rng: np.random.Generator, kind: str = 'object') -> Material:
    """Draw a random material; furniture gets wood/plain, clutter saturated colours."""
    hue_pick = rng.random(3)
    if kind == 'floor':
        base = np.array([0.35, 0.3, 0.25]) + 0.35 * hue_pick
        tex = int(rng.choice([TEX_CHECKER, TEX_WOOD, TEX_NOISE, TEX_STRIPES]))
        scale = float(rng.uniform(0.2, 0.8))
    elif kind == 'wall':
        base = np.array([0.6, 0.6, 0.6]) + 0.35 * (hue_pick - 0.3)
        tex = int(rng.choice([TEX_PLAIN, TEX_NOISE, TEX_STRIPES]))
        scale = float(rng.uniform(0.3, 1.2))
    elif kind == 'clutter':
        base = rng.random(3) ** 0.7
        tex = int(rng.choice([TEX_PLAIN, TEX_CHECKER, TEX_STRIPES, TEX_NOISE]))
        scale = float(rng.uniform(0.02, 0.1))
    else:
        base = 0.15 + 0.75 * rng.random(3)
        tex = int(rng.choice([TEX_PLAIN, TEX_WOOD, TEX_NOISE, TEX_CHECKER, TEX_STRIPES]))
        scale = float(rng.uniform(0.05, 0.4))
    base = np.clip(base, 0.05, 1.0)
    color2 = np.clip(base * rng.uniform(0.45, 0.8) + rng.uniform(-0.08, 0.08, 3), 0.0, 1.0)
    return Material(base.astype(np.float32), color2.astype(np.float32), tex, scale,
                    float(rng.uniform(0, 2 * np.pi)))


# ----------------------------------------------------------------------------- furniture
# Each generator returns (parts, (w, d), supports): parts = list of (solid, material) in the
# object's local frame (centred on x/y, standing on z = 0, front towards +y); supports =
# list of (x0, y0, x1, y1, z) local rectangles on which clutter may be placed.

def table_parts(rng):
    w, d = rng.uniform(0.7, 1.6), rng.uniform(0.6, 1.0)
    h, t = rng.uniform(0.5, 0.78), rng.uniform(0.025, 0.05)
    top, legs = random_material(rng), random_material(rng)
    parts = [(box((w, d, t), (0, 0, h - t / 2)), top)]
    inset, r = 0.06, rng.uniform(0.02, 0.04)
    round_legs = rng.random() < 0.5
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - inset), sy * (d / 2 - inset)
            leg = (cylinder(r, h - t + 0.002, (x, y, -0.002), 12) if round_legs
                   else box((2 * r, 2 * r, h - t + 0.004), (x, y, (h - t) / 2)))
            parts.append((leg, legs))
    return parts, (w, d), [(-w / 2 + 0.05, -d / 2 + 0.05, w / 2 - 0.05, d / 2 - 0.05, h)]


def chair_parts(rng):
    s, h = rng.uniform(0.38, 0.5), rng.uniform(0.4, 0.48)
    t, bh = 0.04, rng.uniform(0.35, 0.55)
    mat = random_material(rng)
    parts = [(box((s, s, t), (0, 0, h - t / 2)), mat)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append((box((0.035, 0.035, h - t + 0.004),
                              (sx * (s / 2 - 0.03), sy * (s / 2 - 0.03), (h - t) / 2)), mat))
    parts.append((box((s, 0.035, bh), (0, -s / 2 + 0.0175, h + bh / 2 - 0.002)), mat))
    return parts, (s, s), []


def _shelf(rng):
    w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.28, 0.42), rng.uniform(0.9, 2.0)
    t = 0.025
    mat = random_material(rng)
    parts = [(box((t, d, h), (-w / 2 + t / 2, 0, h / 2)), mat),
             (box((t, d, h), (w / 2 - t / 2, 0, h / 2)), mat),
             (box((w, t, h), (0, -d / 2 + t / 2, h / 2)), mat)]
    n = int(rng.integers(2, 5))
    supports = []
    for i in range(n + 1):
        z = 0.06 + i * (h - 0.06 - t) / n
        parts.append((box((w, d, t), (0, 0, z + t / 2)), mat))
        if i < n:
            supports.append((-w / 2 + 0.05, -d / 2 + 0.04, w / 2 - 0.05, d / 2 - 0.04, z + t))
    return parts, (w, d), supports


def _cabinet(rng):
    w, d, h = rng.uniform(0.5, 1.5), rng.uniform(0.35, 0.6), rng.uniform(0.5, 1.2)
    body, handle = random_material(rng), random_material(rng, 'clutter')
    parts = [(box((w, d, h), (0, 0, h / 2)), body)]
    rows = int(rng.integers(1, 4))
    for i in range(rows):
        z = h * (i + 0.5) / rows
        parts.append((box((min(0.25, w / 3), 0.03, 0.025), (0, d / 2 + 0.013, z)), handle))
    return parts, (w, d), [(-w / 2 + 0.05, -d / 2 + 0.05, w / 2 - 0.05, d / 2 - 0.05, h)]


def _sofa_or_bed(rng):
    mat = random_material(rng)
    if rng.random() < 0.5:  # sofa: seat, back, arms
        w, d, sh = rng.uniform(1.4, 2.2), rng.uniform(0.75, 0.95), rng.uniform(0.38, 0.45)
        bh, aw = rng.uniform(0.35, 0.5), rng.uniform(0.12, 0.2)
        parts = [(box((w, d, sh), (0, 0, sh / 2)), mat),
                 (box((w, 0.2, sh + bh), (0, -d / 2 + 0.1, (sh + bh) / 2)), mat)]
        for sx in (-1, 1):
            parts.append((box((aw, d, sh + 0.2), (sx * (w / 2 - aw / 2), 0, (sh + 0.2) / 2)),
                          mat))
        return parts, (w, d), []
    w, d, mh = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1), rng.uniform(0.4, 0.6)
    sheet = random_material(rng, 'clutter')
    parts = [(box((w, d, mh), (0, 0, mh / 2)), mat),
             (box((w - 0.04, d - 0.04, 0.12), (0, 0, mh + 0.05)), sheet),
             (box((w, 0.08, mh + 0.6), (0, -d / 2 + 0.04, (mh + 0.6) / 2)), mat)]
    return parts, (w, d), []


def _big_primitive(rng):
    mat = random_material(rng)
    kind = rng.integers(3)
    if kind == 0:
        w, d, h = rng.uniform(0.3, 1.0, 3) * np.array([1, 1, 1.4])
        return [(box((w, d, h), (0, 0, h / 2)), mat)], (w, d), [
            (-w / 2 + 0.03, -d / 2 + 0.03, w / 2 - 0.03, d / 2 - 0.03, h)]
    if kind == 1:
        r, h = rng.uniform(0.15, 0.4), rng.uniform(0.4, 1.4)
        return [(cylinder(r, h + 0.002, (0, 0, -0.002), 24), mat)], (2 * r, 2 * r), []
    r = rng.uniform(0.2, 0.45)
    return [(sphere(r, (0, 0, r - 0.01)), mat)], (2 * r, 2 * r), []


def clutter_parts(rng, max_w: float):
    """Build a small item standing on z = 0 (local), footprint at most max_w."""
    mat = random_material(rng, 'clutter')
    kind = rng.integers(3)
    s = rng.uniform(0.06, max(0.07, min(0.3, max_w)))
    if kind == 0:
        h = rng.uniform(0.05, 0.35)
        return [(box((s, s * rng.uniform(0.5, 1.0), h), (0, 0, h / 2 - 0.002)), mat)]
    if kind == 1:
        h = rng.uniform(0.08, 0.35)
        return [(cylinder(s / 2, h, (0, 0, -0.002), 16), mat)]
    return [(sphere(s / 2, (0, 0, s / 2 - 0.004)), mat)]


FURNITURE = {'table': table_parts, 'chair': chair_parts, 'shelf': _shelf, 'cabinet': _cabinet,
             'sofa_bed': _sofa_or_bed, 'primitive': _big_primitive}
