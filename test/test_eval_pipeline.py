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
Baselines, scoring, reports and the runner on a hand-built scene with known occlusion.

The scene (metres, view-1 optical frame): a wall at z = 4 facing the cameras and a small square
occluder (half-size 0.25) at z = 2. View 1 sits at the origin, view 2 at x = 0.3, both looking
along +z. The wall strip x in [-0.5, 0.2], |y| <= 0.5 lies in both occluder shadows, so no view
sees it: occluded GT that no pixel-aligned method can reach.
"""

import json

from nova3r_ros.evaluation import report
from nova3r_ros.evaluation.baselines import (
    backproject_depth,
    ModelMethod,
    ModelWithDepth,
    ResampledGT,
    TrivialPrior,
    VisibleOracle,
)
from nova3r_ros.evaluation.cli import build_parser, evaluate, SampleSource, Settings
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
import numpy as np
import pytest

W, H, F = 64, 48, 100.0
INTR = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], np.float32)
BASELINE = 0.3  # metres between the two cameras along x
HALF = 0.25  # occluder half-size, metres
CENTRES = np.array([[0.0, 0, 0], [BASELINE, 0, 0]])


def _render(c):
    """Depth (H, W) of the scene from a camera at centre c (identity orientation)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    dx, dy = (u - W / 2) / F, (v - H / 2) / F  # ray direction (dx, dy, 1)
    on_square = (np.abs(c[0] + 2 * dx) <= HALF) & (np.abs(c[1] + 2 * dy) <= HALF)
    return np.where(on_square, 2.0, 4.0).astype(np.float32)


def _in_view(p, c):
    q = p - c
    u, v = F * q[:, 0] / q[:, 2] + W / 2, F * q[:, 1] / q[:, 2] + H / 2
    return (q[:, 2] > 0.05) & (u >= 0) & (u < W) & (v >= 0) & (v < H)


def _visible_from(p, c):
    """Wall points (z = 4) are hidden when the segment to c crosses the square at z = 2."""
    cross = c + (p - c) * (2.0 / 4.0)
    hidden = (p[:, 2] > 3) & (np.abs(cross[:, 0]) <= HALF) & (np.abs(cross[:, 1]) <= HALF)
    return _in_view(p, c) & ~hidden


def _surface_points(n, rng):
    """N points uniform on the wall + square inside the union of the two frusta."""
    out = []
    while sum(len(o) for o in out) < n:
        m = 4 * n
        wall = np.c_[rng.uniform(-1.3, 1.6, m), rng.uniform(-1.0, 1.0, m), np.full(m, 4.0)]
        sq = np.c_[rng.uniform(-HALF, HALF, m // 32), rng.uniform(-HALF, HALF, m // 32),
                   np.full(m // 32, 2.0)]
        p = np.concatenate([wall, sq])
        keep = _in_view(p, CENTRES[0]) | _in_view(p, CENTRES[1])
        out.append(rng.permutation(p[keep]))
    return np.concatenate(out)[:n]


def make_sample(num_points=20000, seed=0):
    """Make a view-selected (K=2) sample dict with the keys of docs/dataset.md evaluation uses."""
    rng = np.random.default_rng(seed)
    sample = {'seed': np.int64(seed), 'num_views': np.int64(2), 'max_depth': np.float32(8.0),
              'images': rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8),
              'depths': np.stack([_render(c) for c in CENTRES]),
              'intrinsics': np.stack([INTR, INTR]),
              'cam_to_view1': np.stack([np.eye(4), np.eye(4)]).astype(np.float32)}
    sample['cam_to_view1'][1, 0, 3] = BASELINE
    for suffix in ('', '_alt'):
        p = _surface_points(num_points, rng)
        sample['points' + suffix] = p.astype(np.float32)
        sample[f'points{suffix}_normals'] = np.tile(np.float32([0, 0, -1]), (len(p), 1))
        sample[f'points{suffix}_category'] = np.where(p[:, 2] > 3, 1, 2).astype(np.uint8)
        sample[f'points{suffix}_visible'] = _visible_from(p, CENTRES[0]) | _visible_from(
            p, CENTRES[1])
    sample['median3_scale'] = np.float32(3 / np.median(np.linalg.norm(sample['points'], axis=1)))
    return sample


@pytest.fixture(scope='module')
def sample():
    return make_sample()


def test_backprojection_inverts_projection():
    depth = np.zeros((H, W), np.float32)
    depth[10, 20], depth[30, 5] = 2.5, 9.0  # the second is beyond max_depth
    pts, normals = backproject_depth(depth, INTR, max_depth=8.0)
    assert pts.shape == (1, 3)
    np.testing.assert_allclose(normals, -pts / np.linalg.norm(pts))  # lone pixel: the ray
    x, y, z = pts[0]
    assert z == 2.5
    assert F * x / z + W / 2 == pytest.approx(20.5)  # pixel centre
    assert F * y / z + H / 2 == pytest.approx(10.5)


def test_visible_oracle_on_complete_and_occluded_gt(sample):
    gt = ground_truth(sample)
    occluded = ~sample['points_visible']
    assert 0.05 < occluded.mean() < 0.3  # the scene really has occlusion
    pred = VisibleOracle().predict(sample, 8192, seed=0)
    assert pred['points'].shape == (8192, 3) and pred['units'] == 'metric'
    assert pred['visibility'].all()
    # Depth-derived normals of the fronto-parallel wall and square: (0, 0, -1) except on the
    # image border and depth edges (about an eighth of the pixels here), where the ray is used.
    assert np.mean(np.abs(pred['normals'][:, 2] + 1) < 1e-6) > 0.8
    # Every oracle point lies on a GT surface: accuracy is the GT sampling gap only.
    m = score_prediction(pred, sample, gt, 'none').metrics
    assert m['complete/accuracy'] < 0.01
    assert m['visible/normal_consistency'] > 0.95
    assert m['visible/recall@0.05'] > 0.97
    assert m['occluded/recall@0.05'] < 0.5
    assert m['occluded_wall/recall@0.05'] < 0.5
    # The ceiling (an independent GT sample) covers occluded GT as well as visible GT.
    c = score_prediction(ResampledGT().predict(sample, 8192, seed=0), sample, gt).metrics
    assert c['occluded/recall@0.05'] > 0.97
    assert c['complete/fscore@0.05'] > 0.97
    assert c['complete/normal_consistency'] == pytest.approx(1.0)
    assert m['complete/chamfer'] > c['complete/chamfer']
    # Chamfer alignment can only lower the fitted objective; a metric-exact cloud stays close.
    a = score_prediction(pred, sample, gt, 'chamfer').metrics
    assert a['complete/chamfer'] <= m['complete/chamfer'] + 1e-3
    assert 0.8 < a['align/scale'] < 1.2


def test_report_bootstrap_ply_and_plot(sample, tmp_path):
    lo_hi = report.paired_bootstrap(np.arange(50.0) + 1.0, np.arange(50.0), 500)
    assert lo_hi == pytest.approx((1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.1, 200), rng.normal(0.0, 0.1, 200)
    mean, lo, hi = report.paired_bootstrap(a, b)
    assert lo < mean < hi and lo > 0.4 and hi < 0.6
    pts = rng.normal(size=(10, 3)).astype(np.float32)
    report.write_ply(tmp_path / 'p.ply', pts, report.visibility_colors(pts[:, 0] > 0, 10))
    raw = (tmp_path / 'p.ply').read_bytes()
    head, body = raw.split(b'end_header\n')
    assert b'element vertex 10' in head and len(body) == 10 * 15
    back = np.frombuffer(body, dtype=[('xyz', '<f4', 3), ('rgb', 'u1', 3)])
    np.testing.assert_array_equal(back['xyz'], pts)
    gt = ground_truth(sample)
    pred = VisibleOracle().predict(sample, 2000, seed=0)
    scored = score_prediction(pred, sample, gt, 'none')
    report.plot_sample(tmp_path / 's.png', 's', gt, INTR, (W, H),
                       {'oracle[none]': (scored.points, pred['visibility'])})
    assert (tmp_path / 's.png').read_bytes()[:4] == b'\x89PNG'


def test_runner_writes_reports_and_resumes_from_cache(sample, tmp_path):
    sources = [SampleSource(f'sample_{i}', lambda i=i: make_sample(6000, seed=i))
               for i in range(3)]
    methods = [VisibleOracle(), ResampledGT()]
    settings = Settings(num_points=2048, views=2, seed=0, num_steps=None, checkpoint_digest=None)
    results, timing = evaluate(sources, methods, settings, 'chamfer', tmp_path, num_plots=1,
                               progress=False)
    assert list(results) == ['oracle[none]', 'oracle[chamfer]', 'ceiling[chamfer]']
    assert all(len(r) == 3 for r in results.values())
    assert all(t['computed'] == 3 for t in timing.values())
    assert (tmp_path / 'plots' / 'sample_0.png').exists()
    assert (tmp_path / 'ply' / 'sample_0_oracle_none.ply').exists()
    cached = json.loads((tmp_path / 'cache' / 'oracle[none]' / 'sample_1.json').read_text())
    assert cached['settings']['num_points'] == 2048

    def fail():
        raise AssertionError('a cached sample was loaded again')

    again, timing2 = evaluate([SampleSource(s.sample_id, fail) for s in sources], methods,
                              settings, 'chamfer', tmp_path, num_plots=1, progress=False)
    assert report.json_safe(again) == report.json_safe(results)  # NaN == NaN as null
    assert all(t['cached'] == 3 for t in timing2.values())
    summary = report.summarize(results)
    md = report.markdown(summary, report.bootstrap_differences(results, num_resamples=200))
    assert '| ceiling[chamfer] | 3 |' in md and 'oracle[none]' in md
    # Changed settings are recomputed rather than served from the cache.
    other = Settings(num_points=1024, views=2, seed=0, num_steps=None, checkpoint_digest=None)
    _, timing3 = evaluate(sources[:1], methods[:1], other, 'none', tmp_path, num_plots=0,
                          progress=False)
    assert timing3['oracle[none]']['computed'] == 1


def test_help_documents_every_option():
    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text


@pytest.mark.slow
def test_model_wrappers_follow_the_method_contract(sample):
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    for method in (TrivialPrior(model, num_steps=2), ModelMethod(model, num_steps=2)):
        out = method.predict(sample, 64, seed=3)
        assert out['units'] == 'normalized'
        assert out['points'].shape == (64, 3) and out['points'].dtype == np.float32
        assert out['visibility'].dtype == bool and out['visibility_scores'].shape == (64,)
        again = method.predict(sample, 64, seed=3)
        np.testing.assert_array_equal(out['points'], again['points'])
        m = score_prediction(out, sample, ground_truth(sample), 'chamfer').metrics
        assert np.isfinite(m['complete/chamfer']) and 0 <= m['visibility/auroc'] <= 1


def test_model_depth_row_registers_and_snaps_like_the_node(sample, monkeypatch):
    """The model_depth row: the model's cloud through depth mode, view 1's GT depth as sensor."""
    def shrunken_gt(self, sample, num_points, seed):  # a model that places everything 10 % near
        visible = np.asarray(sample['points_visible'], dtype=bool)
        points = np.asarray(sample['points'], np.float64) * float(sample['median3_scale'])
        return {'points': (0.9 * points).astype(np.float32), 'visibility': visible,
                'visibility_scores': visible.astype(np.float64), 'units': 'normalized'}

    monkeypatch.setattr(ModelMethod, 'predict', shrunken_gt)
    gt = ground_truth(sample)
    plain = ModelMethod(None).predict(sample, 0, seed=0)
    out = ModelWithDepth(None).predict(sample, 0, seed=0)
    assert out['units'] == 'metric' and out['points'].shape == plain['points'].shape
    before = score_prediction(plain, sample, gt, 'none').metrics
    after = score_prediction(out, sample, gt, 'none').metrics
    assert before['complete/fscore@0.1'] < 0.5 < 0.9 < after['complete/fscore@0.1']
    assert after['visibility/auroc'] > 0.9
    # its cached results are keyed by the depth settings, which a plain model row lacks
    settings = Settings(num_points=64, views=2, seed=0, num_steps=4, checkpoint_digest='x')
    assert settings.key('none', 'model_depth')['depth'] == 'chamfer_shift+snap0.1'
    assert 'depth' not in settings.key('none', 'model')
