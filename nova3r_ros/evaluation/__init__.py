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
nova3r_ros.evaluation: the project's yardstick (DESIGN §8).

- `metrics`: Chamfer, accuracy/completeness, precision/recall/F-score, hole ratio, occluded
  recall/F-score (by GT category), density variance, normal consistency, visibility AUROC.
- `align` (from `nova3r_ros.geometry`, which the node's depth scale shares): per-sample scale +
  3D shift fitted to the complete GT (unsquared Chamfer, IRLS).
- `baselines`: visible oracle, resampled-GT ceiling, trivial prior, model wrapper.
- `scoring`: a method's output -> evaluation units -> alignment -> metrics.
- `report`: summaries, paired bootstrap CIs, metrics.json, markdown, PNG, PLY.
- `cli`: the `nova3r_eval` runner (caching, resume, progress bar).

No ROS imports; matplotlib and torch are imported only where used.
"""

from nova3r_ros.geometry.align import align, Alignment, fit_chamfer

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
