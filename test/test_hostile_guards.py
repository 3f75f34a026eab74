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
Resource guards of the node: ``max_points``, ``max_window_bytes`` and out-of-memory retry.

- ``num_points`` above the read-only ``max_points`` is refused at start-up and at run time;
- a window whose decoded images exceed ``max_window_bytes`` is dropped before preprocessing,
  counted (``windows dropped (too large)`` in diagnostics, WARN) and logged;
- ``torch.OutOfMemoryError`` from the model (injected here on CPU; on a GPU it is the CUDA
  allocator's error) is logged and the window retried once with half the points; a second one
  counts as a failed window and the worker keeps going.
"""

from doubles import RecordingLogger
from nova3r_ros import params as P
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros.diagnostics import level_of, values_of
from nova3r_ros.ros.node_diagnostics import build_statuses
from nova3r_ros.ros.pipeline import Frame, Settings, window_bytes
from nova3r_ros.ros.window import LatestWindowSlot, View, Window
from nova3r_ros.ros.worker import InferenceWorker
import numpy as np
import pytest
from rclpy.parameter import Parameter
import torch

H, W = 48, 64
RGB_BYTES = H * W * 3  # 9216
DEPTH_BYTES = H * W * 4  # float32 metres: 12288


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return Nova3r(get_preset('micro')).eval()


def make_window(num_views: int = 2, with_depth: bool = True) -> Window:
    rng = np.random.default_rng(0)
    views = []
    for index in range(num_views):
        depth = np.full((H, W), 2.0, np.float32) if with_depth and index == 0 else None
        frame = Frame(rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8), received_ns=0,
                      depth=depth)
        views.append(View(5_000_000_000 + index, f'cam{index}', 0, frame))
    return Window(tuple(views), (5_000_000_000,), 1, 0)


class OomModel(torch.nn.Module):
    """Wraps a model; ``sample`` raises ``torch.OutOfMemoryError`` above ``limit`` points."""

    def __init__(self, inner: Nova3r, limit: int):
        super().__init__()
        self.inner, self.cfg, self.limit = inner, inner.cfg, limit
        self.sampled: list[int] = []  # num_points of every sample call

    @property
    def device(self):
        return self.inner.device

    def encode_views(self, images):
        return self.inner.encode_views(images)

    def sample(self, tokens, num_points, num_steps, **kwargs):
        self.sampled.append(num_points)
        if num_points > self.limit:
            raise torch.OutOfMemoryError(
                f'CUDA out of memory. Tried to allocate {num_points} points\nmore detail')
        return self.inner.sample(tokens, num_points, num_steps, **kwargs)


def _worker(model, settings, logger, published):
    return InferenceWorker(model, LatestWindowSlot(), lambda: settings,
                           lambda window, output: published.append(output), lambda: True,
                           logger)


# ---- max_points -------------------------------------------------------------------------------
def test_num_points_above_max_points_is_refused():
    current = dict(P.DEFAULTS)
    assert P.SPECS['max_points'].read_only and not P.SPECS['max_window_bytes'].read_only
    assert current['num_points'] <= current['max_points']
    top = current['max_points']
    assert P.validate_change(current, {'num_points': top, 'oversample': 1.0}, False) is None
    # the draw (num_points x oversample) is what costs memory, so it is what the guard bounds
    assert P.validate_change(current, {'num_points': top // 2, 'oversample': 2.0}, False) is None
    reason = P.validate_change(current, {'num_points': top // 2 + 1, 'oversample': 2.0}, False)
    assert reason == (f'num_points x oversample ({top // 2 + 1} x 2 = {top + 2} points drawn) '
                      f'must be <= max_points ({top}, a start-up guard)')
    reason = P.validate_change(current, {'num_points': current['max_points'] + 1}, False)
    assert reason == (f"num_points ({current['max_points'] + 1}) must be <= max_points "
                      f"({current['max_points']}, a start-up guard)")
    with pytest.raises(ValueError, match='must be <= max_points'):
        P.validate_startup({**current, 'max_points': 100, 'num_points': 101})
    assert 'max_window_bytes' in P.validate_change(current, {'max_window_bytes': 10}, False)


def test_node_guards_at_start_up_and_run_time(make_node):
    with pytest.raises(ValueError, match=r'num_points \(5000\) must be <= max_points \(1000'):
        make_node(max_points=1000, num_points=5000)
    node = make_node(max_points=1000, num_points=500, oversample=1.25)
    refused = node.set_parameters([Parameter('num_points', value=1001)])[0]
    assert not refused.successful and 'max_points (1000' in refused.reason
    assert node.settings.num_points == 500
    assert node.set_parameters([Parameter('num_points', value=800)])[0].successful
    refused = node.set_parameters([Parameter('num_points', value=801)])[0]  # draws 1002
    assert not refused.successful and '1002 points drawn' in refused.reason
    assert node.set_parameters([Parameter('oversample', value=1.0)])[0].successful
    assert node.set_parameters([Parameter('num_points', value=1000)])[0].successful
    assert node.settings.num_points == 1000 and node.settings.oversample == 1.0
    assert not node.set_parameters([Parameter('max_points', value=5000)])[0].successful
    assert node.set_parameters([Parameter('max_window_bytes', value=2_000_000)])[0].successful
    assert node.settings.max_window_bytes == 2_000_000
    node.worker.windows_too_large, node.worker.oom_retries = 3, 1
    inference = next(s for s in build_statuses(node).status if s.name.endswith('inference'))
    values = values_of(inference)
    assert values['windows dropped (too large)'] == '3'
    assert values['out-of-memory retries'] == '1'
    assert level_of(inference) >= 1 and 'above max_window_bytes (2000000)' in inference.message


# ---- max_window_bytes -------------------------------------------------------------------------
def test_window_bytes_counts_rgb_and_depth():
    assert window_bytes(make_window(2, with_depth=True)) == 2 * RGB_BYTES + DEPTH_BYTES
    assert window_bytes(make_window(3, with_depth=False)) == 3 * RGB_BYTES


def test_oversized_window_dropped_counted_and_not_run(model):
    size = 2 * RGB_BYTES + DEPTH_BYTES
    wrapped = OomModel(model, limit=10**9)
    logger, published = RecordingLogger(), []
    worker = _worker(wrapped, Settings(num_points=16, num_steps=1, max_window_bytes=size - 1),
                     logger, published)
    assert worker.process(make_window()) is False
    assert worker.windows_too_large == 1 and worker.windows_failed == 0
    assert wrapped.sampled == [] and published == []  # the model never saw it
    assert logger.records == [('warning', f'window 0 dropped: its decoded images take {size} '
                                          f'bytes > max_window_bytes {size - 1}')]
    at_limit = _worker(wrapped, Settings(num_points=16, num_steps=1, max_window_bytes=size),
                       RecordingLogger(), published)
    assert at_limit.process(make_window()) is True and at_limit.windows_too_large == 0


# ---- out of memory ----------------------------------------------------------------------------
def test_out_of_memory_retried_once_with_half_the_points(model):
    wrapped = OomModel(model, limit=100)
    logger, published = RecordingLogger(), []
    worker = _worker(wrapped, Settings(num_points=160, num_steps=1), logger, published)
    assert worker.process(make_window()) is True
    assert wrapped.sampled == [160, 80]
    assert worker.oom_retries == 1 and worker.windows_failed == 0 and worker.windows_done == 1
    assert published[0].points.shape == (80, 3)
    level, text = logger.records[0]
    assert level == 'warning' and text == (
        'window 0: out of memory with 160 points (CUDA out of memory. Tried to allocate 160 '
        'points); retrying once with 80 points')


def test_second_out_of_memory_fails_the_window_and_the_worker_goes_on(model):
    wrapped = OomModel(model, limit=10)
    logger, published = RecordingLogger(), []
    worker = _worker(wrapped, Settings(num_points=64, num_steps=1), logger, published)
    assert worker.process(make_window()) is False
    assert wrapped.sampled == [64, 32]  # one retry only
    assert worker.oom_retries == 1 and worker.windows_failed == 1
    assert worker.last_error.startswith('OutOfMemoryError: CUDA out of memory')
    assert [level for level, _ in logger.records] == ['warning', 'error']
    wrapped.limit = 10**9
    assert worker.process(make_window()) is True and worker.windows_done == 1
