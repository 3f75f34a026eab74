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
Reports: summary statistics, paired bootstrap CIs, metrics.json, markdown, PNG and PLY.

`results` throughout is ``{row_name: {sample_id: metrics_dict}}`` where a row is one method
under one alignment (e.g. ``oracle[none]``). matplotlib is imported lazily (Agg backend).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nova3r_ros.evaluation.metrics import GroundTruth
import numpy as np

Results = dict[str, dict[str, dict[str, Any]]]

# Headline columns of the main table; (key, higher_is_better).
HEADLINE: tuple[tuple[str, bool], ...] = (
    ('complete/chamfer', False),
    ('complete/accuracy', False),
    ('complete/completeness', False),
    ('complete/fscore@0.1', True),
    ('complete/fscore@0.05', True),
    ('complete/fscore@0.02', True),
    ('visible/recall@0.05', True),
    ('occluded/recall@0.05', True),
    ('occluded/fscore@0.05', True),
    ('occluded_floor/recall@0.05', True),
    ('occluded_wall/recall@0.05', True),
    ('occluded_object/recall@0.05', True),
    ('complete/hole_ratio@0.05', False),
    ('pred/density_var', False),
    ('align/scale', True),
)
# Differences between rows get bootstrap CIs for these.
BOOTSTRAP_KEYS = ('complete/chamfer', 'complete/fscore@0.05', 'occluded/fscore@0.05',
                  'occluded/recall@0.05')


def numeric_keys(results: Results) -> list[str]:
    """Every numeric metric key present in any result, sorted."""
    keys: set[str] = set()
    for per_sample in results.values():
        for metrics in per_sample.values():
            keys.update(k for k, v in metrics.items() if isinstance(v, int | float))
    return sorted(keys)


def summarize(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, median and count (non-NaN samples) per metric per row."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for row, per_sample in results.items():
        summary[row] = {}
        for key in numeric_keys({row: per_sample}):
            values = np.array([m.get(key, math.nan) for m in per_sample.values()], dtype=float)
            values = values[np.isfinite(values)]
            summary[row][key] = {
                'mean': float(values.mean()) if values.size else math.nan,
                'median': float(np.median(values)) if values.size else math.nan,
                'n': int(values.size),
            }
    return summary


def paired_bootstrap(a: np.ndarray, b: np.ndarray, num_resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """
    Mean of the paired difference a - b and its percentile bootstrap CI (lo, hi).

    `a`, `b`: (S,) per-sample values of two rows on the same samples (pairs with a NaN dropped).
    Resampling samples (not points) keeps the per-sample pairing, so scene difficulty cancels.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f'paired values need equal 1-D shapes, got {a.shape} and {b.shape}')
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if d.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(num_resamples, d.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(lo), float(hi)


def bootstrap_differences(results: Results, keys: tuple[str, ...] = BOOTSTRAP_KEYS,
                          num_resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Paired CIs of (row_a - row_b) for every pair of rows on their common samples."""
    rows = list(results)
    out = []
    for i, row_a in enumerate(rows):
        for row_b in rows[i + 1:]:
            common = sorted(set(results[row_a]) & set(results[row_b]))
            for key in keys:
                a = np.array([results[row_a][s].get(key, math.nan) for s in common], dtype=float)
                b = np.array([results[row_b][s].get(key, math.nan) for s in common], dtype=float)
                mean, lo, hi = paired_bootstrap(a, b, num_resamples, seed)
                out.append({'a': row_a, 'b': row_b, 'metric': key, 'mean_diff': mean,
                            'ci95_lo': lo, 'ci95_hi': hi, 'n': len(common)})
    return out


def _fmt(x: float) -> str:
    return 'nan' if not np.isfinite(x) else f'{x:.4f}' if abs(x) < 100 else f'{x:.1f}'


def markdown(summary: dict[str, dict[str, dict[str, float]]], diffs: list[dict[str, Any]],
             header: str = '') -> str:
    """Build the report: headline table (mean, median in brackets), bootstrap CIs, full table."""
    rows = list(summary)
    lines = [header, ''] if header else []
    cols = [k for k, _ in HEADLINE if any(k in summary[r] for r in rows)]
    lines += ['## Headline metrics: mean (median) over samples', '',
              '| row | n | ' + ' | '.join(f'{k} {"↑" if up else "↓"}' for k, up in HEADLINE
                                          if k in cols) + ' |',
              '|---|---|' + '---|' * len(cols)]
    for r in rows:
        n = max((v['n'] for v in summary[r].values()), default=0)
        cells = []
        for k in cols:
            s = summary[r].get(k)
            cells.append('–' if s is None else f'{_fmt(s["mean"])} ({_fmt(s["median"])})')
        lines.append(f'| {r} | {n} | ' + ' | '.join(cells) + ' |')
    if diffs:
        lines += ['', '## Paired differences (row a − row b), mean and bootstrap 95% CI', '',
                  '| a | b | metric | mean diff | 95% CI | n |', '|---|---|---|---|---|---|']
        for d in diffs:
            lines.append(f'| {d["a"]} | {d["b"]} | {d["metric"]} | {_fmt(d["mean_diff"])} | '
                         f'[{_fmt(d["ci95_lo"])}, {_fmt(d["ci95_hi"])}] | {d["n"]} |')
    keys = sorted({k for r in rows for k in summary[r]})
    lines += ['', '## All metrics: mean / median', '',
              '| metric | ' + ' | '.join(rows) + ' |', '|---|' + '---|' * len(rows)]
    for k in keys:
        cells = []
        for r in rows:
            s = summary[r].get(k)
            cells.append('–' if s is None else f'{_fmt(s["mean"])} / {_fmt(s["median"])}')
        lines.append(f'| {k} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_json(path: Path, obj: Any) -> None:
    """Write strict JSON atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(json_safe(obj), indent=1, allow_nan=False))
    tmp.replace(path)


def load_json_metrics(path: Path) -> dict[str, Any]:
    """Read a JSON written by :func:`dump_json` (None back to NaN at the top level)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data.get('metrics'), dict):
        data['metrics'] = {k: (math.nan if v is None else v) for k, v in data['metrics'].items()}
    return data


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Binary little-endian PLY of (N, 3) points with optional uint8 (N, 3) RGB colours."""
    points = np.asarray(points, dtype=np.float32)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if colors is not None:
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    data = np.empty(len(points), dtype=fields)
    data['x'], data['y'], data['z'] = points.T
    props = ['property float x', 'property float y', 'property float z']
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8)
        data['red'], data['green'], data['blue'] = colors.T
        props += ['property uchar red', 'property uchar green', 'property uchar blue']
    head = '\n'.join(['ply', 'format binary_little_endian 1.0', f'element vertex {len(points)}',
                      *props, 'end_header']) + '\n'
    with open(path, 'wb') as f:
        f.write(head.encode('ascii'))
        f.write(data.tobytes())


VISIBLE_RGB = (31, 119, 180)  # blue
OCCLUDED_RGB = (255, 127, 14)  # orange
UNLABELLED_RGB = (44, 160, 44)  # green


def visibility_colors(visibility: np.ndarray | None, n: int) -> np.ndarray:
    """uint8 (n, 3): blue visible, orange occluded, green when the method gives no label."""
    if visibility is None:
        return np.tile(np.array(UNLABELLED_RGB, dtype=np.uint8), (n, 1))
    return np.where(np.asarray(visibility, dtype=bool)[:, None],
                    np.array(VISIBLE_RGB, dtype=np.uint8), np.array(OCCLUDED_RGB, dtype=np.uint8))


def plot_sample(path: Path, sample_id: str, gt: GroundTruth, intrinsics: np.ndarray,
                image_size: tuple[int, int], rows: dict[str, tuple[np.ndarray, Any]],
                cameras: np.ndarray | None = None, max_gt: int = 20000) -> None:
    """
    Plot one PNG with one line per row.

    Each line: top-down and view-1 projections (GT grey, prediction coloured visible/occluded)
    and top-down heat maps of prediction->GT error and GT->prediction distance (holes).
    Evaluation units; `rows` maps row name -> (aligned points, visibility).

    intrinsics: (3, 3) of view 1 in pixels; image_size: (W, H); cameras: (K, 3) camera centres
    in view-1 frame, evaluation units (drawn as black triangles on the top-down panels).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    g = gt.points
    if len(g) > max_gt:
        g_idx = rng.choice(len(g), max_gt, replace=False)
        g = g[g_idx]
    width, height = image_size
    lim_x = np.quantile(gt.points[:, 0], [0.005, 0.995]) + np.array([-0.5, 0.5])
    lim_z = (min(-0.5, float(gt.points[:, 2].min())),
             float(np.quantile(gt.points[:, 2], 0.995)) + 0.5)

    def project(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = p[:, 2]
        keep = z > 1e-3
        u = intrinsics[0, 0] * p[keep, 0] / z[keep] + intrinsics[0, 2]
        v = intrinsics[1, 1] * p[keep, 1] / z[keep] + intrinsics[1, 2]
        return u, v

    fig, axes = plt.subplots(len(rows), 4, figsize=(20, 4.6 * len(rows)), squeeze=False)
    gu, gv = project(g)
    for i, (row, (points, visibility)) in enumerate(rows.items()):
        colors = visibility_colors(visibility, len(points)) / 255.0
        ax = axes[i, 0]
        ax.scatter(g[:, 0], g[:, 2], s=0.3, c='0.75', linewidths=0)
        ax.scatter(points[:, 0], points[:, 2], s=0.6, c=colors, linewidths=0)
        ax.set_title(f'{row}: top-down (x right, z fwd)', fontsize=10)
        ax = axes[i, 1]
        ax.scatter(gu, gv, s=0.3, c='0.75', linewidths=0)
        pu, pv = project(points)
        keep = points[:, 2] > 1e-3
        ax.scatter(pu, pv, s=0.6, c=colors[keep], linewidths=0)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect('equal')
        ax.set_title(f'{row}: view 1 (blue vis., orange occ.)', fontsize=10)
        d_pred, _ = gt.tree('complete').query(points, workers=-1)
        d_gt, _ = cKDTree(points).query(gt.points, workers=-1)
        for j, (xyz, d, title) in enumerate((
                (points, d_pred, 'error pred→GT'), (gt.points, d_gt, 'GT→pred (holes)'))):
            ax = axes[i, 2 + j]
            order = np.argsort(d)  # draw large errors last so they stay visible
            sc = ax.scatter(xyz[order, 0], xyz[order, 2], s=0.6, c=d[order], cmap='inferno',
                            vmin=0.0, vmax=0.2, linewidths=0)
            fig.colorbar(sc, ax=ax, fraction=0.046, label='normalised units')
            ax.set_title(f'{row}: {title}', fontsize=10)
        for ax in (axes[i, 0], axes[i, 2], axes[i, 3]):
            ax.set_xlim(*lim_x)
            ax.set_ylim(*lim_z)
            ax.set_aspect('equal')
            if cameras is not None:
                ax.scatter(cameras[:, 0], cameras[:, 2], marker='^', s=40, c='k')
    fig.suptitle(f'sample {sample_id} (grey: complete GT)')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
