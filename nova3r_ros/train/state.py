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
Training checkpoints: safetensors + JSON only (no pickle, no torch.save).

Layout under `<out_dir>/ckpt/`:

    step_00001200/model.safetensors   model weights + resolved model config (Nova3r format)
    step_00001200/state.safetensors   optimizer moments (`optim.<param>.<name>`), EMA weights
                                      (`ema.<param>`), torch CPU RNG state (`rng.torch_cpu`)
    step_00001200/state.json          step, epoch, batch in epoch, optimizer hyper-parameters,
                                      wall-clock so far, best validation score, train config
    latest.json                       {"step": 1200, "dir": "step_00001200"} (written last)

A checkpoint is complete once `latest.json` points at it (atomic rename), so a run killed while
saving resumes from the previous one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
import torch

STATE_VERSION = 1


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def optimizer_to_flat(optimizer: torch.optim.Optimizer, names: list[str]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """
    Split an optimizer state_dict into named tensors and a JSON-able remainder.

    `names[i]` is the parameter name of optimizer index i (param_groups flattened in order).
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slot in sd['state'].items():
        for key, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f'optim.{names[idx]}.{key}'] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(names[idx], {})[key] = value
    groups = [dict(g.items()) for g in sd['param_groups']]
    return tensors, {'param_groups': groups, 'scalars': scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, names: list[str],
                        tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `optimizer_to_flat`; ValueError if parameters do not match."""
    current = optimizer.state_dict()
    groups = meta['param_groups']
    if [len(g['params']) for g in groups] != [len(g['params']) for g in current['param_groups']]:
        raise ValueError('optimizer state does not match the trainable parameters '
                         '(different stage or model config?)')
    state: dict[int, dict[str, Any]] = {}
    for idx, name in enumerate(names):
        slot = {key[len(f'optim.{name}.'):]: value for key, value in tensors.items()
                if key.startswith(f'optim.{name}.') and '.' not in key[len(f'optim.{name}.'):]}
        slot.update(meta['scalars'].get(name, {}))
        if slot:
            state[idx] = slot
    optimizer.load_state_dict({'state': state, 'param_groups': groups})


def save_training_state(ckpt_root: Path, step: int, model_save: Any,
                        tensors: dict[str, torch.Tensor], info: dict[str, Any],
                        keep_last: int) -> Path:
    """
    Write one step checkpoint, point `latest.json` at it and prune old ones.

    `model_save(path)` writes the model weights (e.g. `Nova3r.save_checkpoint`).
    """
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f'step_{step:08d}'
    final = ckpt_root / name
    tmp = ckpt_root / f'.{name}.tmp{os.getpid()}'
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model_save(tmp / 'model.safetensors')
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
              str(tmp / 'state.safetensors'),
              metadata={'format': 'nova3r_ros.train.state', 'version': str(STATE_VERSION)})
    _write_json(tmp / 'state.json', {**info, 'state_version': STATE_VERSION, 'step': step})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_json(ckpt_root / 'latest.json', {'step': step, 'dir': name})
    steps = sorted(p for p in ckpt_root.glob('step_*') if p.is_dir())
    for old in steps[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """Return the directory `latest.json` points at, or None when the run has no checkpoint yet."""
    pointer = ckpt_root / 'latest.json'
    if not pointer.exists():
        return None
    try:
        target = ckpt_root / json.loads(pointer.read_text())['dir']
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f'{pointer}: unreadable ({exc})') from exc
    if not (target / 'state.json').exists():
        raise ValueError(f'{pointer} points at {target}, which is incomplete')
    return target


def load_training_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors of state.safetensors, state.json) of one step checkpoint."""
    info = json.loads((directory / 'state.json').read_text())
    if info.get('state_version') != STATE_VERSION:
        raise ValueError(f'{directory}: state_version {info.get("state_version")}, this code '
                         f'reads {STATE_VERSION}')
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(directory / 'state.safetensors'), framework='pt') as f:
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, info
