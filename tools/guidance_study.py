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
Run `nova3r_eval` with the flow guided away from the trivial prior (an experiment, not a feature).

Why: classifier-free guidance sharpens diffusion samples. Here the unconditional velocity is
the decoder's on `mean_scene_tokens` (the prior), so the guided velocity is
v_prior + w * (v_tokens - v_prior); w = 1 is the model as shipped. The study in
`docs/training_status.md` (session 10) found it trades more recall than it gains in precision,
so the package does not ship it; this script keeps that figure reproducible.

    python tools/guidance_study.py --guidance 1.5 --data data/generated/tune/val \
        --checkpoint checkpoints/nova3r_tiny.safetensors --method model --views 2 --limit 30 \
        --plots 0 --out eval_output/guidance/w1.5

Every argument but `--guidance` goes to `nova3r_eval` unchanged. Use a fresh `--out` per weight:
the evaluation cache does not know about the guidance.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import math
import sys

from nova3r_ros.evaluation import cli
from nova3r_ros.model.nova3r import Nova3r
import torch


def guide(weight: float) -> None:
    """Patch `Nova3r.velocity` so every sampled row follows the guided field."""
    if not (math.isfinite(weight) and 0.0 <= weight <= 10.0):
        raise ValueError(f'--guidance must be in [0, 10], got {weight!r}')
    plain = Nova3r.velocity

    def guided(self: Nova3r, scene_tokens: torch.Tensor, xt: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
        prior = self.prior_scene_tokens(scene_tokens.shape[0])
        both = plain(self, torch.cat([scene_tokens, prior]), torch.cat([xt, xt]),
                     torch.cat([t, t]))
        cond, uncond = both.chunk(2)
        return uncond + weight * (cond - uncond)

    if weight != 1.0:
        Nova3r.velocity = guided


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `--guidance`, patch the velocity, run the evaluation on the other arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     add_help=False)
    parser.add_argument('--guidance', type=float, required=True,
                        help='guidance weight w (1 = no guidance)')
    args, rest = parser.parse_known_args(argv)
    guide(args.guidance)
    return cli.main(rest)


if __name__ == '__main__':
    sys.exit(main())
