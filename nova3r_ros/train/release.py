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
Write a verified model file for shipping: a release note, and optionally half-precision storage.

    python -m nova3r_ros.train.release runs/x/model.safetensors \
        checkpoints/nova3r_tiny.safetensors --storage float16 --note "seventeenth (...): ..."

`--take point_encoder=runs/y/model_final.safetensors` swaps in one module from another file.

Why half precision: the shipped file is most of what every clone downloads and every lent-GPU
run must carry (its working tree may hold 64 MiB in all). The tool reloads what it wrote and
prints how far the weights and a fixed reconstruction moved, so the change is measured, not
assumed; `nova3r_eval` then scores the file like any other.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import os
from pathlib import Path
import sys
import tempfile

from nova3r_ros.model import Nova3r
from nova3r_ros.model.checkpoint import STORAGES
import torch


def _probe(model: Nova3r, views: int, num_points: int, seed: int) -> torch.Tensor:
    """Points and visibility logits of a fixed random window (same noise every call)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    images = torch.rand(1, views, 3, cfg.image_height, cfg.image_width, generator=gen)
    with torch.no_grad():
        out = model.reconstruct(images, num_points=num_points,
                                generator=torch.Generator().manual_seed(seed))
    return torch.cat([out['points'][0], out['visibility_logits'][0, :, None]], dim=1)


def take_modules(model: Nova3r, takes: Sequence[tuple[str, Path]]) -> None:
    """
    Replace whole modules of `model` with another file's (e.g. a point encoder refitted alone).

    Why whole modules: a stage-1 or head fit exports only what it built, so the release is the
    shipped file with the retrained parts swapped in, every other weight untouched.
    """
    for name, path in takes:
        target = getattr(model, name, None)
        if not isinstance(target, torch.nn.Module):
            raise ValueError(f'--take: the model has no module {name!r}')
        donor = getattr(Nova3r.from_checkpoint(path), name, None)
        if not isinstance(donor, torch.nn.Module):
            raise ValueError(f'--take: {path} has no module {name!r}')
        try:
            target.load_state_dict(donor.state_dict())
        except RuntimeError as exc:
            raise ValueError(f'--take {name}: {path} does not fit: {exc}') from exc


def release(source: Path, out: Path, storage: str = 'float32', note: str | None = None,
            views: int = 2, num_points: int = 2048, seed: int = 0,
            takes: Sequence[tuple[str, Path]] = ()) -> dict[str, float]:
    """
    Copy `source` to `out` (storage, optional 'release' note, module takes); return the drift.

    The drift: largest weight change from storage (after the takes), and the largest / median
    change of a fixed window's points and visibility logits between the two files (0 for a
    float32 copy, and for takes of modules the image path does not use).
    """
    before = Nova3r.from_checkpoint(source)
    source_mib = source.stat().st_size / 2 ** 20  # before `out` may replace it
    reference = _probe(before, views, num_points, seed)
    take_modules(before, takes)
    meta = dict(before.checkpoint_metadata)
    if note is not None:
        if not note.strip():
            raise ValueError('--note must not be empty')
        meta['release'] = note
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target first, so `out` may be `source` and a failure keeps the old file
    fd, tmp_name = tempfile.mkstemp(suffix='.safetensors', dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        before.save_checkpoint(tmp, meta, storage=storage)
        after = Nova3r.from_checkpoint(tmp)
        weights = max(float((a - b).abs().max()) for a, b in zip(
            before.state_dict().values(), after.state_dict().values(), strict=True)
            if a.is_floating_point() and a.numel())
        diff = (reference - _probe(after, views, num_points, seed)).abs()
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would ship a file only its writer can read
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {'source_mib': source_mib, 'out_mib': out.stat().st_size / 2 ** 20,
            'max_weight_change': weights,
            'max_point_change': float(diff[:, :3].max()),
            'median_point_change': float(diff[:, :3].median()),
            'max_logit_change': float(diff[:, 3].max())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m nova3r_ros.train.release',
        description='Write a model file for shipping (release note, storage precision) and '
                    'print how far a fixed reconstruction moved.')
    parser.add_argument('source', type=Path, help='model file to release')
    parser.add_argument('out', type=Path, help='file to write (may be the source)')
    parser.add_argument('--storage', choices=STORAGES, default='float32',
                        help='precision of the stored weights (float16: half the size; the '
                             'model still computes in float32 or bf16)')
    parser.add_argument('--note', help="the 'release' metadata (what changed, session)")
    parser.add_argument('--views', type=int, default=2, help='views in the probe window')
    parser.add_argument('--num-points', type=int, default=2048, help='points in the probe')
    parser.add_argument('--take', action='append', default=[], metavar='MODULE=FILE',
                        help="replace MODULE (e.g. point_encoder) with FILE's; repeatable")
    args = parser.parse_args(argv)
    if args.views < 1 or args.num_points < 1:
        parser.error('--views and --num-points must be >= 1')
    takes = []
    for item in args.take:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            parser.error(f'--take wants MODULE=FILE, got {item!r}')
        takes.append((name, Path(path)))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        drift = release(args.source, args.out, args.storage, args.note, args.views,
                        args.num_points, takes=takes)
    except (FileNotFoundError, ValueError) as exc:
        print(f'release: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(drift, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
