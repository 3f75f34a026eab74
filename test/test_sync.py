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
Synchronizer known answers on hand-built stamp sequences.

The answers are derived by hand from the message_filters algorithm
(shared/reference/ros2-conventions.md §5).
"""

from types import SimpleNamespace

from nova3r_ros.ros import sync
import pytest

S = 1_000_000_000  # ns per second


def msg(t_ns: int, tag: str = ''):
    """Make a minimal message: header.stamp.sec/nanosec plus a tag to identify it."""
    sec, nanosec = divmod(t_ns, S)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
                           tag=tag or str(t_ns))


def ms(t_ms: int, tag: str = ''):
    return msg(t_ms * 1_000_000, tag)


class Recorder:

    def __init__(self, synchronizer=None):
        self.sets = []
        self.locked = []
        self.synchronizer = synchronizer

    def __call__(self, *msgs):
        self.sets.append(tuple(getattr(m, 'tag', None) for m in msgs))
        if self.synchronizer is not None:
            self.locked.append(self.synchronizer.lock.locked())


def approx(n=2, queue_size=10, slop=0.1, **kw):
    s = sync.ApproximateTimeSynchronizer([], queue_size, slop, num_inputs=n, **kw)
    rec = Recorder(s)
    s.registerCallback(rec)
    return s, rec


def keys_ms(queue):
    return sorted(k // 1_000_000 for k in queue)


def test_basic_pair_and_callback_runs_under_lock():
    s, rec = approx()
    s.add(ms(1000), 0)
    assert rec.sets == []
    s.add(ms(1050), 1)
    assert rec.sets == [('1000000000', '1050000000')]
    assert rec.locked == [True]
    assert s.queues == [{}, {}]
    assert s.stats.emitted == 1 and s.stats.received == [1, 1]


def test_slop_edges_inclusive_collect_strict_accept():
    s, rec = approx(slop=0.1)
    s.add(ms(1000, 'a1.00'), 0)
    s.add(ms(1100, 'b1.10'), 1)  # |delta| == slop: collected, but spread 0.1 is not < 0.1
    assert rec.sets == []
    s.add(ms(1050, 'b1.05'), 1)
    assert rec.sets == [('a1.00', 'b1.05')]
    s.add(ms(1200, 'a1.20'), 0)  # b1.10 is exactly slop away again: no set
    assert rec.sets == [('a1.00', 'b1.05')]
    assert keys_ms(s.queues[0]) == [1200] and keys_ms(s.queues[1]) == [1100]
    s.add(ms(1199, 'b1.199'), 1)
    assert rec.sets[-1] == ('a1.20', 'b1.199')


def test_nearest_first_and_no_pruning_of_older_messages():
    s, rec = approx(slop=0.1)
    s.add(ms(1000, 'a1.00'), 0)
    s.add(ms(1080, 'a1.08'), 0)
    s.add(ms(1050, 'b1.05'), 1)  # a1.08 is nearer (0.03) than a1.00 (0.05)
    assert rec.sets == [('a1.08', 'b1.05')]
    assert keys_ms(s.queues[0]) == [1000]  # older unmatched message is kept
    s.add(ms(1020, 'b1.02'), 1)
    assert rec.sets[-1] == ('a1.00', 'b1.02')


def test_equal_delta_ties_follow_queue_insertion_order_and_duplicates_keep_position():
    s, rec = approx(slop=0.1)
    s.add(ms(950, 'a0.95'), 0)
    s.add(ms(1050, 'a1.05'), 0)
    s.add(ms(1000, 'b1.00'), 1)
    assert rec.sets == [('a0.95', 'b1.00')]

    s, rec = approx(slop=0.1)
    s.add(ms(1050, 'a1.05'), 0)
    s.add(ms(950, 'a0.95'), 0)
    s.add(ms(1050, 'a1.05-second'), 0)  # duplicate stamp: overwrites, keeps dict position
    assert len(s.queues[0]) == 2
    s.add(ms(1000, 'b1.00'), 1)
    assert rec.sets == [('a1.05-second', 'b1.00')]


def test_product_order_is_lexicographic_over_inputs():
    s, rec = approx(n=3, slop=0.1)
    s.add(ms(940, 'b0.94'), 1)
    s.add(ms(1070, 'b1.07'), 1)
    s.add(ms(1050, 'c1.05'), 2)
    s.add(ms(930, 'c0.93'), 2)
    # New a1.00 at index 0. Candidates: input 1 [0.94 (0.06), 1.07 (0.07)],
    # input 2 [1.05 (0.05), 0.93 (0.07)]. (0.94, 1.05) spans 0.11 -> rejected;
    # (0.94, 0.93) spans 0.07 -> accepted before (1.07, 1.05) is ever tried.
    s.add(ms(1000, 'a1.00'), 0)
    assert rec.sets == [('a1.00', 'b0.94', 'c0.93')]
    assert keys_ms(s.queues[1]) == [1070] and keys_ms(s.queues[2]) == [1050]


def test_eviction_drops_smallest_stamp_and_a_too_old_message_at_once():
    s, rec = approx(queue_size=2, slop=0.1)
    s.add(ms(500, 'b0.5'), 1)
    for t in (1000, 2000, 3000):
        s.add(ms(t), 0)
    assert keys_ms(s.queues[0]) == [2000, 3000]
    s.add(ms(500, 'a0.5'), 0)  # older than everything in a full queue: evicted immediately
    assert rec.sets == []
    assert keys_ms(s.queues[0]) == [2000, 3000] and keys_ms(s.queues[1]) == [500]


def test_out_of_order_arrivals_and_gaps():
    s, rec = approx(slop=0.05)
    s.add(ms(1000, 'a1'), 0)
    s.add(ms(2000, 'a2'), 0)
    s.add(ms(2010, 'b2'), 1)
    s.add(ms(1020, 'b1'), 1)  # arrives late, still matches the kept a1
    s.add(ms(5000, 'b5'), 1)  # a gap: nothing near
    assert rec.sets == [('a2', 'b2'), ('a1', 'b1')]
    s.add(ms(4970, 'a5'), 0)
    assert rec.sets[-1] == ('a5', 'b5')


def test_direct_add_without_index_searches_all_queues():
    s, rec = approx(slop=0.1)
    s.add(ms(1000, 'a'), 0)
    s.add(ms(1010, 'b'), s.queues[1])  # upstream style without an index: own queue searched too
    assert rec.sets == [('a', 'b')]


def test_headerless_messages():
    s, rec = approx()
    s.add(SimpleNamespace(tag='no-header'), 0)
    assert s.queues[0] == {} and s.stats.headerless_dropped == 1
    s, rec = approx(allow_headerless=True, clock=lambda: 7 * S)
    s.add(SimpleNamespace(tag='no-header'), 0)
    assert list(s.queues[0]) == [7 * S]
    s.add(msg(7 * S + 1000, 'b'), 1)
    assert rec.sets == [('no-header', 'b')]


def test_exact_time_synchronizer():
    s = sync.TimeSynchronizer([], 2, num_inputs=2)
    rec = Recorder(s)
    s.registerCallback(rec)
    s.add(ms(1000, 'a1'), 0)
    s.add(ms(2000, 'a2'), 0)
    s.add(ms(2001, 'b2+'), 1)  # 1 ms off: exact sync never pairs it
    s.add(ms(2000, 'b2'), 1)
    s.add(ms(1000, 'b1'), 1)  # arrives late
    assert rec.sets == [('a2', 'b2'), ('a1', 'b1')]
    assert rec.locked == [True, True]
    s.add(ms(3000, 'a3'), 0)
    s.add(ms(4000, 'a4'), 0)
    s.add(ms(5000, 'a5'), 0)  # queue_size 2 evicts a3
    s.add(ms(3000, 'b3'), 1)
    assert len(rec.sets) == 2


def test_filter_chain_with_subscriber_like_inputs_and_args():
    inputs = [sync.SimpleFilter(), sync.SimpleFilter()]
    s = sync.ApproximateTimeSynchronizer(inputs, 5, 0.02)
    got = []
    s.registerCallback(lambda a, b, extra: got.append((a.tag, b.tag, extra)), 'x')
    inputs[1].signalMessage(ms(1000, 'b'))
    inputs[0].signalMessage(ms(1010, 'a'))
    assert got == [('a', 'b', 'x')]
    assert s.stats.received == [1, 1]


def test_rclpy_messages_and_time_stamps():
    from rclpy.time import Time
    from sensor_msgs.msg import CameraInfo, Image

    s, rec = approx(slop=0.01)
    image = Image()
    image.header.stamp.sec, image.header.stamp.nanosec = 12, 500_000_000
    info = CameraInfo()
    info.header.stamp = Time(seconds=12, nanoseconds=505_000_000).to_msg()
    got = []
    s.registerCallback(lambda a, b: got.append((a, b)))
    s.add(image, 0)
    s.add(info, 1)
    assert got == [(image, info)]
    stamped = SimpleNamespace(header=SimpleNamespace(stamp=Time(nanoseconds=3 * S)), tag='t')
    assert sync.stamp_ns(stamped.header.stamp) == 3 * S


def test_stall_warning_counts_per_input():
    now = [0]
    s = sync.ApproximateTimeSynchronizer([], 10, 0.01, num_inputs=2,
                                         monotonic_ns=lambda: now[0])
    for t in (1000, 1100, 1200):
        s.add(ms(t), 0)
    s.add(ms(1500), 1)
    now[0] = 2 * S
    assert s.check_stalled(period_s=5.0) is None  # period not over yet
    now[0] = 6 * S
    text = s.check_stalled(period_s=5.0)
    assert text is not None and 'received 3/1 per input, 0 sets emitted' in text
    s.add(ms(1505), 1)
    s.add(ms(1506), 0)
    now[0] = 12 * S
    assert s.check_stalled(period_s=5.0) is None  # a set was emitted in the window
    assert s.stats.received == [4, 2]


def test_invalid_arguments():
    with pytest.raises(ValueError, match='queue_size'):
        sync.ApproximateTimeSynchronizer([], 0, 0.1, num_inputs=2)
    with pytest.raises(ValueError, match='slop'):
        sync.ApproximateTimeSynchronizer([], 1, -0.1, num_inputs=2)
    with pytest.raises(ValueError, match='num_inputs'):
        sync.TimeSynchronizer([], 1)


def test_same_answers_as_real_message_filters():
    """Side by side with the upstream library where it is installed (apt ROS 2 only)."""
    message_filters = pytest.importorskip('message_filters')
    sequence = [(0, 1000), (0, 1080), (1, 1050), (1, 1020), (0, 2000), (1, 2100), (1, 2050)]
    results = []
    for module in (sync, message_filters):
        inputs = [module.SimpleFilter(), module.SimpleFilter()]
        s = module.ApproximateTimeSynchronizer(inputs, 3, 0.1)
        got = []
        s.registerCallback(lambda a, b, got=got: got.append((a.tag, b.tag)))
        for index, t in sequence:
            inputs[index].signalMessage(ms(t))
        results.append(got)
    assert results[0] == results[1]


def _play_loop(s, guard, start_ms):
    """One pass of a 2 s bag: camera at 30 Hz, depth at 15 Hz; returns the sets emitted."""
    before = s.stats.emitted
    events = sorted([(round(start_ms + i * 1000 / 30), 0) for i in range(60)]
                    + [(round(start_ms + i * 1000 / 15 + 7), 1) for i in range(30)])
    for t, index in events:
        msg = ms(t)
        if guard is not None:
            guard.check(index, msg)
        s.add(msg, index)
    return s.stats.emitted - before


def test_time_jump_guard_lets_sets_form_again_after_a_bag_loop():
    # without it (upstream behaviour): unmatched camera frames stay queued as "future"
    # leftovers, so after a jump back each new, older frame is evicted at once
    starts = (1000, 1037, 0, 500)  # a bag loop, then sim resets to other times
    s, _ = approx(queue_size=10, slop=0.05)
    counts = [_play_loop(s, None, t) for t in starts]
    first = counts[0]
    assert first >= 25
    assert counts[1] < first // 2 and counts[2:] == [0, 0]
    # with it: every pass forms as many sets as the first, and the resets are counted
    s, _ = approx(queue_size=10, slop=0.05)
    guard = sync.TimeJumpGuard(s, 2)
    assert [_play_loop(s, guard, t) for t in starts] == [first] * 4
    assert guard.resets == 3  # one per jump (the first input to go back clears for both)
    # stamps moving forward, or equal, never clear anything
    s, _ = approx(queue_size=10, slop=0.05)
    guard = sync.TimeJumpGuard(s, 2)
    assert not guard.check(0, ms(1000)) and not guard.check(0, ms(1000))
    s.add(ms(1000), 0)
    assert not guard.check(1, ms(900))  # another input's older stamp is not a jump
    assert s.queues[0]
    assert guard.check(0, ms(500)) and not s.queues[0]
