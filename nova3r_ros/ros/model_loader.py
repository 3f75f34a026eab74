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
Finding and loading the node's checkpoint, and choosing its device and CPU threads.

Look-up order for the ``checkpoint`` parameter (the model code itself never touches the ament
index):

1. an explicit path (``~`` expanded, relative to the working directory) -- used as given;
2. empty: ``DEFAULT_CHECKPOINT`` in the installed package's share directory
   (``share/nova3r_ros/checkpoints``, via ament_index when it is importable and the package is
   installed);
3. then the source tree's ``checkpoints/`` next to the ``nova3r_ros`` package.

Every failure is a ``CheckpointError`` whose message says what was tried, so the node can stop
at start-up with one clear line instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from nova3r_ros.model import Nova3r
from nova3r_ros.model.nova3r import cuda_has_native_bf16
from nova3r_ros.ros.compat import package_share_dir
import torch

PACKAGE = 'nova3r_ros'
DEFAULT_CHECKPOINT = 'nova3r_tiny.safetensors'
SOURCE_CHECKPOINTS = Path(__file__).resolve().parents[2] / 'checkpoints'


class CheckpointError(RuntimeError):
    """The configured checkpoint cannot be found or loaded (message is user-facing)."""


def _share_checkpoints() -> Path | None:
    share = package_share_dir(PACKAGE)
    return None if share is None else share / 'checkpoints'


def candidate_paths(checkpoint: str) -> list[Path]:
    """Return the paths tried for a ``checkpoint`` parameter value, in look-up order."""
    if checkpoint.strip():
        return [Path(os.path.expanduser(checkpoint.strip()))]
    share = _share_checkpoints()
    paths = [share / DEFAULT_CHECKPOINT] if share is not None else []
    paths.append(SOURCE_CHECKPOINTS / DEFAULT_CHECKPOINT)
    return paths


def resolve_checkpoint(checkpoint: str) -> Path:
    """Return the first existing file of ``candidate_paths``; ``CheckpointError`` if none does."""
    tried = candidate_paths(checkpoint)
    for path in tried:
        if path.is_file():
            return path
    listed = ', '.join(str(p) for p in tried)
    if checkpoint.strip():
        raise CheckpointError(f'checkpoint not found: {listed} (parameter checkpoint)')
    raise CheckpointError(
        f'no checkpoint given and the shipped {DEFAULT_CHECKPOINT} was not found (tried: '
        f'{listed}); set the parameter checkpoint:=<path to a .safetensors file>')


def select_device(device: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error."""
    name = device.strip().lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        chosen = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"device {device!r} is not a torch device ('auto', 'cpu', "
                              "'cuda', 'cuda:<index>')") from exc
    if chosen.type == 'cuda':
        if not torch.cuda.is_available():
            raise CheckpointError(f'device {device!r} requested but CUDA is not available')
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise CheckpointError(f'device {device!r}: only {torch.cuda.device_count()} GPUs')
    elif chosen.type != 'cpu':
        raise CheckpointError(f"device {device!r}: use 'auto', 'cpu' or 'cuda[:index]'")
    return chosen


def worker_threads(requested: int, cores: int | None = None) -> int:
    """Torch CPU threads for the worker: ``requested`` if > 0, else cores - 1 (>= 1)."""
    if requested > 0:
        return int(requested)
    if cores is None:
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def load_model(checkpoint: str, device: str, precision: str = 'auto'
               ) -> tuple[Nova3r, Path, torch.device]:
    """
    Resolve, validate and load the checkpoint on the chosen device (eval mode, `precision`).

    Returns (model, path, device); raises ``CheckpointError`` with a readable reason.
    """
    path = resolve_checkpoint(checkpoint)
    chosen = select_device(device)
    if precision == 'bf16' and chosen.type == 'cuda' and not cuda_has_native_bf16(chosen):
        raise CheckpointError(f"precision 'bf16' on {chosen}: this GPU has no native bf16 "
                              "(compute capability < 8.0); use 'auto' or 'fp32'")
    try:
        model = Nova3r.from_checkpoint(path, map_location=chosen)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        raise CheckpointError(f'cannot load checkpoint {path}: {exc}') from exc
    try:
        model.set_precision(precision)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    return model.to(chosen).eval(), path, chosen


def device_description(device: torch.device) -> str:
    """Human-readable device for diagnostics' hardware_id (GPU name on CUDA)."""
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f'cuda:{index} {torch.cuda.get_device_name(index)}'
    return f'cpu ({os.cpu_count()} cores)'
