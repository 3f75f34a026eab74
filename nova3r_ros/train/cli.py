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
nova3r_train: stage-1 / stage-2 training of NOVA3R (one CLI, `--stage`).

    nova3r_train --stage 1 --config nova3r_ros/train/configs/tiny_stage1.yaml out_dir=runs/s1
    nova3r_train --stage 2 init_from=runs/s1/model_final.safetensors out_dir=runs/s2
    nova3r_train --resume runs/s1                      # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m nova3r_ros.train.cli --stage 1 ...   # DDP (gloo / nccl)

Config: dataclass defaults (nova3r_ros/train/config.py) -> --config YAML -> key=value
overrides (YAML values: `views=[1,2]`, `model.decoder.width=96`). The resolved config is written
to <out_dir>/config.yaml; with --resume it is the base and overrides apply on top.
Outputs in <out_dir>: metrics.jsonl, loss.png, ckpt/ (resumable state), model_best.safetensors
(best validation F@0.1), model_final.safetensors (at max_steps; stage 1 includes the mean
latent for the trivial prior).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys

from nova3r_ros import allocator

from .config import load_yaml, parse_overrides, resolve


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='nova3r_train', description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--stage', type=int, choices=(1, 2), default=None,
                   help='1 = point autoencoder + flow decoder; 2 = image encoder through the '
                        "frozen decoder (+ visibility head). Default: the config's stage")
    p.add_argument('--config', default=None, help='YAML file of config keys')
    p.add_argument('--resume', default=None, metavar='RUN_DIR',
                   help='continue the run in RUN_DIR from its latest checkpoint')
    p.add_argument('--until-step', type=int, default=None,
                   help='checkpoint and stop at this step (the schedule still ends at '
                        'max_steps); continue later with --resume')
    p.add_argument('--validate-only', action='store_true',
                   help='with --resume: validate the latest checkpoint, log it, print, exit')
    p.add_argument('--export', action='store_true',
                   help='with --resume: write model_final.safetensors from the latest checkpoint '
                        '(stage 1: after computing the mean latent) even before max_steps')
    p.add_argument('--no-progress', action='store_true', help='no tqdm bar')
    p.add_argument('overrides', nargs='*', metavar='key=value', help='config overrides')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a configuration error)."""
    args = build_parser().parse_args(argv)
    allocator.tune_malloc()  # keep freed activation pages mapped (allocator.py)
    if (args.validate_only or args.export) and not args.resume:
        print('nova3r_train: error: --validate-only / --export need --resume RUN_DIR',
              file=sys.stderr)
        return 2
    try:
        overrides = parse_overrides(list(args.overrides))
        if args.stage is not None:
            overrides['stage'] = args.stage
        base = None
        if args.resume:
            saved = Path(args.resume) / 'config.yaml'
            if not saved.exists():
                raise ValueError(f'--resume: {saved} does not exist')
            base = load_yaml(saved)
            overrides.setdefault('out_dir', str(args.resume))
        cfg = resolve(base, args.config, overrides)
        from .trainer import Trainer

        trainer = Trainer(cfg, resume=bool(args.resume), progress=not args.no_progress)
    except (ValueError, OSError) as exc:  # OSError: a missing init_from or data file
        print(f'nova3r_train: error: {exc}', file=sys.stderr)
        return 2
    if args.export:
        path = trainer.export_final()
        summary = {'step': trainer.step, 'exported': str(path)}
    elif args.validate_only:
        summary = {'step': trainer.step, **trainer.run_validation()}
        if trainer.is_main:
            trainer.save()  # keeps the best score / prior flag
    else:
        summary = trainer.train(args.until_step)
    if trainer.is_main:
        print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
