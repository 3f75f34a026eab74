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

"""Flow paths and ODE samplers against closed-form flows (nova3r_ros.model.flow)."""

import math

from nova3r_ros.model import flow
import pytest
import torch


def _pair(seed: int = 0, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = flow.sample_noise((2, n, 3), generator=g)
    x1 = torch.randn(2, n, 3, generator=g) * 2 + 3
    return x0.double(), x1.double()


def test_noise_is_uniform_in_cube() -> None:
    x = flow.sample_noise((4, 20000, 3), generator=torch.Generator().manual_seed(0))
    assert x.min() >= -1 and x.max() <= 1
    assert abs(float(x.mean())) < 0.01
    assert abs(float(x.var()) - 1 / 3) < 0.01  # variance of U[-1, 1]


@pytest.mark.parametrize('path', flow.PATHS)
def test_path_endpoints_and_velocity_is_time_derivative(path: str) -> None:
    x0, x1 = _pair()
    b = x0.shape[0]
    xt, _ = flow.path_sample(x0, x1, torch.zeros(b, dtype=torch.float64), path)
    assert torch.allclose(xt, x0)
    xt, _ = flow.path_sample(x0, x1, torch.ones(b, dtype=torch.float64), path)
    assert torch.allclose(xt, x1, atol=1e-12)
    t = torch.tensor([0.3, 0.77], dtype=torch.float64)
    eps = 1e-6
    xp, _ = flow.path_sample(x0, x1, t + eps, path)
    xm, _ = flow.path_sample(x0, x1, t - eps, path)
    _, v = flow.path_sample(x0, x1, t, path)
    assert torch.allclose(v, (xp - xm) / (2 * eps), atol=1e-6)


def test_cosine_path_closed_form() -> None:
    x0, x1 = _pair()
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    xt, v = flow.path_sample(x0, x1, t, 'cosine')
    c = torch.cos(math.pi * t / 2).view(-1, 1, 1)
    s = torch.sin(math.pi * t / 2).view(-1, 1, 1)
    assert torch.allclose(xt, c * x0 + s * x1)
    assert torch.allclose(v, math.pi / 2 * (c * x1 - s * x0))


def test_linear_field_euler_lands_exactly_on_target() -> None:
    # v(t, x) = (x1 - x) / (1 - t) is the exact field of the linear path towards x1; every
    # Euler step stays on the straight line and the last one (from 1 - h) lands on x1.
    _, x1 = _pair(1)
    x0 = flow.sample_noise(x1.shape, torch.Generator().manual_seed(3)).double()
    for schedule in ('uniform', 'cosine'):
        grid = flow.time_grid(7, schedule)
        out = flow.sample_ode(lambda t, x: (x1 - x) / (1 - t.view(-1, 1, 1).double()),
                              x0, grid, 'euler')
        assert torch.allclose(out.double(), x1, atol=1e-4)


def _cosine_field(x1: torch.Tensor):
    """Exact velocity of the cosine path towards x1, as a field of (t, x)."""
    def v(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = t.double().view(-1, 1, 1)
        a, s = torch.sin(math.pi * t / 2), torch.cos(math.pi * t / 2)
        x0 = (x.double() - a * x1) / s  # invert x = s x0 + a x1 (s > 0 off t = 1)
        return math.pi / 2 * (s * x1 - a * x0)
    return v


@pytest.mark.parametrize('method,order', [('euler', 1), ('midpoint', 2), ('heun', 2)])
def test_cosine_field_samplers_converge_at_their_order(method: str, order: int) -> None:
    x0, x1 = _pair(2)
    field = _cosine_field(x1)
    # the exact field moves x0 along the cosine path; integrate to t_end (< 1, where the
    # inverted field is regular) and compare with the closed-form x_t
    t_end = 0.9
    want, _ = flow.path_sample(x0, x1, torch.full((2,), t_end, dtype=torch.float64))
    errors = []
    for steps in (20, 40):
        grid = torch.linspace(0, t_end, steps + 1, dtype=torch.float64)
        out = flow.sample_ode(field, x0.float(), grid, method).double()
        errors.append(float((out - want).abs().max()))
    assert errors[1] < 0.1
    ratio = errors[0] / errors[1]
    assert 2 ** order * 0.7 < ratio < 2 ** order * 1.4, (errors, ratio)


@pytest.mark.parametrize('method,steps,tol', [('euler', 200, 6e-2), ('heun', 50, 1e-3)])
def test_exact_cosine_velocity_reaches_target(method: str, steps: int, tol: float) -> None:
    # v(t) = d/dt x_t of the cosine path for a known x1 (and x0): the sampler reaches x1
    x0, x1 = _pair(4)

    def v(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flow.path_sample(x0, x1, t.double(), 'cosine')[1]

    out = flow.sample_ode(v, x0.float(), flow.time_grid(steps), method).double()
    assert float((out - x1).abs().max()) < tol
    coarse = flow.sample_ode(v, x0.float(), flow.time_grid(steps // 4), method).double()
    assert float((coarse - x1).abs().max()) > float((out - x1).abs().max())


def test_ddim_step_stays_on_the_path() -> None:
    # with the velocity of one (x0, x1) pair, 'ddim' lands on x1 exactly whatever the steps
    # (even one); Euler with 8 uniform steps pushes the points outwards along the tangent
    x0, x1 = _pair(6)
    field = _cosine_field(x1)
    for steps in (1, 2, 8):
        out = flow.sample_ode(field, x0.float(), flow.time_grid(steps), 'ddim').double()
        assert float((out - x1).abs().max()) < 1e-4, steps
    # from t = 0.3 on the same path: each ddim step is the closed-form x_t
    start, _ = flow.path_sample(x0, x1, torch.full((2,), 0.3, dtype=torch.float64))
    want, _ = flow.path_sample(x0, x1, torch.full((2,), 0.65, dtype=torch.float64))
    got = flow.path_step(start, field(torch.full((2,), 0.3), start), 0.3, 0.65)
    assert torch.allclose(got, want, atol=1e-9)

    def pair_velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flow.path_sample(x0, x1, t.double(), 'cosine')[1]  # ignores x: Euler drifts

    euler = flow.sample_ode(pair_velocity, x0.float(), flow.time_grid(8), 'euler').double()
    ddim = flow.sample_ode(pair_velocity, x0.float(), flow.time_grid(8), 'ddim').double()
    assert float((ddim - x1).abs().max()) < 0.2 * float((euler - x1).abs().max())
    # on the linear path ddim is Euler
    grid = flow.time_grid(5, 'cosine')
    lin = lambda t, x: x1.float() - 0.5 * x  # noqa: E731 - any field
    assert torch.allclose(flow.sample_ode(lin, x0.float(), grid, 'ddim', 'linear'),
                          flow.sample_ode(lin, x0.float(), grid, 'euler'), atol=1e-6)


def test_time_grids() -> None:
    u = flow.time_grid(4)
    assert torch.allclose(u, torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64))
    c = flow.time_grid(8, 'cosine')
    assert c[0] == 0 and c[-1] == 1 and bool((c[1:] > c[:-1]).all())
    steps = c[1:] - c[:-1]
    assert steps[-1] < steps[0] / 5  # small steps near the data (t = 1)
    custom = flow.time_grid(0, [0.0, 0.5, 0.9, 1.0])
    assert custom.numel() == 4
    with pytest.raises(ValueError, match='start at 0'):
        flow.time_grid(0, [0.1, 1.0])
    with pytest.raises(ValueError, match='increasing'):
        flow.time_grid(0, [0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match='schedule'):
        flow.time_grid(4, 'bogus')
    with pytest.raises(ValueError, match='num_steps'):
        flow.time_grid(0)


def test_evaluation_count_matches_calls() -> None:
    x0, x1 = _pair(5, n=4)
    calls = []

    def v(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(x)

    for method in flow.METHODS:
        calls.clear()
        grid = flow.time_grid(6, 'cosine')
        flow.sample_ode(v, x0.float(), grid, method)
        assert len(calls) == flow.count_evaluations(grid, method)
    assert flow.count_evaluations(8, 'euler') == 8
    assert flow.count_evaluations(8, 'heun') == 16
    with pytest.raises(ValueError, match='method'):
        flow.count_evaluations(8, 'rk45')


def test_ot_coupling_reorders_the_noise_to_the_cheapest_pairing() -> None:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(3, 40, 3, generator=g) * 2
    x0 = flow.sample_noise((3, 40, 3), g)
    assert flow.couple(x0, x1, 'independent') is x0
    paired = flow.couple(x0, x1, 'ot')
    # the same noise points, per sample, in another order
    for i in range(3):
        assert torch.equal(torch.sort(paired[i], dim=0).values, torch.sort(x0[i], dim=0).values)
    cost = (paired - x1).square().sum(-1).sum(-1)
    assert torch.all(cost < (x0 - x1).square().sum(-1).sum(-1))
    # optimal: no swap of two pairs lowers the total (checked on every pair of rows)
    d = torch.cdist(x1[0], paired[0]).square()
    diag = d.diagonal()
    swapped = d + d.T - diag[:, None] - diag[None, :]  # cost change of swapping two pairs
    assert swapped.min() >= -1e-4
    # an already matched order is kept
    assert torch.equal(flow.couple(x1.clone(), x1, 'ot'), x1)
    with pytest.raises(ValueError, match='coupling'):
        flow.couple(x0, x1, 'sinkhorn')
    with pytest.raises(ValueError, match='must be equal'):
        flow.match_rows(x0[:, :10], x1)


def _assign_on_pool(cost):
    from scipy.optimize import linear_sum_assignment

    return [cols.tolist() for _, cols in flow._assignment_pool().map(linear_sum_assignment, cost)]


def test_match_rows_on_threads_equals_the_serial_assignment_and_survives_fork():
    """The thread pool is a speed-up only: every sample gets SciPy's serial answer."""
    import multiprocessing

    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(9, 40, 3, generator=g), torch.randn(9, 40, 3, generator=g)
    idx = flow.match_rows(a, b)
    cost = torch.cdist(a, b).square().numpy()
    for i in range(9):
        _, cols = linear_sum_assignment(cost[i])
        assert torch.equal(idx[i], torch.from_numpy(cols))
    # a forked child (a DataLoader worker) gets a pool of its own: the parent's threads are
    # gone there, so reusing its pool would wait forever
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_assign_on_pool, (cost,)).get(timeout=60)
    assert child == idx.tolist()
