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
glibc malloc settings for model processes: keep freed tensor memory mapped.

The model processes are the node, training, evaluation and benchmarks.
With glibc's defaults, large blocks come from ``mmap`` above a dynamic threshold and freed
heap tops are trimmed back to the OS, so every decoder call maps its activations again and
faults them in page by page: 30,000-80,000 minor page faults per window (N = 8192, 8 steps),
more or fewer depending on the process's allocation history. Fixing the mmap threshold at
glibc's maximum (32 MiB) and raising the trim threshold to 1 GiB keeps those pages in the heap
after the first window (0 faults). ``nova3r_bench overhead [--no-malloc-tuning]`` (CPU, this
machine, loaded): CPU time per window -6 % (``tiny``) and -22 % (``micro``) in the node, and
the node no longer runs the same model slower than a fresh process does (docs/speed.md §4).

The cost: memory freed by the model stays with the process (up to the trim threshold) instead of
going back to the OS between windows, i.e. the process keeps its peak working set.

``tune_malloc`` is a no-op when the user chose malloc settings (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` set), with ``NOVA3R_MALLOC_TUNING=off``, and
where ``mallopt`` is unavailable (not Linux / not glibc).
"""

from __future__ import annotations

from collections.abc import Mapping
import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # bytes; glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 2**30  # bytes of free heap top kept before trimming
USER_VARS = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES')
OFF = ('off', '0', 'false', 'no', 'none')


def tune_malloc(env: Mapping[str, str] | None = None) -> bool:
    """Apply the settings above to this process; True when both ``mallopt`` calls succeeded."""
    env = os.environ if env is None else env
    if env.get('NOVA3R_MALLOC_TUNING', '').strip().lower() in OFF:
        return False
    if any(env.get(name) for name in USER_VARS) or not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
