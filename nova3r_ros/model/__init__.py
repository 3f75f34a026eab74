"""
NOVA3R in pure torch: configs, layers, flow paths/samplers, encoders, decoder, checkpoints.

Never imports ROS. Public entry points are re-exported here.
"""

from .configs import get_preset, Nova3rConfig
from .normalize import median3_scale, normalize_median3
from .nova3r import count_parameters, Nova3r
from .preprocess import adjust_intrinsics, prepare_images, PreprocessInfo

__all__ = [
    'Nova3r',
    'Nova3rConfig',
    'PreprocessInfo',
    'adjust_intrinsics',
    'count_parameters',
    'get_preset',
    'median3_scale',
    'normalize_median3',
    'prepare_images',
]
