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
Point-cloud metrics for amodal scene reconstruction (DESIGN §8, digest §5.2).

All distances are unsquared Euclidean nearest-neighbour (NN) distances in the units of the
inputs (the evaluation uses median_3-normalised units of the view-selected sample). Everything is
vectorised over points with `scipy.spatial.cKDTree` (`workers=-1`).

Keys returned by :func:`score` (``S`` is a GT subset: ``complete``, ``visible``, ``occluded``
and, for the occluded split by category, ``occluded_floor``, ``occluded_wall``,
``occluded_object``; ``@t`` is a threshold from :data:`TAUS`):

===========================  ==================================================================
``S/accuracy``               mean distance from every predicted point to its NN in ``S``
``S/completeness``           mean distance from every point of ``S`` to its NN prediction
``S/chamfer``                ½(accuracy + completeness)
``S/precision@t``            fraction of predicted points within ``t`` of ``S``
``S/recall@t``               fraction of ``S`` with a prediction within ``t``
``S/fscore@t``               harmonic mean of ``S/recall@t`` and ``complete/precision@t``: the
                             precision of ALL predicted points against ALL of the GT. On
                             ``complete`` this is the ordinary F-score; on ``occluded`` it is the
                             occluded F-score (recall alone is gamed by scattering points)
``S/hole_ratio@t``           1 - ``S/recall@t``: fraction of ``S`` with no prediction within ``t``
``S/normal_consistency``     ½(mean |n_pred·n_gt| over pred→S pairs + over S→pred pairs); only
                             when the method supplies normals
``pred/density_var``         population variance over predicted points of the kNN-16 density
                             1 / (sqrt(mean squared distance to the 16 nearest other points)
                             + 1e-8), as the released ``fast_knn_density``
``visibility/auroc``         AUROC of the method's visibility scores against the GT label
                             (``visible``) of each predicted point's NN in the complete GT
``visibility/accuracy``      accuracy of the method's boolean visibility against that label
===========================  ==================================================================

The category splits ``occluded_*`` have only the GT->prediction keys (completeness, recall,
fscore, hole_ratio): a prediction->subset distance to one category of occluded GT means nothing.
A subset with no points gives NaN for its keys (aggregate with nan-aware statistics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

TAUS: tuple[float, ...] = (0.1, 0.05, 0.02)
CATEGORY_NAMES: dict[int, str] = {0: 'floor', 1: 'wall', 2: 'object'}
DENSITY_K = 16


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    """Validate an (M, 3) finite array and return it as float64."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'{name} must have shape (M, 3), got {points.shape}')
    points = points.astype(np.float64, copy=False)
    if not np.all(np.isfinite(points)):
        raise ValueError(f'{name} contains NaN or inf')
    return points


def nn_distances(
    src: np.ndarray, dst: np.ndarray | cKDTree
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (M,) and index (M,) of the nearest point of `dst` for every point of `src`."""
    tree = dst if isinstance(dst, cKDTree) else cKDTree(_as_points(dst, 'dst'))
    dist, idx = tree.query(src, k=1, workers=-1)
    return dist, idx


def knn_density(points: np.ndarray, k: int = DENSITY_K, tree: cKDTree | None = None) -> np.ndarray:
    """
    Per-point density (M,): 1 / (sqrt(mean squared distance to the k nearest others) + 1e-8).

    The point itself is excluded from its neighbours (distance 0 would only shrink every value
    equally). Units: 1 / (units of `points`).
    """
    points = _as_points(points, 'points')
    if len(points) < 2:
        return np.full(len(points), np.nan)
    k_eff = min(k, len(points) - 1)
    tree = tree if tree is not None else cKDTree(points)
    dist, _ = tree.query(points, k=k_eff + 1, workers=-1)
    rms = np.sqrt(np.mean(dist[:, 1:] ** 2, axis=1))
    return 1.0 / (rms + 1e-8)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """
    Area under the ROC curve of `scores` for boolean `labels` (ties count one half).

    Mann-Whitney U from average ranks: exact and O(M log M). NaN when one class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError(f'scores {scores.shape} and labels {labels.shape} differ in shape')
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float('nan')
    ranks = rankdata(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass
class GroundTruth:
    """
    The GT of one sample with lazily built KD-trees, shared by every method scored on it.

    points: (P, 3) complete GT, view-1 optical frame, evaluation units (median_3-normalised).
    visible: (P,) bool, first hit along a ray of some input view.
    category: (P,) uint8, 0 floor, 1 wall, 2 object.
    normals: (P, 3) unit normals or None.
    """

    points: np.ndarray
    visible: np.ndarray
    category: np.ndarray
    normals: np.ndarray | None = None
    _trees: dict[str, cKDTree] = field(default_factory=dict, repr=False)
    _masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.points = _as_points(self.points, 'GT points')
        if len(self.points) == 0:
            raise ValueError('GT has no points')
        p = len(self.points)
        self.visible = np.asarray(self.visible, dtype=bool)
        self.category = np.asarray(self.category)
        if self.visible.shape != (p,):
            raise ValueError(f'GT visible must have shape ({p},), got {self.visible.shape}')
        if self.category.shape != (p,):
            raise ValueError(f'GT category must have shape ({p},), got {self.category.shape}')
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float64)
            if self.normals.shape != (p, 3):
                raise ValueError(f'GT normals must have shape ({p}, 3), got {self.normals.shape}')

    def mask(self, subset: str) -> np.ndarray:
        """Boolean (P,) mask of a named subset (see the module docstring)."""
        if subset not in self._masks:
            occluded = ~self.visible
            if subset == 'complete':
                m = np.ones(len(self.points), dtype=bool)
            elif subset == 'visible':
                m = self.visible
            elif subset == 'occluded':
                m = occluded
            elif subset.startswith('occluded_'):
                codes = {v: k for k, v in CATEGORY_NAMES.items()}
                name = subset[len('occluded_'):]
                if name not in codes:
                    raise ValueError(f'unknown GT subset {subset!r}')
                m = occluded & (self.category == codes[name])
            else:
                raise ValueError(f'unknown GT subset {subset!r}')
            self._masks[subset] = m
        return self._masks[subset]

    def tree(self, subset: str = 'complete') -> cKDTree | None:
        """KD-tree over the points of `subset` (None when the subset is empty)."""
        if subset not in self._trees:
            m = self.mask(subset)
            self._trees[subset] = cKDTree(self.points[m]) if m.any() else None
        return self._trees[subset]


def subsets() -> list[str]:
    """GT subsets scored by :func:`score`, in report order."""
    return ['complete', 'visible', 'occluded'] + [
        f'occluded_{name}' for name in CATEGORY_NAMES.values()
    ]


def score(
    pred: np.ndarray,
    gt: GroundTruth,
    *,
    pred_normals: np.ndarray | None = None,
    pred_visibility: np.ndarray | None = None,
    pred_visibility_scores: np.ndarray | None = None,
    taus: tuple[float, ...] = TAUS,
) -> dict[str, float]:
    """
    All metrics of one prediction against one GT (see the module docstring for keys).

    pred: (N, 3) predicted points, same frame and units as `gt.points` (already aligned).
    pred_normals: (N, 3) unit normals or None (normal consistency is skipped when None).
    pred_visibility: (N,) bool, the method's visible/occluded label, or None.
    pred_visibility_scores: (N,) float, higher = more likely visible (e.g. logits), or None;
        when None but `pred_visibility` is given, the AUROC uses the booleans as scores.
    """
    pred = _as_points(pred, 'pred')
    n = len(pred)
    if n == 0:
        raise ValueError('pred has no points')
    if pred_normals is not None:
        pred_normals = np.asarray(pred_normals, dtype=np.float64)
        if pred_normals.shape != (n, 3):
            raise ValueError(f'pred_normals must have shape ({n}, 3), got {pred_normals.shape}')
    use_normals = pred_normals is not None and gt.normals is not None

    out: dict[str, float] = {'n_pred': float(n), 'n_gt': float(len(gt.points))}
    pred_tree = cKDTree(pred)
    # One query of every GT point gives the GT->pred distances of all subsets by masking.
    d_gt2pred, i_gt2pred = pred_tree.query(gt.points, k=1, workers=-1)

    precision_all: dict[float, float] = {}
    nearest_gt_visible: np.ndarray | None = None
    for subset in subsets():
        mask = gt.mask(subset)
        out[f'{subset}/n_gt'] = float(mask.sum())
        # Category splits of the occluded GT only need the GT->pred side (recall, F, holes).
        two_sided = not subset.startswith('occluded_')
        tree = gt.tree(subset) if two_sided else None
        if not mask.any():
            for key in _subset_keys(subset, taus, use_normals and two_sided, two_sided):
                out[key] = float('nan')
            continue
        d_s2pred = d_gt2pred[mask]
        comp = float(d_s2pred.mean())
        out[f'{subset}/completeness'] = comp
        if two_sided:
            d_pred2s, i_pred2s = tree.query(pred, k=1, workers=-1)
            acc = float(d_pred2s.mean())
            out[f'{subset}/accuracy'] = acc
            out[f'{subset}/chamfer'] = 0.5 * (acc + comp)
            if subset == 'complete':
                nearest_gt_visible = gt.visible[i_pred2s]
        for tau in taus:
            recall = float(np.mean(d_s2pred < tau))
            if two_sided:
                precision = float(np.mean(d_pred2s < tau))
                out[f'{subset}/precision@{tau:g}'] = precision
                if subset == 'complete':
                    precision_all[tau] = precision
            out[f'{subset}/recall@{tau:g}'] = recall
            out[f'{subset}/fscore@{tau:g}'] = _harmonic(recall, precision_all[tau])
            out[f'{subset}/hole_ratio@{tau:g}'] = 1.0 - recall
        if use_normals and two_sided:
            s_normals = gt.normals[mask]
            nc_acc = np.abs(np.sum(pred_normals * s_normals[i_pred2s], axis=1)).mean()
            nc_comp = np.abs(np.sum(s_normals * pred_normals[i_gt2pred[mask]], axis=1)).mean()
            out[f'{subset}/normal_consistency'] = float(0.5 * (nc_acc + nc_comp))

    density = knn_density(pred, tree=pred_tree)
    out['pred/density_var'] = float(np.var(density))

    if pred_visibility is not None or pred_visibility_scores is not None:
        assert nearest_gt_visible is not None  # complete GT is never empty
        if pred_visibility is not None:
            vis = np.asarray(pred_visibility, dtype=bool)
            if vis.shape != (n,):
                raise ValueError(f'pred_visibility must have shape ({n},), got {vis.shape}')
            out['visibility/accuracy'] = float(np.mean(vis == nearest_gt_visible))
        scores = pred_visibility_scores if pred_visibility_scores is not None else vis
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f'pred_visibility_scores must have shape ({n},), got {scores.shape}')
        out['visibility/auroc'] = auroc(scores, nearest_gt_visible)
    return out


def _harmonic(a: float, b: float) -> float:
    """2ab / (a + b), 0 when both are 0."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def _subset_keys(subset: str, taus: tuple[float, ...], use_normals: bool,
                 two_sided: bool) -> list[str]:
    """Every key :func:`score` writes for one subset (used to fill NaN for empty subsets)."""
    names = ('accuracy', 'completeness', 'chamfer') if two_sided else ('completeness',)
    keys = [f'{subset}/{m}' for m in names]
    per_tau = ('precision', 'recall', 'fscore', 'hole_ratio') if two_sided else (
        'recall', 'fscore', 'hole_ratio')
    for tau in taus:
        keys += [f'{subset}/{m}@{tau:g}' for m in per_tau]
    if use_normals:
        keys.append(f'{subset}/normal_consistency')
    return keys
