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
The one place that imports optional ROS 2 Python packages.

On a robot with apt ROS 2 these come from the distro; in the pip-installed venv they are absent
(message_filters, cv_bridge and sensor_msgs_py are not published on PyPI). Only what the node
uses is imported here: the launch files import ``launch_ros`` themselves, and the node needs no
TF (it publishes in view 1's own frame).
Every other module asks here (``HAVE_*`` flags, module or None) and falls back to the package's
own equivalents with the same behaviour. ``NOVA3R_DISABLE_ROS_OPTIONAL=1`` forces the fallbacks
(used to test them on machines that do have the real libraries).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
import sys
from types import ModuleType


def _optional(name: str) -> ModuleType | None:
    if os.environ.get('NOVA3R_DISABLE_ROS_OPTIONAL', '') not in ('', '0'):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - an installed but broken package counts as absent
        return None


message_filters = _optional('message_filters')
cv_bridge = _optional('cv_bridge')
point_cloud2 = _optional('sensor_msgs_py.point_cloud2')

HAVE_MESSAGE_FILTERS = message_filters is not None
HAVE_CV_BRIDGE = cv_bridge is not None
HAVE_SENSOR_MSGS_PY = point_cloud2 is not None


def availability() -> dict[str, bool]:
    """Which optional ROS libraries are importable here (the rest fall back to our own)."""
    return {
        'message_filters': HAVE_MESSAGE_FILTERS,
        'cv_bridge': HAVE_CV_BRIDGE,
        'sensor_msgs_py': HAVE_SENSOR_MSGS_PY,
    }


def config_file(name: str) -> Path | None:
    """
    Find a shipped ``config/<name>``: the source tree's, else the installed share's, else None.

    After a plain ``colcon build`` the module lives in site-packages, where a path relative to
    ``__file__`` finds no ``config/`` (the soak and benches then handed the node a missing
    params file).
    """
    source = Path(__file__).resolve().parents[2] / 'config' / name
    if source.is_file():
        return source
    share = package_share_dir()
    if share is None:
        return None
    installed = share / 'config' / name
    return installed if installed.is_file() else None


def package_share_dir(package: str = 'nova3r_ros') -> Path | None:
    """``share/<package>`` from the ament index, or None (not installed, or a plain venv)."""
    try:
        from ament_index_python.packages import (
            get_package_share_directory,
            PackageNotFoundError,
        )
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except (PackageNotFoundError, ValueError, LookupError, OSError):
        return None  # not installed, or no AMENT_PREFIX_PATH


def non_ros_args(prog: str, argv: list[str]) -> list[str]:
    """
    Return `argv` without its ``--ros-args ...`` part, exiting 2 when that part is invalid.

    Why: rclpy raises its own error for a params file that is missing or not YAML, which
    would otherwise end a command-line tool in a traceback instead of a one-line reason.
    """
    from rclpy.utilities import remove_ros_args

    try:
        return remove_ros_args([prog, *argv])[1:]
    except Exception as exc:  # noqa: BLE001 - RCLInvalidROSArgsError lives in a private module
        print(f'{prog}: error: invalid ROS arguments: {exc}', file=sys.stderr)
        raise SystemExit(2) from None
