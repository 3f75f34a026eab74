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
Synchronizers under random stamp sequences (property-based, hypothesis).

Random numbers of inputs, queue sizes, slops and arrival orders with duplicates, bursts,
backwards jumps and headerless messages. Invariants checked after every ``add``:

- an ApproximateTime set spans strictly less than ``slop`` (an exact-time set: one stamp),
  holds one message per input in input order, and contains the message just added;
- no message is emitted twice, and only messages that were queued (not evicted or
  overwritten by a duplicate stamp) are emitted;
- no queue ever holds more than ``queue_size`` messages.
"""

import itertools
import math
from types import SimpleNamespace

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from nova3r_ros.ros import sync
import pytest

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
_ids = itertools.count()


def message(stamp_ns: int | None):
    """Make a message with a unique ``uid`` (and ``header.stamp`` unless headerless)."""
    msg = SimpleNamespace(uid=next(_ids))
    if stamp_ns is not None:
        msg.header = SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // sync.NS_PER_S,
                                                           nanosec=stamp_ns % sync.NS_PER_S))
    return msg


# stamps near a 33 ms camera grid with jitter, plus far-off ones: sets do form
stamps = st.one_of(
    st.tuples(st.integers(0, 30), st.integers(-4_000_000, 4_000_000)).map(
        lambda t: 10**9 + t[0] * 33_000_000 + t[1]),
    st.integers(0, 3 * 10**9),
    st.none(),  # headerless
)
slops = st.one_of(st.sampled_from([0.0, 0.001, 0.005, 0.02, 0.05]),
                  st.floats(0.0, 0.2, allow_nan=False))


@st.composite
def scenarios(draw):
    num_inputs = draw(st.integers(1, 4))
    events = draw(st.lists(st.tuples(st.integers(0, num_inputs - 1), stamps), max_size=60))
    return num_inputs, draw(st.integers(1, 6)), draw(slops), draw(st.booleans()), events


class Clock:
    """Headerless "now": 7 ms steps from 1 s; remembers the last value handed out."""

    def __init__(self) -> None:
        self.last = 10**9

    def __call__(self) -> int:
        self.last += 7_000_000
        return self.last


def run(sync_obj, num_inputs: int, queue_size: int, events, exact: bool,
        clock: Clock | None = None) -> int:
    emitted: list[tuple] = []
    stamp_of: dict[int, int] = {}
    sync_obj.registerCallback(lambda *msgs: emitted.append(msgs))
    input_of: dict[int, int] = {}
    seen: set[int] = set()
    for index, stamp in events:
        if exact and stamp is None:
            continue  # TimeSynchronizer needs stamps (no headerless mode upstream)
        msg = message(stamp)
        input_of[msg.uid] = index
        queued = {m.uid for q in sync_obj.queues for m in q.values()} | {msg.uid}
        before = len(emitted)
        sync_obj.add(msg, index)
        stamp_of[msg.uid] = stamp if stamp is not None else clock.last
        assert all(len(q) <= queue_size for q in sync_obj.queues)
        for msgs in emitted[before:]:
            assert len(msgs) == num_inputs
            assert [input_of[m.uid] for m in msgs] == list(range(num_inputs))
            uids = [m.uid for m in msgs]
            assert not seen & set(uids), 'a message was emitted twice'
            assert set(uids) <= queued, 'an evicted or overwritten message was emitted'
            seen.update(uids)
            set_stamps = [stamp_of[m.uid] for m in msgs]
            if exact:
                assert len(set(set_stamps)) == 1
            else:
                assert msg.uid in uids  # only sets containing the new message
                assert max(set_stamps) - min(set_stamps) < sync_obj.slop_ns
    return len(emitted)


@SETTINGS
@given(scenarios())
def test_approximate_time_invariants(case):
    num_inputs, queue_size, slop, headerless, events = case
    clock = Clock()
    sync_obj = sync.ApproximateTimeSynchronizer([], queue_size, slop, headerless,
                                                num_inputs=num_inputs, clock=clock)
    run(sync_obj, num_inputs, queue_size, events, exact=False, clock=clock)
    received = [sum(1 for i, s in events if i == k and (s is not None or headerless))
                for k in range(num_inputs)]
    assert sync_obj.stats.received == received
    assert sync_obj.stats.headerless_dropped == (
        0 if headerless else sum(1 for _, s in events if s is None))


@SETTINGS
@given(scenarios())
def test_exact_time_invariants(case):
    num_inputs, queue_size, _, _, events = case
    sync_obj = sync.TimeSynchronizer([], queue_size, num_inputs=num_inputs)
    run(sync_obj, num_inputs, queue_size, events, exact=True)


def test_sets_do_form_in_the_generated_scenarios():
    """The invariants above are not vacuous: a clean 3-camera stream gives one set per frame."""
    sync_obj = sync.ApproximateTimeSynchronizer([], 5, 0.01, num_inputs=3)
    events = [(k, 10**9 + f * 33_000_000 + k * 1_000_000) for f in range(10) for k in range(3)]
    assert run(sync_obj, 3, 5, events, exact=False) == 10


@pytest.mark.parametrize('slop', [-0.1, math.nan, math.inf, -math.inf])
def test_invalid_slop_is_a_value_error(slop):
    """Regression: inf raised OverflowError and NaN an unrelated int() message."""
    with pytest.raises(ValueError, match='slop must be a finite number >= 0'):
        sync.ApproximateTimeSynchronizer([], 10, slop, num_inputs=2)


@pytest.mark.parametrize('queue_size', [0, -3])
def test_invalid_queue_size_is_a_value_error(queue_size):
    with pytest.raises(ValueError, match='queue_size'):
        sync.ApproximateTimeSynchronizer([], queue_size, 0.05, num_inputs=2)
