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

"""KeyframeSelector: timing rules, the change measure, time going backwards, and its cost."""


import cv2
from nova3r_ros.ros.keyframes import (
    grey_thumbnail,
    KeyframeSelector,
    photometric_change,
)
import numpy as np
import pytest

MS = 1_000_000  # nanoseconds
S = 1_000_000_000


def _texture(height: int = 600, width: int = 1200, seed: int = 0) -> np.ndarray:
    """Make a smooth textured grey-ish RGB panorama (blurred noise: structure at ~10 px scale)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigmaX=4.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


PANORAMA = _texture()


def _frame(shift_px: int = 0) -> np.ndarray:
    """640x480 crop of the panorama, the camera panned right by ``shift_px`` pixels."""
    return np.ascontiguousarray(PANORAMA[40:520, shift_px:shift_px + 640])


def test_thumbnail_shape_layouts_and_zero_mean():
    rgb = _frame()
    thumb = grey_thumbnail(rgb, 80)
    assert thumb.shape == (60, 80) and thumb.dtype == np.float32
    assert abs(float(thumb.mean())) < 1e-6
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # The same picture as mono8, mono16 and float [0, 1] scores (almost) the same thumbnail.
    for variant in (grey, grey[:, :, None], grey.astype(np.uint16) * 257,
                    grey.astype(np.float32) / 255):
        assert photometric_change(grey_thumbnail(variant, 80), thumb) < 2e-3
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5, 3), np.uint8),
                np.zeros((4, 4, 3), np.int32), [[1, 2]]):
        with pytest.raises(ValueError):
            grey_thumbnail(bad)  # type: ignore[arg-type]


def test_change_measure_grows_with_motion_and_ignores_exposure_offset():
    base = grey_thumbnail(_frame(0))
    rng = np.random.default_rng(1)
    noisy = np.clip(_frame(0) + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
    brighter = np.clip(_frame(0).astype(np.int16) + 20, 0, 255).astype(np.uint8)
    same = photometric_change(base, grey_thumbnail(_frame(0)))
    sensor_noise = photometric_change(base, grey_thumbnail(noisy))
    exposure = photometric_change(base, grey_thumbnail(brighter))
    moves = [photometric_change(base, grey_thumbnail(_frame(s))) for s in (2, 4, 16)]
    assert same == 0.0
    assert sensor_noise < 0.005 and exposure < 0.005
    assert moves[0] < moves[1] < moves[2]
    assert moves[2] > 0.02  # a 16 px pan of this texture passes the default threshold
    # A resolution change counts as a complete change.
    assert photometric_change(base, grey_thumbnail(_frame(0)[:240])) == float('inf')


def test_first_frame_is_keyframe_and_min_interval_limits_rate():
    selector = KeyframeSelector(min_interval=0.5, max_interval=3.0, change_threshold=0.02)
    keyframe_stamps = []
    # 10 Hz for 2 s, panning 40 px per frame: every frame is "changed", so only the interval
    # rule limits: keyframes at 0.0, 0.5, 1.0, 1.5 s.
    for i in range(20):
        decision = selector.update(i * 100 * MS, _frame(i * 25))
        if decision.is_keyframe:
            keyframe_stamps.append(i * 100 * MS)
            assert decision.reason == ('first' if i == 0 else 'change')
        else:
            assert decision.reason == 'too_soon'
    assert keyframe_stamps == [0, 500 * MS, 1000 * MS, 1500 * MS]
    assert selector.keyframes == 4 and selector.frames == 20


def test_static_camera_forced_by_max_interval_only():
    selector = KeyframeSelector(min_interval=0.5, max_interval=2.0, change_threshold=0.02)
    rng = np.random.default_rng(2)
    decisions = []
    for i in range(51):  # 10 Hz for 5 s, static scene with sensor noise
        noisy = np.clip(_frame(0) + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
        decisions.append(selector.update(i * 100 * MS, noisy))
    keyframes = [(i, d.reason) for i, d in enumerate(decisions) if d.is_keyframe]
    assert keyframes == [(0, 'first'), (20, 'max_interval'), (40, 'max_interval')]
    reasons = {d.reason for d in decisions if not d.is_keyframe}
    assert reasons == {'too_soon', 'no_change'}
    assert all(d.change < 0.005 for d in decisions if d.reason == 'no_change')


def test_change_threshold_decides_between_the_intervals():
    selector = KeyframeSelector(min_interval=0.2, max_interval=10.0, change_threshold=0.02)
    assert selector.update(0, _frame(0)).is_keyframe
    small = selector.update(300 * MS, _frame(2))  # small pan: below threshold
    assert not small.is_keyframe and small.reason == 'no_change'
    # Compared with the last *keyframe*, not the last frame: slow drift accumulates.
    drift = selector.update(600 * MS, _frame(24))
    assert drift.is_keyframe and drift.reason == 'change' and drift.change >= 0.02
    # Threshold 0 accepts any frame once min_interval has passed, even an identical one.
    selector.set_parameters(change_threshold=0.0)
    same = selector.update(900 * MS, _frame(24))
    assert same.is_keyframe and same.change == 0.0


def test_time_going_backwards_resets_once():
    selector = KeyframeSelector(min_interval=0.5, max_interval=2.0)
    for i in range(12):
        selector.update(10 * S + i * 100 * MS, _frame(i * 25))
    jump = selector.update(10 * S, _frame(0))  # bag loops back to its first stamp
    assert jump.is_keyframe and jump.time_reset and jump.reason == 'first'
    assert selector.resets == 1
    after = selector.update(10 * S + 100 * MS, _frame(25))
    assert not after.is_keyframe and not after.time_reset and after.reason == 'too_soon'
    later = selector.update(10 * S + 500 * MS, _frame(125))
    assert later.is_keyframe and not later.time_reset
    assert selector.resets == 1


def test_duplicate_stamp_and_wants_image():
    selector = KeyframeSelector(min_interval=0.5, max_interval=2.0)
    assert selector.wants_image(5 * S)
    selector.update(5 * S, _frame(0))
    duplicate = selector.update(5 * S, _frame(100))
    assert not duplicate.is_keyframe and duplicate.reason == 'duplicate'
    # Within min_interval the image is not needed, so the caller may skip decoding it.
    assert not selector.wants_image(5 * S + 499 * MS)
    assert not selector.update(5 * S + 499 * MS, None).is_keyframe
    assert selector.wants_image(5 * S + 500 * MS)
    assert selector.wants_image(4 * S)  # backwards: a reset keyframe needs the image
    with pytest.raises(ValueError, match='wants_image'):
        selector.update(5 * S + 600 * MS, None)


def test_parameter_validation_keeps_old_values():
    with pytest.raises(ValueError, match='max_interval'):
        KeyframeSelector(min_interval=1.0, max_interval=1.0)
    with pytest.raises(ValueError, match='change_threshold'):
        KeyframeSelector(change_threshold=-0.1)
    with pytest.raises(ValueError, match='min_interval'):
        KeyframeSelector(min_interval=float('nan'))
    selector = KeyframeSelector(min_interval=0.5, max_interval=3.0, change_threshold=0.02)
    with pytest.raises(ValueError):
        selector.set_parameters(min_interval=4.0)
    assert (selector.min_interval, selector.max_interval) == (0.5, 3.0)
    selector.set_parameters(min_interval=1.0, max_interval=4.0)
    assert (selector.min_interval, selector.max_interval) == (1.0, 4.0)
    with pytest.raises(ValueError, match='nanoseconds'):
        selector.update(1.5, _frame(0))  # type: ignore[arg-type]
    assert selector.update(np.int64(7), _frame(0)).is_keyframe
