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
One window through the model: preprocess -> encode -> sample -> scale -> label (ROS-free).

``run_window`` is what the node's inference worker runs, and what offline evaluation can call
to reproduce the node's output exactly: the sampler noise comes from a CPU ``torch.Generator``
seeded with ``window_seed(view-1 stamp, seed)``.

Preprocessing is the model config's rule (``nova3r_ros.model.preprocess.prepare_images``:
resize to cover the model input, centre crop; each view on its own, so cameras of different
sizes are accepted). Output points are in view 1's optical frame (x right, y down, z forward),
multiplied by the window's scale (metres when the scale mode is metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import time

from nova3r_ros.geometry.depth_check import DEFAULT_TOLERANCE, snap_to_depth
from nova3r_ros.geometry.scale import compute_scale, ScaleResult
from nova3r_ros.model import Nova3r, prepare_images
from nova3r_ros.params import DEFAULTS
from nova3r_ros.ros.window import Window
import numpy as np
import torch

SEED_MODULUS = 2**63 - 1
OCCLUDED_GREY = 128  # rgb of points with no colour from view 1


def window_seed(view1_stamp_ns: int, seed: int = 0) -> int:
    """
    Sampler seed of a window: ``(seed + view-1 stamp in ns) mod (2^63 - 1)``.

    Depends only on the base seed and view 1's header stamp, so a replayed bag (or an offline
    script holding the same images and stamp) draws the same noise as the node.
    """
    return (int(seed) + int(view1_stamp_ns)) % SEED_MODULUS


@dataclass(frozen=True)
class Frame:
    """
    A view's data as the worker needs it (``View.payload``).

    Attributes
    ----------
    rgb
        uint8 (H, W, 3) RGB, decoded off the executor thread.
    received_ns
        steady (monotonic) time the message reached the callback, ns.
    depth
        float32 (H_d, W_d) metres, 0 = invalid, registered to this camera, or None.
    intrinsics
        (3, 3) pinhole K of this camera at ``intrinsics_size``, or None.
    intrinsics_size
        (width, height) of the image K belongs to (from CameraInfo).

    """

    rgb: np.ndarray
    received_ns: int
    depth: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    intrinsics_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Settings:
    """Runtime settings read once per window (swapped atomically by the node)."""

    num_points: int = 8192
    num_steps: int = DEFAULTS['num_steps']
    seed: int = 0
    oversample: float = 2.0  # draw num_points x this, publish the best num_points of them
    visibility_threshold: float = 0.5
    scale_mode: str = 'normalized'  # resolved: 'depth', 'fixed' or 'normalized'
    scale_factor: float = 1.0
    scale_min_pixels: int = 50
    depth_scale_fit: str = 'chamfer_shift'  # scale.DEPTH_FITS
    depth_snap: bool = True  # depth mode: move points onto the measured surface (depth_check)
    depth_snap_tolerance: float = DEFAULT_TOLERANCE
    colorize: bool = False
    max_window_bytes: int = 268_435_456  # decoded images (RGB + depth) larger: window dropped


@dataclass
class WindowOutput:
    """
    Result of ``run_window``.

    Attributes
    ----------
    points
        float32 (N', 3) finite points, view-1 optical frame, scaled (N' <= num_points).
    visible
        bool (N',) visibility labels.
    rgb
        uint8 (N', 3) or None.
    scale
        the window's ScaleResult (``scale`` None: not published, see ``reason``).
    nonfinite
        points dropped because the model produced NaN/Inf.
    snapped
        points moved onto view 1's measured depth (``depth_snap``; 0 when off or not depth).
    timings
        stage name -> seconds (steady clock).

    """

    points: np.ndarray
    visible: np.ndarray
    rgb: np.ndarray | None
    scale: ScaleResult
    nonfinite: int
    timings: dict[str, float] = field(default_factory=dict)
    snapped: int = 0


def scaled_intrinsics(intrinsics: np.ndarray, from_size: tuple[int, int],
                      to_size: tuple[int, int]) -> np.ndarray:
    """K of a (width, height) image -> K of the same camera resized to ``to_size``."""
    k = np.asarray(intrinsics, dtype=np.float64).copy()
    if tuple(from_size) == tuple(to_size):
        return k
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    k[0, 0] *= sx
    k[0, 1] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def registration_problem(depth_size: tuple[int, int], info_size: tuple[int, int],
                         tolerance: float = 0.01) -> str | None:
    """
    Why a depth image cannot be registered to camera 0's CameraInfo, or None.

    The depth is mapped to the colour camera by resizing K, which is right for a depth image
    registered to it at another resolution and wrong for any other shape (a crop, the depth
    sensor's own image): the scale would be off by the crop without any error.
    """
    depth_aspect = depth_size[0] / depth_size[1]
    info_aspect = info_size[0] / info_size[1]
    if abs(np.log(depth_aspect / info_aspect)) <= np.log1p(tolerance):
        return None
    return (f'depth image {depth_size[0]}x{depth_size[1]} and camera_info '
            f'{info_size[0]}x{info_size[1]} differ in aspect ratio: the depth is not '
            'registered to camera 0, so it gives no scale')


def colour_from_view(points: np.ndarray, visible: np.ndarray, rgb: np.ndarray,
                     intrinsics: np.ndarray) -> np.ndarray:
    """
    uint8 (N, 3): colour of view 1 at each visible point's pixel, grey elsewhere.

    points (N, 3) view-1 optical frame (any unit), intrinsics K of ``rgb``'s pixel grid.
    """
    out = np.full((points.shape[0], 3), OCCLUDED_GREY, np.uint8)
    height, width = rgb.shape[:2]
    z = points[:, 2]
    front = visible & (z > 0)
    with np.errstate(divide='ignore', invalid='ignore'):
        u = np.floor(intrinsics[0, 0] * points[:, 0] / z + intrinsics[0, 1] * points[:, 1] / z
                     + intrinsics[0, 2] + 0.5)
        v = np.floor(intrinsics[1, 1] * points[:, 1] / z + intrinsics[1, 2] + 0.5)
    inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    out[inside] = rgb[v[inside].astype(np.int64), u[inside].astype(np.int64)]
    return out


def window_bytes(window: Window) -> int:
    """Bytes of a window's decoded images: every view's RGB plus any depth image."""
    total = 0
    for view in window.views:
        frame = view.payload
        if isinstance(frame, Frame):
            total += frame.rgb.nbytes + (0 if frame.depth is None else frame.depth.nbytes)
    return total


def _now() -> float:
    return time.perf_counter()


def run_window(model: Nova3r, window: Window, settings: Settings) -> WindowOutput:
    """
    Reconstruct one window (views in ``window.views`` order, payloads are ``Frame``).

    Raises ValueError for views without a decoded image; model exceptions propagate (the
    worker counts them).
    """
    frames: Sequence[Frame] = [view.payload for view in window.views]
    for view, frame in zip(window.views, frames, strict=True):
        if not isinstance(frame, Frame):
            raise ValueError(f'view of camera {view.camera_index} has no decoded frame')
    timings: dict[str, float] = {}
    start = _now()
    images, _ = prepare_images([frame.rgb for frame in frames], model.cfg)
    images = images[None].to(model.device)  # (1, K, 3, H, W) in [0, 1]
    timings['preprocess'] = _now() - start

    generator = torch.Generator(device='cpu')
    generator.manual_seed(window_seed(window.view1.stamp_ns, settings.seed))
    start = _now()
    with torch.inference_mode():
        tokens, surface = model.encode_views(images)
        if model.device.type == 'cuda':
            torch.cuda.synchronize(model.device)
        timings['encode'] = _now() - start
        start = _now()
        sample = model.sample(tokens, settings.num_points, settings.num_steps,
                              generator=generator, oversample=settings.oversample,
                              surface=surface)
        points = sample['points'][0].float().cpu().numpy()  # (N, 3) model units
        logits = sample['visibility_logits'][0].float().cpu().numpy()  # (N,)
    timings['sample'] = _now() - start

    start = _now()
    finite = np.isfinite(points).all(axis=1) & np.isfinite(logits)
    nonfinite = int(points.shape[0] - np.count_nonzero(finite))
    if nonfinite:
        points, logits = points[finite], logits[finite]
    threshold = float(np.clip(settings.visibility_threshold, 1e-7, 1 - 1e-7))
    visible = logits >= np.log(threshold / (1.0 - threshold))  # sigmoid(logit) >= threshold
    view1 = frames[0]
    intrinsics = None
    if view1.intrinsics is not None and view1.intrinsics_size is not None:
        intrinsics = (view1.intrinsics, view1.intrinsics_size)
    depth_k, depth_problem = None, None
    if view1.depth is not None and intrinsics is not None:
        depth_size = (view1.depth.shape[1], view1.depth.shape[0])
        depth_problem = registration_problem(depth_size, intrinsics[1])
        depth_k = scaled_intrinsics(intrinsics[0], intrinsics[1], depth_size)
    if settings.scale_mode == 'depth' and depth_problem:
        scale = ScaleResult(None, 'depth', is_metric=False, reason=depth_problem)
    else:
        scale = compute_scale(settings.scale_mode, points=points, visible=visible,
                              depth=view1.depth, intrinsics=depth_k,
                              fixed_factor=settings.scale_factor,
                              min_pixels=settings.scale_min_pixels,
                              depth_fit=settings.depth_scale_fit)
    snapped = 0
    if scale.scale is not None:
        points = scale.apply(points)
        if settings.scale_mode == 'depth' and settings.depth_snap and depth_k is not None:
            # the scale registered the cloud onto this depth image: same frame and unit
            snap = snap_to_depth(points, visible, view1.depth, depth_k,
                                 settings.depth_snap_tolerance, single_view=len(frames) == 1)
            points, visible, snapped = snap.points, snap.visible, snap.num_snapped
    timings['scale'] = _now() - start

    rgb = None
    if settings.colorize and intrinsics is not None:
        start = _now()  # on the published points: a projection ignores the scale, not the shift
        rgb_size = (view1.rgb.shape[1], view1.rgb.shape[0])
        rgb_k = scaled_intrinsics(intrinsics[0], intrinsics[1], rgb_size)
        rgb = colour_from_view(points, visible, view1.rgb, rgb_k)
        timings['colour'] = _now() - start
    return WindowOutput(points=points.astype(np.float32, copy=False), visible=visible, rgb=rgb,
                        scale=scale, nonfinite=nonfinite, timings=timings, snapped=snapped)
