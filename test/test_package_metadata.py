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

"""One version everywhere a user or a release tool reads it (they had drifted apart)."""

from pathlib import Path
import re
import xml.etree.ElementTree as ET

import nova3r_ros

ROOT = Path(__file__).resolve().parents[1]


def test_every_version_string_agrees():
    package_xml = ET.parse(ROOT / 'package.xml').getroot().findtext('version')
    setup_py = re.search(r"version='([^']+)'", (ROOT / 'setup.py').read_text()).group(1)
    changelog = re.findall(r'^(\d+\.\d+\.\d+) \(', (ROOT / 'CHANGELOG.rst').read_text(), re.M)
    declaration = (ROOT / 'QUALITY_DECLARATION.md').read_text()
    assert package_xml == setup_py == nova3r_ros.__version__ == changelog[0]
    assert f': {package_xml})' in declaration
