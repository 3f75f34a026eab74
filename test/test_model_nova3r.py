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

"""The full model: shapes for K=1..8, sampling, checkpoints, configs, preprocessing."""

import json
import pickle
import struct
import subprocess
import sys

from nova3r_ros.model import (
    adjust_intrinsics,
    get_preset,
    median3_scale,
    normalize_median3,
    Nova3r,
    Nova3rConfig,
    prepare_images,
)
from nova3r_ros.model.checkpoint import read_header
from nova3r_ros.model.image_encoder import load_backbone_safetensors
import numpy as np
import pytest
from safetensors.torch import save_file
import torch


@pytest.fixture(scope='module')
def micro() -> Nova3r:
    torch.manual_seed(0)
    return Nova3r(get_preset('micro')).eval()


@pytest.mark.parametrize('k', [1, 2, 4, 8])
def test_shapes_for_k_views(micro: Nova3r, k: int) -> None:
    cfg = micro.cfg
    images = torch.rand(2, k, 3, cfg.image_height, cfg.image_width)
    z = micro.encode_images(images)
    assert z.shape == (2, cfg.num_scene_tokens, cfg.latent_dim) and z.dtype == torch.float32
    out = micro.sample(z, 37, num_steps=2)
    assert out['points'].shape == (2, 37, 3)
    assert out['visibility_logits'].shape == (2, 37)
    assert bool(torch.isfinite(out['points']).all())


def test_views_matter_and_bad_inputs_are_refused(micro: Nova3r) -> None:
    cfg = micro.cfg
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width, generator=g)
    z = micro.encode_images(images)
    z2 = micro.encode_images(torch.cat([images[:, :1], images[:, :1]], dim=1))
    assert not torch.allclose(z, z2)  # the second view reaches the scene tokens
    with pytest.raises(ValueError, match='K=9'):
        micro.encode_images(torch.rand(1, 9, 3, cfg.image_height, cfg.image_width))
    with pytest.raises(ValueError, match='prepare_images'):
        micro.encode_images(torch.rand(1, 1, 3, cfg.image_height + 14, cfg.image_width))
    with pytest.raises(ValueError, match='scene_tokens'):
        micro.sample(torch.zeros(1, 3, 3), 10, 2)
    with pytest.raises(ValueError, match='NaN'):
        micro.encode_points(torch.full((1, 10, 3), float('nan')))


def test_sampling_is_reproducible_with_a_generator(micro: Nova3r) -> None:
    z = micro.encode_points(torch.randn(1, 200, 3))
    a = micro.sample(z, 64, 3, generator=torch.Generator().manual_seed(7))
    b = micro.sample(z, 64, 3, generator=torch.Generator().manual_seed(7))
    c = micro.sample(z, 64, 3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a['points'], b['points'])
    assert not torch.equal(a['points'], c['points'])
    for method in ('midpoint', 'heun'):
        out = micro.sample(z, 16, 2, method=method, schedule='cosine')
        assert out['points'].shape == (1, 16, 3)
    out = micro.sample(z, 16, 0, schedule=[0.0, 0.7, 1.0])
    assert out['points'].shape == (1, 16, 3)
    # without the head: the same points, no logits (the head's decoder call is skipped)
    bare = micro.sample(z, 64, 3, generator=torch.Generator().manual_seed(7), visibility=False)
    assert set(bare) == {'points'} and torch.equal(bare['points'], a['points'])


def test_flow_loss_and_visibility_loss_backpropagate(micro: Nova3r) -> None:
    micro.train()
    try:
        pts = torch.randn(2, 100, 3)
        z = micro.encode_points(pts, generator=torch.Generator().manual_seed(0))
        loss = micro.flow_loss(z, pts, generator=torch.Generator().manual_seed(1))
        vis = micro.visibility_loss(z.detach(), pts, torch.rand(2, 100) > 0.5)
        (loss + vis).backward()
        assert micro.point_encoder.token_proj.weight.grad is not None
        assert micro.visibility_head.net[1].weight.grad is not None
        assert loss.ndim == 0 and float(loss.detach()) > 0
    finally:
        micro.zero_grad(set_to_none=True)
        micro.eval()


def _outputs(model: Nova3r) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(11)
    images = torch.rand(1, 2, 3, cfg.image_height, cfg.image_width, generator=g)
    pts = torch.randn(1, 300, 3, generator=g)
    out = model.reconstruct(images, 40, 3, generator=torch.Generator().manual_seed(3))
    out['z_points'] = model.encode_points(pts, generator=torch.Generator().manual_seed(4))
    out['prior'] = model.prior_scene_tokens(1)
    return out


@pytest.mark.parametrize('preset', ['micro', 'tiny'])
def test_save_load_gives_identical_outputs(tmp_path, preset: str) -> None:
    torch.manual_seed(0)
    model = Nova3r(get_preset(preset)).eval()
    model.mean_scene_tokens.normal_()
    path = tmp_path / f'{preset}.safetensors'
    model.save_checkpoint(path, metadata={'step': '12'})
    loaded = Nova3r.from_checkpoint(path)
    assert loaded.cfg == model.cfg
    assert loaded.checkpoint_metadata == {'step': '12'}
    assert not loaded.training
    assert all(p.requires_grad and not p.is_meta for p in loaded.parameters())  # resumable
    a, b = _outputs(model), _outputs(loaded)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_errors_are_clear(tmp_path, micro: Nova3r) -> None:
    good = tmp_path / 'good.safetensors'
    micro.save_checkpoint(good)
    meta, shapes = read_header(good)
    state = {k: v.clone() for k, v in micro.state_dict().items()}

    # a pickle renamed .safetensors is refused without unpickling it
    fake = tmp_path / 'pickle.safetensors'
    fake.write_bytes(pickle.dumps({'a': 1}))
    with pytest.raises(ValueError, match='not a valid safetensors'):
        Nova3r.from_checkpoint(fake)
    # truncated file
    trunc = tmp_path / 'trunc.safetensors'
    trunc.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match='not a valid safetensors'):
        Nova3r.from_checkpoint(trunc)
    # header length pointing past the end
    bogus = tmp_path / 'bogus.safetensors'
    bogus.write_bytes(struct.pack('<Q', 10 ** 9) + b'{}')
    with pytest.raises(ValueError, match='not a valid safetensors'):
        Nova3r.from_checkpoint(bogus)
    with pytest.raises(FileNotFoundError):
        Nova3r.from_checkpoint(tmp_path / 'absent.safetensors')

    # a plain safetensors file without our metadata
    plain = tmp_path / 'plain.safetensors'
    save_file({'x': torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match='format'):
        Nova3r.from_checkpoint(plain)

    # missing, unexpected and mismatched tensors are all listed
    broken = dict(state)
    del broken['decoder.out.weight']
    broken['extra.weight'] = torch.zeros(3)
    broken['decoder.out.bias'] = torch.zeros(4)
    bad = tmp_path / 'mismatch.safetensors'
    save_file(broken, bad, metadata=meta)
    with pytest.raises(ValueError) as err:
        Nova3r.from_checkpoint(bad)
    msg = str(err.value)
    assert 'missing (1): decoder.out.weight' in msg
    assert 'unexpected (1): extra.weight' in msg
    assert 'decoder.out.bias: file [4] vs model [3]' in msg

    # a config that builds a different model -> shape mismatch listed
    other = get_preset('micro')
    other.decoder.width = 64
    wrong = dict(meta, config=json.dumps(other.to_dict()))
    cfgbad = tmp_path / 'cfg.safetensors'
    save_file(state, cfgbad, metadata=wrong)
    with pytest.raises(ValueError, match='shape mismatch'):
        Nova3r.from_checkpoint(cfgbad)
    garbled = dict(meta, config='{"name": "micro", "bogus": 1}')
    save_file(state, cfgbad, metadata=garbled)
    with pytest.raises(ValueError, match='bogus'):
        Nova3r.from_checkpoint(cfgbad)

    # NaN weights are refused
    nan_state = dict(state)
    nan_state['decoder.out.weight'] = torch.full_like(state['decoder.out.weight'], float('nan'))
    nanfile = tmp_path / 'nan.safetensors'
    save_file(nan_state, nanfile, metadata=meta)
    with pytest.raises(ValueError, match='NaN.*decoder.out.weight'):
        Nova3r.from_checkpoint(nanfile)
    with pytest.raises(ValueError, match='reserved'):
        micro.save_checkpoint(tmp_path / 'x.safetensors', metadata={'config': '{}'})


def test_paper_preset_names_and_shapes_on_meta() -> None:
    cfg = get_preset('paper')
    rebuilt = Nova3rConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert rebuilt == cfg
    with torch.device('meta'):
        model = Nova3r(rebuilt)
    spec = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = 'image_encoder.backbone.'
    # public DINOv2 ViT-L/14-reg names and shapes, so released weights map 1:1
    dino = {'patch_embed.proj.weight': (1024, 3, 14, 14), 'cls_token': (1, 1, 1024),
            'register_tokens': (1, 4, 1024), 'pos_embed': (1, 1370, 1024),
            'blocks.0.attn.qkv.weight': (3072, 1024), 'blocks.23.ls2.gamma': (1024,),
            'blocks.23.mlp.fc2.weight': (1024, 4096), 'norm.weight': (1024,)}
    for name, shape in dino.items():
        assert spec[prefix + name] == shape, name
    assert prefix + 'blocks.24.norm1.weight' not in spec
    agg = 'image_encoder.aggregator.'
    assert spec[agg + 'frame_blocks.15.attn.q_norm.weight'] == (64,)
    assert spec[agg + 'scene_tokens'] == (768, 1024)
    assert spec[agg + 'token_proj.weight'] == (128, 2048)
    assert spec['decoder.point_in.weight'] == (128, 51)
    assert spec['point_encoder.token_merge.weight'] == (51, 102)
    assert spec['mean_scene_tokens'] == (768, 128)
    n_stage2 = sum(p.numel() for name, p in model.named_parameters()
                   if not name.startswith('point_encoder'))
    assert abs(n_stage2 / 1e6 - 718.4) < 1.0  # digest §6
    dec = sum(p.numel() for p in model.decoder.parameters())
    assert abs(dec / 1e6 - 2.4) < 0.1


def test_backbone_loads_dinov2_named_safetensors(tmp_path, micro: Nova3r) -> None:
    torch.manual_seed(5)
    src = Nova3r(get_preset('micro')).image_encoder.backbone
    tensors = {k: v.clone() for k, v in src.state_dict().items()}
    tensors['mask_token'] = torch.zeros(1, src.cls_token.shape[-1])  # in real DINOv2 files
    path = tmp_path / 'dino.safetensors'
    save_file(tensors, path)
    target = Nova3r(get_preset('micro')).image_encoder.backbone
    load_backbone_safetensors(target, str(path))
    assert torch.equal(target.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    del tensors['norm.weight']
    save_file(tensors, path)
    with pytest.raises(ValueError, match='missing.*norm.weight'):
        load_backbone_safetensors(target, str(path))


def test_config_round_trip_and_validation() -> None:
    for name in ('micro', 'tiny', 'paper'):
        cfg = get_preset(name)
        assert Nova3rConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    tiny = get_preset('tiny')
    assert (tiny.image_width, tiny.image_height, tiny.patch_size) == (224, 168, 14)
    assert tiny.patch_grid == (12, 16)
    with pytest.raises(ValueError, match='multiple of patch_size'):
        Nova3rConfig(image_height=100)
    with pytest.raises(ValueError, match='unknown preset'):
        get_preset('huge')


def test_prepare_images_and_intrinsics() -> None:
    cfg = get_preset('tiny')  # 224 x 168 (4:3)
    wide = np.zeros((240, 640, 3), np.uint8)  # 8:3 -> height fills, sides cut
    wide[:, 320:] = 255
    x, infos = prepare_images([wide, np.full((480, 640, 3), 128, np.uint8)], cfg)
    assert x.shape == (2, 3, 168, 224) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    info = infos[0]
    assert info.scale_y == pytest.approx(168 / 240)
    assert info.crop_x == (round(640 * 0.7) - 224) // 2 and info.crop_y == 0
    assert float(x[0, :, :, :100].max()) < 1e-6 and float(x[0, :, :, 125:].min()) > 1 - 1e-6
    assert float(x[1].mean()) == pytest.approx(128 / 255, abs=1e-3)
    # the principal point at the image centre stays at the crop centre
    k = np.array([[500.0, 0, 319.5], [0, 500.0, 119.5], [0, 0, 1]])
    k2 = adjust_intrinsics(k, info)
    assert k2[0, 2] == pytest.approx(111.5, abs=0.5) and k2[1, 2] == pytest.approx(83.5)
    assert k2[0, 0] == pytest.approx(500 * 448 / 640)
    # a 3-D point projects to the same content in both images
    p = np.array([0.3, -0.1, 2.0])
    u, v = (k @ p / p[2])[:2]
    u2, v2 = (k2 @ p / p[2])[:2]
    assert u2 == pytest.approx((u + 0.5) * info.scale_x - 0.5 - info.crop_x)
    assert v2 == pytest.approx((v + 0.5) * info.scale_y - 0.5)
    with pytest.raises(ValueError, match='uint8'):
        prepare_images([np.zeros((10, 10, 3), np.float32)], cfg)
    # a strip would be resized to gigabytes before the crop: refused by its shape, and a
    # 32:9 ultra-wide camera (2.7 x the model input's area after the resize) still passes
    with pytest.raises(ValueError, match='image 1: 100000x2: aspect ratio'):
        prepare_images([wide, np.zeros((2, 100_000, 3), np.uint8)], cfg)
    with pytest.raises(ValueError, match='aspect ratio'):
        prepare_images([np.zeros((100_000, 2, 3), np.uint8)], cfg)
    assert prepare_images([np.zeros((90, 320, 3), np.uint8)], cfg)[0].shape == (1, 3, 168, 224)


def test_median3_scale_numpy_and_torch() -> None:
    pts = np.array([[0, 0, 1.0], [0, 2.0, 0], [3.0, 0, 0], [0, 0, 4.0]])
    assert median3_scale(pts) == pytest.approx(3 / 2.5)
    t = median3_scale(torch.tensor(pts[None], dtype=torch.float32))
    assert t.shape == (1,) and float(t[0]) == pytest.approx(3 / 2.5)
    assert median3_scale(pts * 1e-6) == pytest.approx(3 / 0.01)  # clipped median
    normed, s = normalize_median3(pts)
    assert np.median(np.linalg.norm(normed, axis=-1)) == pytest.approx(3.0)
    assert s == pytest.approx(1.2)


def test_model_package_never_imports_ros() -> None:
    code = ('import sys, nova3r_ros.model, nova3r_ros.model.summary; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("rclpy", "rosidl_runtime_py")];'
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_precision_choice_runs_bf16_on_the_cpu_only_when_asked(micro: Nova3r, monkeypatch
                                                               ) -> None:
    from types import SimpleNamespace

    from nova3r_ros.model import nova3r as nova3r_module

    images = torch.rand(1, 2, 3, micro.cfg.image_height, micro.cfg.image_width)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            tokens = micro.encode_images(images)
            out = micro.sample(tokens, 256, 4, generator=torch.Generator().manual_seed(3))
        return tokens, out['points']

    try:
        assert micro.precision == 'auto' and not micro.uses_bf16()  # fp32 on the CPU
        tokens32, points32 = draw()
        assert micro.set_precision('bf16') is micro and micro.uses_bf16()
        tokens16, points16 = draw()
        # the networks really ran in bf16 (outputs differ), the ODE state stayed fp32
        assert not torch.equal(tokens16, tokens32) and points16.dtype == torch.float32
        assert torch.isfinite(points16).all()
        spread = float(points32.std())
        assert float((points16 - points32).abs().mean()) < 0.05 * spread
        assert micro.set_precision('fp32').uses_bf16() is False
        assert torch.equal(draw()[1], points32)
        with pytest.raises(ValueError, match='precision must be one of'):
            micro.set_precision('fp16')
    finally:
        micro.set_precision('auto')
    # 'auto' on a GPU: bf16 only where the GPU computes it natively (Ampere/Orin and newer)
    for native in (True, False):
        monkeypatch.setattr(nova3r_module, 'cuda_has_native_bf16', lambda device, n=native: n)
        gpu = SimpleNamespace(precision='auto', device=torch.device('cuda'))
        assert Nova3r.uses_bf16(gpu) is native
        gpu.precision = 'fp32'
        assert Nova3r.uses_bf16(gpu) is False
