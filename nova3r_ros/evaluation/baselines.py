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
Methods scored by the evaluation: two GT-derived bounds and two model-backed rows.

A method (CONTRACTS.md, Evaluation) is any object with a ``name`` and
``predict(sample, num_points, seed) -> dict`` returning

- ``points``: float32 (N, 3) in the view-1 optical frame;
- ``visibility``: bool (N,) (True = visible in some input view) or None;
- ``units``: 'metric' (metres; the runner multiplies by the sample's ``median3_scale``) or
  'normalized' (already median_3 units);
- optional ``visibility_scores`` float (N,), higher = more likely visible (for the AUROC), and
  optional ``normals`` float (N, 3) unit normals (for normal consistency).

`sample` is a view-selected sample dict (``nova3r_ros.data.dataset.select_views``). Baselines
only read what their definition allows: the oracle reads the input views' depth, the ceiling
reads the second GT sample; the model rows read only the images.
"""

from __future__ import annotations

from typing import Any, Protocol

from nova3r_ros.geometry.depth_check import BEHIND, snap_to_depth
from nova3r_ros.geometry.scale import depth_scale
import numpy as np


class Method(Protocol):
    """The evaluation's method interface."""

    name: str

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]: ...


def subsample_indices(count: int, num_points: int, seed: int) -> np.ndarray:
    """`num_points` indices into `count` items: without replacement when possible, else with."""
    if count <= 0:
        raise ValueError('cannot subsample from an empty set of points')
    if num_points < 1:
        raise ValueError(f'num_points must be >= 1, got {num_points}')
    rng = np.random.default_rng(seed)
    return rng.choice(count, size=num_points, replace=count < num_points)


def backproject_depth(depth: np.ndarray, intrinsics: np.ndarray, min_depth: float = 0.05,
                      max_depth: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """
    Points and normals (M, 3) in the camera's optical frame (metres) from depth (H, W).

    Pixel (u, v) covers [u, u+1) x [v, v+1), so its ray passes through (u + 0.5, v + 0.5)
    (docs/dataset.md). Pixels with depth outside (min_depth, max_depth] are skipped, which
    matches the GT crop. Normals are unit, facing the camera, from the cross product of central
    differences of the point map; where a neighbour is missing or across a depth jump (> 5 %)
    they fall back to the reversed viewing ray.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f'depth must have shape (H, W), got {depth.shape}')
    if np.asarray(intrinsics).shape != (3, 3):
        raise ValueError(f'intrinsics must have shape (3, 3), got {np.asarray(intrinsics).shape}')
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > min_depth) & (depth <= max_depth)
    z = np.where(valid, depth, np.nan)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pmap = np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0] * z,
                     (v - intrinsics[1, 2]) / intrinsics[1, 1] * z, z], axis=-1)
    normals = np.full_like(pmap, np.nan)
    if h >= 3 and w >= 3:
        dx = pmap[1:-1, 2:] - pmap[1:-1, :-2]
        dy = pmap[2:, 1:-1] - pmap[:-2, 1:-1]
        zc = z[1:-1, 1:-1]
        smooth = (np.abs(dx[..., 2]) < 0.1 * zc) & (np.abs(dy[..., 2]) < 0.1 * zc)
        n = np.cross(dx, dy)
        n[~smooth] = np.nan
        normals[1:-1, 1:-1] = n
    points = pmap[valid]
    normals = normals[valid]
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    ray = -points / np.linalg.norm(points, axis=1, keepdims=True)
    ok = np.isfinite(norm[:, 0]) & (norm[:, 0] > 0)
    normals = np.where(ok[:, None], normals / np.where(ok[:, None], norm, 1.0), ray)
    flip = np.sum(normals * points, axis=1) > 0  # make every normal face the camera
    normals[flip] *= -1.0
    return points, normals


class VisibleOracle:
    """
    GT depth of the input views back-projected into view 1.

    The best a pixel-aligned method can do (it sees exactly the visible surfaces and nothing
    behind them).
    """

    name = 'oracle'

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        depths = sample['depths']
        max_depth = float(sample['max_depth']) if 'max_depth' in sample else np.inf
        clouds, normals = [], []
        for k in range(depths.shape[0]):
            pts, nrm = backproject_depth(depths[k], sample['intrinsics'][k], max_depth=max_depth)
            to_view1 = np.asarray(sample['cam_to_view1'][k], dtype=np.float64)
            clouds.append(pts @ to_view1[:3, :3].T + to_view1[:3, 3])
            normals.append(nrm @ to_view1[:3, :3].T)
        points = np.concatenate(clouds)
        normals = np.concatenate(normals)
        if len(points) == 0:
            raise ValueError('visible oracle: the input views have no valid depth pixels')
        idx = subsample_indices(len(points), num_points, seed)
        return {
            'points': points[idx].astype(np.float32),
            'visibility': np.ones(num_points, dtype=bool),
            'units': 'metric',
            'normals': normals[idx].astype(np.float32),
        }


class ResampledGT:
    """
    An independent GT sample of the same surfaces (``points_alt``) at the evaluated N.

    The ceiling no method can beat at small thresholds, because the sampling itself leaves gaps.
    """

    name = 'ceiling'

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        points = sample['points_alt']
        idx = subsample_indices(len(points), num_points, seed)
        out: dict[str, Any] = {
            'points': np.asarray(points[idx], dtype=np.float32),
            'visibility': None,
            'units': 'metric',
        }
        if 'points_alt_visible' in sample:
            out['visibility'] = np.asarray(sample['points_alt_visible'][idx], dtype=bool)
        if 'points_alt_normals' in sample:
            out['normals'] = np.asarray(sample['points_alt_normals'][idx], dtype=np.float32)
        return out


def _model_config(model: Any) -> Any:
    cfg = getattr(model, 'cfg', None) or getattr(model, 'config', None)
    if cfg is None:
        raise ValueError('model has neither .cfg nor .config; cannot read its input contract')
    return cfg


def _model_output(result: dict[str, Any]) -> dict[str, Any]:
    """Turn the model's batched output (B=1) into the method dict, normalised units."""
    points = result['points'][0].detach().float().cpu().numpy()
    out: dict[str, Any] = {'points': points.astype(np.float32), 'visibility': None,
                           'units': 'normalized'}
    logits = result.get('visibility_logits')
    if logits is not None:
        scores = logits[0].detach().float().cpu().numpy()
        out['visibility'] = scores > 0
        out['visibility_scores'] = scores
    return out


class TrivialPrior:
    """
    The decoder run from the model's mean training latent (``mean_scene_tokens``).

    No image information at all. A model that does not beat it has learned nothing from the
    images.
    """

    name = 'prior'

    def __init__(self, model: Any, num_steps: int | None = None, oversample: float = 1.0,
                 keep: str = 'auto') -> None:
        self.model, self.num_steps, self.oversample = model, num_steps, oversample
        self.keep = keep  # which drawn points survive the oversample (Nova3r.sample)

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        tokens = self.model.mean_scene_tokens[None]
        with torch.no_grad():
            result = self.model.sample(tokens, num_points, self.num_steps, generator=generator,
                                       oversample=self.oversample, keep=self.keep)
        return _model_output(result)


class ModelMethod:
    """A NOVA3R model reconstructing from the sample's K input images."""

    name = 'model'

    def __init__(self, model: Any, num_steps: int | None = None, oversample: float = 1.0,
                 keep: str = 'auto') -> None:
        self.model, self.num_steps, self.oversample = model, num_steps, oversample
        self.keep = keep  # which drawn points survive the oversample (Nova3r.sample)

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        from nova3r_ros.model.preprocess import prepare_images
        import torch

        images, _ = prepare_images(list(sample['images']), _model_config(self.model))
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            images = images[None].to(self.model.device)
            tokens, surface = self.model.encode_views(images)
            result = self.model.sample(tokens, num_points, self.num_steps, generator=generator,
                                       oversample=self.oversample, keep=self.keep,
                                       surface=surface)
        return _model_output(result)


SNAP_RANK = 100.0  # added to a snapped point's visibility score: visible for sure


def with_depth(prediction: dict[str, Any], depth: np.ndarray, intrinsics: np.ndarray,
               single_view: bool, fit: str = 'chamfer_shift', tolerance: float = 0.1
               ) -> tuple[Any, dict[str, Any] | None]:
    """
    Run the node's ``depth`` scale mode on a model prediction: (ScaleResult, published cloud).

    The node's own steps: ``geometry.scale.depth_scale`` registers the cloud onto view 1's depth,
    then ``snapped`` moves the points the depth sees through or on onto it, in metres. The
    cloud is None when the depth gives no scale (the node publishes nothing then).
    """
    points = np.asarray(prediction['points'], dtype=np.float64)
    scale = depth_scale(points, prediction['visibility'], depth, intrinsics, fit=fit)
    if scale.scale is None:
        return scale, None
    return scale, snapped(prediction, scale, depth, intrinsics, single_view, tolerance)


def snapped(prediction: dict[str, Any], scale: Any, depth: np.ndarray, intrinsics: np.ndarray,
            single_view: bool, tolerance: float = 0.1) -> dict[str, Any]:
    """
    Register the prediction by ``scale`` (a depth ScaleResult) and snap it onto ``depth``.

    The snapped points rank above every other point for the visibility AUROC (SNAP_RANK), the
    rest by the model's logit (below them all with one view when hidden from it).
    """
    points = scale.apply(np.asarray(prediction['points'], dtype=np.float64))
    snap = snap_to_depth(points, prediction['visibility'], depth, intrinsics, tolerance,
                         single_view=single_view)
    scores = np.asarray(prediction['visibility_scores'], dtype=np.float64)
    scores = scores + SNAP_RANK * (snap.classes < BEHIND)
    if single_view:
        scores = scores - SNAP_RANK * (snap.classes == BEHIND)
    return {**prediction, 'points': snap.points, 'visibility': snap.visible,
            'visibility_scores': scores, 'units': 'metric'}


class ModelWithDepth(ModelMethod):
    """
    The model as the node publishes it in ``depth`` scale mode, view 1's GT depth as the sensor.

    A robot with a depth camera gets this cloud (``with_depth``); the ``model`` row is the one
    without. A scene whose depth gives no scale (the node would publish nothing) falls back to
    the model's own cloud.
    """

    name = 'model_depth'
    fit, tolerance = 'chamfer_shift', 0.1  # the node's depth_scale_fit, depth_snap_tolerance
    settings = f'{fit}+snap{tolerance:g}'  # what its cached results are keyed by

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        out = super().predict(sample, num_points, seed)
        _, published = with_depth(out, np.asarray(sample['depths'][0], dtype=np.float64),
                                  np.asarray(sample['intrinsics'][0], dtype=np.float64),
                                  single_view=len(sample['images']) == 1, fit=self.fit,
                                  tolerance=self.tolerance)
        return out if published is None else published


def _gt_encoder_input(sample: dict[str, np.ndarray], count: int, seed: int, device: Any
                      ) -> Any:
    """(1, count, 3) torch points from the complete GT, normalised units, on `device`."""
    import torch

    points = np.asarray(sample['points'], dtype=np.float64) * float(sample['median3_scale'])
    idx = subsample_indices(len(points), count, seed)
    return torch.from_numpy(points[idx].astype(np.float32))[None].to(device)


class Autoencoder:
    """
    Stage 1 alone: point encoder on the complete GT, decoder samples N points from that latent.

    The point encoder reads the *complete* GT (``encoder_points`` of it). Reads the GT, so it is
    a bound, not a method: the best any stage 2 can do through this decoder (issue-8 bar: F@0.05
    near the ceiling's).
    """

    name = 'autoencoder'

    def __init__(self, model: Any, num_steps: int | None = None, encoder_points: int = 2048,
                 oversample: float = 1.0, keep: str = 'auto') -> None:
        if encoder_points < 1:
            raise ValueError(f'encoder_points must be >= 1, got {encoder_points}')
        self.model, self.num_steps, self.encoder_points = model, num_steps, encoder_points
        self.oversample, self.keep = oversample, keep

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            tokens = self.model.encode_points(
                _gt_encoder_input(sample, self.encoder_points, seed, self.model.device), generator)
            # no visibility: the head is a stage-2 part, not scored on a stage-1 latent
            result = self.model.sample(tokens, num_points, self.num_steps, generator=generator,
                                       visibility=False, oversample=self.oversample,
                                       keep=self.keep)
        return _model_output(result)


class FpsQueries(Autoencoder):
    """
    The M farthest-point-sampled query points the point encoder starts from, as a cloud.

    What the autoencoder would score if it only echoed its queries (it must add detail).
    ``num_points`` is ignored: the cloud has M points.
    """

    name = 'queries'

    def predict(self, sample: dict[str, np.ndarray], num_points: int, seed: int
                ) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            queries = self.model.point_encoder.select_queries(
                _gt_encoder_input(sample, self.encoder_points, seed, self.model.device), generator)
        return {'points': queries[0].float().cpu().numpy(), 'visibility': None,
                'units': 'normalized'}
