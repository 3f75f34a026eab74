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
The package's default Fast DDS profile (``config/fastdds.xml``) and how it is applied.

Fast DDS reads its XML profile from ``FASTRTPS_DEFAULT_PROFILES_FILE`` (Fast DDS 2.x, Jazzy)
or ``FASTDDS_DEFAULT_PROFILES_FILE`` (3.x) when the first DDS participant is created, so
``apply_default_dds_profile`` must run before ``rclpy.init()`` / node creation, in *every*
process of the pipeline (publisher and subscriber both need the large shared-memory segment).

It leaves the environment alone when the user already chose a profile file, chose an RMW other
than Fast DDS (``RMW_IMPLEMENTATION``), or set ``NOVA3R_DDS_PROFILE=off``;
``NOVA3R_DDS_PROFILE=/path.xml`` picks another file.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
import os
from pathlib import Path

from nova3r_ros.ros.compat import config_file

PROFILE_NAME = 'fastdds.xml'
PROFILE_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')
FASTDDS_RMWS = ('', 'rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp')


def default_profile_path() -> Path | None:
    """Return the shipped profile: the source tree's ``config/`` first, else the ament share."""
    return config_file(PROFILE_NAME)


def apply_default_dds_profile(env: MutableMapping[str, str] | None = None) -> str | None:
    """
    Point Fast DDS at the package profile in ``env`` (default ``os.environ``).

    Returns the profile path now in effect, or None when the environment was left alone
    (user profile, other RMW, opt-out, or no profile file found).
    """
    env = os.environ if env is None else env
    choice = env.get('NOVA3R_DDS_PROFILE', '').strip()
    if choice.lower() in ('off', '0', 'none', 'false'):
        return None
    if env.get('RMW_IMPLEMENTATION', '').strip() not in FASTDDS_RMWS:
        return None
    for var in PROFILE_VARS:
        if env.get(var):
            return None
    path = Path(choice) if choice else default_profile_path()
    if path is None or not path.is_file():
        return None
    for var in PROFILE_VARS:
        env[var] = str(path)
    return str(path)


def profile_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    Return the variables a child process needs to use the package profile (``{}`` if none).

    For processes that do not apply the profile themselves, such as RViz started by a launch
    file: ``env`` (default ``os.environ``) is only read, under the same rules as
    ``apply_default_dds_profile``.
    """
    probe = dict(os.environ if env is None else env)
    path = apply_default_dds_profile(probe)
    return dict.fromkeys(PROFILE_VARS, path) if path else {}


def without_dds_profile(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Remove every profile variable and opt out (stock Fast DDS settings, for comparisons)."""
    for var in PROFILE_VARS:
        env.pop(var, None)
    env['NOVA3R_DDS_PROFILE'] = 'off'
    return env
