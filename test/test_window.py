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

"""WindowBuilder (formation, stride, order, limits, resets) and LatestWindowSlot (threads)."""

import threading
import time

from nova3r_ros.ros.window import (
    LatestWindowSlot,
    MAX_VIEWS,
    SlotStats,
    tf_cache_warning,
    View,
    WindowBuilder,
)
import pytest

MS = 1_000_000  # nanoseconds
S = 1_000_000_000


def _keyframe(stamp_ns: int, num_cameras: int = 1, skew_ns: int = 0) -> list[View]:
    """C views of one keyframe; camera c is stamped ``stamp_ns - c * skew_ns`` (sync slop)."""
    return [View(stamp_ns - c * skew_ns, f'cam{c}_optical', c, payload=(stamp_ns, c))
            for c in range(num_cameras)]


def _run(builder: WindowBuilder, stamps_ns: list[int], num_cameras: int = 1, skew_ns: int = 0):
    results = [builder.push(_keyframe(t, num_cameras, skew_ns)) for t in stamps_ns]
    return [r.window for r in results if r.window is not None], results


def _expected_windows(n: int, size: int, stride: int) -> int:
    return 0 if n < size else 1 + (n - size) // stride


@pytest.mark.parametrize('size,stride,n', [(3, 2, 10), (2, 3, 10), (1, 1, 5), (4, 1, 4),
                                           (4, 1, 3), (8, 4, 20)])
def test_window_count_and_contents_one_camera(size, stride, n):
    builder = WindowBuilder(size, stride, num_cameras=1)
    stamps = [i * 100 * MS for i in range(n)]
    windows, _ = _run(builder, stamps)
    assert len(windows) == _expected_windows(n, size, stride) == builder.windows_emitted
    for j, window in enumerate(windows):
        first = j * stride  # index of the window's oldest keyframe
        assert window.keyframe_stamps_ns == tuple(stamps[first:first + size])
        assert [v.stamp_ns for v in window.views] == stamps[first:first + size]
        assert window.sequence == j
        assert window.span_ns == (size - 1) * 100 * MS


def test_known_sequence_size3_stride2():
    builder = WindowBuilder(window_size=3, window_stride=2)
    windows, results = _run(builder, [i * S for i in range(10)])
    emitted_at = [i for i, r in enumerate(results) if r.window is not None]
    assert emitted_at == [2, 4, 6, 8]
    assert [[v.payload[0] // S for v in w.views] for w in windows] == [
        [0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8]]


def test_two_cameras_order_view1_and_count():
    builder = WindowBuilder(window_size=3, window_stride=1, num_cameras=2)
    # Camera 1 is captured 5 ms *before* camera 0 in each synchronized set, and the sets are
    # pushed with camera 1 first: camera 0 of the oldest keyframe must still be view 1.
    stamps = [i * 200 * MS for i in range(6)]
    windows = []
    for t in stamps:
        result = builder.push(list(reversed(_keyframe(t, 2, skew_ns=5 * MS))))
        if result.window is not None:
            windows.append(result.window)
    assert len(windows) == _expected_windows(6, 3, 1) == 4
    first = windows[0]
    assert len(first.views) == 6 and first.num_cameras == 2
    assert [(v.payload[0], v.camera_index) for v in first.views] == [
        (0, 0), (0, 1), (200 * MS, 0), (200 * MS, 1), (400 * MS, 0), (400 * MS, 1)]
    assert first.view1.frame_id == 'cam0_optical' and first.view1.stamp_ns == 0
    assert first.keyframe_stamps_ns == (-5 * MS, 195 * MS, 395 * MS)
    # Span covers every view: newest camera-0 view minus oldest camera-1 view.
    assert first.span_ns == 405 * MS and first.span_s == pytest.approx(0.405)
    assert windows[-1].view1.stamp_ns == 600 * MS
    assert windows[-1].newest_stamp_ns == 1000 * MS


def test_two_cameras_with_stride_counts_windows():
    builder = WindowBuilder(window_size=4, window_stride=3, num_cameras=2)
    windows, _ = _run(builder, [i * 100 * MS for i in range(17)], num_cameras=2)
    assert len(windows) == _expected_windows(17, 4, 3) == 5
    assert all(len(w.views) == MAX_VIEWS for w in windows)
    assert [w.view1.stamp_ns // (100 * MS) for w in windows] == [0, 3, 6, 9, 12]


@pytest.mark.parametrize('cameras,size', [(2, 5), (3, 3), (1, 9), (8, 2)])
def test_too_many_views_rejected(cameras, size):
    with pytest.raises(ValueError, match=rf'{cameras} x {size} = {cameras * size} views'):
        WindowBuilder(window_size=size, window_stride=1, num_cameras=cameras)


@pytest.mark.parametrize('cameras,size', [(2, 4), (1, 8), (8, 1), (4, 2)])
def test_up_to_eight_views_accepted(cameras, size):
    assert WindowBuilder(size, 1, cameras).num_cameras == cameras


@pytest.mark.parametrize('kwargs', [{'window_size': 0}, {'window_size': 2, 'window_stride': 0},
                                    {'window_size': 2, 'num_cameras': 0},
                                    {'window_size': 2.0}, {'window_size': True}])
def test_invalid_sizes_rejected(kwargs):
    with pytest.raises(ValueError, match='integer >= 1'):
        WindowBuilder(**kwargs)


def test_bad_keyframes_rejected():
    builder = WindowBuilder(window_size=2, num_cameras=2)
    with pytest.raises(ValueError, match='needs 2 views'):
        builder.push(_keyframe(0, 1))
    with pytest.raises(ValueError, match='camera indices 0..1'):
        builder.push([View(0, 'a', 0, None), View(0, 'b', 0, None)])
    with pytest.raises(ValueError, match='integer nanoseconds'):
        builder.push([View(0.5, 'a', 0, None), View(0, 'b', 1, None)])
    assert builder.buffered == 0 and builder.keyframes_pushed == 0


def test_time_going_backwards_resets_buffer():
    builder = WindowBuilder(window_size=3, window_stride=1)
    windows, _ = _run(builder, [10 * S, 11 * S, 12 * S, 13 * S])
    assert len(windows) == 2
    back = builder.push(_keyframe(2 * S))  # bag loop
    assert back.time_reset and back.window is None
    assert builder.buffered == 1 and builder.resets == 1
    assert builder.push(_keyframe(3 * S)).window is None
    resumed = builder.push(_keyframe(4 * S))
    assert not resumed.time_reset
    # The new window holds only post-reset keyframes; sequence numbers keep counting.
    assert [v.stamp_ns for v in resumed.window.views] == [2 * S, 3 * S, 4 * S]
    assert resumed.window.sequence == 2
    # An equal stamp is not "backwards".
    assert not builder.push(_keyframe(4 * S)).time_reset


def test_tf_cache_warning():
    assert tf_cache_warning(span_s=2.0, processing_s=1.5) is None
    message = tf_cache_warning(span_s=4.0, processing_s=2.0)
    assert message is not None and '6.00 s' in message and 'TF cache' in message
    assert tf_cache_warning(4.0, 2.0, cache_s=20.0) is None


# LatestWindowSlot --------------------------------------------------------------------------

def test_slot_newest_wins_single_thread():
    slot = LatestWindowSlot()
    assert slot.get(timeout=0.0) is None
    replaced = [slot.put(i) for i in range(5)]
    assert replaced == [False, True, True, True, True]
    assert slot.stats() == SlotStats(offered=5, run=0, dropped=4, pending=1)
    assert slot.get(timeout=0.0) == 4
    assert slot.get(timeout=0.01) is None  # nothing pending: times out
    with pytest.raises(ValueError, match='reserved'):
        slot.put(None)
    stats = slot.stats()
    assert (stats.offered, stats.run, stats.dropped, stats.pending) == (5, 1, 4, 0)
    assert not slot.clear()  # nothing pending
    slot.put(7)
    assert slot.clear() and slot.get(timeout=0.0) is None
    assert slot.stats() == SlotStats(offered=6, run=1, dropped=5, pending=0)  # invariant kept


def test_slot_drops_under_fast_producer_deterministic():
    """
    Producer offers k_r windows per round while the worker is busy; the worker gets the last.

    Semaphores sequence the two threads exactly, so the counts are known in advance.
    """
    slot = LatestWindowSlot()
    per_round = [1, 3, 2, 5, 1, 4]
    worker_may_get = threading.Semaphore(0)
    worker_got = threading.Semaphore(0)
    received = []

    def worker():
        for _ in per_round:
            worker_may_get.acquire()  # "busy with the previous window" until released
            received.append(slot.get(timeout=5.0))
            worker_got.release()

    thread = threading.Thread(target=worker)
    thread.start()
    sent = 0
    last_of_round = []
    for count in per_round:
        for _ in range(count):
            slot.put(sent)
            sent += 1
        last_of_round.append(sent - 1)
        worker_may_get.release()
        assert worker_got.acquire(timeout=5.0)
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert received == last_of_round
    stats = slot.stats()
    assert stats.offered == sum(per_round) == 16
    assert stats.run == len(per_round)
    assert stats.dropped == sum(per_round) - len(per_round) == 10
    assert stats.pending == 0


def test_slot_concurrent_invariants():
    """Free-running threads: any interleaving keeps the counters consistent and order newest."""
    slot = LatestWindowSlot()
    received = []

    def worker():
        while True:
            item = slot.get(timeout=5.0)
            if item is None:
                return
            received.append(item)

    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(20000):
        slot.put(i)
    slot.close()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    stats = slot.stats()
    assert stats.offered == 20000
    assert stats.run == len(received) >= 1
    assert stats.run + stats.dropped + stats.pending == stats.offered
    assert stats.pending == 0
    assert received == sorted(set(received))  # never an older window after a newer one


def test_close_unblocks_waiting_worker():
    slot = LatestWindowSlot()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(slot.get(timeout=None)))
    thread.start()
    deadline = time.monotonic() + 5.0
    while not slot.worker_waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    assert slot.worker_waiting  # the worker is blocked in get() with no timeout
    slot.close()
    thread.join(timeout=5.0)
    assert not thread.is_alive() and outcome == [None]
    assert slot.closed and not slot.worker_waiting


def test_close_drops_pending_and_later_puts():
    slot = LatestWindowSlot()
    slot.put('a')
    slot.close()
    assert slot.put('b') is False
    assert slot.get(timeout=None) is None  # closed: returns at once, even with no timeout
    stats = slot.stats()
    assert (stats.offered, stats.run, stats.dropped, stats.pending) == (2, 0, 2, 0)
