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

"""The fused adaLN path of the joint decoder equals the plain formula of its module doc."""

from __future__ import annotations

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.flow_decoder import JointLayer, norm_modulate
from nova3r_ros.model.layers import modulate
import pytest
import torch


def reference_layer(layer: JointLayer, tokens: torch.Tensor, points: torch.Tensor,
                    temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the unfused layer (norm, then x * (1 + scale) + shift, then gate * branch)."""
    shift, scale = layer.t2p_modulation(temb)
    kv = modulate(layer.t2p_norm_points(points), shift, scale)
    tokens = tokens + layer.t2p_attn(layer.t2p_norm_tokens(tokens), kv)
    tokens = tokens + layer.t2p_mlp(layer.t2p_norm_mlp(tokens))
    tokens = tokens + layer.self_attn(layer.self_norm1(tokens))
    tokens = tokens + layer.self_mlp(layer.self_norm2(tokens))
    sh_a, sc_a, g_a, sh_m, sc_m, g_m = layer.p2t_modulation(temb)
    context = layer.p2t_norm_tokens(tokens)
    points = points + g_a * layer.p2t_attn(modulate(layer.p2t_norm1(points), sh_a, sc_a),
                                           context)
    points = points + g_m * layer.p2t_mlp(modulate(layer.p2t_norm2(points), sh_m, sc_m))
    return tokens, points


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (the adaLN output layers start at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


@pytest.mark.parametrize('batch,per_point', [(1, False), (3, False), (2, True)])
def test_joint_layer_matches_reference(batch: int, per_point: bool) -> None:
    layer = JointLayer(32, 4, 4.0).eval()
    _randomise(layer, 1)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(batch, 16, 32, generator=gen)
    points = torch.randn(batch, 300, 32, generator=gen)
    temb = torch.randn(batch, 300 if per_point else 1, 32, generator=gen)
    with torch.no_grad():
        got = layer(tokens, points, temb)
        want = reference_layer(layer, tokens, points, temb)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_norm_modulate_affine_and_plain() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 50, 8, generator=gen)
    shift, scale = torch.randn(2, 1, 8, generator=gen), torch.randn(2, 1, 8, generator=gen)
    for affine in (True, False):
        norm = torch.nn.LayerNorm(8, eps=1e-6, elementwise_affine=affine)
        if affine:
            _randomise(norm, 4)
        with torch.no_grad():
            torch.testing.assert_close(norm_modulate(norm, x, shift, scale),
                                       modulate(norm(x), shift, scale), rtol=1e-5, atol=1e-6)


def test_sample_unchanged_by_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole 3-step sample (and visibility) with the fused layers equals the reference one."""
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    _randomise(model.decoder, 5)
    z = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(6))
    fused = model.sample(z, 200, 3, generator=torch.Generator().manual_seed(7))
    monkeypatch.setattr(JointLayer, 'forward', reference_layer)
    plain = model.sample(z, 200, 3, generator=torch.Generator().manual_seed(7))
    # float rounding only: |points| is O(1), three steps accumulate ~1e-5 per coordinate
    assert float(plain['points'].std()) > 0.1
    torch.testing.assert_close(fused['points'], plain['points'], rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(fused['visibility_logits'], plain['visibility_logits'],
                               rtol=1e-4, atol=2e-4)


def test_fused_layer_under_bf16_autocast_keeps_dtypes() -> None:
    """
    Check the fused path under bf16 autocast (the model's mode on CUDA).

    The fused path gives the same dtypes and agrees with the plain formula to bf16
    resolution (checked with CPU autocast here).
    """
    layer = JointLayer(32, 4, 4.0).eval()
    _randomise(layer, 1)
    gen = torch.Generator().manual_seed(8)
    tokens = torch.randn(2, 16, 32, generator=gen).bfloat16()
    points = torch.randn(2, 300, 32, generator=gen).bfloat16()
    temb = torch.randn(2, 1, 32, generator=gen)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        got = layer(tokens, points, temb)
        want = reference_layer(layer, tokens, points, temb)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype == torch.bfloat16
        # bf16 keeps 8 mantissa bits: allow a few ulps of the largest value
        atol = 2e-2 * float(w.float().abs().max())
        torch.testing.assert_close(g.float(), w.float(), rtol=2e-2, atol=atol)
