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
Scale modes: turning model-unit clouds into metres (ROS-free; numpy, scipy for the fit).

NOVA3R predicts view-1 points up to scale (median distance ~3, "normalized"). REP-103 says
metres, so the node multiplies the points by a scale from one of these modes:

- ``depth``: a depth image registered to view 1 gives metres. The points labelled visible are
  projected into view 1 and z-buffered at pixel resolution (nearest point per pixel wins);
  pixels valid in both (depth finite and > 0, a point with z > 0) gate the estimate (too few
  gives no scale (None) and a reason). Three fits (node parameter ``depth_scale_fit``):
  ``chamfer_shift`` (default): as ``chamfer`` below, and the fitted shift is kept too, so the
  cloud is moved onto the measured surface in view 1's frame. The predicted cloud is misplaced
  by ~0.4 model units on average (the evaluation's alignment, docs/training_status.md session
  26); the depth image fixes most of that: on 100 held-out scenes (K=2, GT depth) the published
  cloud's F@0.1 against the complete GT, without any alignment to it, rises from 0.40 to 0.58
  (precision@0.1 0.34 to 0.54; ``tools/depth_shift_study.py``). A shift longer than
  ``SHIFT_TRUST`` x the median valid depth (a degenerate fit) is dropped, as is any shift when
  the scale falls back to the ratio.
  ``chamfer``: scale (and a discarded shift) registering the visible points that
  land on valid depth pixels onto the depth image's back-projected surface, by the
  evaluation's own Chamfer fit. A non-pixel-aligned cloud spreads around the surfaces, so a
  per-pixel ratio depends on which stray point lands in each pixel; a set-to-set fit weighs
  the whole visible surface, as the evaluation's alignment does (`nova3r_demo
  --depth-scale-fit` compares the two on the demo bag, docs/replay.md). The fit runs from two
  starts that both follow a rescaling of the points (the median ratio below and moment
  matching) and keeps the better: stray points near the camera can put the ratio far off, and
  a fit from there alone stays in that basin (3 of the demo bag's 23 windows did). It falls
  back to the ratio when the two disagree by more than ``CHAMFER_TRUST`` (a degenerate fit,
  e.g. depth valid on a thin strip only).
  ``median_ratio``: median(depth / z) over the valid pixels (cheaper; exact for a sharp cloud).
- ``fixed``: a factor the user gives (e.g. from a known object size); taken as metric.
- ``normalized``: 1.0, model units; the cloud is flagged as not metric.
- ``auto`` (parameter value only): ``depth`` when a depth topic is configured, else
  ``normalized`` with a warning that the output is not metric.
"""

from __future__ import annotations

from dataclasses import dataclass

# at import, not in the first window: the evaluation package takes ~1 s to load
from nova3r_ros.geometry.align import Alignment, fit_chamfer
import numpy as np

MODES = ('auto', 'depth', 'fixed', 'normalized')
DEFAULT_MIN_PIXELS = 50
DEPTH_FITS = ('chamfer_shift', 'chamfer', 'median_ratio')
DEPTH_FIT_POINTS = 2048  # points of each side the chamfer fit uses (fixed subsets)
CHAMFER_TRUST = 3.0  # chamfer scale kept only within this factor of the median ratio
SHIFT_TRUST = 0.5  # chamfer_shift: a shift kept only up to this fraction of the median depth
# Metres per model unit a depth fit may return: the scale_factor parameter's range. Beyond it
# the depth is not in metres (a 32FC1 image in millimetres, a sentinel value): the window
# is refused with the reason rather than published at an absurd (or float32-overflowing) size.
SCALE_RANGE = (1e-6, 1e6)

NOT_METRIC_WARNING = (
    "scale_mode 'auto' without a depth_topic: the cloud is in model units (median distance "
    '~3), not metres'
)


@dataclass(frozen=True)
class ScaleResult:
    """
    The scale for one window.

    Attributes
    ----------
    scale
        multiply model-unit points by this to get the output units; None when the mode
        could not produce one (see ``reason``).
    mode
        the mode that produced it ('depth', 'fixed' or 'normalized').
    is_metric
        True when the scaled cloud is in metres.
    num_pixels
        pixels used (``depth`` mode; 0 otherwise).
    reason
        empty when ``scale`` is set, else why not.
    shift
        added after scaling (output units, view-1 optical frame); zero unless the ``depth``
        mode's ``chamfer_shift`` fit registered the cloud onto the depth image.

    """

    scale: float | None
    mode: str
    is_metric: bool
    num_pixels: int = 0
    reason: str = ''
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Model-unit points (N, 3) -> output units, float32 (needs ``scale``)."""
        if self.scale is None:
            raise ValueError(f'no {self.mode} scale to apply ({self.reason})')
        out = np.asarray(points, dtype=np.float32)
        if self.scale != 1.0:
            out = out * np.float32(self.scale)  # SCALE_RANGE keeps this finite
        if any(self.shift):
            out = out + np.asarray(self.shift, dtype=np.float32)
        return out


@dataclass(frozen=True)
class ResolvedMode:
    """A concrete scale mode and the start-up warning to publish on diagnostics (or None)."""

    mode: str
    warning: str | None = None


def resolve_mode(mode: str, depth_configured: bool) -> ResolvedMode:
    """
    Turn the ``scale_mode`` parameter into a concrete mode.

    ``auto`` gives ``depth`` when a depth topic is configured, else ``normalized`` with
    ``NOT_METRIC_WARNING``. An explicit ``depth`` without a depth topic is a configuration
    error (ValueError), so the node fails at start-up instead of publishing nothing.
    """
    if mode not in MODES:
        raise ValueError(f'scale_mode must be one of {MODES}, got {mode!r}')
    if mode == 'auto':
        if depth_configured:
            return ResolvedMode('depth')
        return ResolvedMode('normalized', NOT_METRIC_WARNING)
    if mode == 'depth' and not depth_configured:
        raise ValueError("scale_mode 'depth' needs a depth_topic registered to view 1")
    if mode == 'normalized':
        return ResolvedMode('normalized', "scale_mode 'normalized': the cloud is not metric")
    return ResolvedMode(mode)


def fixed_scale(factor: float) -> ScaleResult:
    """Return the ``fixed`` mode result: a user-given factor (finite, > 0), taken as metres."""
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f'fixed scale factor must be finite and > 0, got {factor}')
    return ScaleResult(float(factor), 'fixed', is_metric=True)


def normalized_scale() -> ScaleResult:
    """Return the ``normalized`` mode result: model units (scale 1), flagged as not metric."""
    return ScaleResult(1.0, 'normalized', is_metric=False)


def _check_depth_inputs(
    points: np.ndarray, visible: np.ndarray | None, depth: np.ndarray, intrinsics: np.ndarray
) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    if visible is not None and visible.shape != (points.shape[0],):
        raise ValueError(
            f'visible must be (N,) = ({points.shape[0]},), got shape {visible.shape}'
        )
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f'depth must be a non-empty (H, W) image, got shape {depth.shape}')
    if intrinsics.shape != (3, 3) or not np.all(np.isfinite(intrinsics)):
        raise ValueError(f'intrinsics must be a finite (3, 3) matrix, got {intrinsics!r}')
    if intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0:
        raise ValueError(
            f'intrinsics focal lengths must be > 0, got fx={intrinsics[0, 0]}, '
            f'fy={intrinsics[1, 1]}'
        )


def zbuffer(points: np.ndarray, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """
    Nearest point depth per pixel of view 1.

    Parameters
    ----------
    points
        (N, 3) in view 1's optical frame (x right, y down, z forward), any unit.
    intrinsics
        (3, 3) pinhole matrix of the (height, width) pixel grid; pixel centres at
        integer coordinates (OpenCV convention).
    height, width
        image size in pixels.

    Returns
    -------
    np.ndarray
        float64 (height, width): smallest z of the points falling in each pixel, inf where no
        point with z > 0 (and finite coordinates) projects.

    """
    z_buffer = np.full(height * width, np.inf)
    index, row, col = pixels_of(points, intrinsics, height, width)
    np.minimum.at(z_buffer, row * width + col, np.asarray(points, np.float64)[index, 2])
    return z_buffer.reshape(height, width)


def pixels_of(points: np.ndarray, intrinsics: np.ndarray, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Which points project into a (height, width) image, and onto which pixel.

    Returns the indices of the points that are finite, in front of the camera (z > 0) and
    inside the image, and their int64 pixel rows and columns (nearest pixel centre, OpenCV
    convention: centres at integer coordinates; K's skew term included).
    """
    points = np.asarray(points, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    front = np.flatnonzero(np.all(np.isfinite(points), axis=1) & (points[:, 2] > 0))
    x, y, z = (points[front, i] for i in range(3))
    with np.errstate(over='ignore', invalid='ignore'):  # a point grazing z = 0: not inside
        col = np.floor(k[0, 0] * (x / z) + k[0, 1] * (y / z) + k[0, 2] + 0.5)
        row = np.floor(k[1, 1] * (y / z) + k[1, 2] + 0.5)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return front[inside], row[inside].astype(np.int64), col[inside].astype(np.int64)


def depth_scale(
    points: np.ndarray,
    visible: np.ndarray | None,
    depth: np.ndarray,
    intrinsics: np.ndarray,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    fit: str = 'chamfer',
) -> ScaleResult:
    """
    ``depth`` mode: metres per model unit from a depth image registered to view 1.

    Parameters
    ----------
    points
        (N, 3) predicted points, model units, view-1 optical frame.
    visible
        (N,) bool visibility labels (only visible points are projected: amodal points
        lie behind the surface the depth camera sees); None uses every point.
    depth
        (H, W) float depth in metres along optical z; 0, negative, NaN or Inf = invalid.
    intrinsics
        (3, 3) intrinsics of ``depth``'s pixel grid. When the depth image was
        resized/cropped like the model input, pass the intrinsics adjusted the same way.
    min_pixels
        fewest pixels valid in both for a scale.
    fit
        'chamfer_shift', 'chamfer' or 'median_ratio' (module docstring).

    Returns
    -------
    ScaleResult
        The fitted scale, or scale None and a reason.

    """
    points = np.asarray(points)
    depth = np.asarray(depth)
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    visible = None if visible is None else np.asarray(visible, dtype=bool)
    _check_depth_inputs(points, visible, depth, intrinsics)
    if min_pixels < 1:
        raise ValueError(f'min_pixels must be >= 1, got {min_pixels}')
    if fit not in DEPTH_FITS:
        raise ValueError(f'depth fit must be one of {DEPTH_FITS}, got {fit!r}')
    used = points if visible is None else points[visible]
    height, width = depth.shape
    z_buffer = zbuffer(used, intrinsics, height, width)
    depth64 = depth.astype(np.float64)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth64) & (depth64 > 0) & np.isfinite(z_buffer)
    num_pixels = int(np.count_nonzero(valid))
    if num_pixels < min_pixels:
        if used.shape[0] == 0:
            reason = 'no points labelled visible'
        elif not np.any(np.isfinite(z_buffer)):
            reason = 'no visible point projects into view 1 in front of the camera'
        else:
            reason = (f'only {num_pixels} pixels have both a valid depth and a projected '
                      f'visible point (need {min_pixels})')
        return ScaleResult(None, 'depth', is_metric=False, num_pixels=num_pixels, reason=reason)
    scale = float(np.median(depth64[valid] / z_buffer[valid]))
    shift = (0.0, 0.0, 0.0)
    if fit != 'median_ratio' and np.isfinite(scale) and scale > 0:
        refined = _chamfer_fit(used, depth64, intrinsics, scale)
        # a set fit can degenerate (few points on a thin strip of valid depth): keep the
        # ratio when the two disagree by more than CHAMFER_TRUST
        if refined is not None and abs(np.log(refined.scale / scale)) <= np.log(CHAMFER_TRUST):
            scale = refined.scale
            reach = SHIFT_TRUST * float(np.median(depth64[valid]))
            if fit == 'chamfer_shift' and np.linalg.norm(refined.shift) <= reach:
                shift = refined.shift
    if not np.isfinite(scale) or scale <= 0:
        return ScaleResult(None, 'depth', is_metric=False, num_pixels=num_pixels,
                           reason=f'median depth ratio is not a positive number ({scale})')
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return ScaleResult(None, 'depth', is_metric=False, num_pixels=num_pixels,
                           reason=f'depth scale {scale:.3g} m per model unit is outside '
                                  f'[{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}]: is the depth '
                                  'image in metres (32FC1) or millimetres (16UC1)?')
    return ScaleResult(scale, 'depth', is_metric=True, num_pixels=num_pixels, shift=shift)


def backproject(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(M, 3) points of the valid pixels (finite, > 0) of a depth image, its optical frame."""
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[rows, cols]
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    y = (rows - cy) / fy
    x = (cols - cx - intrinsics[0, 1] * y) / fx
    return np.stack([x * z, y * z, z], axis=1)


def _on_valid_depth(points: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray
                    ) -> np.ndarray:
    """Rows of `points` (finite, z > 0) whose view-1 pixel holds a valid depth (> 0, finite)."""
    index, row, col = pixels_of(points, intrinsics, *depth.shape)
    with np.errstate(invalid='ignore'):
        value = depth[row, col]
        valid = np.isfinite(value) & (value > 0)
    return points[index[valid]]


def _chamfer_fit(points: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray,
                 start: float) -> Alignment | None:
    """
    Return the chamfer fit (scale, shift) of the points onto the back-projected depth surface.

    Only points that land on valid depth pixels take part; None when too few do or the fit is
    not finite.

    Starts from the median ratio `start` and from moment matching (both follow any rescaling
    of the points, so the fit does too); the better objective wins. Deterministic (fixed
    subset seed): the node and an offline rerun agree.
    """
    pred = _on_valid_depth(points.astype(np.float64), depth, intrinsics)
    if len(pred) < 10:
        return None
    surface = backproject(depth, intrinsics)
    fitted = fit_chamfer(pred, surface, max_points=DEPTH_FIT_POINTS, seed=0, workers=1,
                         start_scale=start)
    if not (np.isfinite(fitted.scale) and fitted.scale > 0 and np.all(np.isfinite(fitted.shift))):
        return None
    return fitted


def compute_scale(
    mode: str,
    *,
    points: np.ndarray | None = None,
    visible: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
    fixed_factor: float = 1.0,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    depth_fit: str = 'chamfer',
) -> ScaleResult:
    """
    Scale for one window in a resolved mode ('depth', 'fixed' or 'normalized').

    In ``depth`` mode a missing depth image or intrinsics (no synchronized depth frame or
    camera_info for this window) gives scale None with a reason rather than an error, so the
    node can count it and go on.
    """
    if mode == 'normalized':
        return normalized_scale()
    if mode == 'fixed':
        return fixed_scale(fixed_factor)
    if mode == 'depth':
        if points is None:
            raise ValueError("scale mode 'depth' needs the predicted points")
        if depth is None:
            return ScaleResult(None, 'depth', is_metric=False,
                               reason='no depth image for view 1 in this window')
        if intrinsics is None:
            return ScaleResult(None, 'depth', is_metric=False,
                               reason='no camera_info (intrinsics) for view 1 in this window')
        return depth_scale(points, visible, depth, intrinsics, min_pixels, depth_fit)
    raise ValueError(
        f"compute_scale needs a resolved mode ('depth', 'fixed' or 'normalized'), got {mode!r}"
        + (' (call resolve_mode first)' if mode == 'auto' else '')
    )
