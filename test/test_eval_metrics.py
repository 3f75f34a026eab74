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

"""Known-answer tests of the evaluation metrics and the Chamfer scale + shift alignment."""

import math

from nova3r_ros.evaluation.metrics import auroc, GroundTruth, knn_density, score
from nova3r_ros.geometry.align import align, fit_chamfer
import numpy as np
import pytest


def _gt(points, visible=None, category=None, normals=None):
    points = np.asarray(points, dtype=float)
    n = len(points)
    visible = np.ones(n, bool) if visible is None else np.asarray(visible)
    category = np.full(n, 1, np.uint8) if category is None else np.asarray(category, np.uint8)
    return GroundTruth(points, visible, category, normals)


def _brute_chamfer(a, b):
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    return 0.5 * (d.min(1).mean() + d.min(0).mean())


def test_hand_computed_tiny_clouds():
    # GT: three points on the x axis; the first two visible, the third occluded (an object).
    gt = _gt([[0, 0, 0], [1, 0, 0], [2, 0, 0]], visible=[True, True, False],
             category=[0, 1, 2])
    pred = np.array([[0, 0, 0.03], [1, 0, 0.0], [5, 0, 0]])
    m = score(pred, gt, taus=(0.1, 0.05, 0.02))
    # pred -> GT distances: 0.03, 0, 3; GT -> pred: 0.03, 0, 1.
    assert m['complete/accuracy'] == pytest.approx((0.03 + 0 + 3) / 3)
    assert m['complete/completeness'] == pytest.approx((0.03 + 0 + 1) / 3)
    assert m['complete/chamfer'] == pytest.approx(0.5 * (3.03 / 3 + 1.03 / 3))
    assert m['complete/precision@0.05'] == pytest.approx(2 / 3)
    assert m['complete/precision@0.02'] == pytest.approx(1 / 3)
    assert m['complete/recall@0.05'] == pytest.approx(2 / 3)
    assert m['complete/fscore@0.05'] == pytest.approx(2 / 3)
    assert m['complete/hole_ratio@0.02'] == pytest.approx(2 / 3)
    # Occluded GT is the single point x=2 whose nearest prediction is 1 away.
    assert m['occluded/recall@0.1'] == 0.0
    assert m['occluded/fscore@0.1'] == 0.0
    assert m['occluded/completeness'] == pytest.approx(1.0)
    # pred -> occluded subset {x=2}: distances sqrt(4+0.0009), 1, 3.
    assert m['occluded/accuracy'] == pytest.approx((math.sqrt(4.0009) + 1 + 3) / 3)
    assert m['occluded_object/recall@0.1'] == 0.0
    assert math.isnan(m['occluded_floor/recall@0.1'])  # no occluded floor in this GT
    assert m['visible/recall@0.05'] == 1.0
    # visible F uses the precision of ALL predictions against ALL GT: 2/3.
    assert m['visible/fscore@0.05'] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert m['n_pred'] == 3 and m['visible/n_gt'] == 2


def test_occluded_fscore_cannot_be_gamed_by_scattered_points():
    rng = np.random.default_rng(0)
    wall = np.c_[rng.uniform(-1, 1, (2000, 2)), np.full(2000, 3.0)]
    gt = _gt(wall, visible=wall[:, 0] < 0)
    scattered = rng.uniform(-1, 1, (20000, 3)) * [1, 1, 3] + [0, 0, 3]
    m = score(scattered, gt)
    assert m['occluded/recall@0.1'] > 0.9
    assert m['occluded/fscore@0.1'] < 0.2


def test_chamfer_of_a_cloud_with_itself_is_zero_and_matches_brute_force():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 3))
    b = rng.normal(size=(200, 3)) + 0.1
    assert score(a, _gt(a))['complete/chamfer'] == 0.0
    ab = score(a, _gt(b))['complete/chamfer']
    ba = score(b, _gt(a))['complete/chamfer']
    assert ab == pytest.approx(ba, rel=1e-12)
    assert ab == pytest.approx(_brute_chamfer(a, b), rel=1e-12)


def test_normal_consistency_and_density():
    rng = np.random.default_rng(2)
    plane = np.c_[rng.uniform(0, 1, (500, 2)), np.zeros(500)]
    up = np.tile([0.0, 0.0, 1.0], (500, 1))
    gt = _gt(plane, normals=up)
    assert score(plane, gt, pred_normals=-up)['complete/normal_consistency'] == pytest.approx(1)
    tilted = np.tile([1.0, 0.0, 0.0], (500, 1))
    assert score(plane, gt, pred_normals=tilted)['complete/normal_consistency'] == 0.0
    assert 'complete/normal_consistency' not in score(plane, gt)
    # A regular grid has the same kNN-16 density everywhere in its interior.
    g = np.stack(np.meshgrid(np.arange(20), np.arange(20), [0.0]), -1).reshape(-1, 3) * 0.1
    dens = knn_density(g)
    interior = np.all((g[:, :2] > 0.35) & (g[:, :2] < 1.55), axis=1)
    assert np.ptp(dens[interior]) < 1e-9
    # 16 nearest of an interior grid point: 4 at 1, 4 at sqrt2, 4 at 2, 4 at sqrt5 (x 0.1).
    expected = 1 / (np.sqrt((4 * 1 + 4 * 2 + 4 * 4 + 4 * 5) / 16) * 0.1 + 1e-8)
    assert dens[interior][0] == pytest.approx(expected)
    assert score(g, _gt(g))['pred/density_var'] == pytest.approx(np.var(dens))


def test_visibility_auroc():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1], bool)) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == 0.5
    assert math.isnan(auroc(np.array([0.5, 0.5]), np.array([1, 1], bool)))
    # Labels come from the nearest GT point's visibility.
    gt = _gt([[0, 0, 0], [10, 0, 0]], visible=[True, False])
    pred = np.array([[0.1, 0, 0], [9.9, 0, 0], [10.2, 0, 0]])
    m = score(pred, gt, pred_visibility=np.array([True, False, True]),
              pred_visibility_scores=np.array([3.0, -1.0, -2.0]))
    assert m['visibility/auroc'] == 1.0
    assert m['visibility/accuracy'] == pytest.approx(2 / 3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match='shape'):
        score(np.zeros((4, 2)), _gt(np.zeros((3, 3))))
    with pytest.raises(ValueError, match='NaN'):
        score(np.full((4, 3), np.nan), _gt(np.zeros((3, 3))))
    with pytest.raises(ValueError, match='visible'):
        GroundTruth(np.zeros((3, 3)), np.ones(2, bool), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match='unknown alignment'):
        align(np.zeros((3, 3)), np.zeros((3, 3)), 'icp')


def _room(n, rng):
    """Points on the inside of a box room (walls, floor) with a box object, metres-ish."""
    p = rng.uniform(-1, 1, (n, 3))
    face = rng.integers(0, 3, n)
    p[np.arange(n), face] = np.sign(rng.uniform(-1, 1, n))
    p = p * [2.0, 1.2, 2.5] + [0.0, 0.3, 3.0]
    obj = rng.uniform(-1, 1, (n // 4, 3))
    face = rng.integers(0, 3, n // 4)
    obj[np.arange(n // 4), face] = np.sign(rng.uniform(-1, 1, n // 4))
    return np.concatenate([p, obj * 0.4 + [0.5, 0.8, 2.5]])


@pytest.mark.parametrize('same_points', [True, False])
def test_alignment_recovers_known_scale_and_shift(same_points):
    rng = np.random.default_rng(3)
    gt = _room(30000, rng)
    s, t = 0.37, np.array([0.5, -1.0, 2.0])
    # Prediction = GT expressed in another scale/offset: gt = s * pred + t. Either the same
    # points shuffled or an 8192-point subset (the fit itself uses random subsets).
    source = rng.permutation(gt) if same_points else gt[rng.choice(len(gt), 8192, False)]
    pred = (source - t) / s
    fit = fit_chamfer(pred, gt)
    assert fit.scale == pytest.approx(s, abs=1e-3)
    np.testing.assert_allclose(fit.shift, t, atol=1e-3)
    assert score(fit.apply(pred), _gt(gt))['complete/accuracy'] < 1e-3


def test_alignment_none_is_identity_and_chamfer_never_worse():
    rng = np.random.default_rng(4)
    gt = _room(8000, rng)
    pred = _room(4000, rng) * 1.2 + [0.2, 0.0, -0.3]
    none = align(pred, gt, 'none')
    assert none.scale == 1.0 and none.shift == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(none.apply(pred), pred)
    fit = align(pred, gt, 'chamfer')
    before = score(pred, _gt(gt))['complete/chamfer']
    after = score(fit.apply(pred), _gt(gt))['complete/chamfer']
    assert after < 0.5 * before
    assert fit.scale == pytest.approx(1 / 1.2, rel=0.02)
