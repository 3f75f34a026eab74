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
The ROS 2 flake8 check (ament_flake8, its default configuration) on the package's sources.

ament_flake8 comes from apt on a robot and from the ros-jazzy-ament-flake8 wheel in the
project venv. Where neither is importable (a sourced workspace without ament_lint) the test
skips; ruff (``make test``) still checks the subset of the same rules configured in ruff.toml.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ['nova3r_ros', 'launch', 'test', 'setup.py']


@pytest.mark.linter
def test_flake8():
    main = pytest.importorskip('ament_flake8.main', reason='ament_flake8 is not installed')
    paths = [str(ROOT / s) for s in SOURCES]
    rc, found = main.main_with_errors(argv=paths)
    assert rc == 0 or found, 'ament_flake8 failed without reporting a finding'
    # flake8-builtins 2.3+ (A005) flags the io/ package, a name the design fixes; robots may have
    # that version (this venv pins an older one), so that one finding is allowed
    errors = [e for e in found if not (' A005 ' in e and f'{os.sep}nova3r_ros{os.sep}io' in e)]
    assert not errors, f'ament_flake8 found {len(errors)} problem(s):\n' + '\n'.join(errors)
