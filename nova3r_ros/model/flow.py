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
Probability paths and ODE samplers for flow matching. Knows no network.

Time convention (the released NOVA3R sampler, digest §2.2 / §8.1):
    t = 0: noise x0 ~ U[-1, 1]^3;   t = 1: data x1;   integrate from t = 0 to t = 1.

Paths (affine, x_t = sigma(t) x0 + alpha(t) x1, target velocity dx_t/dt):
    'cosine' (default, the released checkpoints): alpha = sin(pi t / 2), sigma = cos(pi t / 2),
              v = (pi / 2) (cos(pi t / 2) x1 - sin(pi t / 2) x0)
    'linear': alpha = t, sigma = 1 - t, v = x1 - x0

Couplings (training only): 'independent' pairs each target point with a random noise point (the
released recipe); 'ot' re-pairs the N noise points of a sample with its N target points by the
assignment of least total squared distance (minibatch optimal transport over the set), so the
conditional paths do not cross and the velocity field to learn is straighter. The decoder is
permutation-equivariant in its points, so the pairing changes the field, not the distribution.

Samplers integrate dx/dt = v(t, x) on a time grid 0 = t_0 < ... < t_n = 1 with Euler (1 network
evaluation per step), midpoint (2), Heun (2) or 'ddim' (1): the step that stays on the path,
x0 and x1 solved from (x_t, v) with the path's coefficients, then x_t' = sigma(t') x0 +
alpha(t') x1 (DDIM's deterministic step). On the linear path it is Euler; on the cosine path it
rotates (x_t, 2v / pi) by the step's angle, where Euler moves along the tangent and pushes every
point outwards by sqrt(1 + (pi h / 2)^2) per step (~16 % in 8 uniform steps when the velocity
is a pair's own, as with OT coupling). Schedules: 'uniform', 'cosine' (t_i =
sin(pi i / 2n): large steps near the noise, small near the data, where detail is formed), or an
explicit grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
import math
import os

import numpy as np
from scipy.optimize import linear_sum_assignment
import torch

PATHS = ('cosine', 'linear')
COUPLINGS = ('independent', 'ot')
METHODS = ('euler', 'midpoint', 'heun', 'ddim')
SCHEDULES = ('uniform', 'cosine')
EVALS_PER_STEP = {'euler': 1, 'midpoint': 2, 'heun': 2, 'ddim': 1}

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _coefficients(t: torch.Tensor, path: str) -> tuple[torch.Tensor, ...]:
    """(alpha, sigma, d alpha/dt, d sigma/dt) at t."""
    if path == 'cosine':
        half_pi = math.pi / 2
        a, s = torch.sin(half_pi * t), torch.cos(half_pi * t)
        return a, s, half_pi * s, -half_pi * a
    if path == 'linear':
        return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)
    raise ValueError(f'unknown path {path!r}; choose one of {PATHS}')


def sample_noise(shape: Sequence[int], generator: torch.Generator | None = None,
                 device: torch.device | str = 'cpu') -> torch.Tensor:
    """x0 ~ U[-1, 1]^shape (float32). The generator's device must match `device`."""
    return torch.rand(tuple(shape), generator=generator, device=device) * 2 - 1


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _assignment_pool() -> ThreadPoolExecutor:
    """Return this process's threads for the per-sample assignments (remade after a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                  thread_name_prefix='nova3r-match')
        _POOL = (os.getpid(), pool)
    return _POOL[1]


def match_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """
    Per sample, the permutation of `b`'s rows of least total squared distance to `a`'s rows.

    a, b: (B, N, C). Returns indices (B, N) int64: b[i, idx[i, j]] is matched to a[i, j]
    (Hungarian assignment; no gradient). The samples are solved on a thread pool (SciPy
    releases the GIL): serially, a GPU's batch of 32 x 512 points keeps the CPU busy for a
    large share of each step. Each sample's answer is the serial one.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f'a {tuple(a.shape)} and b {tuple(b.shape)} must be equal (B, N, C)')
    cost = torch.cdist(a.detach().float(), b.detach().float()).square().cpu().numpy()
    order = np.empty(cost.shape[:2], dtype=np.int64)
    solver = _assignment_pool().map if cost.shape[0] > 1 else map
    solved = solver(linear_sum_assignment, cost)
    for i, (rows, cols) in enumerate(solved):
        order[i, rows] = cols
    return torch.from_numpy(order).to(a.device)


def couple(x0: torch.Tensor, x1: torch.Tensor, coupling: str = 'independent') -> torch.Tensor:
    """Noise x0 (B, N, 3) reordered to pair with x1 row by row under `coupling`."""
    if coupling == 'independent':
        return x0
    if coupling == 'ot':
        idx = match_rows(x1, x0)
        return torch.gather(x0, 1, idx[..., None].expand(-1, -1, x0.shape[-1]))
    raise ValueError(f'unknown coupling {coupling!r}; choose one of {COUPLINGS}')


def path_sample(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, path: str = 'cosine'
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Point x_t on the path from noise x0 to data x1 and the target velocity there.

    x0, x1: (B, N, 3); t: (B,) in [0, 1] (one t per sample, shared by its points) or
    broadcastable to (B, N, 1). Returns (xt, target_velocity), both (B, N, 3).
    """
    if x0.shape != x1.shape:
        raise ValueError(f'x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} differ in shape')
    if t.dim() == 1:
        t = t.view(-1, *([1] * (x0.dim() - 1)))
    a, s, da, ds = _coefficients(t.to(x0.dtype), path)
    return s * x0 + a * x1, ds * x0 + da * x1


def time_grid(num_steps: int, schedule: str | Sequence[float] = 'uniform',
              device: torch.device | str = 'cpu') -> torch.Tensor:
    """
    Return the times (num_steps + 1,) from 0 to 1, float64 for exact step sizes.

    `schedule` is 'uniform', 'cosine' or an explicit increasing sequence starting at 0 and
    ending at 1 (then `num_steps` must equal len - 1, or be 0 to take it from the sequence).
    """
    if isinstance(schedule, str):
        if num_steps < 1:
            raise ValueError(f'num_steps must be >= 1, got {num_steps}')
        s = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64, device=device)
        if schedule == 'uniform':
            return s
        if schedule == 'cosine':
            grid = torch.sin(s * (math.pi / 2))
            grid[-1] = 1.0
            return grid
        raise ValueError(f'unknown schedule {schedule!r}; choose {SCHEDULES} or a sequence')
    grid = torch.as_tensor(list(schedule), dtype=torch.float64, device=device)
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError('a custom time grid needs at least two times')
    if num_steps not in (0, grid.numel() - 1):
        raise ValueError(f'num_steps {num_steps} disagrees with a grid of {grid.numel()} times')
    if abs(float(grid[0])) > 1e-9 or abs(float(grid[-1]) - 1) > 1e-9:
        raise ValueError('a custom time grid must start at 0 and end at 1')
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError('a custom time grid must be strictly increasing')
    return grid


def count_evaluations(grid: torch.Tensor | int, method: str = 'euler') -> int:
    """Velocity-network evaluations used by `sample_ode` (grid, or a number of steps)."""
    if method not in EVALS_PER_STEP:
        raise ValueError(f'unknown method {method!r}; choose one of {METHODS}')
    steps = grid if isinstance(grid, int) else grid.numel() - 1
    return EVALS_PER_STEP[method] * steps


def path_step(x: torch.Tensor, v: torch.Tensor, t0: float, t1: float, path: str = 'cosine'
              ) -> torch.Tensor:
    """
    Move x_t (velocity v at t0) to t1 along the path through it (the 'ddim' step).

    Solves x = sigma x0 + alpha x1, v = sigma' x0 + alpha' x1 for (x0, x1) at t0, then returns
    sigma(t1) x0 + alpha(t1) x1: exact when v is the velocity of one (x0, x1) pair.
    """
    a0, s0, da0, ds0 = (float(c) for c in _coefficients(torch.tensor(t0, dtype=torch.float64),
                                                        path))
    a1, s1, _, _ = (float(c) for c in _coefficients(torch.tensor(t1, dtype=torch.float64), path))
    det = s0 * da0 - a0 * ds0  # pi / 2 (cosine) or 1 (linear): never 0
    # x(t1) = s1 (da0 x - a0 v) / det + a1 (s0 v - ds0 x) / det
    return ((s1 * da0 - a1 * ds0) / det) * x + ((a1 * s0 - s1 * a0) / det) * v


@torch.no_grad()
def sample_ode(velocity_fn: VelocityFn, x0: torch.Tensor, grid: torch.Tensor,
               method: str = 'euler', path: str = 'cosine') -> torch.Tensor:
    """
    Integrate dx/dt = velocity_fn(t, x) from x0 at grid[0] to grid[-1].

    velocity_fn(t, x): t a float tensor of shape (B,), x (B, N, 3) -> (B, N, 3).
    The state is kept in float32 whatever precision the velocity comes in. `path` matters to
    'ddim' only (the path the network was trained on).
    """
    if method not in EVALS_PER_STEP:
        raise ValueError(f'unknown method {method!r}; choose one of {METHODS}')
    x = x0.float()
    b = x.shape[0]

    def vel(t: float, state: torch.Tensor) -> torch.Tensor:
        tt = torch.full((b,), t, dtype=torch.float32, device=state.device)
        return velocity_fn(tt, state).float()

    ts = [float(v) for v in grid]
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        h = t1 - t0
        if method == 'euler':
            x = x + h * vel(t0, x)
        elif method == 'ddim':
            x = path_step(x, vel(t0, x), t0, t1, path)
        elif method == 'midpoint':
            x = x + h * vel(t0 + h / 2, x + (h / 2) * vel(t0, x))
        else:  # heun
            k1 = vel(t0, x)
            k2 = vel(t1, x + h * k1)
            x = x + (h / 2) * (k1 + k2)
    return x
