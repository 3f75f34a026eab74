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
The ROS 2 copyright check: every source file names its copyright holder and the Apache-2.0 licence.

ament_copyright is not published on PyPI, so where it is not importable (this venv) the same
rules run here: Python files under the checked folders (folders starting with '.' or '_' and the
package-level setup.py skipped, empty files allowed) open, after an optional shebang or coding
line, with a comment block holding a "Copyright <years> <holder>" line followed by the Apache
header; the repository root's LICENSE holds the licence and CONTRIBUTING.md its contribution
clause. Texts are compared with whitespace collapsed, as ament_copyright does. The one
difference: ament_copyright accepts the notice in any comment block, this check only in the
first, so it is the stricter of the two.
"""

import os
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ['nova3r_ros', 'launch', 'test']

COPYRIGHT = re.compile(r'^\s*copyright(?:\s+\(c\))?\s+\d{4}(?:-\d{4})?(?:,\s*\d{4}(?:-\d{4})?)*'
                       r',?\s+\S[^\n]*$', re.IGNORECASE | re.MULTILINE)
HEADER = """Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License."""
LICENSE_PARTS = ['Apache License Version 2.0, January 2004',
                 'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION',
                 '5. Submission of Contributions.', 'END OF TERMS AND CONDITIONS', HEADER]
CONTRIBUTING_PARTS = ['Any contribution that you make to this repository will be under the '
                      'Apache 2 License',
                      '5. Submission of Contributions. Unless You explicitly state otherwise, '
                      'any Contribution intentionally submitted for inclusion in the Work by You '
                      'to the Licensor shall be under the terms and conditions of this License, '
                      'without any additional terms or conditions.']


def _flat(text: str) -> str:
    return ' '.join(text.split())


def _contains_in_order(text: str, parts: list[str]) -> bool:
    flat, last = _flat(text), -1
    for part in parts:
        index = flat.find(_flat(part), last + 1)
        if index < 0:
            return False
        last = index
    return True


def python_files(paths: list[Path]) -> list[Path]:
    """Collect the files ament_copyright would check under `paths`."""
    found = []
    for path in paths:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d[0] not in '._')
            for name in sorted(filenames):
                package_setup = name == 'setup.py' and os.path.exists(
                    os.path.join(dirpath, 'package.xml'))
                if name.endswith('.py') and not package_setup:
                    found.append(Path(dirpath) / name)
    return found


def header_problem(text: str) -> str | None:
    """Say what is wrong with a source file's header, or None when it is fine."""
    if not text:
        return None  # empty files (package markers) need no header
    lines = text.splitlines()
    i = 0
    while i < len(lines) and (lines[i].startswith('#!') or 'coding' in lines[i]
                              and lines[i].startswith('#')):
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    block = []
    while i < len(lines) and lines[i].startswith('#'):
        block.append(lines[i][2:] if lines[i].startswith('# ') else lines[i][1:])
        i += 1
    comment = '\n'.join(block)
    match = COPYRIGHT.search(comment)
    if match is None:
        return 'could not find copyright notice'
    if not _contains_in_order(comment[match.end():], [HEADER]):
        return 'copyright notice without the Apache-2.0 header'
    return None


@pytest.mark.linter
def test_copyright():
    try:
        from ament_copyright.main import main
    except ImportError:
        main = None
    if main is not None:  # robots with apt ament_lint: the upstream tool
        argv = [str(ROOT / s) for s in SOURCES]
        argv += [str(ROOT / 'LICENSE'), str(ROOT / 'CONTRIBUTING.md')]
        assert main(argv=argv) == 0, 'ament_copyright found problems (see stderr)'
        return
    problems = [f'{p.relative_to(ROOT)}: {why}'
                for p in python_files([ROOT / s for s in SOURCES])
                if (why := header_problem(p.read_text(encoding='utf-8')))]
    if not _contains_in_order((ROOT / 'LICENSE').read_text(encoding='utf-8'), LICENSE_PARTS):
        problems.append('LICENSE: not the Apache License 2.0 text')
    contributing = ROOT / 'CONTRIBUTING.md'
    text = contributing.read_text(encoding='utf-8') if contributing.exists() else ''
    if not _contains_in_order(text, CONTRIBUTING_PARTS):
        problems.append('CONTRIBUTING.md: missing the Apache-2.0 contribution clause')
    assert not problems, '\n'.join(problems)


def test_header_rules_reject_what_ament_copyright_rejects():
    good = '# Copyright 2026 Someone\n#\n' + ''.join(
        f'# {line}'.rstrip() + '\n' for line in HEADER.splitlines()) + '\n"""Doc."""\n'
    assert header_problem(good) is None
    assert header_problem('#!/usr/bin/env python3\n' + good) is None
    assert header_problem('') is None
    assert header_problem('"""Doc."""\n') == 'could not find copyright notice'
    assert header_problem('# Copyright Someone\n' + good[good.index('#\n'):]) is not None
    without_header = '# Copyright 2026 Someone\n\n"""Doc."""\n'
    assert header_problem(without_header) == 'copyright notice without the Apache-2.0 header'
    broken = good.replace('WITHOUT WARRANTIES', 'WITH WARRANTIES')
    assert header_problem(broken) is not None
    files = python_files([ROOT / 'test'])
    assert Path(__file__).resolve() in [f.resolve() for f in files]
    assert not any('__pycache__' in str(f) for f in files)
