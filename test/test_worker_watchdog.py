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
The inference worker's watchdog (``window_timeout``); ROS-free, micro model, random weights.

Hung or slow windows are abandoned, counted and logged, later windows run on a fresh model
thread, late results are discarded and the number of abandoned threads is bounded.
"""

import threading
import time

from doubles import RecordingLogger
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros.pipeline import Frame, Settings
from nova3r_ros.ros.window import LatestWindowSlot, View, Window
from nova3r_ros.ros.worker import InferenceWorker
import numpy as np
import pytest
import torch

SETTINGS = Settings(num_points=16, num_steps=1)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return Nova3r(get_preset('micro')).eval()


def make_window(sequence: int, frame_id: str = 'cam0') -> Window:
    rng = np.random.default_rng(sequence)
    frame = Frame(rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                  received_ns=time.monotonic_ns())
    return Window((View(1_000_000_000 + sequence, frame_id, 0, frame),), (1,), 1, sequence)


class FaultyModel(torch.nn.Module):
    """
    Wraps a model; ``encode_images`` blocks on a gate (hang) or raises, per call, by plan.

    ``plan`` is consumed one entry per call: 'ok', 'hang' (blocks until ``release``), 'raise'.
    Records the thread each call ran on.
    """

    def __init__(self, inner: Nova3r, plan):
        super().__init__()
        self.inner, self.cfg = inner, inner.cfg
        self.plan = list(plan)
        self.gate = threading.Event()
        self.threads: list[str] = []
        self.returned = 0

    @property
    def device(self):
        return self.inner.device

    def release(self):
        self.gate.set()

    def encode_views(self, images):
        self.threads.append(threading.current_thread().name)
        action = self.plan.pop(0) if self.plan else 'ok'
        if action == 'hang':
            self.gate.wait(60)
        elif action == 'raise':
            raise RuntimeError('injected model failure')
        out = self.inner.encode_views(images)
        self.returned += 1
        return out

    def sample(self, *args, **kwargs):
        return self.inner.sample(*args, **kwargs)


def make_worker(model, published, timeout=0.3, **kwargs):
    logger = RecordingLogger()
    worker = InferenceWorker(model, LatestWindowSlot(), lambda: SETTINGS,
                             lambda w, out: published.append((w.sequence, out)), lambda: True,
                             logger, window_timeout=timeout, **kwargs)
    return worker, logger


def wait_until(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_hung_window_is_abandoned_counted_and_late_result_discarded(model):
    faulty = FaultyModel(model, ['hang', 'ok'])
    published = []
    worker, logger = make_worker(faulty, published, timeout=0.3)
    start = time.monotonic()
    assert worker.process(make_window(0)) is False
    assert 0.3 <= time.monotonic() - start < 3.0  # gave up after the timeout, not the hang
    assert worker.windows_timed_out == 1 and worker.windows_failed == 0
    assert worker.hung_threads == 1 and not worker.stalled
    assert 'window 0 ran past window_timeout 0.3 s' in worker.last_error
    assert any(level == 'error' and 'abandoned' in msg for level, msg in logger.records)
    # the next window runs on a new model thread and is published
    assert worker.process(make_window(1)) is True
    assert [seq for seq, _ in published] == [1]
    assert worker.model_threads_started == 2
    assert faulty.threads[0] != faulty.threads[1]
    # the hung call returns: its result is thrown away, never published; its thread exits
    faulty.release()
    assert wait_until(lambda: worker.late_results_discarded == 1)
    assert wait_until(lambda: worker.hung_threads == 0)
    assert [seq for seq, _ in published] == [1]
    assert np.all(np.isfinite(published[0][1].points))
    assert worker.stop(timeout=5)


def test_model_exception_is_a_failure_not_a_timeout_and_thread_is_reused(model):
    faulty = FaultyModel(model, ['raise', 'ok'])
    published = []
    worker, logger = make_worker(faulty, published, timeout=5.0)
    assert worker.process(make_window(0)) is False
    assert worker.windows_failed == 1 and worker.windows_timed_out == 0
    assert 'injected model failure' in worker.last_error
    assert worker.process(make_window(1)) is True
    assert worker.model_threads_started == 1 and len(set(faulty.threads)) == 1
    assert worker.hung_threads == 0
    assert worker.stop(timeout=5)


def test_abandoned_threads_are_bounded_and_worker_resumes(model):
    faulty = FaultyModel(model, ['hang', 'hang', 'ok', 'ok'])
    published = []
    worker, logger = make_worker(faulty, published, timeout=0.2, max_hung_threads=2)
    threads_before = threading.active_count()
    worker.start()
    worker.slot.put(make_window(0))
    assert wait_until(lambda: worker.windows_timed_out == 1)
    worker.slot.put(make_window(1))
    assert wait_until(lambda: worker.windows_timed_out == 2)
    assert wait_until(lambda: worker.stalled)
    # stalled: windows stay in the newest-wins slot (one pending, older ones dropped)
    for sequence in (2, 3, 4):
        worker.slot.put(make_window(sequence))
    time.sleep(0.6)
    stats = worker.slot.stats()
    assert stats.pending == 1 and stats.dropped == 2 and not published
    assert any('inference stalled' in msg for _, msg in logger.records)
    # worker thread + at most max_hung_threads abandoned model threads, nothing more
    assert threading.active_count() <= threads_before + 1 + 2
    assert worker.model_threads_started == 2
    faulty.release()  # the hung calls return: late results discarded, the newest window runs
    assert wait_until(lambda: published)
    assert [seq for seq, _ in published] == [4]
    assert wait_until(lambda: worker.late_results_discarded == 2)
    assert worker.hung_threads == 0 and not worker.stalled and worker.alive
    assert worker.stop(timeout=5) and not worker.alive
    assert wait_until(lambda: threading.active_count() <= threads_before)


def test_stalled_worker_refuses_a_direct_window(model):
    faulty = FaultyModel(model, ['hang'])
    worker, _ = make_worker(faulty, [], timeout=0.1, max_hung_threads=1)
    assert worker.process(make_window(0)) is False and worker.stalled
    assert worker.process(make_window(1)) is False
    assert worker.windows_failed == 1 and 'stalled' in worker.last_error
    faulty.release()
    assert wait_until(lambda: not worker.stalled)
    assert worker.stop(timeout=5)


def test_timeout_off_runs_inline_without_model_threads(model):
    faulty = FaultyModel(model, ['ok'])
    published = []
    worker, _ = make_worker(faulty, published, timeout=0.0)
    before = threading.active_count()
    assert worker.process(make_window(0)) is True
    assert faulty.threads == [threading.current_thread().name]
    assert threading.active_count() == before and worker.model_threads_started == 0


def test_timeout_change_applies_to_the_next_window(model):
    faulty = FaultyModel(model, ['hang', 'hang'])
    worker, _ = make_worker(faulty, [], timeout=0.0)
    worker.window_timeout = 0.2  # what the node does when the parameter changes
    assert worker.process(make_window(0)) is False and worker.windows_timed_out == 1
    faulty.release()
    assert wait_until(lambda: worker.hung_threads == 0)
    assert worker.stop(timeout=5)


def test_stop_during_a_hang_returns_promptly_without_counting_a_timeout(model):
    faulty = FaultyModel(model, ['hang'])
    worker, _ = make_worker(faulty, [], timeout=30.0)
    worker.start()
    worker.slot.put(make_window(0))
    assert wait_until(lambda: faulty.threads)
    start = time.monotonic()
    assert worker.stop(timeout=5)
    assert time.monotonic() - start < 3.0
    assert worker.windows_timed_out == 0 and not worker.alive
    faulty.release()


@pytest.mark.parametrize('kwargs', [{'window_timeout': -1.0}, {'window_timeout': float('nan')},
                                    {'max_hung_threads': -1}])
def test_invalid_watchdog_arguments(model, kwargs):
    with pytest.raises(ValueError, match='window_timeout|max_hung_threads'):
        InferenceWorker(model, LatestWindowSlot(), lambda: SETTINGS, lambda w, o: None,
                        lambda: True, RecordingLogger(), **kwargs)
