"""NOVA3R in pure torch: configs, layers, flow paths/samplers, encoders, decoder, checkpoints.

Never imports ROS. Public entry points are re-exported here.
"""

from .configs import Nova3rConfig, get_preset
from .normalize import median3_scale, normalize_median3
from .nova3r import Nova3r, count_parameters
from .preprocess import PreprocessInfo, adjust_intrinsics, prepare_images

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
