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
The bag evaluation's report head (summary, metres, stream statistics) and window pictures.

Used by ``nova3r_ros.evaluation.bag_eval``; matplotlib is imported lazily (Agg backend).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nova3r_ros.evaluation import report
import numpy as np

SUMMARY_TAU = 0.1
SUMMARY_KEYS = (f'complete/fscore@{SUMMARY_TAU:g}', f'occluded/recall@{SUMMARY_TAU:g}',
                f'occluded/fscore@{SUMMARY_TAU:g}')
GT_GREY = '0.78'
GT_OCCLUDED = (0.93, 0.80, 0.62)  # tan: GT that no input view sees
MAX_GT_DRAWN = 15000  # GT points drawn per panel (a fixed subset keeps the cloud visible)


def fmt(x: float | None) -> str:
    """Format a table cell: '–' for missing, integers as such, else 4 decimals (1 above 100)."""
    if x is None or not np.isfinite(x):
        return '–'
    if float(x).is_integer() and abs(x) < 1e12:
        return str(int(x))
    return f'{x:.4f}' if abs(x) < 100 else f'{x:.1f}'


def summary_text(content: dict[str, Any]) -> str:
    """Return the short plain-text summary printed by the CLI and the demo."""
    s = content['stream']
    rows = summary_rows(content['summary'])
    width = max(len(r[0]) for r in rows)
    lines = [f'{"row":<{width}}  complete F@{SUMMARY_TAU:g}  occluded recall  occluded F']
    lines += [f'{r[0]:<{width}}  {r[1]:>13}  {r[2]:>15}  {r[3]:>10}' for r in rows]
    lines.append(f'windows evaluated {s["windows evaluated"]}, dropped {fmt(s["windows dropped"])}'
                 f', latency p50/p95 {fmt(s["latency p50 [ms]"])}/{fmt(s["latency p95 [ms]"])} ms')
    return '\n'.join(lines)


def summary_rows(summary: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """[row, complete F@0.1, occluded recall@0.1, occluded F@0.1] (means) per row."""
    rows = []
    for row, metrics in summary.items():
        rows.append([row] + [fmt(metrics.get(k, {}).get('mean', math.nan))
                             for k in SUMMARY_KEYS])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
            + ['| ' + ' | '.join(r) + ' |' for r in rows])


def markdown_report(content: dict[str, Any], pictures: list[Path], out: Path) -> str:
    """Build the bag-specific head of report.md: summary, metres table, stream stats, pictures."""
    s = content['stream']
    lines = ['# nova3r bag evaluation', '',
             f'- input bag: `{content["input_bag"]}`; recording: `{content["recording"]}`',
             f'- windows evaluated: {s["windows evaluated"]} (clouds recorded '
             f'{s["clouds recorded"]}; not evaluated: {s["clouds not evaluated"]}); node units: '
             f'{content["units"]}, N = {content["num_points"]} points per cloud', '',
             f'## Summary (τ = {SUMMARY_TAU:g} in median_3-normalised units, means over '
             'windows)', '',
             *_table(['row', 'complete F', 'occluded recall', 'occluded F'],
                     summary_rows(content['summary'])), '',
             '`node[chamfer]` is aligned (scale + shift) to the complete GT like every method; '
             "`oracle[none]` is the input views' GT depth, unaligned (the best a "
             'pixel-aligned method can do); `ceiling` is an independent GT resample at the '
             'same N.', '']
    if content['metric_summary']:
        ms = content['metric_summary']
        lines += ['## Metric (no alignment, metres)', '',
                  *_table(['row', 'chamfer [m]', 'accuracy [m]', 'completeness [m]',
                           'F@0.1 m', 'occluded recall@0.1 m'],
                          [[row] + [fmt(m.get(k, {}).get('mean', math.nan)) for k in (
                              'complete/chamfer', 'complete/accuracy', 'complete/completeness',
                              'complete/fscore@0.1', 'occluded/recall@0.1')]
                           for row, m in ms.items()]), '']
        scale = content['summary'].get('node[chamfer]', {}).get('align/scale', {})
        lines += [f'Fitted (then discarded) chamfer scale of the metric cloud: mean '
                  f'{fmt(scale.get("mean", math.nan))}, median '
                  f'{fmt(scale.get("median", math.nan))} (1 = metric).', '']
    age = s['recorded age [s]']
    lines += ['## Stream (from /diagnostics and the recording)', '',
              '| quantity | value |', '|---|---|',
              f'| processing latency p50 / p95 [ms] | {fmt(s["latency p50 [ms]"])} / '
              f'{fmt(s["latency p95 [ms]"])} |',
              f'| output age p50 / p95 [ms, node clock] | {fmt(s["output age p50 [ms]"])}'
              f' / {fmt(s["output age p95 [ms]"])} |',
              f'| recorded age p50 / p95 / max [s, recorder clock] | {fmt(age["p50"])} / '
              f'{fmt(age["p95"])} / {fmt(age["max"])} |']
    for key in ('windows formed', 'windows run', 'windows dropped', 'windows published',
                'windows skipped (no subscribers)', 'windows failed', 'scale failures'):
        lines.append(f'| {key} | {fmt(s[key])} |')
    lines.append(f'| scale mode (last scale) | {s["scale mode"]} ({fmt(s["last scale"])})'
                 ' |')
    if s['delivery']:
        lines += ['', '| topic | sent by player | received by node |', '|---|---|---|']
        for topic, d in s['delivery'].items():
            lines.append(f'| {topic} | {d["sent"]} | {fmt(d["received by node"])} |')
    lines += ['', 'Ages with use_sim_time are in bag time (wall time = bag time / playback '
              "rate); the latency is the node's steady-clock processing time per window.", '']
    if pictures:
        lines += ['## Windows', '', "Left: the window's input views. Then the node's cloud "
                  'top-down (blue: labelled visible, orange: labelled occluded) over the GT (grey '
                  'where a camera sees it, tan where none does); the GT no camera sees, green '
                  'where the cloud has a point within 0.1 median_3 units and red where not, '
                  'top-down and projected into view 1 over its image.', '']
        lines += [f'![{p.stem}]({p.relative_to(out).as_posix()})' for p in pictures]
        plots = sorted((out / 'plots').glob('*.png'))
        if plots:
            lines += ['', 'Per-method plots (evaluation units, aligned): '
                      + ', '.join(f'[{p.stem}]({p.relative_to(out).as_posix()})'
                                  for p in plots)]
    return '\n'.join(lines) + '\n'


def cloud_in_metres(cloud: dict[str, Any], units: str, fit: dict[str, Any] | None,
                    median3_scale: float) -> np.ndarray:
    """
    Return a recorded cloud (N, 3) in view-1 metres.

    Metric clouds as they are; normalised ones through their chamfer fit (evaluation units)
    divided by the window's median_3 scale.
    """
    points = np.asarray(cloud['points'], dtype=np.float64)
    if units == 'metric' or fit is None:
        return points
    shift = np.array([fit['align/shift_x'], fit['align/shift_y'], fit['align/shift_z']])
    return (fit['align/scale'] * points + shift) / median3_scale


def occluded_recovery(points: np.ndarray, gt_occluded: np.ndarray, tau: float) -> np.ndarray:
    """(M,) bool: occluded GT points with a cloud point within `tau` (same units)."""
    if len(gt_occluded) == 0:
        return np.zeros(0, dtype=bool)
    if len(points) == 0:
        return np.zeros(len(gt_occluded), dtype=bool)
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(points).query(gt_occluded, k=1)
    return distance < tau


def plot_window(path: Path, title: str, sample: dict[str, Any], points: np.ndarray,
                visibility: np.ndarray | None) -> None:
    """
    One PNG: the input views, then three panels about the geometry no camera sees.

    1. top-down: the GT (grey where an input view sees it, tan where none does) under the
       node's cloud, coloured by the node's own label (blue visible, orange occluded);
    2. top-down, occluded GT only: green where the cloud has a point within tau (0.1 in
       median_3 units, as the summary), red where it does not;
    3. the same occluded GT projected into view 1 over the faded image: what lies behind the
       surfaces the camera sees, and whether the node reconstructed it.

    sample: ``bag_eval.window_sample`` dict (metres, view-1 optical frame); points (N, 3)
    metres in the same frame; visibility (N,) bool or None.
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    images = sample['images']
    gt = np.asarray(sample['points'], dtype=np.float64)
    gt_visible = np.asarray(sample['points_visible'], dtype=bool)
    if len(gt) > MAX_GT_DRAWN:
        keep = np.random.default_rng(0).choice(len(gt), MAX_GT_DRAWN, replace=False)
        gt, gt_visible = gt[keep], gt_visible[keep]
    occluded = gt[~gt_visible]
    tau = SUMMARY_TAU / float(sample['median3_scale'])  # metres
    recovered = occluded_recovery(points, occluded, tau)
    # what the cameras' own surfaces already cover within tau (the visible oracle's share)
    seen_share = float(occluded_recovery(gt[gt_visible], occluded, tau).mean()) \
        if len(occluded) else float('nan')
    k_mat = np.asarray(sample['intrinsics'][0], dtype=np.float64)
    height, width = images.shape[1:3]
    colors = report.visibility_colors(visibility, len(points)) / 255.0
    cams = np.asarray(sample['cam_to_view1'])[:, :3, 3]
    xlim = np.quantile(gt[:, 0], [0.005, 0.995]) + [-0.3, 0.3]
    zlim = (-0.3, float(np.quantile(gt[:, 2], 0.995)) + 0.3)
    hit = (0.10, 0.65, 0.25)
    miss = (0.85, 0.15, 0.15)

    cols = len(images) + 3
    fig, axes = plt.subplots(1, cols, figsize=(3.6 * cols, 3.9))
    for k, image in enumerate(images):
        axes[k].imshow(image)
        axes[k].set_title('view 1 (cloud frame)' if k == 0 else f'view {k + 1}')
        axes[k].axis('off')

    def top_down(ax: Any, panel_title: str) -> None:
        ax.scatter(cams[:, 0], cams[:, 2], marker='^', s=30, c='k', zorder=3)
        ax.set_xlim(*xlim)
        ax.set_ylim(*zlim)
        ax.set_aspect('equal')
        ax.set_title(panel_title, fontsize=9)

    ax = axes[-3]
    ax.scatter(gt[gt_visible, 0], gt[gt_visible, 2], s=0.3, color=GT_GREY, linewidths=0)
    ax.scatter(occluded[:, 0], occluded[:, 2], s=0.3, color=GT_OCCLUDED, linewidths=0)
    ax.scatter(points[:, 0], points[:, 2], s=1.5, c=colors, linewidths=0)
    n_occ = int(np.count_nonzero(~np.asarray(visibility, dtype=bool))) if visibility is not None \
        else 0
    top_down(ax, f'cloud, top-down [m]: blue visible, orange occluded\n({n_occ} of {len(points)} '
                 'labelled occluded; GT grey seen, tan unseen)')
    ax = axes[-2]
    ax.scatter(occluded[:, 0], occluded[:, 2], s=0.6,
               c=np.where(recovered[:, None], hit, miss), linewidths=0)
    share = float(recovered.mean()) if len(recovered) else float('nan')
    top_down(ax, f'GT no camera sees, top-down: green = in the cloud\n(within {tau:.2f} m: '
                 f'{share:.0%}; the seen GT alone: {seen_share:.0%})')
    ax = axes[-1]
    ax.imshow(images[0], alpha=0.35, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    front = occluded[:, 2] > 1e-3
    u = k_mat[0, 0] * occluded[front, 0] / occluded[front, 2] + k_mat[0, 2]
    v = k_mat[1, 1] * occluded[front, 1] / occluded[front, 2] + k_mat[1, 2]
    ax.scatter(u, v, s=0.8, c=np.where(recovered[front, None], hit, miss), linewidths=0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title('hidden behind what view 1 sees\n(green recovered, red missed)', fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
