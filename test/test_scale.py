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

"""Scale modes: depth-based metric scale on a hand-built scene, fixed, normalized, auto."""

from nova3r_ros.geometry.align import _Fitter, Alignment, fit_chamfer
from nova3r_ros.geometry.scale import (
    backproject,
    compute_scale,
    DEPTH_FITS,
    depth_scale,
    fixed_scale,
    normalized_scale,
    NOT_METRIC_WARNING,
    resolve_mode,
    ScaleResult,
    zbuffer,
)
import numpy as np
import pytest
from scipy.spatial import cKDTree

WIDTH, HEIGHT = 224, 168
K = np.array([[200.0, 0.0, 111.5], [0.0, 200.0, 83.5], [0.0, 0.0, 1.0]])
BOX_COLS, BOX_ROWS = (20, 170), (10, 150)  # box covers 150 x 140 px = 56% of the image
BOX_Z = 2.0  # metres
TRUE_SCALE = 2.5


def _wall_z(ray_x: np.ndarray) -> np.ndarray:
    """Depth of the tilted back wall z = 5 + 0.2 x along rays with direction (ray_x, ., 1)."""
    return 5.0 / (1.0 - 0.2 * ray_x)


def _rays(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1]


def _in_box(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return ((cols >= BOX_COLS[0]) & (cols < BOX_COLS[1])
            & (rows >= BOX_ROWS[0]) & (rows < BOX_ROWS[1]))


def _render_depth() -> np.ndarray:
    """Metric depth image of the scene at pixel centres: box in front of the tilted wall."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    ray_x, _ = _rays(cols, rows)
    depth = _wall_z(ray_x)
    depth[_in_box(cols, rows)] = BOX_Z
    return depth.astype(np.float32)


def _scene_points(seed: int = 0) -> np.ndarray:
    """
    Metric points: the box face and the *whole* wall, including the part behind the box.

    Two samples per pixel on the wall and one on the box, jittered within +-0.4 px, so every box
    pixel holds both a box point (nearest) and occluded wall points.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rows, cols = rows.ravel(), cols.ravel()
    clouds = []
    for _ in range(2):
        c = cols + rng.uniform(-0.4, 0.4, cols.shape)
        r = rows + rng.uniform(-0.4, 0.4, rows.shape)
        ray_x, ray_y = _rays(c, r)
        z = _wall_z(ray_x)
        clouds.append(np.stack([ray_x * z, ray_y * z, z], axis=1))
    box = _in_box(cols, rows)
    c = cols[box] + rng.uniform(-0.4, 0.4, box.sum())
    r = rows[box] + rng.uniform(-0.4, 0.4, box.sum())
    ray_x, ray_y = _rays(c, r)
    clouds.append(np.stack([ray_x * BOX_Z, ray_y * BOX_Z, np.full_like(c, BOX_Z)], axis=1))
    points = np.concatenate(clouds)
    return points[rng.permutation(points.shape[0])]  # no ordering the z-buffer could rely on


METRIC_POINTS = _scene_points()
MODEL_POINTS = (METRIC_POINTS / TRUE_SCALE).astype(np.float32)  # "model units"
DEPTH = _render_depth()


@pytest.mark.parametrize('fit', DEPTH_FITS)
def test_depth_scale_recovers_known_scale_with_occlusion(fit):
    result = depth_scale(MODEL_POINTS, None, DEPTH, K, fit=fit)
    assert result.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    assert result.mode == 'depth' and result.is_metric and result.reason == ''
    assert result.num_pixels == HEIGHT * WIDTH  # every pixel has a point and a valid depth
    # The scene really has occlusion: box pixels (a majority) also hold wall points, whose
    # ratio would be depth / z = 2 / (5 / 2.5) = 1 if the z-buffer kept anything but the nearest.
    cols = K[0, 0] * METRIC_POINTS[:, 0] / METRIC_POINTS[:, 2] + K[0, 2]
    rows = K[1, 1] * METRIC_POINTS[:, 1] / METRIC_POINTS[:, 2] + K[1, 2]
    in_box = _in_box(np.floor(cols + 0.5), np.floor(rows + 0.5))
    assert np.count_nonzero(in_box & (METRIC_POINTS[:, 2] > 4.0)) > 20000


def test_zbuffer_keeps_nearest_in_any_order():
    near_far = np.array([[0.0, 0.0, 3.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    for order in ([0, 1, 2], [1, 0, 2], [2, 0, 1]):
        z_buffer = zbuffer(near_far[order], K, HEIGHT, WIDTH)
        # x = y = 0 projects to the principal point (111.5, 83.5) -> rounds to pixel (84, 112).
        assert z_buffer[84, 112] == 1.0
        assert np.count_nonzero(np.isfinite(z_buffer)) == 1
    behind_or_outside = np.array([[0.0, 0.0, -1.0], [100.0, 0.0, 1.0], [np.nan, 0.0, 1.0],
                                  [0.0, 0.0, 0.0]])
    assert np.all(np.isinf(zbuffer(behind_or_outside, K, HEIGHT, WIDTH)))


def test_depth_scale_ignores_invalid_depth():
    rng = np.random.default_rng(3)
    depth = DEPTH.copy()
    labels = rng.random(depth.shape)
    depth[labels < 0.6] = 0.0  # a majority of zeros would drag a naive median to 0
    depth[(labels >= 0.6) & (labels < 0.8)] = np.nan
    depth[(labels >= 0.8) & (labels < 0.82)] = np.inf
    depth[(labels >= 0.82) & (labels < 0.84)] = -1.0
    expected_pixels = int(np.count_nonzero(labels >= 0.84))
    result = depth_scale(MODEL_POINTS, None, depth, K)
    assert result.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    assert result.num_pixels == expected_pixels


def test_depth_scale_uses_only_visible_points():
    # Points labelled occluded right in front of the camera would win every z-buffer pixel.
    junk = MODEL_POINTS.copy()
    junk[:, :] *= 0.01 / junk[:, 2:3]  # same rays, z = 0.01
    points = np.concatenate([MODEL_POINTS, junk])
    visible = np.concatenate([np.ones(len(MODEL_POINTS), bool), np.zeros(len(junk), bool)])
    for fit in DEPTH_FITS:
        result = depth_scale(points, visible, DEPTH, K, fit=fit)
        assert result.scale == pytest.approx(TRUE_SCALE, rel=0.01), fit
    unmasked = depth_scale(points, None, DEPTH, K, fit='median_ratio')
    assert unmasked.scale > 50 * TRUE_SCALE  # proves the mask is what made the difference


def test_depth_scale_too_few_pixels():
    depth = np.zeros_like(DEPTH)
    depth[80, 60:90] = DEPTH[80, 60:90]  # 30 valid pixels
    result = depth_scale(MODEL_POINTS, None, depth, K, min_pixels=50)
    assert result.scale is None and not result.is_metric
    assert result.num_pixels == 30 and '30 pixels' in result.reason and '50' in result.reason
    for fit in DEPTH_FITS:  # both fits use only where the depth is valid
        lowered = depth_scale(MODEL_POINTS, None, depth, K, min_pixels=30, fit=fit)
        assert lowered.scale == pytest.approx(TRUE_SCALE, rel=0.01), fit
    none_visible = depth_scale(MODEL_POINTS, np.zeros(len(MODEL_POINTS), bool), DEPTH, K)
    assert none_visible.scale is None and 'no points labelled visible' in none_visible.reason
    behind = depth_scale(-MODEL_POINTS, None, DEPTH, K)
    assert behind.scale is None and 'in front of the camera' in behind.reason


def test_depth_scale_input_validation():
    with pytest.raises(ValueError, match=r'points must be \(N, 3\)'):
        depth_scale(MODEL_POINTS[:, :2], None, DEPTH, K)
    with pytest.raises(ValueError, match='visible'):
        depth_scale(MODEL_POINTS, np.ones(3, bool), DEPTH, K)
    with pytest.raises(ValueError, match='depth'):
        depth_scale(MODEL_POINTS, None, DEPTH[None], K)
    with pytest.raises(ValueError, match='intrinsics'):
        depth_scale(MODEL_POINTS, None, DEPTH, K[:2])
    with pytest.raises(ValueError, match='focal'):
        depth_scale(MODEL_POINTS, None, DEPTH, np.diag([0.0, 200.0, 1.0]))
    with pytest.raises(ValueError, match='min_pixels'):
        depth_scale(MODEL_POINTS, None, DEPTH, K, min_pixels=0)


def test_fixed_and_normalized():
    assert fixed_scale(0.5) == ScaleResult(0.5, 'fixed', is_metric=True)
    for bad in (0.0, -1.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='fixed scale factor'):
            fixed_scale(bad)
    result = normalized_scale()
    assert result.scale == 1.0 and result.mode == 'normalized' and not result.is_metric


def test_resolve_mode_auto_rule():
    assert resolve_mode('auto', depth_configured=True).mode == 'depth'
    assert resolve_mode('auto', depth_configured=True).warning is None
    fallback = resolve_mode('auto', depth_configured=False)
    assert fallback.mode == 'normalized' and fallback.warning == NOT_METRIC_WARNING
    assert resolve_mode('depth', True).mode == 'depth'
    assert resolve_mode('fixed', False).mode == 'fixed'
    assert resolve_mode('normalized', True).warning is not None
    with pytest.raises(ValueError, match='needs a depth_topic'):
        resolve_mode('depth', depth_configured=False)
    with pytest.raises(ValueError, match='scale_mode must be one of'):
        resolve_mode('poses', True)


def test_compute_scale_dispatch():
    depth_result = compute_scale('depth', points=MODEL_POINTS, depth=DEPTH, intrinsics=K)
    assert depth_result.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    no_depth = compute_scale('depth', points=MODEL_POINTS, intrinsics=K)
    assert no_depth.scale is None and 'no depth image' in no_depth.reason
    no_info = compute_scale('depth', points=MODEL_POINTS, depth=DEPTH)
    assert no_info.scale is None and 'camera_info' in no_info.reason
    assert compute_scale('fixed', fixed_factor=3.0).scale == 3.0
    assert compute_scale('normalized').scale == 1.0
    with pytest.raises(ValueError, match='resolve_mode'):
        compute_scale('auto')


def test_chamfer_depth_fit_follows_a_rescaling_of_the_cloud():
    # A blurred cloud (the fit is not exact there): scaling the points by c divides the fitted
    # scale by c, so refitting a published metric cloud gives 1 (the node's clouds are metric).
    rng = np.random.default_rng(4)
    blurred = MODEL_POINTS[rng.choice(len(MODEL_POINTS), 8192, replace=False)]
    blurred = blurred + rng.normal(scale=0.1, size=blurred.shape).astype(np.float32)
    first = depth_scale(blurred, None, DEPTH, K)
    assert first.scale == pytest.approx(TRUE_SCALE, rel=0.05)
    assert first.scale != depth_scale(blurred, None, DEPTH, K, fit='median_ratio').scale
    for c in (0.5, 3.0):
        assert depth_scale(blurred * c, None, DEPTH, K).scale == pytest.approx(
            first.scale / c, rel=1e-6)
    assert depth_scale(blurred * first.scale, None, DEPTH, K).scale == pytest.approx(1.0,
                                                                                     rel=1e-6)


def test_chamfer_fit_escapes_a_poor_start_scale():
    # The node starts its depth fit from the median depth ratio, which stray points can put far
    # off (demo bag: 2x). A single start from there stays in that basin (the matches form around
    # it); the moment-matching start, which also follows a rescaling, gets out.
    rng = np.random.default_rng(1)
    surface = backproject(DEPTH.astype(np.float64), K)
    cloud = METRIC_POINTS[rng.choice(len(METRIC_POINTS), 4096, replace=False)] / TRUE_SCALE
    cloud = cloud + rng.normal(scale=0.05, size=cloud.shape)
    subsets = (cloud[:1024], surface[rng.choice(len(surface), 1024, replace=False)])
    for poor in (0.3, 0.5):
        start = poor * TRUE_SCALE
        stuck, *_ = _Fitter(*subsets, eps=1e-6, workers=1).run(start, np.zeros(3), 30, 1e-3)
        assert stuck / TRUE_SCALE < 0.5  # the single-start fit the node used to run
        fit = fit_chamfer(cloud, surface, max_points=2048, workers=1, start_scale=start)
        assert fit.scale == pytest.approx(TRUE_SCALE, rel=0.05)
        rescaled = fit_chamfer(cloud * 3.0, surface, max_points=2048, workers=1,
                               start_scale=start / 3.0)
        assert rescaled.scale == pytest.approx(fit.scale / 3.0, rel=1e-9)


@pytest.mark.parametrize('fit', DEPTH_FITS)
def test_depth_scale_refuses_a_depth_that_is_not_metres(fit):
    # A finite but absurd depth (a 32FC1 image in micrometres, a sentinel fill) used to give
    # a "metric" cloud 1e30 m across, or a float32 overflow to an empty cloud.
    for factor in (1e7, 1e30):
        result = depth_scale(MODEL_POINTS, None, DEPTH * np.float32(factor), K, fit=fit)
        assert result.scale is None and not result.is_metric
        assert 'outside [1e-06, 1e+06]' in result.reason and 'metres' in result.reason
    assert depth_scale(MODEL_POINTS, None, DEPTH * np.float32(1e3), K, fit=fit).is_metric


def test_chamfer_shift_moves_a_misplaced_cloud_onto_the_depth_surface():
    # The model places its cloud off the true surfaces (~0.4 units on held-out scenes): the
    # shift fit registers the visible points onto the measured surface and the node keeps it.
    offset = np.array([0.12, -0.05, 0.2], dtype=np.float32)  # model units
    rng = np.random.default_rng(5)
    cloud = MODEL_POINTS[rng.choice(len(MODEL_POINTS), 8192, replace=False)]
    misplaced = cloud + offset
    truth = cloud.astype(np.float64) * TRUE_SCALE
    kept = depth_scale(misplaced, None, DEPTH, K, fit='chamfer_shift')
    assert kept.scale == pytest.approx(TRUE_SCALE, rel=0.02)
    # the fit may slide a little along the planar box face and wall (x by ~0.07 m here), so
    # the shift is checked loosely and the placement by each point's distance to the surfaces
    assert np.allclose(kept.shift, -offset * kept.scale, atol=0.1)  # metres
    placed = kept.apply(misplaced)
    assert placed.dtype == np.float32
    surfaces = cKDTree(truth)
    assert surfaces.query(placed)[0].mean() < 0.05
    scale_only = depth_scale(misplaced, None, DEPTH, K, fit='chamfer')
    assert scale_only.scale == kept.scale and scale_only.shift == (0.0, 0.0, 0.0)
    assert surfaces.query(scale_only.apply(misplaced))[0].mean() > 0.3  # off by the offset
    # an already registered cloud refits to scale 1 and (nearly) no shift
    again = depth_scale(placed, None, DEPTH, K, fit='chamfer_shift')
    assert again.scale == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(again.shift) < 0.01


def test_chamfer_shift_drops_a_shift_beyond_trust(monkeypatch):
    import nova3r_ros.geometry.scale as scale_module

    # a degenerate fit (e.g. depth valid on a thin strip) can return any shift: one longer than
    # SHIFT_TRUST x the median depth is dropped and the scale kept
    median_depth = float(np.median(DEPTH))
    far = (0.0, 0.0, 2.0 * scale_module.SHIFT_TRUST * median_depth)
    monkeypatch.setattr(scale_module, '_chamfer_fit',
                        lambda *a: Alignment(TRUE_SCALE, far, 'chamfer', 0.0, 1))
    result = depth_scale(MODEL_POINTS, None, DEPTH, K, fit='chamfer_shift')
    assert result.scale == TRUE_SCALE and result.shift == (0.0, 0.0, 0.0)
    near = (0.0, 0.1, 0.0)
    monkeypatch.setattr(scale_module, '_chamfer_fit',
                        lambda *a: Alignment(TRUE_SCALE, near, 'chamfer', 0.0, 1))
    assert depth_scale(MODEL_POINTS, None, DEPTH, K, fit='chamfer_shift').shift == near
    assert depth_scale(MODEL_POINTS, None, DEPTH, K, fit='chamfer').shift == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match='no depth scale'):
        ScaleResult(None, 'depth', is_metric=False, reason='x').apply(MODEL_POINTS)
