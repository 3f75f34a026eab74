"""
nova3r_ros.evaluation: the project's yardstick (DESIGN §8).

- `metrics`: Chamfer, accuracy/completeness, precision/recall/F-score, hole ratio, occluded
  recall/F-score (by GT category), density variance, normal consistency, visibility AUROC.
- `align`: per-sample scale + 3D shift fitted to the complete GT (unsquared Chamfer, IRLS).
- `baselines`: visible oracle, resampled-GT ceiling, trivial prior, model wrapper.
- `scoring`: a method's output -> evaluation units -> alignment -> metrics.
- `report`: summaries, paired bootstrap CIs, metrics.json, markdown, PNG, PLY.
- `cli`: the `nova3r_eval` runner (caching, resume, progress bar).

No ROS imports; matplotlib and torch are imported only where used.
"""

from .align import align, Alignment, fit_chamfer
from .baselines import ModelMethod, ResampledGT, TrivialPrior, VisibleOracle
from .metrics import GroundTruth, score, TAUS
from .scoring import ground_truth, score_prediction

__all__ = [
    'TAUS',
    'Alignment',
    'GroundTruth',
    'ModelMethod',
    'ResampledGT',
    'TrivialPrior',
    'VisibleOracle',
    'align',
    'fit_chamfer',
    'ground_truth',
    'score',
    'score_prediction',
]
