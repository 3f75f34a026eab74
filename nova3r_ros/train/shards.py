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
Split a model file into size-capped safetensors shards, and join them back.

    python -m nova3r_ros.train.shards split runs/x/model_final.safetensors $OUT --max-mib 15
    python -m nova3r_ros.train.shards join <folder with the shards> runs/x/model.safetensors

Why: a lent GPU machine returns at most 16 MiB per file, so a model trained there comes back
in pieces. Each shard is a plain safetensors file (never pickle) holding whole tensors and the
source's metadata, plus which piece of how many it is and a digest of the whole set, so `join`
refuses a missing, foreign or repeated piece instead of writing a model with holes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import hashlib
import json
from pathlib import Path
import sys

from nova3r_ros.model.checkpoint import load_state, read_header, RESERVED, save_state
from safetensors import safe_open
from safetensors.torch import save_file
import torch

_SHARD_KEYS = ('shard_index', 'shard_count', 'shard_set')


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def split(source: Path, out_dir: Path, max_bytes: int) -> list[Path]:
    """Write `source`'s tensors into shards of at most `max_bytes` of tensor data each."""
    meta, shapes = read_header(source)
    with safe_open(str(source), framework='pt') as f:
        tensors = {k: f.get_tensor(k) for k in sorted(f.keys())}
    groups: list[list[str]] = [[]]
    size = 0
    for key, value in tensors.items():
        n = _nbytes(value)
        if n > max_bytes:
            raise ValueError(f'{key} alone is {n} bytes, more than a shard may hold ({max_bytes})')
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += n
    digest = hashlib.sha256(json.dumps(
        [meta, {k: list(v) for k, v in shapes.items()}], sort_keys=True).encode()).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, keys in enumerate(groups):
        path = out_dir / f'{source.stem}.shard{index:02d}.safetensors'
        extra = {'shard_index': str(index), 'shard_count': str(len(groups)),
                 'shard_set': digest[:16]}
        save_file({k: tensors[k].contiguous() for k in keys}, str(path),
                  metadata={**meta, **extra})
        paths.append(path)
    return paths


def join(shard_dir: Path, out: Path) -> Path:
    """Rebuild one model file from the shards in `shard_dir` (all of one set, none missing)."""
    shards: dict[int, Path] = {}
    sets, counts, meta = set(), set(), None
    for path in sorted(shard_dir.glob('*.shard*.safetensors')):
        head, _ = read_header(path)
        if not all(k in head for k in _SHARD_KEYS):
            raise ValueError(f'{path}: not a shard (no {_SHARD_KEYS} metadata)')
        index = int(head['shard_index'])
        if index in shards:
            raise ValueError(f'{path}: shard {index} appears twice ({shards[index]})')
        shards[index] = path
        sets.add(head['shard_set'])
        counts.add(int(head['shard_count']))
        meta = {k: v for k, v in head.items() if k not in _SHARD_KEYS}
    if not shards:
        raise FileNotFoundError(f'no *.shardNN.safetensors files in {shard_dir}')
    if len(sets) != 1 or len(counts) != 1:
        raise ValueError(f'{shard_dir}: shards of {len(sets)} different sets; keep one set')
    count = counts.pop()
    missing = sorted(set(range(count)) - set(shards))
    stray = sorted(set(shards) - set(range(count)))
    if missing or stray:
        raise ValueError(f'{shard_dir}: of {count} shards, missing {missing}, out of range '
                         f'{stray}')
    state: dict[str, torch.Tensor] = {}
    for index in range(count):
        _, shapes = read_header(shards[index])
        state.update(load_state(shards[index], shapes))  # refuses NaN/Inf like any model file
    assert meta is not None
    config = json.loads(meta['config'])
    extra = {k: v for k, v in meta.items() if k not in RESERVED}
    # load_state widened float16 halves to float32; storing them as float16 again is lossless
    save_state(out, state, config, extra, storage=meta.get('storage', 'float32'))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m nova3r_ros.train.shards',
                                     description='Split a model file into size-capped shards '
                                                 '(a lent GPU returns at most 16 MiB a file) '
                                                 'and join them back.')
    sub = parser.add_subparsers(dest='command', required=True)
    s = sub.add_parser('split', help='model file -> shards in a folder')
    s.add_argument('source', type=Path)
    s.add_argument('out_dir', type=Path)
    s.add_argument('--max-mib', type=float, default=15.0,
                   help='tensor data per shard (default 15: under the 16 MiB file limit)')
    j = sub.add_parser('join', help='folder of shards -> one model file')
    j.add_argument('shard_dir', type=Path)
    j.add_argument('out', type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == 'split':
            if not args.max_mib > 0:
                parser.error('--max-mib must be > 0')
            for path in split(args.source, args.out_dir, int(args.max_mib * 2 ** 20)):
                print(f'{path} {path.stat().st_size / 2 ** 20:.1f} MiB')
        else:
            print(join(args.shard_dir, args.out))
    except (FileNotFoundError, ValueError) as exc:
        print(f'shards: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
