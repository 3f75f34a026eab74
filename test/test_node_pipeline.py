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

"""One window through the model (micro checkpoint, random weights) and the inference worker."""

import logging

from nova3r_ros.geometry.depth_check import depth_residual
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros.pipeline import (
    colour_from_view,
    Frame,
    OCCLUDED_GREY,
    registration_problem,
    run_window,
    scaled_intrinsics,
    Settings,
    window_seed,
)
from nova3r_ros.ros.window import LatestWindowSlot, View, Window
from nova3r_ros.ros.worker import InferenceWorker
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return Nova3r(get_preset('micro')).eval()


def make_window(stamp_ns=5_000_000_000, sizes=((48, 64), (48, 64)), depth=None, k=None,
                seed=0) -> Window:
    rng = np.random.default_rng(seed)
    views = []
    for index, (h, w) in enumerate(sizes):
        frame = Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), received_ns=0,
                      depth=depth if index == 0 else None,
                      intrinsics=k if index == 0 else None,
                      intrinsics_size=(sizes[0][1], sizes[0][0]) if k is not None else None)
        views.append(View(stamp_ns + index, f'cam{index}_optical', 0, frame))
    return Window(tuple(views), (stamp_ns,), 1, 0)


class Logger:
    """Records rclpy-style log calls (accepts throttle_duration_sec)."""

    def __init__(self):
        self.records = []

    def _log(self, level, msg, **kwargs):
        self.records.append((level, msg))

    def error(self, msg, **kwargs):
        self._log('error', msg)

    def warning(self, msg, **kwargs):
        self._log('warning', msg)


def test_window_seed_is_stamp_based():
    assert window_seed(123, 0) == 123
    assert window_seed(123, 7) == 130
    assert window_seed(2**63 - 1, 0) == 0  # wraps into the generator's range


def test_run_window_reproducible_by_view1_stamp(model):
    settings = Settings(num_points=256, num_steps=3)
    a = run_window(model, make_window(), settings)
    b = run_window(model, make_window(), settings)
    c = run_window(model, make_window(stamp_ns=6_000_000_000), settings)
    assert a.points.shape == (256, 3) and a.points.dtype == np.float32
    assert np.all(np.isfinite(a.points)) and a.visible.dtype == bool
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.allclose(a.points, c.points)
    assert a.scale.mode == 'normalized' and a.scale.scale == 1.0 and not a.scale.is_metric
    assert {'preprocess', 'encode', 'sample', 'scale'} <= set(a.timings)


def test_offline_reproduction_matches_node_output(model):
    """What an evaluation script does: same images, same seed rule -> the same cloud."""
    from nova3r_ros.model import prepare_images

    window = make_window()
    settings = Settings(num_points=128, num_steps=2, seed=3)
    assert settings.oversample > 1.0  # the default filter is part of what is reproduced
    out = run_window(model, window, settings)
    images, _ = prepare_images([v.payload.rgb for v in window.views], model.cfg)
    gen = torch.Generator().manual_seed(window_seed(window.view1.stamp_ns, 3))
    ref = model.reconstruct(images[None], 128, 2, generator=gen, oversample=settings.oversample)
    np.testing.assert_allclose(out.points, ref['points'][0].numpy(), rtol=0, atol=1e-6)


def test_num_points_threshold_and_fixed_scale(model):
    window = make_window()
    base = run_window(model, window, Settings(num_points=200, num_steps=2))
    everything = run_window(model, window, Settings(num_points=200, num_steps=2,
                                                    visibility_threshold=0.0))
    nothing = run_window(model, window, Settings(num_points=200, num_steps=2,
                                                 visibility_threshold=1.0))
    assert everything.visible.all() and not nothing.visible.any()
    scaled = run_window(model, window, Settings(num_points=200, num_steps=2,
                                                scale_mode='fixed', scale_factor=2.5))
    np.testing.assert_allclose(scaled.points, base.points * 2.5, rtol=1e-6)
    assert scaled.scale.is_metric


def test_cameras_of_different_sizes_are_accepted(model):
    out = run_window(model, make_window(sizes=((48, 64), (120, 90))), Settings(256, 2))
    assert out.points.shape == (256, 3) and np.all(np.isfinite(out.points))


def test_depth_scale_recovers_known_factor(model):
    """
    Check the known answer: depth = 2 x the z-buffer of the visible points gives scale 2.

    The depth is 2 x the z-buffer of the predicted visible points, so the median ratio is
    exactly 2; the default chamfer fit's own accuracy is tested in test_scale.py.
    """
    from nova3r_ros.geometry.scale import zbuffer

    k = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    window = make_window(k=k)
    settings = Settings(num_points=2048, num_steps=2, visibility_threshold=0.0)
    first = run_window(model, window, settings)
    z = zbuffer(first.points, k, 48, 64)
    depth = np.where(np.isfinite(z), 2.0 * z, 0.0).astype(np.float32)
    depth[0, :] = np.nan  # invalid pixels never count
    out = run_window(model, make_window(k=k, depth=np.nan_to_num(depth, nan=0.0)),
                     Settings(num_points=2048, num_steps=2, visibility_threshold=0.0,
                              scale_mode='depth', scale_min_pixels=10,
                              depth_scale_fit='median_ratio', depth_snap=False))
    assert out.scale.is_metric and out.scale.scale == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(out.points, first.points * 2.0, rtol=1e-5)
    # the default fit (chamfer_shift): a depth image of the cloud moved by `offset` gives about
    # that shift, and every point, occluded ones too, is moved by the fitted scale and shift
    offset = np.array([0.05, 0.0, 0.1], dtype=np.float32)
    z = zbuffer(first.points + offset, k, 48, 64)
    moved = np.where(np.isfinite(z), z, 0.0).astype(np.float32)
    fitted = run_window(model, make_window(k=k, depth=moved),
                        Settings(num_points=2048, num_steps=2, visibility_threshold=0.0,
                                 scale_mode='depth', scale_min_pixels=10, depth_snap=False))
    assert fitted.scale.is_metric and fitted.scale.scale is not None
    assert fitted.scale.scale == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(fitted.scale.shift, offset, atol=0.01)
    np.testing.assert_allclose(
        fitted.points, first.points * fitted.scale.scale + np.asarray(fitted.scale.shift),
        rtol=1e-5, atol=1e-5)
    assert fitted.snapped == 0
    # depth_snap (default): the points the depth sees through or on are moved onto it along
    # their ray and labelled visible; the others are published where the fit put them
    snapped = run_window(model, make_window(k=k, depth=moved),
                         Settings(num_points=2048, num_steps=2, visibility_threshold=0.0,
                                  scale_mode='depth', scale_min_pixels=10))
    assert snapped.points.shape == fitted.points.shape and snapped.snapped > 100
    residual, measured = depth_residual(fitted.points, moved, k)
    on = np.isfinite(residual) & (residual <= 0.1 * np.nan_to_num(measured))
    assert np.count_nonzero(on) == snapped.snapped
    np.testing.assert_allclose(snapped.points[on, 2], measured[on], rtol=1e-5)
    np.testing.assert_allclose(snapped.points[on, :2] / snapped.points[on, 2:],
                               fitted.points[on, :2] / fitted.points[on, 2:], atol=1e-5)
    np.testing.assert_array_equal(snapped.points[~on], fitted.points[~on])
    assert snapped.visible[on].all()  # the labels of the others: test_depth_check
    missing = run_window(model, window, Settings(num_points=64, num_steps=1,
                                                 scale_mode='depth'))
    assert missing.scale.scale is None and 'depth' in missing.scale.reason
    # a depth at twice the resolution is registered (K resized); a crop of it is not, and used
    # to give a scale off by the crop without a word
    assert registration_problem((128, 96), (64, 48)) is None
    assert registration_problem((641, 480), (640, 480)) is None  # within 1 %
    cropped = run_window(model, make_window(k=k, depth=depth[:, 8:56].copy()),
                         Settings(num_points=256, num_steps=1, scale_mode='depth',
                                  scale_min_pixels=10))
    assert cropped.scale.scale is None and not cropped.scale.is_metric
    assert 'depth image 48x48 and camera_info 64x48 differ in aspect' in cropped.scale.reason


def test_scaled_intrinsics_and_colour_known_answers():
    k = np.array([[100.0, 0, 49.5], [0, 100.0, 39.5], [0, 0, 1]])
    half = scaled_intrinsics(k, (100, 80), (50, 40))
    np.testing.assert_allclose(half, [[50, 0, 24.5], [0, 50, 19.5], [0, 0, 1]])
    k = np.array([[100.0, 0, 49.0], [0, 100.0, 39.0], [0, 0, 1]])  # pixel centres: integers
    rgb = np.zeros((80, 100, 3), np.uint8)
    rgb[39, 49] = (10, 20, 30)
    rgb[39, 59] = (1, 2, 3)
    points = np.array([[0, 0, 2.0], [0.2, 0, 2.0], [0, 0, 2.0], [0, 0, -1.0], [50, 0, 1.0]])
    visible = np.array([True, True, False, True, True])
    colours = colour_from_view(points, visible, rgb, k)
    np.testing.assert_array_equal(colours[0], (10, 20, 30))  # centre pixel
    np.testing.assert_array_equal(colours[1], (1, 2, 3))  # u = 100 * 0.1 + 49 = 59
    for row in (2, 3, 4):  # occluded, behind the camera, outside the image
        np.testing.assert_array_equal(colours[row], (OCCLUDED_GREY,) * 3)


def test_colorize_adds_rgb(model):
    k = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    out = run_window(model, make_window(k=k), Settings(num_points=64, num_steps=1,
                                                       colorize=True))
    assert out.rgb.shape == (64, 3) and out.rgb.dtype == np.uint8
    # colour is read where the points are published: after the depth fit's shift and the snap
    # (it was read before the shift, so every visible point took a neighbour pixel's colour)
    depth = np.full((48, 64), 2.0, np.float32)
    window = make_window(k=k, depth=depth)
    shifted = run_window(model, window, Settings(num_points=512, num_steps=1, colorize=True,
                                                 visibility_threshold=0.0, scale_mode='depth',
                                                 scale_min_pixels=10))
    assert shifted.scale.scale is not None and any(shifted.scale.shift)
    expected = colour_from_view(shifted.points, shifted.visible, window.view1.payload.rgb, k)
    np.testing.assert_array_equal(shifted.rgb, expected)


class FailingOnce(torch.nn.Module):
    """Wraps a model; the first encode raises, like a CUDA OOM or a shape bug would."""

    def __init__(self, inner, nan_points=False):
        super().__init__()
        self.inner = inner
        self.cfg = inner.cfg
        self.calls = 0
        self.nan_points = nan_points

    @property
    def device(self):
        return self.inner.device

    def encode_views(self, images):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError('boom inside the model')
        return self.inner.encode_views(images)

    def sample(self, *args, **kwargs):
        out = self.inner.sample(*args, **kwargs)
        if self.nan_points:
            out['points'][0, :5] = float('nan')
            out['points'][0, 5, 2] = float('inf')
        return out


def test_worker_counts_model_exception_and_keeps_running(model):
    logger = Logger()
    published = []
    worker = InferenceWorker(FailingOnce(model, nan_points=True), LatestWindowSlot(),
                             lambda: Settings(num_points=32, num_steps=1),
                             lambda w, out: published.append(out), lambda: True, logger)
    window = make_window()
    assert worker.process(window) is False
    assert worker.windows_failed == 1 and 'boom inside the model' in worker.last_error
    assert logger.records[0][0] == 'error'
    assert worker.process(window) is True
    assert worker.windows_done == 1 and len(published) == 1
    # NaN/Inf from the model never reach the publisher
    assert published[0].points.shape == (26, 3) and np.all(np.isfinite(published[0].points))
    assert worker.nonfinite_points == 6
    assert worker.latency.count == 1 and worker.stages['sample'].count == 1


def test_worker_thread_newest_wins_skip_and_stop(model):
    listening = {'on': False}
    published = []
    slot = LatestWindowSlot()
    worker = InferenceWorker(model, slot, lambda: Settings(num_points=16, num_steps=1),
                             lambda w, out: published.append(w.sequence),
                             lambda: listening['on'], logging.getLogger('test'))
    worker.start()
    slot.put(make_window())
    deadline = __import__('time').monotonic() + 30
    while worker.windows_skipped == 0 and __import__('time').monotonic() < deadline:
        __import__('time').sleep(0.01)
    assert worker.windows_skipped == 1 and not published
    listening['on'] = True
    slot.put(make_window())
    while not published and __import__('time').monotonic() < deadline:
        __import__('time').sleep(0.01)
    assert published == [0]
    assert worker.stop(timeout=10) and not worker.alive
