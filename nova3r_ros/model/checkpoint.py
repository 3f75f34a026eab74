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
Checkpoint I/O: one safetensors file, the resolved config JSON in its metadata.

Never pickle / `torch.load`. Loading validates before touching tensors: the file must be a
safetensors file written by this module (format tag + version), its config must parse, and its
tensor names and shapes must match the model the config builds; every floating tensor must be
finite. Errors are `ValueError` (or `FileNotFoundError`) listing what is wrong.

A file may store its floating weights in half precision (`storage='float16'`, declared in the
metadata): half the download, and small enough to travel to a lent GPU beside the code. Such
tensors are widened to the model's dtype on load; an undeclared dtype change is still refused.
"""

from __future__ import annotations

import json
import os
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
import torch

FORMAT_TAG = 'nova3r_ros.model'
FORMAT_VERSION = 1
RESERVED = ('format', 'format_version', 'config', 'storage')
STORAGES = ('float32', 'float16')
_FP16_MAX = float(torch.finfo(torch.float16).max)
_MAX_LISTED = 20


def check_tensor_spec(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                      source: str) -> None:
    """Raise ValueError listing missing / unexpected / shape-mismatched tensors, if any."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(f'{k}: file {list(found[k])} vs model {list(expected[k])}'
                        for k in set(expected) & set(found) if tuple(found[k]) != expected[k])
    if not (missing or unexpected or mismatched):
        return
    lines = [f'{source}: tensors do not match the model built from its config']
    for label, items in (('missing', missing), ('unexpected', unexpected),
                         ('shape mismatch', mismatched)):
        if items:
            shown = items[:_MAX_LISTED]
            more = f' ... (+{len(items) - len(shown)} more)' if len(items) > len(shown) else ''
            lines.append(f'  {label} ({len(items)}): ' + ', '.join(shown) + more)
    raise ValueError('\n'.join(lines))


_SAFETENSORS_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16,
                       'BF16': torch.bfloat16, 'I64': torch.int64, 'I32': torch.int32,
                       'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
                       'BOOL': torch.bool}


def _same_dtype(stored: str, dtype: torch.dtype) -> bool:
    """Tell whether a safetensors dtype tag ('F32', ...) names ``dtype``."""
    return _SAFETENSORS_DTYPES.get(stored) == dtype


def save_state(path: str | os.PathLike, state: dict[str, torch.Tensor],
               config: dict[str, Any], metadata: dict[str, str] | None = None,
               storage: str = 'float32') -> None:
    """
    Write `state` (name -> tensor) and the config JSON to one safetensors file.

    Written to a temporary name and renamed, so a crash never leaves a half file in place.
    storage='float16' stores every float32 tensor in half precision (declared in the metadata);
    a weight beyond half precision's range is refused rather than saved as Inf.
    """
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {STORAGES}, got {storage!r}')
    meta = {'format': FORMAT_TAG, 'format_version': str(FORMAT_VERSION),
            'config': json.dumps(config, sort_keys=True)}
    if storage != 'float32':
        meta['storage'] = storage
    for key, value in (metadata or {}).items():
        if key in RESERVED:
            raise ValueError(f'metadata key {key!r} is reserved')
        if not isinstance(value, str):
            raise ValueError(f'metadata values must be str, got {type(value).__name__} '
                             f'for {key!r}')
        meta[key] = value
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in state.items()}
    if storage == 'float16':
        too_big = sorted(k for k, v in tensors.items() if v.dtype == torch.float32
                         and v.numel() and float(v.abs().max()) > _FP16_MAX)
        if too_big:
            raise ValueError(f'{len(too_big)} tensors exceed float16 range: '
                             + ', '.join(too_big[:_MAX_LISTED]))
        tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    path = os.fspath(path)
    tmp = path + '.tmp'
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def read_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, name -> shape) of a checkpoint without loading tensors. Validates format."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        with safe_open(path, framework='pt') as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises SafetensorsError / OSError variants
        raise ValueError(f'{path}: not a valid safetensors file ({exc}); checkpoints are '
                         'safetensors only (pickle files are refused)') from exc
    if meta.get('format') != FORMAT_TAG:
        raise ValueError(f'{path}: metadata has no format={FORMAT_TAG!r} tag; not a '
                         'nova3r_ros model checkpoint')
    version = meta.get('format_version', '?')
    if version != str(FORMAT_VERSION):
        raise ValueError(f'{path}: checkpoint format_version {version}, this code reads '
                         f'{FORMAT_VERSION}')
    if 'config' not in meta:
        raise ValueError(f'{path}: metadata has no config')
    return meta, shapes


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Return the resolved config dict stored in a checkpoint."""
    meta, _ = read_header(path)
    try:
        return json.loads(meta['config'])
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: config metadata is not valid JSON ({exc})') from exc


def load_state(path: str | os.PathLike, expected: dict[str, tuple[int, ...]],
               map_location: str | torch.device = 'cpu',
               dtypes: dict[str, torch.dtype] | None = None) -> dict[str, torch.Tensor]:
    """
    Load tensors after checking names/shapes against `expected`; refuse NaN/Inf.

    dtypes: name -> dtype the model holds; a tensor stored with another dtype is refused,
    except float32 weights of a file that declares `storage: float16` (widened here). Needed
    where the state is assigned as is (``load_state_dict(assign=True)``): one stray fp16
    tensor among fp32 ones would load and then fail every forward pass.
    """
    path = os.fspath(path)
    meta, shapes = read_header(path)
    check_tensor_spec(expected, shapes, path)
    storage = meta.get('storage', 'float32')
    if storage not in STORAGES:
        raise ValueError(f'{path}: unknown storage {storage!r} (this code reads {STORAGES})')
    with safe_open(path, framework='pt') as f:
        found = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    widen: set[str] = set()
    if storage == 'float16':  # written from float32 weights; widened back unless told otherwise
        widen = {k for k, tag in found.items() if tag == 'F16'
                 and (dtypes is None or dtypes.get(k) == torch.float32)}
    if dtypes is not None:
        stored = {k: 'F32' if k in widen else tag for k, tag in found.items()}
        wrong = sorted(f'{k}: file {found[k]} vs model {str(dtypes[k]).replace("torch.", "")}'
                       for k in stored if k in dtypes and not _same_dtype(stored[k], dtypes[k]))
        if wrong:
            raise ValueError(f'{path}: {len(wrong)} tensors have the wrong dtype: '
                             + ', '.join(wrong[:_MAX_LISTED]))
    device = str(torch.device(map_location))
    state: dict[str, torch.Tensor] = {}
    bad = []
    with safe_open(path, framework='pt', device=device) as f:
        for key in f.keys():
            tensor = f.get_tensor(key)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(key)
            state[key] = tensor.float() if key in widen else tensor
    if bad:
        raise ValueError(f'{path}: non-finite (NaN/Inf) values in {len(bad)} tensors: '
                         + ', '.join(sorted(bad)[:_MAX_LISTED]))
    return state
