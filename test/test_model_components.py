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

"""Blocks, FPS, point encoder and joint decoder: known answers and symmetries (micro preset)."""

import math

from nova3r_ros.model import get_preset
from nova3r_ros.model.flow_decoder import JointFlowDecoder
from nova3r_ros.model.layers import (
    FourierEmbedding,
    rope_2d,
    timestep_embedding,
    TimestepEmbedder,
)
from nova3r_ros.model.point_autoencoder import (
    farthest_point_sample,
    PointEncoder,
    random_subset,
)
import pytest
import torch


def test_fourier_embedding_both_variants() -> None:
    x = torch.tensor([[0.25, -0.5, 1.0]])
    enc = FourierEmbedding(8, pi_factor=False)
    dec = FourierEmbedding(8, pi_factor=True)
    assert enc.out_dim == dec.out_dim == 51
    e, d = enc(x), dec(x)
    assert e.shape == d.shape == (1, 51)
    assert torch.equal(e[0, :3], x[0])  # raw xyz first
    # layout: sin block is xyz-major (coordinate i, frequency k) at 3 + 8 i + k
    assert math.isclose(float(e[0, 3 + 8 * 1 + 2]), math.sin(-0.5 * 4), rel_tol=1e-6)
    assert math.isclose(float(e[0, 27 + 8 * 2 + 7]), math.cos(1.0 * 128), rel_tol=1e-5)
    assert math.isclose(float(d[0, 3 + 0 + 1]), math.sin(0.25 * 2 * math.pi), abs_tol=1e-6)


def test_timestep_embedding_order_and_range() -> None:
    e = timestep_embedding(torch.tensor([0.0, 1.0]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # [cos, sin] at t=0
    assert math.isclose(float(e[1, 0]), math.cos(1.0), rel_tol=1e-6)  # raw t, frequency 1


def test_time_scale_multiplies_t_before_the_sinusoid() -> None:
    t = torch.tensor([0.3, 0.95])
    released, scaled = TimestepEmbedder(8, 16), TimestepEmbedder(8, 16, scale=1000.0)
    scaled.load_state_dict(released.state_dict())
    assert torch.allclose(released(t), released.mlp(timestep_embedding(t, 16)))
    assert torch.allclose(scaled(t), released.mlp(timestep_embedding(t * 1000, 16)))


def test_rope_is_relative_and_identity_at_origin() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 16, generator=g)
    k = torch.randn(1, 1, 1, 16, generator=g)
    zero = torch.zeros(1, 1, 2, dtype=torch.long)
    assert torch.allclose(rope_2d(q, zero, 100.0), q)

    def score(pq: tuple[int, int], pk: tuple[int, int]) -> float:
        a = rope_2d(q, torch.tensor([[pq]]), 100.0)
        b = rope_2d(k, torch.tensor([[pk]]), 100.0)
        return float((a * b).sum())

    assert math.isclose(score((1, 2), (3, 5)), score((4, 7), (6, 10)), rel_tol=1e-4)
    assert not math.isclose(score((1, 2), (3, 5)), score((1, 2), (3, 6)), rel_tol=1e-4)


def _naive_fps(points: torch.Tensor, m: int) -> list[int]:
    chosen = [0]
    dist = [float('inf')] * points.shape[0]
    for _ in range(m - 1):
        last = points[chosen[-1]]
        for i in range(points.shape[0]):
            dist[i] = min(dist[i], float((points[i] - last).square().sum()))
        chosen.append(max(range(len(dist)), key=dist.__getitem__))
    return chosen


def test_fps_matches_reference_and_is_batched() -> None:
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(3, 200, 3, generator=g)
    idx = farthest_point_sample(pts, 12)
    assert idx.shape == (3, 12)
    for b in range(3):
        assert idx[b].tolist() == _naive_fps(pts[b], 12)
    # on a grid of 8 cube corners + centre, 8 FPS picks from a corner are exactly the corners
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)],
                           dtype=torch.float32)
    cloud = torch.cat([corners, torch.full((1, 3), 0.5)])[None]
    assert sorted(farthest_point_sample(cloud, 8)[0].tolist()) == list(range(8))


def test_random_subset_without_replacement() -> None:
    pts = torch.arange(300, dtype=torch.float32).view(1, 100, 3)
    sub = random_subset(pts, 40, torch.Generator().manual_seed(0))
    assert sub.shape == (1, 40, 3)
    assert len({int(v) for v in sub[0, :, 0]}) == 40  # distinct points
    assert random_subset(pts, 500).shape == (1, 100, 3)  # fewer points than asked: all


def test_encoder_invariant_to_point_order_up_to_fps_start() -> None:
    cfg = get_preset('micro')
    torch.manual_seed(0)
    enc = PointEncoder(cfg).eval()
    g = torch.Generator().manual_seed(2)
    # P <= presubset_factor * M: no random subset, so only the FPS start (point 0) matters
    pts = torch.randn(2, cfg.point_encoder.presubset_factor * cfg.num_scene_tokens, 3,
                      generator=g)
    perm = torch.cat([torch.zeros(1, dtype=torch.long),
                      1 + torch.randperm(pts.shape[1] - 1, generator=g)])
    with torch.no_grad():
        z, zp = enc(pts), enc(pts[:, perm])
        assert torch.allclose(z, zp, atol=1e-5)
        # a different start point changes the queries, hence the latent (the test can fail)
        other = enc(pts.roll(5, dims=1))
    assert not torch.allclose(z, other, atol=1e-3)


def test_decoder_is_permutation_equivariant_and_joint() -> None:
    cfg = get_preset('micro')
    torch.manual_seed(0)
    dec = JointFlowDecoder(cfg).eval()
    for p in dec.parameters():  # random (not zero-initialised) adaLN, so every path is live
        torch.nn.init.normal_(p, std=0.2)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, cfg.num_scene_tokens, cfg.latent_dim, generator=g)
    x = torch.rand(2, 50, 3, generator=g) * 2 - 1
    t = torch.tensor([0.2, 0.9])
    perm = torch.randperm(50, generator=g)
    with torch.no_grad():
        v, feats = dec(z, x, t)
        vp, featsp = dec(z, x[:, perm], t)
        assert v.shape == (2, 50, 3) and feats.shape == (2, 50, cfg.decoder.width)
        assert torch.allclose(vp, v[:, perm], atol=1e-5)
        assert torch.allclose(featsp, feats[:, perm], atol=1e-5)
        # joint: moving other query points changes point 0's velocity
        x2 = x.clone()
        x2[:, 1:] = torch.rand(2, 49, 3, generator=g) * 2 - 1
        assert not torch.allclose(dec(z, x2, t)[0][:, 0], v[:, 0], atol=1e-4)
        # per-point t equal to the shared t gives the same result
        assert torch.allclose(dec(z, x, t[:, None].expand(2, 50))[0], v, atol=1e-5)


def test_encoder_rejects_bad_shapes() -> None:
    enc = PointEncoder(get_preset('micro'))
    with pytest.raises(ValueError, match='B, P>0, 3'):
        enc(torch.zeros(1, 10, 2))
