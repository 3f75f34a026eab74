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

"""Learning curves from a run's metrics.jsonl (matplotlib imported lazily, Agg backend)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Read the records of a metrics.jsonl file (a torn last line from a killed run is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_metrics(metrics_path: str | os.PathLike, out_path: str | os.PathLike,
                 title: str = '') -> None:
    """Train losses (log scale) vs step, and validation F@0.1 / Chamfer vs step, in one PNG."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path) if Path(metrics_path).exists() else []
    train = [r for r in records if r.get('kind') == 'train']
    val = [r for r in records if r.get('kind') == 'val']
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ('loss', 'flow', 'latent', 'visibility'):
        pts = [(r['step'], r[key]) for r in train if key in r]
        if pts and not (key == 'flow' and all(r.get('loss') == r.get('flow') for r in train)):
            ax_loss.plot(*zip(*pts, strict=True), label=key)
    ax_loss.set_yscale('log')
    ax_loss.set_xlabel('step')
    ax_loss.set_ylabel('train loss (mean over log interval)')
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    keys = sorted({k for r in val for k in r
                   if k.endswith(('complete/fscore@0.1', 'complete/chamfer'))})
    for key in keys:
        pts = [(r['step'], r[key]) for r in val if key in r]
        style = '--' if key.startswith('val_prior') else '-'
        ax_val.plot(*zip(*pts, strict=True), style, marker='o', label=key)
    ax_val.set_xlabel('step')
    ax_val.set_ylabel('validation (normalised units)')
    ax_val.grid(alpha=0.3)
    if keys:
        ax_val.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(out_path).with_name(f'.{Path(out_path).name}.tmp{os.getpid()}.png')
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out_path)
