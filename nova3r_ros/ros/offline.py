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
The node's computation without ROS: the same keyframes, windows and per-window seed.

``replay_windows`` runs the node's ``KeyframeSelector`` and ``WindowBuilder`` over a bag's frames
in order (one camera, every frame offered, as the node sees them when nothing is dropped), and
``run_offline`` reconstructs each window with ``pipeline.run_window`` -- the function the node's
worker runs -- so the sampler draws the same noise (seeded from the view-1 stamp). Comparing the
two (``bag_eval`` scores both) shows what the ROS path loses: nothing, up to float rounding.

No rclpy here (only the node's ROS-free parts), so evaluation scripts can import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nova3r_ros import params as P
from nova3r_ros.geometry.scale import resolve_mode
from nova3r_ros.ros.keyframes import KeyframeSelector
from nova3r_ros.ros.pipeline import Frame, run_window, Settings
from nova3r_ros.ros.window import View, Window, WindowBuilder
import numpy as np


def load_parameters(path: str | Path | None, overrides: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Node parameter values: code defaults, then a ``/**`` params YAML, then overrides."""
    import yaml

    values = dict(P.DEFAULTS)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        for key in ('/**', 'nova3r', '/nova3r'):
            values.update((data.get(key) or {}).get('ros__parameters', {}))
    values.update(overrides or {})
    return values


def replay_windows(stamps_ns: np.ndarray, images: np.ndarray, values: Mapping[str, Any]
                   ) -> list[list[int]]:
    """
    Frame indices of every window the node forms from these frames, view 1 first.

    stamps_ns: (F,) int64 in arrival order; images: uint8 (F, H, W, 3) RGB of camera 0.
    """
    selector = KeyframeSelector(values['keyframe_min_interval'], values['keyframe_max_interval'],
                                values['keyframe_change_threshold'])
    builder = WindowBuilder(int(values['window_size']), int(values['window_stride']), 1)
    windows = []
    for index, stamp in enumerate(np.asarray(stamps_ns, dtype=np.int64)):
        stamp = int(stamp)
        image = images[index] if selector.wants_image(stamp) else None
        if not selector.update(stamp, image).is_keyframe:
            continue
        result = builder.push([View(stamp_ns=stamp, frame_id='', camera_index=0, payload=index)])
        if result.window is not None:
            windows.append([view.payload for view in result.window.views])
    return windows


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Return the worker's per-window settings for these parameter values (scale mode resolved)."""
    mode = resolve_mode(values['scale_mode'], bool(values['depth_topic'])).mode
    return Settings(num_points=int(values['num_points']), num_steps=int(values['num_steps']),
                    seed=int(values['seed']), oversample=float(values['oversample']),
                    visibility_threshold=float(values['visibility_threshold']),
                    scale_mode=mode, scale_factor=float(values['scale_factor']),
                    scale_min_pixels=int(values['scale_min_pixels']),
                    depth_scale_fit=str(values['depth_scale_fit']),
                    depth_snap=bool(values['depth_snap']),
                    depth_snap_tolerance=float(values['depth_snap_tolerance']),
                    colorize=False)


@contextmanager
def _node_threads(requested: int) -> Iterator[None]:
    """Torch CPU threads as the node's worker sets them (`torch_threads`), restored after."""
    from nova3r_ros.ros.model_loader import worker_threads
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(worker_threads(requested))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_offline(model: Any, stamps_ns: np.ndarray, images: np.ndarray, depths: np.ndarray,
                intrinsics: np.ndarray, windows: list[list[int]], values: Mapping[str, Any],
                progress: bool = True) -> dict[int, dict[str, Any]]:
    """
    Reconstruct each window as the node does; view-1 stamp -> cloud dict.

    images uint8 (F, H, W, 3); depths float32 (F, H, W) metres, 0 = invalid (used for view 1
    when the node has a depth topic); intrinsics (3, 3) of the images. The dicts hold
    ``points`` float32 (N, 3) (metres for metric scale modes), ``visibility`` bool (N,) and
    ``scale`` (None when the node would not publish the window).
    """
    from tqdm import tqdm

    settings = settings_from(values)
    # the node's compute precision and CPU threads too, so both compute the same clouds (the
    # thread count changes the order of a convolution's sums, and a point whose visibility sits
    # at the threshold then flips, and with it the depth scale fit)
    model.set_precision(str(values.get('precision', 'auto')))
    with_depth = bool(values['depth_topic'])
    size = (images.shape[2], images.shape[1])
    clouds: dict[int, dict[str, Any]] = {}
    with _node_threads(int(values.get('torch_threads', 0))):
        for sequence, indices in enumerate(tqdm(windows, desc='offline windows',
                                                disable=not progress)):
            views = []
            for k, i in enumerate(indices):
                extra = {}
                if k == 0:
                    extra = {'depth': depths[i] if with_depth else None,
                             'intrinsics': np.asarray(intrinsics, dtype=np.float64),
                             'intrinsics_size': size}
                views.append(View(stamp_ns=int(stamps_ns[i]), frame_id='', camera_index=0,
                                  payload=Frame(rgb=images[i], received_ns=0, **extra)))
            window = Window(views=tuple(views),
                            keyframe_stamps_ns=tuple(v.stamp_ns for v in views), num_cameras=1,
                            sequence=sequence)
            output = run_window(model, window, settings)
            if output.scale.scale is None:
                continue  # the node publishes nothing for this window either
            clouds[int(stamps_ns[indices[0]])] = {
                'points': output.points, 'visibility': output.visible, 'scale': output.scale.scale,
                'frame_id': ''}
    return clouds
