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
The package's argparse help format: docstring layout kept, every option's default shown.

Why: argparse offers either kept layout (RawDescriptionHelpFormatter) or shown defaults
(ArgumentDefaultsHelpFormatter), and the command-line tools want both.
"""

import argparse
from pathlib import Path


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """Raw description and epilog, and '(default: ...)' after each option's help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # No suffix where it would mislead or repeat: a flag ('--no-x (default: True)' reads
        # as "on by default"), a required option, no default, or help that names its default.
        text = action.help or ''
        if (action.nargs == 0 or action.required or action.default is None
                or 'default' in text.lower()):
            return action.help
        return super()._get_help_string(action)


def make_out_dir(path: str | Path, flag: str = '--out') -> Path:
    """
    Create `path` (and its parents) or raise ValueError naming `flag`.

    Why: an output path under a file or in a read-only place is the user's input, so it gets a
    one-line error, not an OSError traceback after minutes of work.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f'{flag} {path} is a file; name a folder')
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f'{flag} {path}: cannot create this folder ({exc.strerror or exc})'
                         ) from exc
    return path
