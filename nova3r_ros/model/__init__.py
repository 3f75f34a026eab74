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
NOVA3R in pure torch: configs, layers, flow paths/samplers, encoders, decoder, checkpoints.

Never imports ROS. Public entry points are re-exported here.
"""

from .configs import get_preset, Nova3rConfig
from .normalize import median3_scale, normalize_median3
from .nova3r import count_parameters, Nova3r, PRECISIONS
from .preprocess import adjust_intrinsics, prepare_images, PreprocessInfo

__all__ = [
    'Nova3r',
    'Nova3rConfig',
    'PRECISIONS',
    'PreprocessInfo',
    'adjust_intrinsics',
    'count_parameters',
    'get_preset',
    'median3_scale',
    'normalize_median3',
    'prepare_images',
]
