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
The training loop for both stages (nanoGPT-style: one loop, everything visible).

Stage 1: `encode_points` (complete GT) -> Z -> flow-matching loss of the joint decoder.
Stage 2: `encode_images` (K views) -> Z -> `flow_weight` x flow-matching loss through the
*frozen* stage-1 decoder, plus `visibility_weight` x BCE of the visibility head on GT labels (its
gradient also reaches the image encoder: visibility must come from the images), plus
`latent_weight` x the set-matched squared error to the frozen stage-1 encoder's Z of the
complete GT (losses.py says why), plus `pointmap_weight` x the L1 of every view's pointmap in
view 1's frame, read from the frame tokens (`surface.PointmapHead`: the geometry NOVA3R's
VGGT-initialised encoder starts with and ours, trained from scratch, is otherwise never told).
Only `stage_modules(stage)` are trained, or the modules
`train_modules` names (stage 2 + 'decoder': the decoder adapts to the tokens the image encoder
predicts; stage 1 + only 'decoder': the decoder refits while the tokens stay what stage 2 was
trained to predict); everything else has requires_grad=False. `coupling` pairs the flow loss's
noise with its targets ('ot': least total distance per sample, `flow.couple`).

Distributed: `torchrun --nproc_per_node P -m nova3r_ros.train.cli ...` runs P processes; the
objective is wrapped in `DistributedDataParallel` (gloo on CPU, nccl on CUDA) and the data is
split by `DistributedSampler` (see data.py). Randomness is explicit: model init from
`torch.manual_seed(seed)`, flow noise / times / encoder subsets of step s on rank r from a
generator seeded by (seed, rank, s), so `--resume` continues exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
import re
import signal
import time
from typing import Any

from nova3r_ros.model import checkpoint as model_ckpt
from nova3r_ros.model import Nova3r
from nova3r_ros.model.surface import world_pointmap_loss
import numpy as np
from safetensors import safe_open
import torch
from torch import nn
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import state as st
from .config import save_yaml, TrainConfig
from .data import BatchPlan, num_points_choices, TrainSet
from .losses import matched_latent_loss
from .validate import mean_scene_tokens, validate


class StageObjective(nn.Module):
    """What DDP wraps: the model and the loss of one stage in `forward`."""

    def __init__(self, model: Nova3r, stage: int, visibility_weight: float,
                 flow_weight: float = 1.0, latent_weight: float = 0.0,
                 coupling: str = 'independent', pointmap_weight: float = 0.0) -> None:
        super().__init__()
        self.model, self.stage, self.visibility_weight = model, stage, visibility_weight
        self.flow_weight, self.latent_weight = flow_weight, latent_weight
        self.coupling, self.pointmap_weight = coupling, pointmap_weight

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator
                ) -> dict[str, torch.Tensor]:
        """
        Losses of one batch: `loss` (optimised), `flow`, and `visibility` in stage 2.

        batch: points (B, N, 3) normalised view-1 targets; visible (B, N) bool;
        encoder_points (B, P, 3) (stage 1) or images (B, K, 3, H, W) in [0, 1] (stage 2);
        pointmaps (B, K, R, 3) and pointmaps_valid (B, K, R) with `pointmap_weight`.
        """
        m = self.model
        if self.stage == 1:
            tokens = m.encode_points(batch['encoder_points'], generator)
            flow = m.flow_loss(tokens, batch['points'], generator, coupling=self.coupling)
            return {'loss': flow, 'flow': flow}
        pointmaps = None
        if self.pointmap_weight > 0:
            tokens, pointmaps = m.encode_pointmaps(batch['images'])
        else:
            tokens = m.encode_images(batch['images'])
        flow = m.flow_loss(tokens, batch['points'], generator, coupling=self.coupling)
        vis = m.visibility_loss(tokens, batch['points'], batch['visible'])
        losses = {'flow': flow, 'visibility': vis}
        total = self.flow_weight * flow + self.visibility_weight * vis
        if pointmaps is not None:
            geometry = world_pointmap_loss(pointmaps, batch['pointmaps'],
                                           batch['pointmaps_valid'])
            losses['pointmap'] = geometry
            total = total + self.pointmap_weight * geometry
        if self.latent_weight > 0:
            with torch.no_grad():  # the frozen stage-1 encoder on the complete GT
                target = m.encode_points(batch['encoder_points'], generator)
            latent = matched_latent_loss(tokens, target)
            losses['latent'] = latent
            total = total + self.latent_weight * latent
        return {'loss': total, **losses}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then cosine decay to `min_lr` at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Make the CPU generator of one (rank, step): flow noise, flow times, encoder subsets."""
    value = int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(value & ((1 << 63) - 1))


def init_weights_from(model: Nova3r, path: str, stage: int) -> dict[str, int]:
    """
    Copy every tensor of checkpoint `path` whose name and shape match `model`.

    Stage 2 requires all point-encoder, decoder and `mean_scene_tokens` tensors to match (the
    frozen stage-1 half); from a stage-1 file it takes only that half. A stage 1 may grow the
    decoder: the checkpoint's layers keep their indices and the new ones follow with their
    point-stream gates at zero, so the velocity (and the head's features) start unchanged. Returns
    counts {'loaded', 'skipped', 'missing'}.
    """
    meta, shapes = model_ckpt.read_header(path)
    own = model.state_dict()
    src_layers = _block_depth(shapes, _DECODER_LAYER, 1)
    new_layers = len(model.decoder.layers)
    if src_layers and new_layers != src_layers and (stage == 2 or new_layers < src_layers):
        raise ValueError(f'{path}: decoder has {src_layers} layers, this model {new_layers}; '
                         f'only a stage 1 can grow it (never shrink)')
    matching = [k for k in own if k in shapes and tuple(shapes[k]) == tuple(own[k].shape)]
    if stage == 2 and meta.get('stage') == '1':
        # a stage-1 file's image encoder was never trained: keep this model's own init (the
        # zero projection of image_tokens='mean_residual' in particular)
        matching = [k for k in matching
                    if not k.startswith(('image_encoder.', 'visibility_head.'))]
    if stage == 2:
        need = [k for k in own if k.startswith(('point_encoder.', 'decoder.'))
                or k == 'mean_scene_tokens']
        bad = sorted(set(need) - set(matching))
        if bad:
            raise ValueError(f'{path}: not a usable stage-1 checkpoint for this model; '
                             f'{len(bad)} decoder/encoder tensors missing or mismatched, e.g. '
                             f'{bad[:5]}')
    with safe_open(path, framework='pt') as f, torch.no_grad():
        for key in matching:
            own[key].copy_(f.get_tensor(key))
        for key, value in own.items():
            m = _DECODER_LAYER.match(key)
            if src_layers and m and int(m.group(1)) >= src_layers and m.group(2).startswith(
                    'p2t_modulation.net.2.'):
                value.zero_()  # gates (and shift/scale) 0: the new layer leaves points as they are
    return {'loaded': len(matching), 'skipped': len(set(shapes) - set(matching)),
            'missing': len(set(own) - set(matching))}


_BACKBONE_BLOCK = re.compile(r'^image_encoder\.backbone\.blocks\.(\d+)\.(.+)$')
_DECODER_LAYER = re.compile(r'^decoder\.layers\.(\d+)\.(.+)$')
_AGGREGATOR_BLOCK = re.compile(
    r'^image_encoder\.aggregator\.(frame_blocks|global_blocks)\.(\d+)\.(.+)$')


def _block_depth(names: Any, pattern: re.Pattern[str], index_group: int) -> int:
    """Return the number of blocks a set of tensor names holds for `pattern` (0 if none)."""
    found = [int(m.group(index_group)) for m in map(pattern.match, names) if m]
    return max(found) + 1 if found else 0


def encoder_growth_map(source_names: Any, model: Nova3r) -> dict[str, str]:
    """
    Map each image-encoder tensor of `model` to the source tensor that initialises it.

    A deeper encoder grows from a shallower one without changing its function: the source's
    backbone blocks keep their indices (new blocks follow them), the source's aggregator layers
    move to the end (new layers come first, so the last scene-token layer, whose output is Z,
    stays the source's last). New blocks are absent from the map; `init_encoder_from` zeroes
    their layer scales, which makes each an identity. The aggregator must grow by a multiple of
    `scene_stride` so that every source layer keeps its role (scene tokens or not).
    """
    names = set(source_names)
    cfg = model.cfg
    src_backbone = _block_depth(names, _BACKBONE_BLOCK, 1)
    src_aggregator = _block_depth(names, _AGGREGATOR_BLOCK, 2)
    offset = cfg.aggregator.depth - src_aggregator
    if cfg.backbone.depth < src_backbone or offset < 0:
        raise ValueError(f'cannot shrink the image encoder (backbone {src_backbone} -> '
                         f'{cfg.backbone.depth} blocks, aggregator {src_aggregator} -> '
                         f'{cfg.aggregator.depth} layers)')
    if offset % cfg.aggregator.scene_stride:
        raise ValueError(f'the aggregator can grow only by a multiple of scene_stride '
                         f'{cfg.aggregator.scene_stride} (asked {src_aggregator} -> '
                         f'{cfg.aggregator.depth})')
    mapping = {}
    for key in model.state_dict():
        if not key.startswith(('image_encoder.', 'visibility_head.')):
            continue
        source: str | None = key
        if (m := _BACKBONE_BLOCK.match(key)) and int(m.group(1)) >= src_backbone:
            source = None
        elif m := _AGGREGATOR_BLOCK.match(key):
            index = int(m.group(2)) - offset
            source = (f'image_encoder.aggregator.{m.group(1)}.{index}.{m.group(3)}'
                      if index >= 0 else None)
        if source is not None:
            mapping[key] = source
    return mapping


def _carries_trained_encoder(path: str) -> bool:
    """
    Tell whether a stage-1 file holds a trained image encoder after all.

    A stage-1 run warm-started from a stage-2 file (the shipped model's decoder refits) keeps
    that file's encoder. With `image_tokens: mean_residual` the encoder's token projection
    starts at exactly zero, so a non-zero one has been trained.
    """
    key = 'image_encoder.aggregator.token_proj.weight'
    if model_ckpt.read_config(path).get('image_tokens') != 'mean_residual':
        return False
    with safe_open(path, framework='pt') as f:
        return key in f.keys() and bool(f.get_tensor(key).any())


# a head's fit record in the file's metadata, and the tensors that record describes
HEAD_RECORDS = {'confidence_head': ('confidence_head.',),
                'surface_head': ('surface_head.', 'visibility_fusion.', 'pixel_surface.'),
                'visibility_head': ('visibility_head.',)}


def carried_records(model: Nova3r, path: str, trained: set[str]) -> dict[str, str]:
    """
    Fit records of `path` whose heads this run copies whole and never trains.

    Why: a run warm-started from a release keeps its confidence, surface and pixel heads as they
    were fitted; without their records the exported file would no longer say how (the release
    had to merge them back by hand, session 30). A record is dropped when any of its tensors was
    not copied (another shape) or this run trains it (the record would describe other weights).
    """
    meta, shapes = model_ckpt.read_header(path)
    own = model.state_dict()
    kept = {}
    for key, prefixes in HEAD_RECORDS.items():
        names = [k for k in own if k.startswith(prefixes)]
        copied = names and all(tuple(shapes.get(k, ())) == tuple(own[k].shape) for k in names)
        if key in meta and copied and not any(p.rstrip('.') in trained for p in prefixes):
            kept[key] = meta[key]
    return kept


def init_encoder_from(model: Nova3r, path: str) -> int:
    """
    Copy the image encoder and visibility head of a stage-2 checkpoint into `model`.

    Warm start of a new stage 2 after a longer stage 1: the encoder already maps images to
    (nearly) the right latents. A model with a deeper backbone or aggregator grows from the
    checkpoint's encoder (`encoder_growth_map`): same function at step 0, more capacity to
    train. Every other tensor must exist with the same shape. Returns the number of tensors
    copied.
    """
    meta, shapes = model_ckpt.read_header(path)
    if meta.get('stage') == '1' and not _carries_trained_encoder(path):
        raise ValueError(f'{path}: a stage-1 checkpoint has no trained image encoder')
    own = model.state_dict()
    mapping = encoder_growth_map(shapes, model)
    bad = [k for k, src in mapping.items()
           if src not in shapes or tuple(shapes[src]) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f'{path}: image encoder does not match this model ({len(bad)} tensors '
                         f'missing or mismatched, e.g. {bad[:3]})')
    with safe_open(path, framework='pt') as f, torch.no_grad():
        for key, source in mapping.items():
            own[key].copy_(f.get_tensor(source))
        for key, value in own.items():
            new_block = key.startswith('image_encoder.') and key not in mapping
            if new_block and key.endswith(('.ls1.gamma', '.ls2.gamma')):
                value.zero_()  # the new residual block starts as the identity
    return len(mapping)


class Trainer:
    """One run: builds data/model/optimizer, resumes if asked, trains, checkpoints, validates."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.distributed = int(os.environ.get('WORLD_SIZE', '1')) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group('nccl' if torch.cuda.is_available() else 'gloo')
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if torch.cuda.is_available():
            local = int(os.environ.get('LOCAL_RANK', '0'))
            torch.cuda.set_device(local)
            self.device = torch.device('cuda', local)
        else:
            self.device = torch.device('cpu')
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // self.world))
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / 'ckpt'
        self.is_main = self.rank == 0

        root = Path(cfg.data_root)
        model_cfg = cfg.model_config()
        grid = model_cfg.patch_grid if cfg.pointmap_weight > 0 else None  # stage 2 (config)
        self.train_set = TrainSet(root / cfg.train_split, cfg.stage, cfg.encoder_points,
                                  cfg.seed, cfg.train_samples,
                                  with_encoder_points=cfg.stage == 1 or cfg.latent_weight > 0,
                                  pointmap_grid=grid, start=cfg.train_start)
        cfg.train_samples = len(self.train_set)  # pinned in config.yaml for --resume
        self.val_set = (TrainSet(root / cfg.val_split, cfg.stage, cfg.encoder_points, cfg.seed,
                                 start=cfg.val_start)
                        if cfg.val_samples > 0 else None)
        wanted = (model_cfg.image_width, model_cfg.image_height)
        for data in (self.train_set, self.val_set) if cfg.stage == 2 else ():
            if data is not None and data.image_size not in (None, wanted):
                # stage 2 feeds the stored images as they are: refuse before building anything
                raise ValueError(
                    f'{data.root} holds {data.image_size[0]}x{data.image_size[1]} images, '
                    f'preset {model_cfg.name!r} takes {wanted[0]}x{wanted[1]}: generate the '
                    f'data with nova3r_generate --width {wanted[0]} --height {wanted[1]}')
        for k in cfg.views + cfg.val_views:
            if k > self.train_set.max_views:
                raise ValueError(f'K={k} requested but {root} has K_max='
                                 f'{self.train_set.max_views}')
        self.plan = BatchPlan(self.train_set, cfg.batch_size, cfg.views,
                              num_points_choices(cfg.num_points_min, cfg.num_points_max,
                                                 cfg.num_points_step),
                              cfg.seed, self.world, self.rank)

        torch.manual_seed(cfg.seed)
        self.model = Nova3r(model_cfg)
        self.init_report: dict[str, int] = {}
        if cfg.init_from:
            self.init_report = init_weights_from(self.model, cfg.init_from, cfg.stage)
        if cfg.init_encoder_from:
            self.init_report['encoder_from'] = init_encoder_from(self.model,
                                                                 cfg.init_encoder_from)
        self.carried = (carried_records(self.model, cfg.init_from, set(self.trained_modules()))
                        if cfg.init_from else {})
        self.model.to(self.device).train().set_precision(cfg.precision)
        self.model.requires_grad_(False)
        for module in self.trained_modules().values():
            module.requires_grad_(True)
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = dict(self.model.named_parameters())
        decay = [n for n in self.names if params[n].dim() >= 2]
        no_decay = [n for n in self.names if params[n].dim() < 2]
        self.names = decay + no_decay  # optimizer index order
        self.optimizer = torch.optim.AdamW(
            [{'params': [params[n] for n in decay], 'weight_decay': cfg.weight_decay},
             {'params': [params[n] for n in no_decay], 'weight_decay': 0.0}],
            lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.ema = ({n: params[n].detach().clone() for n in self.names}
                    if cfg.ema_decay > 0 else None)
        objective = StageObjective(self.model, cfg.stage, cfg.visibility_weight,
                                   cfg.flow_weight, cfg.latent_weight, cfg.coupling,
                                   cfg.pointmap_weight)
        self.objective: nn.Module = (DistributedDataParallel(objective)
                                     if self.distributed else objective)

        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.train_seconds, self.best = 0.0, -1.0
        self.prior_logged = False
        if resume:
            self._resume()
        elif self.is_main and st.latest_checkpoint(self.ckpt_root) is not None:
            raise ValueError(f'{self.out} already holds a run; pass --resume {self.out} or '
                             'choose another out_dir')
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, self.out / 'config.yaml')
        self._stop_signal = False

    def trained_modules(self) -> dict[str, nn.Module]:
        """Return the modules this run optimises: `train_modules`, else the stage's own."""
        if not self.cfg.train_modules:
            return self.model.stage_modules(self.cfg.stage)
        every = {**self.model.stage_modules(1), **self.model.stage_modules(2)}
        return {name: every[name] for name in self.cfg.train_modules}

    # ------------------------------------------------------------------ state
    def _resume(self) -> None:
        directory = st.latest_checkpoint(self.ckpt_root)
        if directory is None:
            raise ValueError(f'--resume: {self.ckpt_root} has no checkpoint')
        expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        weights = model_ckpt.load_state(directory / 'model.safetensors', expected)
        self.model.load_state_dict(weights)
        tensors, info = st.load_training_state(directory)
        st.optimizer_from_flat(self.optimizer, self.names, tensors, info['optimizer'])
        if self.ema is not None:
            saved = [f'ema.{n}' in tensors for n in self.names]
            if any(saved) and not all(saved):
                raise ValueError(f'{directory}: EMA weights saved for only some parameters')
            if all(saved):
                for n in self.names:
                    self.ema[n].copy_(tensors[f'ema.{n}'])
            else:  # EMA switched on for a run that had none: it starts at today's weights
                for n, p in self.model.named_parameters():
                    if n in self.ema:
                        self.ema[n].copy_(p.detach())
                if self.is_main:
                    print(f'EMA (decay {self.cfg.ema_decay}) starts at step {info["step"]} '
                          'from the current weights', flush=True)
        torch.set_rng_state(tensors['rng.torch_cpu'])
        self.step, self.epoch = int(info['step']), int(info['epoch'])
        self.batch_in_epoch = int(info['batch_in_epoch'])
        self.train_seconds, self.best = float(info['train_seconds']), float(info['best'])
        self.prior_logged = bool(info.get('prior_logged', False))

    def _metadata(self) -> dict[str, str]:
        return {**self.carried, 'stage': str(self.cfg.stage), 'step': str(self.step),
                'train_seconds': f'{self.train_seconds:.1f}',
                'world_size': str(self.world),
                'generator_version': self.train_set.generator_version,
                'num_train_samples': str(len(self.train_set)),
                'train_config': json.dumps(self.cfg.to_dict(), sort_keys=True)}

    def export_model(self) -> Nova3r:
        """Return the model with EMA weights swapped in (or the model itself without EMA)."""
        if self.ema is None:
            return self.model
        clone = Nova3r(self.model.cfg).to(self.device).set_precision(self.model.precision)
        clone.load_state_dict(self.model.state_dict())
        params = dict(clone.named_parameters())
        with torch.no_grad():
            for n in self.names:
                params[n].copy_(self.ema[n])
        return clone.train(self.model.training)

    def save(self) -> None:
        """Step checkpoint (weights + optimizer + RNG + data position), rank 0 only."""
        if not self.is_main:
            return
        opt_tensors, opt_meta = st.optimizer_to_flat(self.optimizer, self.names)
        tensors = dict(opt_tensors)
        if self.ema is not None:
            tensors.update({f'ema.{n}': v for n, v in self.ema.items()})
        tensors['rng.torch_cpu'] = torch.get_rng_state()
        info = {'epoch': self.epoch, 'batch_in_epoch': self.batch_in_epoch,
                'train_seconds': self.train_seconds, 'best': self.best,
                'prior_logged': self.prior_logged, 'optimizer': opt_meta,
                'train_config': self.cfg.to_dict(), 'world_size': self.world}
        meta = self._metadata()
        st.save_training_state(self.ckpt_root, self.step,
                               lambda p: self.model.save_checkpoint(p, meta), tensors, info,
                               self.cfg.keep_last)

    # ------------------------------------------------------------------ logging
    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.out / 'metrics.jsonl', 'a') as f:
                f.write(json.dumps(record, sort_keys=True) + '\n')

    def run_validation(self) -> dict[str, float]:
        """Validate (rank 0), log, and export `model_best.safetensors` when it improves."""
        if not self.is_main or self.val_set is None:
            return {}
        t0 = time.perf_counter()
        model = self.export_model()
        with_prior = self.cfg.stage == 2 and not self.prior_logged
        metrics = validate(model, self.val_set, self.cfg.stage, self.cfg.val_views,
                           self.cfg.val_samples, self.cfg.val_num_points,
                           self.cfg.val_num_steps, self.cfg.encoder_points, with_prior)
        self.prior_logged = self.prior_logged or with_prior
        score = metrics.get(f'val/k{self.cfg.val_views[0]}/complete/fscore@0.1', -1.0)
        if score > self.best:
            self.best = score
            model.save_checkpoint(self.out / 'model_best.safetensors',
                                  {**self._metadata(), 'val_fscore@0.1': f'{score:.4f}'})
        self.log({'kind': 'val', 'step': self.step, 'seconds': time.perf_counter() - t0,
                  **metrics})
        return metrics

    def _handle_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = True

    # ------------------------------------------------------------------ loop
    def train(self, until_step: int | None = None) -> dict[str, Any]:
        """
        Run until max_steps; return a summary dict.

        Also stops at `until_step`, max_minutes or SIGTERM/SIGINT: checkpoint and return,
        resumable.
        """
        previous = {}
        if self.is_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError):  # not in the main thread
                    previous[sig] = signal.signal(sig, self._handle_signal)
        try:
            return self._loop(until_step)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, until_step: int | None) -> dict[str, Any]:
        cfg = self.cfg
        self.plan.set_position(self.epoch, self.batch_in_epoch)
        loader = DataLoader(self.train_set, batch_sampler=self.plan, num_workers=cfg.workers)
        bar = None
        if self.is_main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f'stage {cfg.stage}',
                       unit='step', dynamic_ncols=True)
        start = time.perf_counter()
        last_ckpt = time.perf_counter()
        window: list[dict[str, float]] = []
        stop = self.step >= cfg.max_steps or (until_step is not None and self.step >= until_step)
        tick = time.perf_counter()
        while not stop:
            for batch in loader:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                lr = lr_at(self.step, cfg)
                for group in self.optimizer.param_groups:
                    group['lr'] = lr
                generator = step_generator(cfg.seed, self.rank, self.step)
                losses = self.objective(batch, generator)
                self.optimizer.zero_grad(set_to_none=True)
                losses['loss'].backward()
                params = [p for g in self.optimizer.param_groups for p in g['params']]
                grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                             if cfg.grad_clip > 0 else torch.zeros(()))
                self.optimizer.step()
                if self.ema is not None:
                    with torch.no_grad():
                        named = dict(self.model.named_parameters())
                        for n in self.names:
                            self.ema[n].lerp_(named[n], 1.0 - cfg.ema_decay)
                self.step += 1
                self.batch_in_epoch += 1
                now = time.perf_counter()
                self.train_seconds += now - tick
                step_s, tick = now - tick, now
                n = batch['points'].shape[1]
                k = self.plan.batch_shape(self.batch_in_epoch - 1)[0]
                window.append({key: float(v.detach()) for key, v in losses.items()})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{window[-1]['loss']:.4f}",
                                    smp_s=f'{cfg.batch_size * self.world / step_s:.1f}', K=k,
                                    N=n)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    means = {key: float(np.mean([w[key] for w in window])) for key in window[0]}
                    if self.distributed:
                        packed = torch.tensor([means[key] for key in sorted(means)],
                                              device=self.device)
                        dist.all_reduce(packed)
                        means = dict(zip(sorted(means), (packed / self.world).tolist(),
                                         strict=True))
                    self.log({'kind': 'train', 'step': self.step, 'lr': lr,
                              'grad_norm': float(grad_norm), 'K': k, 'N': n,
                              'samples_per_s': cfg.batch_size * self.world / step_s,
                              'train_seconds': self.train_seconds, 'epoch': self.epoch,
                              **means})
                    window = []
                done = self.step >= cfg.max_steps
                time_up = cfg.max_minutes > 0 and now - start > 60 * cfg.max_minutes
                paused = until_step is not None and self.step >= until_step
                stop = self._agree(done or time_up or paused or self._stop_signal)
                if cfg.val_every and self.step % cfg.val_every == 0 and not done:
                    self.run_validation()
                    tick = time.perf_counter()  # validation time is not training time
                if (self.step % cfg.ckpt_every == 0 or stop
                        or time.perf_counter() - last_ckpt > 60 * cfg.ckpt_minutes):
                    if done and cfg.stage == 1:
                        self.finish_stage1()
                    self.save()
                    last_ckpt = tick = time.perf_counter()
                if stop:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                self.plan.set_position(self.epoch, 0)
        if bar is not None:
            bar.close()
        finished = self.step >= cfg.max_steps
        if finished:
            self.run_validation()
            if self.is_main:
                self.save()
                self.export_model().save_checkpoint(self.out / 'model_final.safetensors',
                                                    self._metadata())
                self.plot()
        elif self.is_main:
            self.plot()
        if self.distributed:
            dist.barrier()
        return {'step': self.step, 'finished': finished, 'train_seconds': self.train_seconds,
                'best_val_fscore@0.1': self.best}

    def export_final(self) -> Path:
        """`model_final.safetensors` at the current step (stage 1: with the mean latent)."""
        if self.cfg.stage == 1:
            self.finish_stage1()
        path = self.out / 'model_final.safetensors'
        if self.is_main:
            self.export_model().save_checkpoint(path, self._metadata())
        return path

    def _agree(self, flag: bool) -> bool:
        """Rank 0's stop decision, shared with every rank (so no rank waits forever)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(value, 0)
        return bool(value.item() > 0)

    def finish_stage1(self) -> None:
        """Store the mean training latent (trivial prior) in the model, on every rank."""
        cfg = self.model.cfg
        tokens = torch.zeros(cfg.num_scene_tokens, cfg.latent_dim, device=self.device)
        if self.is_main:
            tokens = mean_scene_tokens(self.export_model(), self.train_set,
                                       self.cfg.mean_token_samples, self.cfg.views,
                                       self.cfg.encoder_points, seed=self.cfg.seed
                                       ).to(self.device)
        if self.distributed:  # rank 0's value everywhere
            dist.broadcast(tokens, 0)
        self.model.mean_scene_tokens.copy_(tokens.to(self.device))

    def plot(self) -> None:
        """`loss.png` beside metrics.jsonl (rank 0)."""
        from .plots import plot_metrics

        plot_metrics(self.out / 'metrics.jsonl', self.out / 'loss.png',
                     title=f'{self.out.name} (stage {self.cfg.stage})')
