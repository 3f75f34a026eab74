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
End to end over DDS: player -> node (own process, sim time) -> recorder -> bag evaluation.

Uses the shipped checkpoint when it exists, else a random-weight micro model:
the metrics are not meaningful, but stamps, frames, window logic, per-window seeding and the
report are, and the node's clouds must equal the offline run of the same windows.
"""

import json
import math

from nova3r_ros import demo
from nova3r_ros.data.bag_export import export_bag
from nova3r_ros.evaluation import bag_eval
from nova3r_ros.geometry.scale import depth_scale
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros.model_loader import SOURCE_CHECKPOINTS
from nova3r_ros.ros.offline import load_parameters, replay_windows, run_offline
import numpy as np
import pytest
import torch

SHIPPED = SOURCE_CHECKPOINTS / 'nova3r_tiny.safetensors'
FRAMES = 60


@pytest.mark.slow
def test_replay_through_the_node_matches_offline_and_scores(tmp_path):
    bag = tmp_path / 'in'
    # 60 frames (4 s): ~11 windows, enough for the mean alignment scale below to mean something
    export_bag(bag, seed=2_000_001, num_frames=FRAMES, rate_hz=15.0, gt_points=40000,
               progress=False)
    if SHIPPED.exists():
        checkpoint, num_points = SHIPPED, 2048
    else:
        checkpoint, num_points = tmp_path / 'micro.safetensors', 2048
        torch.manual_seed(0)  # fixed random weights
        Nova3r(get_preset('micro')).save_checkpoint(str(checkpoint))
    values = demo.node_parameters(str(checkpoint), num_points, num_steps=4)
    values['torch_threads'] = 1
    values['scale_min_pixels'] = 5  # random weights: few points land on valid depth
    params = demo.write_params(tmp_path / 'params.yaml', values)
    # 0.2x: a window every ~1.7 s of wall time. The node keeps one window pending and drops an
    # older one when a newer arrives (nothing queues up on a robot), so a window must take less
    # than that: with the pixel net and the depth fit it takes 1.2-1.4 s on 2 cores (p50 /
    # p95), and at 0.35x (~1 s) one window in 11 was dropped in about half the runs.
    paths = demo.replay(bag, tmp_path / 'run', params, rate=0.2, linger=6.0, timeout=150)

    frames = bag_eval.read_input_bag(bag)
    recording = bag_eval.read_recording(paths['recording'])
    values = load_parameters(params)
    windows = replay_windows(frames.stamps_ns, frames.images, values)
    assert len(windows) >= 8
    # Every recorded cloud is a window the node's logic forms offline, stamped and framed
    # as its view 1 (the input image), in order.
    view1 = [int(frames.stamps_ns[w[0]]) for w in windows]
    assert set(recording.clouds) <= set(view1)
    assert {c['frame_id'] for c in recording.clouds.values()} == {frames.frame_id}

    # The ROS path loses nothing: the same windows offline give the same clouds (and the
    # node published every window the offline run publishes: none without a depth scale).
    model = Nova3r.from_checkpoint(str(checkpoint)).eval()
    offline = run_offline(model, frames.stamps_ns, frames.images, frames.depths,
                          frames.intrinsics, windows, values, progress=False)
    assert len(offline) >= 3
    assert set(recording.clouds) == set(offline)
    check = demo.offline_check(recording.clouds, offline)
    assert check['windows compared'] == len(recording.clouds)
    assert check['max point difference'] < 1e-4
    assert check['max visibility disagreement'] == 0.0

    player = json.loads(paths['player_summary'].read_text())
    assert player['topics']['/camera/image_raw']['sent'] == FRAMES
    views = [[int(frames.stamps_ns[i]) for i in w] for w in windows]
    offline_method = bag_eval.RecordedMethod('offline', offline, 'metric')
    content = bag_eval.evaluate_bag(bag, paths['recording'], tmp_path / 'eval', views, player,
                                    num_plots=0, pictures=1, extra_methods=[offline_method],
                                    progress=False)
    stream = content['stream']
    assert content['units'] == 'metric' and stream['scale mode'] == 'depth'
    assert stream['windows evaluated'] == len(recording.clouds)
    assert sum(stream['clouds not evaluated'].values()) == 0
    assert stream['delivery']['/camera/image_raw']['received by node'] == FRAMES
    assert math.isfinite(stream['latency p50 [ms]']) and stream['latency p50 [ms]'] > 0
    summary = content['summary']
    for key in bag_eval.bag_report.SUMMARY_KEYS:
        assert math.isfinite(summary['node[chamfer]'][key]['mean'])
        assert summary['node[chamfer]'][key]['mean'] == pytest.approx(
            summary['offline[chamfer]'][key]['mean'], abs=1e-6)
    report_md = (tmp_path / 'eval' / 'report.md').read_text()
    assert '| node[chamfer] |' in report_md and 'nan |' not in report_md.split('## Stream')[0]
    assert len(list((tmp_path / 'eval' / 'pictures').glob('*.png'))) == 1
    # Two windows' views as the node used them: the window's second view is a later frame.
    assert all(b > a for a, b in (w for w in content['windows'].values()))
    scale = summary['node[chamfer]']['align/scale']['mean']
    assert np.isfinite(scale) and scale > 0
    if SHIPPED.exists():
        # The cloud is metric: aligning it to the GT (scale fitted, then discarded) leaves it
        # within 5 % of its size. This needs a model whose cloud matches the GT's shape, so it
        # is asserted for the shipped one only (random weights give any scale).
        assert scale == pytest.approx(1.0, abs=0.05)
    # `depth` scale mode leaves every published cloud registered to the bag's depth image: its
    # visible points, refitted to the depth, give a scale near 1 and a short shift. (The node
    # fitted the model-unit cloud and kept the shift, chamfer_shift; the refit is a local fit
    # started from the published cloud's own depth ratio, which the shift moves, so it lands
    # near the identity, not on it: up to 5 % and 16 % of the median depth on this bag. The
    # exact wiring, points * scale + shift for every point, is test_node_pipeline's.)
    assert values['depth_scale_fit'] == 'chamfer_shift'
    index = {int(s): i for i, s in enumerate(frames.stamps_ns)}
    refits = []
    for stamp, cloud in recording.clouds.items():
        i = index[stamp]
        check = depth_scale(cloud['points'], cloud['visibility'], frames.depths[i],
                            frames.intrinsics, min_pixels=5, fit=values['depth_scale_fit'])
        assert check.scale is not None, check.reason
        reach = float(np.median(frames.depths[i][frames.depths[i] > 0]))
        refits.append((check.scale, float(np.linalg.norm(check.shift)) / reach))
    assert all(abs(scale - 1.0) < 0.1 and shift < 0.25 for scale, shift in refits), refits
