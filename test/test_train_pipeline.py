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
Training pipeline tests, from config resolution to a 2-process torchrun (gloo) smoke run.

Config resolution, schedule, data order, resume equivalence, stage 2 freezing,
optimizer-state round trip and a 2-process torchrun (gloo) smoke run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import subprocess
import sys

from nova3r_ros.data.generate import generate
from nova3r_ros.data.sample import GeneratorConfig
from nova3r_ros.model import Nova3r
from nova3r_ros.train import cli
from nova3r_ros.train import state as st
from nova3r_ros.train.config import parse_overrides, resolve, TrainConfig
from nova3r_ros.train.data import BatchPlan, num_points_choices, TrainSet
from nova3r_ros.train.trainer import lr_at, Trainer
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def micro_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train + 2 val samples with K_max=4 at the micro preset's 42 x 28 input."""
    root = tmp_path_factory.mktemp('micro_data')
    cfg = GeneratorConfig(num_views=4, width=42, height=28, num_points=2048)
    generate(root, 'train', list(range(8)), cfg, progress=False)
    generate(root, 'val', [1_000_000, 1_000_001], cfg, progress=False)
    return root


def micro_config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = {'preset': 'micro', 'data_root': str(data), 'out_dir': str(out), 'batch_size': 2,
            'max_steps': 6, 'num_points_min': 64, 'num_points_max': 128, 'num_points_step': 32,
            'encoder_points': 128, 'warmup_steps': 2, 'val_every': 0, 'val_samples': 0,
            'log_every': 1, 'ckpt_every': 100, 'mean_token_samples': 4, 'threads': 1}
    base.update(kw)
    return TrainConfig(**base)


def test_config_layers(tmp_path: Path) -> None:
    path = tmp_path / 'c.yaml'
    path.write_text('lr: 0.001\nbatch_size: 4\nmodel:\n  decoder.width: 96\n')
    cfg = resolve(None, str(path), parse_overrides(['batch_size=3', 'views=[1, 2]', 'lr=2e-3',
                                                    'model.point_encoder.width=64']))
    assert (cfg.lr, cfg.batch_size, cfg.views) == (0.002, 3, [1, 2])
    model_cfg = cfg.model_config()
    assert model_cfg.decoder.width == 96 and model_cfg.point_encoder.width == 64
    with pytest.raises(ValueError, match='unknown config key'):
        resolve(None, None, {'lrr': 1.0})
    with pytest.raises(ValueError, match='unknown key'):
        resolve(None, None, {'model.decoder.widht': 3})
    with pytest.raises(ValueError, match='init_from'):
        TrainConfig(stage=2)
    with pytest.raises(ValueError, match='batch_size must be int'):
        resolve(None, None, {'batch_size': 'eight'})
    for name in ('grad_clip', 'visibility_weight', 'ckpt_minutes'):  # NaN would pass `< 0`
        with pytest.raises(ValueError, match=f'{name} must be a finite number'):
            TrainConfig(**{name: float('nan')})


def test_cli_missing_init_from_is_a_one_line_error(micro_data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert cli.main(['--no-progress', f'out_dir={tmp_path / "t"}', f'data_root={micro_data}',
                     'preset=micro', f'init_from={tmp_path / "none.safetensors"}']) == 2
    assert 'nova3r_train: error: checkpoint not found' in capsys.readouterr().err


def test_lr_schedule_known_values() -> None:
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way: cos = 0
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(35, cfg) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi / 4)) * 9e-4)


def test_batch_plan_deterministic_and_split(micro_data: Path) -> None:
    ds = TrainSet(micro_data / 'train', stage=1, encoder_points=128)
    ns = num_points_choices(64, 128, 32)
    assert ns == [64, 96, 128]
    plans = [BatchPlan(ds, 2, [1, 2, 3, 4], ns, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    for plan in plans:
        plan.set_position(epoch=3, start=0)
    b0, b1 = (list(p) for p in plans)
    assert len(b0) == len(b1) == 2  # 8 samples / 2 ranks / batch 2
    idx0 = {key[0] for batch in b0 for key in batch}
    idx1 = {key[0] for batch in b1 for key in batch}
    assert idx0.isdisjoint(idx1) and len(idx0 | idx1) == 8
    for a, b in zip(b0, b1, strict=True):  # one (K, N) per batch, the same on every rank
        assert len({key[1:] for key in a + b}) == 1
    again = BatchPlan(ds, 2, [1, 2, 3, 4], ns, seed=5, num_replicas=2, rank=0)
    again.set_position(epoch=3, start=1)
    assert list(again) == b0[1:]  # resume mid-epoch = the suffix
    again.set_position(epoch=4, start=0)
    assert list(again) != b0
    item = ds[b0[0][0]]
    k, n = b0[0][0][1:3]
    assert item['points'].shape == (n, 3) and item['encoder_points'].shape == (128, 3)
    assert torch.equal(ds[b0[0][0]]['points'], item['points'])  # deterministic subset
    # median_3 normalisation of the view-selected sample: median distance of all its GT is 3
    sample = ds.load(b0[0][0][0], k)
    radius = torch.from_numpy(sample['points'] * sample['median3_scale']).norm(dim=1)
    assert float(radius.median()) == pytest.approx(3.0, rel=1e-3)


def test_optimizer_state_round_trip() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    names = ['weight', 'bias']
    tensors, meta = st.optimizer_to_flat(opt, names)
    assert set(tensors) == {f'optim.{n}.{k}' for n in names for k in ('step', 'exp_avg',
                                                                      'exp_avg_sq')}
    json.dumps(meta)  # the non-tensor part is plain JSON
    opt2 = torch.optim.AdamW(lin.parameters(), lr=0.5)
    st.optimizer_from_flat(opt2, names, tensors, meta)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a['param_groups'] == b['param_groups']
    for i in a['state']:
        for key in a['state'][i]:
            assert torch.equal(a['state'][i][key], b['state'][i][key])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return Nova3r.from_checkpoint(path).state_dict()


@pytest.mark.slow
def test_resume_equals_uninterrupted(micro_data: Path, tmp_path: Path) -> None:
    full = Trainer(micro_config(micro_data, tmp_path / 'full', ema_decay=0.5), progress=False)
    assert full.train()['finished']
    half = Trainer(micro_config(micro_data, tmp_path / 'half', ema_decay=0.5), progress=False)
    summary = half.train(until_step=3)
    assert summary == {**summary, 'step': 3, 'finished': False}
    final = tmp_path / 'half' / 'model_final.safetensors'
    assert not final.exists()
    # --export writes a usable model (with the mean latent) from a run that is not finished
    assert cli.main(['--resume', str(tmp_path / 'half'), '--export', '--no-progress']) == 0
    exported = Nova3r.from_checkpoint(final)
    assert exported.checkpoint_metadata['step'] == '3'
    assert float(exported.mean_scene_tokens.abs().mean()) > 1e-3
    final.unlink()
    resumed = Trainer(micro_config(micro_data, tmp_path / 'half', ema_decay=0.5), resume=True,
                      progress=False)
    assert resumed.step == 3
    assert resumed.train()['finished']
    a = _weights(tmp_path / 'full' / 'model_final.safetensors')
    b = _weights(tmp_path / 'half' / 'model_final.safetensors')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    # the stage-1 end stores a non-trivial mean latent (the trivial prior)
    assert float(a['mean_scene_tokens'].abs().mean()) > 1e-3
    steps = [json.loads(line)['step'] for line in
             (tmp_path / 'half' / 'metrics.jsonl').read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match='already holds a run'):
        Trainer(micro_config(micro_data, tmp_path / 'full'), progress=False)


def test_ema_switched_on_at_resume_starts_from_the_weights(micro_data: Path,
                                                           tmp_path: Path) -> None:
    run = tmp_path / 'run'
    assert not Trainer(micro_config(micro_data, run), progress=False).train(
        until_step=3)['finished']
    resumed = Trainer(micro_config(micro_data, run, ema_decay=0.9), resume=True, progress=False)
    params = dict(resumed.model.named_parameters())
    for n in resumed.names:  # the EMA starts exactly at the step-3 weights
        torch.testing.assert_close(resumed.ema[n], params[n].detach(), rtol=0, atol=0)
    assert resumed.train()['finished']
    # from here on the EMA lags the raw weights and is what the run exports
    moved = [n for n in resumed.names if not torch.equal(resumed.ema[n], params[n].detach())]
    assert moved
    exported = _weights(run / 'model_final.safetensors')
    torch.testing.assert_close(exported[moved[0]], resumed.ema[moved[0]])
    # and the EMA is saved, so a second resume restores it instead of restarting it
    again = Trainer(micro_config(micro_data, run, ema_decay=0.9), resume=True, progress=False)
    for n in again.names:
        torch.testing.assert_close(again.ema[n], resumed.ema[n], rtol=0, atol=0)


@pytest.mark.slow
def test_stage2_trains_encoder_through_frozen_decoder(micro_data: Path, tmp_path: Path) -> None:
    s1 = Trainer(micro_config(micro_data, tmp_path / 's1', max_steps=2), progress=False)
    s1.train()
    init = tmp_path / 's1' / 'model_final.safetensors'
    s2 = Trainer(micro_config(micro_data, tmp_path / 's2', stage=2, init_from=str(init),
                              max_steps=3, val_samples=1, val_num_points=64, val_num_steps=2,
                              views=[1, 2]), progress=False)
    s2.train()
    before, after = _weights(init), _weights(tmp_path / 's2' / 'model_final.safetensors')
    for key in before:
        changed = not torch.equal(before[key], after[key])
        frozen = key.startswith(('point_encoder.', 'decoder.')) or key == 'mean_scene_tokens'
        if frozen:
            assert not changed, key
    assert any(not torch.equal(before[k], after[k]) for k in before
               if k.startswith('image_encoder.'))
    assert any(not torch.equal(before[k], after[k]) for k in before
               if k.startswith('visibility_head.'))
    records = [json.loads(line) for line in
               (tmp_path / 's2' / 'metrics.jsonl').read_text().splitlines()]
    train = [r for r in records if r['kind'] == 'train']
    assert all(r['K'] in (1, 2) and 'visibility' in r for r in train)
    val = [r for r in records if r['kind'] == 'val']
    assert 'val/k2/complete/fscore@0.1' in val[-1] and 'val_prior/k2/complete/chamfer' in val[0]
    assert (tmp_path / 's2' / 'loss.png').stat().st_size > 1000


@pytest.mark.slow
def test_stage2_decoder_fine_tune_trains_only_the_named_modules(micro_data: Path,
                                                                tmp_path: Path) -> None:
    s1 = Trainer(micro_config(micro_data, tmp_path / 's1', max_steps=2), progress=False)
    s1.train()
    init = tmp_path / 's1' / 'model_final.safetensors'
    s2 = Trainer(micro_config(micro_data, tmp_path / 's2', stage=2, init_from=str(init),
                              max_steps=2, views=[2], train_modules=['decoder']),
                 progress=False)
    assert set(s2.trained_modules()) == {'decoder'}
    s2.train()
    before, after = _weights(init), _weights(tmp_path / 's2' / 'model_final.safetensors')
    changed = {k.split('.')[0] for k in before if not torch.equal(before[k], after[k])}
    # the decoder adapts to the (here untrained) image encoder's tokens; nothing else moves
    assert changed == {'decoder'}


def test_stage2_refuses_images_of_another_size_before_building(
        micro_data: Path, tmp_path: Path) -> None:
    # stage 2 feeds the stored images as they are: a paper-preset run on tiny data failed only
    # at its first batch, after the model had been built
    with pytest.raises(ValueError, match='42x28 images, preset .tiny. takes 224x168'):
        Trainer(micro_config(micro_data, tmp_path / 's2', preset='tiny', stage=2,
                             init_from=str(tmp_path / 'never_read.safetensors')),
                progress=False)


def test_train_modules_must_belong_to_the_stage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='train_modules of stage 1'):
        TrainConfig(stage=1, train_modules=['image_encoder'])
    with pytest.raises(ValueError, match='train_modules of stage 2'):
        TrainConfig(stage=2, init_from='x.safetensors', train_modules=['point_encoder'])
    cfg = TrainConfig(stage=2, init_from='x.safetensors', train_modules=['decoder'])
    assert cfg.train_modules == ['decoder']


def test_stage1_ot_coupling_trains_the_decoder_alone(micro_data: Path, tmp_path: Path) -> None:
    s1 = Trainer(micro_config(micro_data, tmp_path / 's1', max_steps=2), progress=False)
    s1.train()
    init = tmp_path / 's1' / 'model_final.safetensors'
    ot = Trainer(micro_config(micro_data, tmp_path / 'ot', init_from=str(init), max_steps=3,
                              coupling='ot', train_modules=['decoder']), progress=False)
    assert ot.objective.coupling == 'ot'
    ot.train()
    before, after = _weights(init), _weights(tmp_path / 'ot' / 'model_final.safetensors')
    changed = {k.split('.')[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {'decoder'}  # the point encoder's tokens stay what stage 2 learnt
    flows = [json.loads(line)['flow'] for line in
             (tmp_path / 'ot' / 'metrics.jsonl').read_text().splitlines()
             if json.loads(line)['kind'] == 'train']
    assert flows and all(math.isfinite(f) for f in flows)
    with pytest.raises(ValueError, match='coupling'):
        TrainConfig(stage=1, coupling='sinkhorn')


def test_bf16_precision_trains_on_the_cpu(micro_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(micro_config(micro_data, tmp_path / 'bf16', max_steps=2, precision='bf16',
                                   ema_decay=0.5), progress=False)
    assert trainer.model.uses_bf16() and trainer.export_model().uses_bf16()
    trainer.train()
    steps = [json.loads(line) for line in
             (tmp_path / 'bf16' / 'metrics.jsonl').read_text().splitlines()
             if json.loads(line)['kind'] == 'train']
    assert steps and all(math.isfinite(s['flow']) for s in steps)
    final = _weights(tmp_path / 'bf16' / 'model_final.safetensors')
    assert all(v.dtype == torch.float32 for v in final.values())  # fp32 master weights
    with pytest.raises(ValueError, match='precision'):
        TrainConfig(stage=1, precision='fp16')


@pytest.mark.slow
def test_stage2_latent_loss_and_mean_residual_start(micro_data: Path, tmp_path: Path) -> None:
    s1 = Trainer(micro_config(micro_data, tmp_path / 's1', max_steps=2), progress=False)
    s1.train()
    init = tmp_path / 's1' / 'model_final.safetensors'
    cfg = micro_config(micro_data, tmp_path / 's2', stage=2, init_from=str(init), max_steps=3,
                       latent_weight=1.0, views=[2], model={'image_tokens': 'mean_residual'})
    s2 = Trainer(cfg, progress=False)
    # from a stage-1 file only the stage-1 half is taken: the projection stays zero, so the
    # untrained image encoder reproduces the trivial prior exactly
    assert float(s2.model.image_encoder.aggregator.token_proj.weight.abs().max()) == 0.0
    images = torch.rand(1, 2, 3, 28, 42)
    assert torch.allclose(s2.model.encode_images(images), s2.model.prior_scene_tokens(1))
    s2.train()
    records = [json.loads(line) for line in
               (tmp_path / 's2' / 'metrics.jsonl').read_text().splitlines()]
    train = [r for r in records if r['kind'] == 'train']
    assert all(math.isfinite(r['latent']) and r['latent'] > 0 for r in train)
    assert len(train) == 3  # log_every=1: each record is one step's losses
    assert all(abs(r['loss'] - r['flow'] - r['latent'] - 0.1 * r['visibility']) < 1e-4
               for r in train)


def test_stage2_warm_start_takes_the_encoder_from_a_second_checkpoint(micro_data: Path,
                                                                      tmp_path: Path) -> None:
    from nova3r_ros.model import get_preset

    torch.manual_seed(1)
    stage1, stage2 = tmp_path / 'new_s1.safetensors', tmp_path / 'old_s2.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(stage1, {'stage': '1'})
    torch.manual_seed(2)
    Nova3r(get_preset('micro')).save_checkpoint(stage2, {'stage': '2'})
    cfg = micro_config(micro_data, tmp_path / 'run', stage=2, init_from=str(stage1),
                       init_encoder_from=str(stage2))
    trainer = Trainer(cfg, progress=False)
    a, b = _weights(stage1), _weights(stage2)
    state = trainer.model.state_dict()
    for key, value in state.items():
        source = b if key.startswith(('image_encoder.', 'visibility_head.')) else a
        if key.startswith(('image_encoder.', 'visibility_head.', 'point_encoder.', 'decoder.')):
            torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=key)
    assert trainer.init_report['encoder_from'] == sum(
        k.startswith(('image_encoder.', 'visibility_head.')) for k in state)
    with pytest.raises(ValueError, match='no trained image encoder'):
        Trainer(micro_config(micro_data, tmp_path / 'bad', stage=2, init_from=str(stage1),
                             init_encoder_from=str(stage1)), progress=False)
    with pytest.raises(ValueError, match='stage-2 option'):
        micro_config(micro_data, tmp_path / 'bad1', init_encoder_from=str(stage2))


def test_stage2_warm_start_from_a_decoder_refit_keeps_its_trained_encoder(
        micro_data: Path, tmp_path: Path) -> None:
    """
    A stage-1 file may carry a trained encoder (the shipped model: a decoder refit).

    With mean_residual tokens an untrained encoder's projection is exactly zero, which tells
    the two kinds of stage-1 file apart.
    """
    import dataclasses

    from nova3r_ros.model import get_preset

    cfg = dataclasses.replace(get_preset('micro'), image_tokens='mean_residual')
    fresh, refit = tmp_path / 'fresh_s1.safetensors', tmp_path / 'refit_s1.safetensors'
    torch.manual_seed(4)
    model = Nova3r(cfg)
    model.save_checkpoint(fresh, {'stage': '1'})
    with torch.no_grad():
        model.image_encoder.aggregator.token_proj.weight.normal_()  # as a stage 2 leaves it
    model.save_checkpoint(refit, {'stage': '1'})
    run = micro_config(micro_data, tmp_path / 'run', stage=2, init_from=str(fresh),
                       init_encoder_from=str(refit), model={'image_tokens': 'mean_residual'})
    trainer = Trainer(run, progress=False)
    torch.testing.assert_close(trainer.model.image_encoder.aggregator.token_proj.weight,
                               model.image_encoder.aggregator.token_proj.weight, rtol=0, atol=0)
    bad = micro_config(micro_data, tmp_path / 'bad', stage=2, init_from=str(fresh),
                       init_encoder_from=str(fresh), model={'image_tokens': 'mean_residual'})
    with pytest.raises(ValueError, match='no trained image encoder'):
        Trainer(bad, progress=False)


def test_stage1_warm_start_grows_a_deeper_decoder_without_changing_its_velocity(
        micro_data: Path, tmp_path: Path) -> None:
    from nova3r_ros.model import get_preset

    torch.manual_seed(4)
    source = Nova3r(get_preset('micro'))
    with torch.no_grad():  # open the zero-initialised gates, so an identity would be visible
        for name, value in source.named_parameters():
            if name.startswith('decoder.') and 'modulation.net.2' in name:
                value.normal_(0.0, 0.2)
    stage1 = tmp_path / 'old_s1.safetensors'
    source.save_checkpoint(stage1, {'stage': '1'})
    trainer = Trainer(micro_config(micro_data, tmp_path / 'run', init_from=str(stage1),
                                   model={'decoder.num_layers': 3}), progress=False)
    model = trainer.model
    assert len(model.decoder.layers) == 3 and len(source.decoder.layers) == 2
    tokens, points, t = torch.randn(2, 16, 16), torch.rand(2, 50, 3) * 2 - 1, torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(model.velocity(tokens, points, t),
                                   source.velocity(tokens, points, t))
        torch.testing.assert_close(model.point_features(tokens, points),
                                   source.point_features(tokens, points))
    gate = 'decoder.layers.2.p2t_modulation.net.2.weight'
    assert torch.count_nonzero(model.state_dict()[gate]) == 0
    trainer.train()
    assert torch.count_nonzero(trainer.model.state_dict()[gate]) > 0  # the new layer trains
    # stage 2 keeps the frozen decoder as it is, and no stage shrinks it
    with pytest.raises(ValueError, match='only a stage 1 can grow it'):
        Trainer(micro_config(micro_data, tmp_path / 'bad2', stage=2, init_from=str(stage1),
                             model={'decoder.num_layers': 3}), progress=False)
    with pytest.raises(ValueError, match='never shrink'):
        Trainer(micro_config(micro_data, tmp_path / 'bad1', init_from=str(stage1),
                             model={'decoder.num_layers': 1}), progress=False)


def test_stage2_warm_start_grows_a_deeper_encoder_without_changing_its_output(
        micro_data: Path, tmp_path: Path) -> None:
    from nova3r_ros.model import get_preset

    torch.manual_seed(3)
    source = Nova3r(get_preset('micro'))
    with torch.no_grad():  # non-trivial layer scales, so an identity mapping would be visible
        for name, value in source.named_parameters():
            if name.endswith('.gamma'):
                value.uniform_(0.5, 1.5)
    stage2 = tmp_path / 'old_s2.safetensors'
    source.save_checkpoint(stage2, {'stage': '2'})
    # latent loss on: a fresh micro decoder's zero-initialised gates ignore the tokens, so the
    # flow loss alone would give the encoder no gradient
    grown = {'model': {'backbone.depth': 3, 'aggregator.depth': 4}, 'latent_weight': 1.0}
    trainer = Trainer(micro_config(micro_data, tmp_path / 'run', stage=2, init_from=str(stage2),
                                   init_encoder_from=str(stage2), **grown), progress=False)
    model = trainer.model
    encoder = model.image_encoder
    assert (len(encoder.backbone.blocks), encoder.aggregator.depth) == (3, 4)
    images = torch.rand(2, 3, 3, 28, 42)
    source.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.image_encoder(images), source.image_encoder(images),
                                   rtol=1e-5, atol=1e-6)
    state = model.state_dict()
    old = source.state_dict()
    # source aggregator layers 0, 1 became 2, 3; the new layers 0, 1 and backbone block 1, 2
    # start as identities and still train
    torch.testing.assert_close(state['image_encoder.aggregator.global_blocks.3.attn.qkv.weight'],
                               old['image_encoder.aggregator.global_blocks.1.attn.qkv.weight'])
    for key in ('image_encoder.aggregator.frame_blocks.0.ls1.gamma',
                'image_encoder.aggregator.global_blocks.1.ls2.gamma',
                'image_encoder.backbone.blocks.2.ls1.gamma'):
        assert torch.count_nonzero(state[key]) == 0, key
    assert torch.count_nonzero(state['image_encoder.backbone.blocks.0.ls1.gamma']) > 0
    before = state['image_encoder.backbone.blocks.2.ls1.gamma'].clone()
    trainer.train()
    assert torch.count_nonzero(trainer.model.state_dict()[
        'image_encoder.backbone.blocks.2.ls1.gamma'] - before) > 0
    with pytest.raises(ValueError, match='multiple of scene_stride'):
        Trainer(micro_config(micro_data, tmp_path / 'odd', stage=2, init_from=str(stage2),
                             init_encoder_from=str(stage2),
                             model={'aggregator.depth': 3}), progress=False)
    deeper = tmp_path / 'grown_s2.safetensors'
    trainer.model.save_checkpoint(deeper, {'stage': '2'})
    with pytest.raises(ValueError, match='cannot shrink'):
        Trainer(micro_config(micro_data, tmp_path / 'less', stage=2, init_from=str(stage2),
                             init_encoder_from=str(deeper)), progress=False)


@pytest.mark.slow
def test_torchrun_two_process_gloo_smoke(micro_data: Path, tmp_path: Path) -> None:
    out = tmp_path / 'ddp'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    # torchrun's module, not its script: pip --user / apt layouts put the script elsewhere
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(29500 + os.getpid() % 500),
           '-m', 'nova3r_ros.train.cli', '--stage', '1', '--no-progress', 'preset=micro',
           f'data_root={micro_data}', f'out_dir={out}', 'batch_size=2', 'max_steps=3',
           'num_points_min=64', 'num_points_max=128', 'num_points_step=32', 'encoder_points=128',
           'warmup_steps=1', 'val_every=0', 'val_samples=1', 'val_num_points=64',
           'val_num_steps=2', 'log_every=1', 'mean_token_samples=2', 'threads=1']
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = Nova3r.from_checkpoint(out / 'model_final.safetensors')
    assert model.checkpoint_metadata['world_size'] == '2'
    train = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in train if r['kind'] == 'train'] == [1, 2, 3]
    assert all(math.isfinite(r['loss']) for r in train if r['kind'] == 'train')
    assert any(r['kind'] == 'val' for r in train)
