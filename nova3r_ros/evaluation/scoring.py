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
One prediction of one sample -> evaluation units -> alignment -> metrics.

Evaluation space (CONTRACTS.md): the GT of the view-selected sample multiplied by its
``median3_scale`` (median_3-normalised, view-1 optical frame). Metric predictions are multiplied
by the same scale first; then the alignment ('chamfer' or 'none', fitted on the complete GT) is
applied, the same procedure for every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nova3r_ros.evaluation.metrics import GroundTruth, score
from nova3r_ros.geometry.align import align, Alignment
import numpy as np

UNITS = ('metric', 'normalized')


def ground_truth(sample: dict[str, np.ndarray]) -> GroundTruth:
    """Return the GT of a view-selected sample in evaluation units (needs ``points_visible``)."""
    if 'points_visible' not in sample:
        raise ValueError('sample has no points_visible: pass it through select_views first')
    scale = float(sample['median3_scale'])
    normals = sample.get('points_normals')
    return GroundTruth(
        points=np.asarray(sample['points'], dtype=np.float64) * scale,
        visible=sample['points_visible'],
        category=sample['points_category'],
        normals=None if normals is None else np.asarray(normals, dtype=np.float64),
    )


def to_eval_units(prediction: dict[str, Any], sample: dict[str, np.ndarray]) -> np.ndarray:
    """Return the method's points (N, 3) in evaluation units (float64), validating its dict."""
    if 'points' not in prediction or 'units' not in prediction:
        raise ValueError(f'a prediction needs points and units, got keys {sorted(prediction)}')
    units = prediction['units']
    if units not in UNITS:
        raise ValueError(f'prediction units must be one of {UNITS}, got {units!r}')
    points = np.asarray(prediction['points'], dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f'prediction points must have shape (N>0, 3), got {points.shape}')
    if units == 'metric':
        points = points * float(sample['median3_scale'])
    return points


@dataclass
class Scored:
    """Metrics of one (sample, method, alignment) and the aligned points for plots and PLYs."""

    metrics: dict[str, Any]
    points: np.ndarray  # (N, 3) aligned, evaluation units
    alignment: Alignment


def score_prediction(prediction: dict[str, Any], sample: dict[str, np.ndarray],
                     gt: GroundTruth, alignment: str = 'chamfer', seed: int = 0) -> Scored:
    """Align a method's prediction to the complete GT and compute every metric."""
    points = to_eval_units(prediction, sample)
    fit = align(points, gt.points, alignment, seed=seed)
    aligned = fit.apply(points)
    normals = prediction.get('normals')
    metrics = score(
        aligned, gt,
        pred_normals=normals,  # a positive scale without rotation leaves normals unchanged
        pred_visibility=prediction.get('visibility'),
        pred_visibility_scores=prediction.get('visibility_scores'),
    )
    metrics.update(fit.to_dict())
    return Scored(metrics, aligned, fit)
