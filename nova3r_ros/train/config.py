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
Training configuration: dataclass defaults -> optional YAML file -> `key=value` overrides.

The resolved config is written beside every run (`<out_dir>/config.yaml`) and into every
checkpoint's metadata, so a run can be resumed or reproduced from its directory alone.
Model size comes from a preset (`preset`) plus dotted overrides under `model`, e.g.
`model.decoder.width=96` (validated by the model's own config dataclasses).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
from typing import Any

from nova3r_ros.model import get_preset, Nova3rConfig, PRECISIONS
from nova3r_ros.model.flow import COUPLINGS
import yaml

# what a stage may train: stage 1 builds the point autoencoder; stage 2 the image encoder and
# visibility head, and optionally adapts the decoder to the tokens the image encoder predicts
TRAINABLE = {1: ('point_encoder', 'decoder'),
             2: ('image_encoder', 'visibility_head', 'decoder')}


@dataclass
class TrainConfig:
    """Everything one training run depends on. Sizes are per process (DDP rank)."""

    stage: int = 1  # 1: point AE + flow decoder; 2: image encoder + visibility head
    preset: str = 'tiny'  # model preset; `model` holds dotted overrides of it
    model: dict[str, Any] = field(default_factory=dict)
    init_from: str = ''  # checkpoint whose weights start the run (required for stage 2)
    # stage 2: image encoder + visibility head taken from this (stage-2) checkpoint instead, to
    # warm-start a new stage 2 after a longer stage 1 (init_from then gives the stage-1 half)
    init_encoder_from: str = ''
    out_dir: str = 'runs/stage1'
    data_root: str = 'data/generated/room4'
    train_split: str = 'train'
    val_split: str = 'val'
    train_samples: int = 0  # first N samples of the split (0 = all; pinned at the first start)
    train_start: int = 0  # skip this many manifest entries first (seed order: a seed range)
    val_start: int = 0  # the same for the validation split (val_split may equal train_split)
    # One K per batch, drawn uniformly from `views` (samples are generated with K_max views and
    # restricted to their first K by `select_views`). K=1 is a single view, never duplicated.
    views: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    # Target points per batch: N uniform in {min, min+step, ..., max} (the joint decoder's output
    # depends on N, so it is trained over a range; digest §2.2).
    num_points_min: int = 1024
    num_points_max: int = 2048
    num_points_step: int = 256
    encoder_points: int = 2048  # stage 1: GT points fed to the point encoder (independent draw)
    batch_size: int = 8  # per process
    max_steps: int = 2000  # optimiser steps; also the length of the cosine schedule
    lr: float = 5e-4
    min_lr: float = 5e-5
    warmup_steps: int = 50
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    ema_decay: float = 0.0  # 0 = no EMA; else exported weights are the EMA ones
    visibility_weight: float = 0.1  # stage 2: weight of the visibility BCE
    flow_weight: float = 1.0  # stage 2: weight of the flow loss through the frozen decoder
    latent_weight: float = 0.0  # stage 2: weight of the set-matched latent loss (losses.py)
    # stage 2: weight of the L1 of every view's pointmap in view 1's frame, read from the frame
    # tokens by the model's pointmap head (needs model.aggregator.pointmap_hidden > 0)
    pointmap_weight: float = 0.0
    coupling: str = 'independent'  # noise-target pairing of the flow loss (flow.COUPLINGS)
    # modules this run trains (empty: the stage's own, `Nova3r.stage_modules`). Stage 2 may add
    # 'decoder': a decoder fine-tune on the image encoder's tokens instead of the GT's
    train_modules: list[str] = field(default_factory=list)
    # compute precision (model.PRECISIONS): 'auto' = bf16 autocast on a CUDA GPU with native
    # bf16, fp32 elsewhere; 'bf16' also on the CPU (~1.3x faster stage-2 steps where the CPU has
    # bf16 instructions, e.g. AVX512-BF16 or AMX; far slower where it has not)
    precision: str = 'auto'
    seed: int = 0
    threads: int = 0  # torch intra-op threads per process (0 = cpu_count // world_size)
    workers: int = 0  # DataLoader worker processes per rank
    log_every: int = 10  # steps between metrics.jsonl lines
    ckpt_every: int = 200  # steps between checkpoints ...
    ckpt_minutes: float = 5.0  # ... or minutes, whichever comes first
    keep_last: int = 2  # step checkpoints kept on disk
    val_every: int = 250  # steps between validations (0 = never; always at the end)
    val_samples: int = 16
    val_views: list[int] = field(default_factory=lambda: [2])
    val_num_points: int = 2048
    val_num_steps: int = 10
    mean_token_samples: int = 128  # stage 1: training samples averaged for mean_scene_tokens
    max_minutes: float = 0.0  # stop this invocation after this long (checkpoint, resumable)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on impossible settings (before anything expensive runs)."""
        if self.stage not in (1, 2):
            raise ValueError(f'stage must be 1 or 2, got {self.stage}')
        if self.stage == 2 and not self.init_from:
            raise ValueError('stage 2 needs init_from=<stage-1 checkpoint> (frozen decoder)')
        if self.init_encoder_from and self.stage != 2:
            raise ValueError('init_encoder_from is a stage-2 option')
        unknown = sorted(set(self.train_modules) - set(TRAINABLE[self.stage]))
        if unknown:
            raise ValueError(f'train_modules of stage {self.stage} must be among '
                             f'{TRAINABLE[self.stage]}, got {unknown}')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        if self.coupling not in COUPLINGS:
            raise ValueError(f'coupling must be one of {COUPLINGS}, got {self.coupling!r}')
        if not self.views or any(not 1 <= k <= 8 for k in self.views):
            raise ValueError(f'views must be a non-empty list in 1..8, got {self.views}')
        if any(not 1 <= k <= 8 for k in self.val_views):
            raise ValueError(f'val_views must be in 1..8, got {self.val_views}')
        if not 1 <= self.num_points_min <= self.num_points_max:
            raise ValueError('need 1 <= num_points_min <= num_points_max, got '
                             f'{self.num_points_min}, {self.num_points_max}')
        for name in ('num_points_step', 'encoder_points', 'batch_size', 'max_steps',
                     'log_every', 'ckpt_every', 'keep_last', 'val_num_points', 'val_num_steps'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('train_samples', 'train_start', 'val_start', 'warmup_steps', 'val_every',
                     'val_samples', 'threads', 'workers', 'mean_token_samples'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f'need 0 < min_lr <= lr, got {self.min_lr}, {self.lr}')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f'ema_decay must be in [0, 1), got {self.ema_decay}')
        for name in ('grad_clip', 'visibility_weight', 'flow_weight', 'latent_weight',
                     'pointmap_weight', 'max_minutes', 'ckpt_minutes', 'weight_decay'):
            value = getattr(self, name)  # NaN passes a plain `< 0` test and would, e.g., turn
            if not (math.isfinite(value) and value >= 0):  # grad_clip off without a word
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')
        model = self.model_config()  # validates preset + overrides
        if self.pointmap_weight > 0 and (self.stage != 2 or model.aggregator.pointmap_hidden < 1):
            raise ValueError('pointmap_weight > 0 needs stage 2 and a pointmap head '
                             '(model.aggregator.pointmap_hidden > 0)')

    def model_config(self) -> Nova3rConfig:
        """Return the preset with the dotted `model` overrides applied (validated by the model)."""
        data = get_preset(self.preset).to_dict()
        for key, value in self.model.items():
            node = data
            *parents, leaf = key.split('.')
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f'model override {key!r}: {part!r} is not a section')
                node = node[part]
            if leaf not in node:
                raise ValueError(f'model override {key!r}: unknown key {leaf!r}')
            node[leaf] = value
        data['name'] = self.preset
        return Nova3rConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Check the type of one top-level value against the dataclass default."""
    default = TrainConfig.__dataclass_fields__[key]
    kind = type(default.default) if default.default is not dataclasses.MISSING else type(
        default.default_factory())  # type: ignore[misc]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads '5e-4' as a string
        try:
            return float(value)
        except ValueError:
            pass
    if kind is str and value is None:
        return ''
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f'{key} must be {kind.__name__}, got {value!r}')
    return value


def merge(base: dict[str, Any], updates: dict[str, Any], source: str) -> dict[str, Any]:
    """Apply `updates` (top-level keys or `model.<dotted>` keys) to a config dict."""
    out = dict(base)
    out['model'] = dict(base.get('model', {}))
    for key, value in updates.items():
        if key.startswith('model.'):
            out['model'][key[len('model.'):]] = value
        elif key == 'model':
            if not isinstance(value, dict):
                raise ValueError(f'{source}: model must be a mapping of dotted overrides')
            out['model'].update(value)
        elif key in _FIELDS:
            out[key] = _coerce(key, value)
        else:
            raise ValueError(f'{source}: unknown config key {key!r}; known: {sorted(_FIELDS)}')
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict; values parsed as YAML scalars/lists (`views=[1,2]`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition('=')
        if not sep or not key:
            raise ValueError(f'override {item!r} is not key=value')
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ''
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of config keys (ValueError if it is not one)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f'{path}: cannot read config ({exc})') from exc
    if not isinstance(data, dict):
        raise ValueError(f'{path}: a config file must be a mapping')
    return data


def resolve(base: dict[str, Any] | None = None, yaml_path: str | None = None,
            overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults (or `base`, a saved run config) -> YAML file -> overrides -> TrainConfig."""
    data = dict(base) if base is not None else TrainConfig().to_dict()
    if yaml_path:
        data = merge(data, load_yaml(yaml_path), str(yaml_path))
    if overrides:
        data = merge(data, overrides, 'command line')
    return TrainConfig(**data)


def save_yaml(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config (atomically) next to a run."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    os.replace(tmp, path)
