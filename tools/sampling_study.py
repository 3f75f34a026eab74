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
Run `nova3r_eval` with the sampler changed in ways the package does not ship (experiments).

Why: two measured dead ends stay reproducible without becoming node parameters
(`docs/training_status.md`, session 10):

- `--guidance w`: the flow guided away from the trivial prior, as classifier-free guidance
  sharpens diffusion samples. The unconditional velocity is the decoder's on `mean_scene_tokens`,
  so the field is v_prior + w * (v_tokens - v_prior); w = 1 is the shipped sampler.
- `--neighbours k`: the density filter's neighbour count (`Nova3r.sample`; the node uses 8).
- `--noise-scale s`: the flow starts from x0 ~ U[-s, s]^3 instead of U[-1, 1]^3, the
  "temperature" that trades a generative model's coverage for its samples' fidelity.

    python tools/sampling_study.py --guidance 1.5 --data data/generated/tune/val \
        --checkpoint checkpoints/nova3r_tiny.safetensors --method model --views 2 --limit 30 \
        --plots 0 --out eval_output/guidance/w1.5

Every other argument goes to `nova3r_eval` unchanged. Use a fresh `--out` per setting: the
evaluation cache does not know about these patches.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import functools
import math
import sys

from nova3r_ros.evaluation import cli
from nova3r_ros.model import flow
from nova3r_ros.model.nova3r import Nova3r
import torch

DEFAULT_NEIGHBOURS = 8  # Nova3r.sample's default, the node's


def guide(weight: float) -> None:
    """Patch `Nova3r.velocity` so every sampled row follows the guided field."""
    if not (math.isfinite(weight) and 0.0 <= weight <= 10.0):
        raise ValueError(f'--guidance must be in [0, 10], got {weight!r}')
    if weight == 1.0:
        return
    plain = Nova3r.velocity

    def guided(self: Nova3r, scene_tokens: torch.Tensor, xt: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
        prior = self.prior_scene_tokens(scene_tokens.shape[0])
        both = plain(self, torch.cat([scene_tokens, prior]), torch.cat([xt, xt]),
                     torch.cat([t, t]))
        cond, uncond = both.chunk(2)
        return uncond + weight * (cond - uncond)

    Nova3r.velocity = guided


def filter_neighbours(neighbours: int) -> None:
    """Patch `Nova3r.sample` so the density filter ranks points by `neighbours` neighbours."""
    if not 1 <= neighbours <= 64:
        raise ValueError(f'--neighbours must be in [1, 64], got {neighbours!r}')
    if neighbours != DEFAULT_NEIGHBOURS:
        Nova3r.sample = functools.partialmethod(Nova3r.sample, neighbours=neighbours)


def scale_noise(scale: float) -> None:
    """Patch `flow.sample_noise` so every draw starts from U[-scale, scale]^3."""
    if not (math.isfinite(scale) and 0.0 < scale <= 2.0):
        raise ValueError(f'--noise-scale must be in (0, 2], got {scale!r}')
    if scale == 1.0:
        return
    plain = flow.sample_noise

    @functools.wraps(plain)
    def scaled(*args: object, **kwargs: object) -> torch.Tensor:
        return plain(*args, **kwargs) * scale

    flow.sample_noise = scaled


def main(argv: Sequence[str] | None = None) -> int:
    """Parse this tool's options, patch the sampler, run the evaluation on the rest."""
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0].strip(), add_help=False,
        epilog="every other argument is nova3r_eval's (its help follows)")
    parser.add_argument('--guidance', type=float, default=1.0,
                        help='guidance weight w (1 = no guidance)')
    parser.add_argument('--neighbours', type=int, default=DEFAULT_NEIGHBOURS,
                        help='neighbours of the density filter')
    parser.add_argument('--noise-scale', type=float, default=1.0,
                        help='half-width s of the starting noise U[-s, s]^3 (1 = shipped)')
    args, rest = parser.parse_known_args(argv)
    if '-h' in rest or '--help' in rest:
        parser.print_help()
        print()
    try:
        guide(args.guidance)
        filter_neighbours(args.neighbours)
        scale_noise(args.noise_scale)
    except ValueError as exc:
        parser.error(str(exc))
    return cli.main(rest)


if __name__ == '__main__':
    sys.exit(main())
