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

"""Snapping onto view 1's measured depth: classes, the move along each ray, the labels."""

from nova3r_ros.data.dataset import load_sample, select_views
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.geometry.depth_check import (
    BEHIND,
    depth_classes,
    depth_residual,
    FREE,
    snap_to_depth,
    SURFACE,
    UNKNOWN,
)
import numpy as np
import pytest

K = np.array([[50.0, 0.0, 20.0], [0.0, 50.0, 15.0], [0.0, 0.0, 1.0]])  # 40 x 30 image


def wall(distance: float = 2.0) -> np.ndarray:
    """Return a fronto-parallel wall `distance` away, three pixels invalid (0, NaN, inf)."""
    depth = np.full((30, 40), distance)
    depth[0, :3] = (0.0, np.nan, np.inf)
    return depth


def ray(col: float, row: float, z: float) -> list[float]:
    """Return the point at depth z on the ray through pixel (col, row) of K."""
    return [(col - 20.0) / 50.0 * z, (row - 15.0) / 50.0 * z, z]


POINTS = np.array([
    ray(10, 10, 1.5),   # the camera sees through it: FREE
    ray(12, 20, 2.15),  # 7.5 % of the depth behind the wall: SURFACE at 10 %
    ray(30, 5, 2.6),    # 30 % behind: BEHIND
    ray(20, 15, 2.0),   # exactly on the wall: SURFACE
    ray(60, 15, 2.0),   # outside the image: UNKNOWN
    [0.0, 0.0, -1.0],   # behind the camera: UNKNOWN
    ray(1, 0, 1.0),     # on an invalid (NaN) pixel: UNKNOWN
    [np.nan, 0.0, 1.0],  # not finite: UNKNOWN
])


def test_classes_and_residuals_of_known_points() -> None:
    residual, measured = depth_residual(POINTS, wall(), K)
    np.testing.assert_allclose(residual[:4], [-0.5, 0.15, 0.6, 0.0], atol=1e-12)
    np.testing.assert_allclose(measured[:4], 2.0)
    assert np.isnan(residual[4:]).all() and np.isnan(measured[4:]).all()
    classes = depth_classes(POINTS, wall(), K, tolerance=0.1)
    assert classes.tolist() == [FREE, SURFACE, BEHIND, SURFACE] + [UNKNOWN] * 4
    # a tighter band turns the slightly deep point into an amodal one
    assert depth_classes(POINTS, wall(), K, tolerance=0.05)[1] == BEHIND


def test_snap_moves_free_and_surface_points_along_their_ray_and_keeps_the_rest() -> None:
    visible = np.array([False, False, True, False, True, True, False, False])
    out = snap_to_depth(POINTS, visible, wall(), K, tolerance=0.1)
    moved = np.array([True, True, False, True, False, False, False, False])
    assert out.num_snapped == 3 and out.points.dtype == np.float32
    assert out.points.shape == POINTS.shape  # nothing dropped
    np.testing.assert_allclose(out.points[moved, 2], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out.points[moved, :2] / out.points[moved, 2:],
                               POINTS[moved, :2] / POINTS[moved, 2:], rtol=1e-6)
    np.testing.assert_array_equal(out.points[~moved], POINTS[~moved].astype(np.float32))
    # moved points are visible; with more views the rest keep the model's label
    assert out.visible.tolist() == [True, True, True, True, True, True, False, False]
    # one view: a point behind what that view sees cannot be visible
    single = snap_to_depth(POINTS, visible, wall(), K, tolerance=0.1, single_view=True)
    assert single.visible.tolist() == [True, True, False, True, True, True, False, False]


def test_snap_refuses_bad_input() -> None:
    visible = np.ones(len(POINTS), bool)
    with pytest.raises(ValueError, match='tolerance'):
        snap_to_depth(POINTS, visible, wall(), K, tolerance=-0.1)
    with pytest.raises(ValueError, match='tolerance'):
        snap_to_depth(POINTS, visible, wall(), K, tolerance=float('nan'))
    with pytest.raises(ValueError, match='visible'):
        snap_to_depth(POINTS, visible[:3], wall(), K)
    with pytest.raises(ValueError, match='depth'):
        snap_to_depth(POINTS, visible, np.zeros((0, 4)), K)
    with pytest.raises(ValueError, match='intrinsics'):
        snap_to_depth(POINTS, visible, wall(), np.zeros((3, 3)))


def test_a_cloud_spread_towards_the_camera_is_put_back_on_the_scene(small_dataset) -> None:
    """
    Snap a generated scene's GT, every point pulled 8 % towards the camera, onto its depth.

    The visible surface goes back where the depth says (F@0.1 against the complete GT rises,
    0.33 -> 0.75 here, and the moved points lie on the GT); points further behind stay.
    """
    path = sorted((small_dataset / 'train').glob('sample_*.npz'))[0]
    sample = select_views(load_sample(path), 1)  # view 1 alone: visible = what the depth sees
    gt = ground_truth(sample)
    points = np.asarray(sample['points'], dtype=np.float64) * 0.92  # metres, view-1 frame
    visible = np.asarray(sample['points_visible'], dtype=bool)
    depth = np.asarray(sample['depths'][0], dtype=np.float64)
    k = np.asarray(sample['intrinsics'][0], dtype=np.float64)
    out = snap_to_depth(points, np.zeros(len(points), bool), depth, k, tolerance=0.1)
    before = score_prediction({'points': points, 'units': 'metric'}, sample, gt, 'none')
    after = score_prediction({'points': out.points, 'units': 'metric'}, sample, gt, 'none')
    assert (after.metrics['complete/fscore@0.1']
            > before.metrics['complete/fscore@0.1'] + 0.1)
    moved = out.classes <= SURFACE
    on_surface = score_prediction({'points': out.points[moved], 'units': 'metric'}, sample, gt,
                                  'none')
    assert on_surface.metrics['complete/precision@0.1'] > 0.9  # 0.96 here
    behind = out.classes == BEHIND
    np.testing.assert_array_equal(out.points[behind], points[behind].astype(np.float32))
    assert out.visible[out.classes <= SURFACE].all() and not out.visible[behind].any()
    # the points view 1 sees are the ones that move: most visible GT points, few hidden ones
    assert np.mean(moved[visible]) > 0.8 and np.mean(moved[~visible]) < 0.3  # 0.92, 0.12


def test_garbage_depth_never_gives_a_non_finite_point() -> None:
    """Depth a driver may send (NaN, inf, negative, huge, zero) and stray points: all finite."""
    rng = np.random.default_rng(7)
    for trial in range(20):
        depth = rng.choice([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30, 2.0, 5.0],
                           size=(30, 40)).astype(np.float32)
        points = rng.normal(0.0, 3.0, (500, 3)).astype(np.float32)
        points[:5, 2] = (0.0, -0.0, 1e-38, 1e38, -1e38)
        out = snap_to_depth(points, rng.random(500) < 0.5, depth, K, tolerance=0.1 * trial / 19,
                            single_view=bool(trial % 2))
        assert out.points.shape == points.shape and np.isfinite(out.points).all(), trial
        assert out.visible.shape == (500,) and out.visible.dtype == bool
