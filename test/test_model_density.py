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

"""Oversample-and-filter: isolated points go first, the sampler keeps N of its own points."""

import math

from nova3r_ros.model import density, get_preset, Nova3r
import pytest
import torch


def _plane_and_outliers(seed: int) -> tuple[torch.Tensor, int]:
    g = torch.Generator().manual_seed(seed)
    plane = torch.rand(600, 3, generator=g)
    plane[:, 2] = 2.0  # a dense patch of surface
    outliers = torch.rand(25, 3, generator=g) * 6 - 3  # scattered in a 6 m cube
    points = torch.cat([plane, outliers])[torch.randperm(625, generator=g)]
    return points[None], 600


def test_keep_densest_drops_the_scattered_points_and_keeps_order() -> None:
    points, surface = _plane_and_outliers(0)
    keep = density.keep_densest(points, surface)
    assert keep.shape == (1, surface)
    assert bool((keep[:, 1:] > keep[:, :-1]).all())  # original order, no repeats
    kept = points[0, keep[0]]
    assert bool((kept[:, 2] == 2.0).all())  # every kept point is on the surface


def test_kdtree_and_brute_force_agree_and_non_finite_points_go_first() -> None:
    g = torch.Generator().manual_seed(1)
    points = torch.randn(2, 700, 3, generator=g)
    points[0, 5] = float('nan')
    points[1, 9, 0] = float('inf')
    finite = torch.isfinite(points).all(dim=-1)
    tree = density.isolation(points, 8)
    brute = density._isolation_brute(points, finite, 8, chunk=128)
    assert math.isinf(tree[0, 5]) and math.isinf(tree[1, 9])
    assert torch.allclose(tree[finite], brute[finite], rtol=1e-5, atol=1e-6)
    keep = density.keep_densest(points, 699)
    assert 5 not in keep[0].tolist() and 9 not in keep[1].tolist()
    # a dense surface 3 units from the origin, as the model's clouds are: the GPU path must not
    # lose the small distances to float32 cancellation (|a|^2 + |b|^2 - 2ab was ~1 % off)
    wall = torch.rand(1, 4000, 3, generator=g) * torch.tensor([2.0, 2.0, 0.0])
    wall = wall + torch.tensor([1.0, -1.0, 3.0])
    every = torch.ones(1, 4000, dtype=torch.bool)
    assert torch.allclose(density._isolation_brute(wall, every, 8, chunk=1024),
                          density.isolation(wall, 8), rtol=1e-5)


def test_bad_arguments_are_refused() -> None:
    from nova3r_ros.params import SPECS

    # the node's parameter range is the sampler's
    assert (SPECS['oversample'].low, SPECS['oversample'].high) == (1.0, density.MAX_OVERSAMPLE)
    assert density.drawn_points(8192, 1.25) == 10240
    assert density.drawn_points(8192, 1.0) == 8192
    assert density.drawn_points(3, 1.5) == 5
    for bad in (0.5, 4.5, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='oversample'):
            density.drawn_points(100, bad)
    points = torch.rand(1, 10, 3)
    with pytest.raises(ValueError, match='neighbours'):
        density.isolation(points, 10)
    with pytest.raises(ValueError, match='keep'):
        density.keep_densest(points, 11)
    with pytest.raises(ValueError, match='B, N, 3'):
        density.isolation(torch.rand(10, 3))


def test_sampler_keeps_num_points_of_the_points_it_drew() -> None:
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    z = model.encode_points(torch.randn(1, 200, 3))
    with torch.no_grad():
        drawn = model.sample(z, 96, 3, generator=torch.Generator().manual_seed(3))
        kept = model.sample(z, 64, 3, generator=torch.Generator().manual_seed(3),
                            oversample=1.5)
        plain = model.sample(z, 64, 3, generator=torch.Generator().manual_seed(3))
        tiny = model.sample(z, 2, 3, oversample=2.0)
    assert kept['points'].shape == (1, 64, 3) and kept['visibility_logits'].shape == (1, 64)
    # the 64 kept are exactly the 64 least isolated of the 96 the same noise produces
    expect = density.keep_densest(drawn['points'], 64)
    assert torch.equal(kept['points'], drawn['points'][0, expect[0]][None])
    assert not torch.equal(kept['points'], plain['points'])
    assert tiny['points'].shape == (1, 2, 3)  # fewer points than neighbours still works
    with pytest.raises(ValueError, match='oversample'):
        model.sample(z, 64, 3, oversample=0.9)
