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
Hostile frames through the node's intake thread logic (``KeyframeIntake.handle``).

Random raw and compressed images (the strategies of test_hostile_images) mixed with good
ones on a 2-camera + depth rig: ``handle`` never raises (every bad message is a counted bad
frame, the set dropped), and every window that reaches the slot holds only well-formed frames:
uint8 (H, W, 3) RGB and float32 depth that is finite and >= 0.
"""

from hypothesis import given
from hypothesis import strategies as st
from nova3r_ros.ros import msgs
from nova3r_ros.ros.intake import KeyframeIntake
from nova3r_ros.ros.keyframes import KeyframeSelector
from nova3r_ros.ros.window import LatestWindowSlot, WindowBuilder
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from test_hostile_images import compressed_payloads, formats, raw_images, SETTINGS

NS = 1_000_000_000


class Logger:

    def warning(self, msg, **kwargs):
        pass

    def error(self, msg, **kwargs):
        pass


def _header(stamp_ns: int) -> Header:
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    return header


def _good(stamp_ns: int):
    return msgs.numpy_to_image_msg(np.full((12, 16, 3), 90, np.uint8), 'rgb8', _header(stamp_ns))


def _good_depth(stamp_ns: int):
    depth = np.full((12, 16), 1.5, np.float32)
    depth[0, :3] = [np.nan, -1.0, np.inf]
    return msgs.numpy_to_image_msg(depth, '32FC1', _header(stamp_ns))


@st.composite
def hostile_messages(draw, stamp_ns: int, raw_only: bool):
    """Draw a random Image, or (camera inputs only: DDS types the depth topic) CompressedImage."""
    if raw_only or draw(st.booleans()):
        encoding, height, width, step, big, payload = draw(raw_images())
        if not all(0 <= n < 2**32 for n in (height, width, step)):
            height = width = step = 0
        msg = Image(header=_header(stamp_ns), encoding=encoding, height=height, width=width,
                    step=step, is_bigendian=big)
    else:
        payload = draw(compressed_payloads())
        msg = CompressedImage(header=_header(stamp_ns), format=draw(formats))
    msg.data = msgs.to_uint8_array(payload)
    return msg


@st.composite
def frame_sets(draw):
    sets = []
    for index in range(draw(st.integers(1, 6))):
        stamp = (index + 1) * NS // 5
        slots = [_good(stamp), _good(stamp + 1), _good_depth(stamp)]
        for position in draw(st.lists(st.integers(0, 2), max_size=3, unique=True)):
            slots[position] = draw(hostile_messages(stamp, raw_only=position == 2))
        sets.append(tuple(slots))
    return sets


@SETTINGS
@given(frame_sets())
def test_intake_never_raises_and_windows_are_well_formed(sets):
    slot = LatestWindowSlot()
    intake = KeyframeIntake(2, True, KeyframeSelector(0.0, 1.0, 0.0),
                            WindowBuilder(2, 1, 2), slot, lambda: None, Logger())
    for received, messages in enumerate(sets):
        intake.handle(messages, received_ns=received)
    assert intake.keyframes + intake.bad_frames <= len(sets)
    window = slot.get(timeout=0)
    if window is None:
        return
    for view in window.views:
        frame = view.payload
        assert frame.rgb.dtype == np.uint8 and frame.rgb.ndim == 3 and frame.rgb.shape[2] == 3
        if frame.depth is not None:
            assert frame.depth.dtype == np.float32
            assert np.isfinite(frame.depth).all() and (frame.depth >= 0).all()


def test_good_sets_give_a_window_with_cleaned_depth():
    """The rig above does form windows: the property test's checks are reached."""
    slot = LatestWindowSlot()
    intake = KeyframeIntake(2, True, KeyframeSelector(0.0, 1.0, 0.0),
                            WindowBuilder(2, 1, 2), slot, lambda: None, Logger())
    for index in range(2):
        stamp = (index + 1) * NS // 5
        intake.handle((_good(stamp), _good(stamp + 1), _good_depth(stamp)), received_ns=index)
    window = slot.get(timeout=0)
    assert intake.bad_frames == 0 and window is not None and len(window.views) == 4
    depth = window.views[0].payload.depth
    assert depth[0, :3].tolist() == [0.0, 0.0, 0.0] and depth[1, 1] == np.float32(1.5)
