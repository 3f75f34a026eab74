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
Score a node's recorded clouds against the GT of the bag that was replayed into it.

    nova3r_eval --bag-input bags/room --bag-recording bags/room_out --out bag_eval

Inputs (both rosbag2, read with ``rosbags``, no ROS needed):

- the input bag of ``nova3r_bag make`` (``nova3r_ros.data.bag_export``): images, depth,
  CameraInfo, /tf + /tf_static and the world-frame GT cloud ``/gt/points`` (latched);
- the recording of ``nova3r_bag record``: ``/nova3r/points`` and ``/diagnostics``.

Each recorded cloud is matched to the input frame with its stamp (view 1) and must carry that
frame's ``frame_id``. Its window's GT is built from the world GT and the camera pose of view 1
(TF chain map -> ... -> optical at the stamp): transformed into view 1's optical frame, cropped
to view 1's frustum (0 < z <= ``max_depth``, inside the image) -- or to the union of the
window's frusta when the window's views are known (``window_views``) -- and labelled visible
when it is the first surface along its ray in one of those views (z-buffer test against the
bag's depth images). The GT sample is split in two independent halves: one is the GT, the
other the resampled-GT ceiling. Then the standard runner (``evaluation.cli.evaluate``) scores:

- ``node``: the recorded cloud, chamfer-aligned (scale + shift) like every method; when the node
  ran a metric scale mode, also unaligned in a second table in metres (the fitted alignment
  scale is then a check: ~1 for a metric cloud);
- ``oracle``: the window views' GT depth back-projected (unaligned and aligned);
- ``ceiling``: the other GT half at the node's N.

Stream statistics come from ``/diagnostics`` (processing latency, output age, window counts),
the recording's receive times (output age in bag time) and the player's summary (sent per
topic, compared with what the node reports received).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import shutil
import sys
from typing import Any

from nova3r_ros.cli_format import HelpFormatter
from nova3r_ros.evaluation import bag_report, report
from nova3r_ros.evaluation.bag_reader import (
    InputBag,
    last_value,
    NS_PER_S,
    number,
    read_input_bag,
    read_recording,
    Recording,
    TfTree,
)
from nova3r_ros.evaluation.baselines import ResampledGT, VisibleOracle
from nova3r_ros.evaluation.cli import evaluate, SampleSource, Settings
import numpy as np

__all__ = ['InputBag', 'Recording', 'RecordedMethod', 'TfTree', 'evaluate_bag',
           'frustum_and_visibility', 'last_value', 'main', 'read_input_bag', 'read_recording',
           'window_sample']


# ---- per-window samples -------------------------------------------------------------------------
def _project(points: np.ndarray, k_mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = points[:, 2]
    safe = np.where(z > 1e-6, z, 1.0)
    u = k_mat[0, 0] * points[:, 0] / safe + k_mat[0, 1] * points[:, 1] / safe + k_mat[0, 2]
    v = k_mat[1, 1] * points[:, 1] / safe + k_mat[1, 2]
    return u, v, z


def frustum_and_visibility(points: np.ndarray, depth: np.ndarray, k_mat: np.ndarray,
                           max_depth: float, rel_tol: float = 0.02, abs_tol: float = 0.02
                           ) -> tuple[np.ndarray, np.ndarray]:
    """
    (in_frustum, visible) bool (P,) of points (P, 3) in a camera's optical frame, metres.

    In the frustum: 0 < z <= max_depth and the pixel (u, v) (pixel centres at +0.5) inside the
    image. Visible: the depth image at that pixel is within ``abs_tol + rel_tol * z`` of z
    (the point is the first surface along its ray).
    """
    height, width = depth.shape
    u, v, z = _project(points, k_mat)
    inside = (z > 1e-3) & (z <= max_depth) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    visible = np.zeros(len(points), bool)
    iu = np.clip(np.floor(u[inside]).astype(np.int64), 0, width - 1)
    iv = np.clip(np.floor(v[inside]).astype(np.int64), 0, height - 1)
    d = depth[iv, iu]
    visible[inside] = (d > 0) & (np.abs(d - z[inside]) <= abs_tol + rel_tol * z[inside])
    return inside, visible


def window_sample(bag: InputBag, view_indices: list[int], max_depth: float = 8.0,
                  seed: int = 0, max_gt_points: int = 32768) -> dict[str, Any]:
    """
    Build the view-selected sample dict (CONTRACTS data sample keys) of one window.

    ``view_indices[0]`` is view 1. GT: the bag's world GT in view 1's frame, cropped to the
    union of the views' frusta (at most ``2 * max_gt_points``, a fixed random subset); alternate
    points are the GT and the ceiling's independent resample (``points_alt``).
    """
    from nova3r_ros.model.normalize import median3_scale

    world_to_v1 = np.linalg.inv(bag.cam_to_gt[view_indices[0]])
    cam_to_view1 = np.stack([world_to_v1 @ bag.cam_to_gt[i] for i in view_indices])
    pts1 = bag.gt_points.astype(np.float64) @ world_to_v1[:3, :3].T + world_to_v1[:3, 3]
    keep = np.zeros(len(pts1), bool)
    visible = np.zeros(len(pts1), bool)
    for k, i in enumerate(view_indices):
        to_k = np.linalg.inv(cam_to_view1[k])
        pk = pts1 @ to_k[:3, :3].T + to_k[:3, 3]
        inside, vis = frustum_and_visibility(pk, bag.depths[i], bag.intrinsics, max_depth)
        keep |= inside
        visible |= vis
    if keep.sum() < 20:
        raise ValueError(f'window at frame {view_indices[0]}: only {keep.sum()} GT points in '
                         'its frusta')
    idx = np.flatnonzero(keep)
    if len(idx) > 2 * max_gt_points:  # a fixed subset: scoring cost grows with the GT size
        idx = np.sort(np.random.default_rng(0).choice(idx, 2 * max_gt_points, replace=False))
    main, alt = idx[0::2], idx[1::2]
    points = pts1[main].astype(np.float32)
    return {
        'seed': np.int64(seed),
        'num_views': len(view_indices),
        'images': bag.images[view_indices],
        'depths': bag.depths[view_indices],
        'intrinsics': np.repeat(bag.intrinsics[None].astype(np.float32), len(view_indices), 0),
        'cam_to_view1': cam_to_view1.astype(np.float32),
        'points': points, 'points_visible': visible[main],
        'points_category': bag.gt_category[main],
        'points_alt': pts1[alt].astype(np.float32), 'points_alt_visible': visible[alt],
        'points_alt_category': bag.gt_category[alt],
        'median3_scale': np.float32(median3_scale(points)),
        'max_depth': np.float32(max_depth),
        'view1_stamp_ns': int(bag.stamps_ns[view_indices[0]]),
    }


class RecordedMethod:
    """A method (evaluation contract) whose prediction is a cloud looked up by view-1 stamp."""

    def __init__(self, name: str, clouds: dict[int, dict[str, Any]], units: str) -> None:
        self.name, self.clouds, self.units = name, clouds, units

    def predict(self, sample: dict[str, Any], num_points: int, seed: int) -> dict[str, Any]:
        cloud = self.clouds[int(sample['view1_stamp_ns'])]
        return {'points': cloud['points'], 'visibility': cloud['visibility'],
                'units': self.units}


# ---- the run ------------------------------------------------------------------------------------
def match_windows(bag: InputBag, recording: Recording,
                  window_views: list[list[int]] | None = None
                  ) -> tuple[dict[int, list[int]], dict[str, int]]:
    """
    Map each recorded cloud to the frame indices of its window's views.

    view-1 stamp -> frame indices of the window's views, for every recorded cloud that
    matches an input frame (stamp and frame_id); plus counts of the clouds that do not.
    """
    index = {int(s): i for i, s in enumerate(bag.stamps_ns)}
    known = {}
    for stamps in window_views or []:
        if stamps and all(int(s) in index for s in stamps):
            known[int(stamps[0])] = [index[int(s)] for s in stamps]
    windows: dict[int, list[int]] = {}
    problems = {'stamp not an input frame': 0, 'frame_id differs': 0}
    for stamp, cloud in sorted(recording.clouds.items()):
        if stamp not in index:
            problems['stamp not an input frame'] += 1
        elif cloud['frame_id'] != bag.frame_id:
            problems['frame_id differs'] += 1
        elif len(cloud['points']) > 0:
            windows[stamp] = known.get(stamp, [index[stamp]])
    return windows, problems


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {'p50': math.nan, 'p95': math.nan, 'max': math.nan}
    arr = np.asarray(values, dtype=float)
    return {'p50': float(np.percentile(arr, 50)), 'p95': float(np.percentile(arr, 95)),
            'max': float(arr.max())}


def stream_statistics(recording: Recording, player_summary: dict[str, Any] | None
                      ) -> dict[str, Any]:
    """Latency, output age, window counts (diagnostics) and delivered/sent per input topic."""
    stats: dict[str, Any] = {}
    for key in ('windows formed', 'windows run', 'windows dropped', 'windows pending',
                'windows published', 'windows skipped (no subscribers)', 'windows failed',
                'scale failures', 'latency p50 [ms]', 'latency p95 [ms]'):
        stats[key] = number(last_value(recording, 'inference', key))
    for key in ('output age p50 [ms]', 'output age p95 [ms]', 'last scale'):
        stats[key] = number(last_value(recording, 'output', key))
    stats['scale mode'] = last_value(recording, 'output', 'scale mode')
    stats['clouds recorded'] = len(recording.clouds)
    ages = [(c['received_ns'] - s) / NS_PER_S for s, c in recording.clouds.items()]
    stats['recorded age [s]'] = _percentiles(ages)
    delivery = {}
    if player_summary is not None:
        for info in player_summary.get('topics', {}).values():
            received = last_value(recording, 'inputs', f'{info["published_as"]} received')
            delivery[info['published_as']] = {'sent': info['sent'],
                                              'received by node': number(received)}
        stats['playback rate'] = player_summary.get('rate')
    stats['delivery'] = delivery
    return stats


def recorded_units(recording: Recording) -> str:
    """'metric' when the node's diagnostics say its scale mode is metric, else 'normalized'."""
    metric = last_value(recording, 'output', 'metric')
    return 'metric' if str(metric).lower() == 'true' else 'normalized'


def evaluate_bag(input_bag: str | Path, recording_bag: str | Path, out: str | Path,
                 window_views: list[list[int]] | None = None,
                 player_summary: dict[str, Any] | None = None, units: str = 'auto',
                 max_depth: float = 8.0, num_plots: int = 3, pictures: int = 4,
                 extra_methods: list[Any] = (), progress: bool = True) -> dict[str, Any]:
    """
    Evaluate a recording against its input bag.

    Writes ``out``/report.md, metrics.json, plots/, ply/, pictures/ and returns the
    metrics.json content.

    window_views: optional lists of view stamps (ns) per window, view 1 first (from the node
    or an offline replay of its window logic); windows not listed use view 1 only.
    extra_methods: more methods scored on the same windows (e.g. an offline model run).
    """
    out = Path(out)
    for path in (input_bag, recording_bag):
        if not Path(path).is_dir():
            raise ValueError(f'{path} does not exist (a rosbag2 directory is expected)')
    bag = read_input_bag(input_bag)
    recording = read_recording(recording_bag)
    windows, problems = match_windows(bag, recording, window_views)
    if not windows:
        raise ValueError(f'no recorded cloud matches an input frame ({problems})')
    if units == 'auto':
        units = recorded_units(recording)
    node = RecordedMethod('node', recording.clouds, units)
    num_points = int(np.median([len(recording.clouds[s]['points']) for s in windows]))

    def sources(metres: bool) -> list[SampleSource]:
        def loader(stamp: int):
            def load() -> dict[str, Any]:
                sample = window_sample(bag, windows[stamp], max_depth, seed=stamp % 2**31)
                if metres:  # evaluation units = metres
                    sample['median3_scale'] = np.float32(1.0)
                return sample
            return load
        return [SampleSource(f'w{stamp}', loader(stamp)) for stamp in windows]

    shutil.rmtree(out / 'cache', ignore_errors=True)  # results depend on the recording
    settings = Settings(num_points, max(len(v) for v in windows.values()), 0, None, None)
    methods = [node, *extra_methods, VisibleOracle(), ResampledGT()]
    results, timing = evaluate(sources(False), methods, settings, 'chamfer', out,
                               num_plots=num_plots, progress=progress)
    metric_results: report.Results = {}
    if units == 'metric':
        shutil.rmtree(out / 'metres' / 'cache', ignore_errors=True)
        metric_results, _ = evaluate(sources(True), [node, VisibleOracle()], settings, 'none',
                                     out / 'metres', num_plots=0, progress=progress)
    summary = report.summarize(results)
    metric_summary = report.summarize(metric_results)
    stats = stream_statistics(recording, player_summary)
    stats['windows evaluated'] = len(windows)
    stats['clouds not evaluated'] = problems
    picture_paths = write_pictures(out / 'pictures', bag, recording, windows, results,
                                   units, pictures)
    content = {'input_bag': str(input_bag), 'recording': str(recording_bag), 'units': units,
               'num_points': num_points, 'summary': summary, 'metric_summary': metric_summary,
               'stream': stats, 'timing': timing, 'per_window': results,
               'per_window_metres': metric_results,
               'windows': {f'w{s}': [int(bag.stamps_ns[i]) for i in v]
                           for s, v in windows.items()}}
    report.dump_json(out / 'metrics.json', content)
    diffs = report.bootstrap_differences(results, num_resamples=1000)
    (out / 'report.md').write_text(bag_report.markdown_report(content, picture_paths, out) + '\n'
                                   + report.markdown(summary, diffs, '# Full evaluation table'))
    return content


def write_pictures(out: Path, bag: InputBag, recording: Recording, windows: dict[int, list[int]],
                   results: report.Results, units: str, count: int,
                   max_depth: float = 8.0) -> list[Path]:
    """PNG of ``count`` windows spread over the run (``bag_report.plot_window``)."""
    if count <= 0:
        return []
    out.mkdir(parents=True, exist_ok=True)
    stamps = sorted(windows)
    chosen = [stamps[int(i)] for i in np.unique(np.linspace(0, len(stamps) - 1, count).round())]
    paths = []
    for stamp in chosen:
        sample = window_sample(bag, windows[stamp], max_depth)
        cloud = recording.clouds[stamp]
        fit = results.get('node[chamfer]', {}).get(f'w{stamp}')
        points = bag_report.cloud_in_metres(cloud, units, fit, float(sample['median3_scale']))
        frame = windows[stamp][0]
        path = out / f'w{stamp}.png'
        metrics = '' if fit is None else (
            f", F@0.1 {fit.get('complete/fscore@0.1', math.nan):.3f}, occluded recall@0.1 "
            f"{fit.get('occluded/recall@0.1', math.nan):.3f}")
        bag_report.plot_window(path, f'window at frame {frame} (stamp {stamp} ns){metrics}',
                               sample, points, cloud['visibility'])
        paths.append(path)
    return paths


def build_parser() -> argparse.ArgumentParser:
    """Parser of the bag mode of nova3r_eval."""
    p = argparse.ArgumentParser(prog='nova3r_eval (bag mode)',
                                description=__doc__.strip().split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--bag-input', type=Path, required=True,
                   help='the bag that was played (nova3r_bag make: images, depth, TF, GT)')
    p.add_argument('--bag-recording', type=Path, required=True,
                   help='the recorded node outputs (nova3r_bag record)')
    p.add_argument('--out', type=Path, default=Path('bag_eval_output'),
                   help='output directory: report.md, metrics.json, pictures/, plots/, ply/')
    p.add_argument('--player-summary', type=Path, default=None,
                   help="JSON of 'nova3r_bag play --summary' (sent counts per topic)")
    p.add_argument('--windows', type=Path, default=None,
                   help='JSON {"windows": [[view stamps ns, view 1 first], ...]}: window views '
                        '(default: view 1 only)')
    p.add_argument('--units', choices=('auto', 'metric', 'normalized'), default='auto',
                   help="units of the recorded clouds; auto = the node's diagnostics")
    p.add_argument('--max-depth', type=float, default=8.0,
                   help='GT crop depth, metres (the bag export default)')
    p.add_argument('--plots', type=int, default=3, help='per-method plots (first windows)')
    p.add_argument('--pictures', type=int, default=4, help='window pictures in the report')
    p.add_argument('--no-progress', action='store_true', help='hide progress bars')
    return p


def main(argv: list[str] | None = None) -> int:
    """Bag mode of nova3r_eval; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        summary = json.loads(args.player_summary.read_text()) if args.player_summary else None
        views = json.loads(args.windows.read_text())['windows'] if args.windows else None
        content = evaluate_bag(args.bag_input, args.bag_recording, args.out, views, summary,
                               args.units, args.max_depth, args.plots, args.pictures,
                               progress=not args.no_progress)
    except (ValueError, OSError, KeyError) as exc:
        print(f'nova3r_eval: error: {exc}', file=sys.stderr)
        return 2
    print(bag_report.summary_text(content))
    print(f'report: {args.out / "report.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
