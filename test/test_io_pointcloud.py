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

"""PointCloud2 byte layouts (ROS-free): DESIGN §6 offsets, bit-exact round trips, NaN policy."""

import struct

from nova3r_ros.io import pointcloud as pc
import numpy as np
import pytest


def test_layout_offsets_match_design():
    fields, step = pc.layout(with_visibility=True, with_rgb=False)
    assert step == 16
    assert [(f.name, f.offset, f.datatype) for f in fields] == [
        ('x', 0, pc.FLOAT32), ('y', 4, pc.FLOAT32), ('z', 8, pc.FLOAT32),
        ('visibility', 12, pc.UINT8)]
    fields, step = pc.layout(with_visibility=True, with_rgb=True)
    assert step == 20
    assert [(f.name, f.offset) for f in fields][3:] == [('rgb', 12), ('visibility', 16)]


def test_pack_bytes_known_answer():
    points = np.array([[1.0, -2.0, 3.5]], np.float32)
    packed = pc.pack_points(points, visibility=np.array([1]),
                            rgb=np.array([[0x11, 0x22, 0x33]], np.uint8))
    raw = packed.data.tobytes()
    assert len(raw) == 20 and packed.width == 1 and packed.is_dense
    assert struct.unpack('<fff', raw[:12]) == (1.0, -2.0, 3.5)
    assert raw[12:16] == bytes([0x33, 0x22, 0x11, 0x00])  # B, G, R, 0 on the wire
    assert raw[16] == 1 and raw[17:] == b'\0\0\0'


def test_round_trip_bit_exact_with_and_without_optional_fields():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1000, 3)).astype(np.float32)
    points[0] = [np.float32(1e-45), -0.0, np.finfo(np.float32).max]  # denormal, -0, max
    vis = rng.random(1000) < 0.3
    rgb = rng.integers(0, 256, (1000, 3), dtype=np.uint8)
    for v, c in [(vis, rgb), (vis, None), (None, rgb), (None, None)]:
        packed = pc.pack_points(points, v, c)
        out = pc.unpack_points(packed.data, packed.fields, packed.point_step, packed.width)
        assert np.array_equal(out['points'].view(np.uint32), points.view(np.uint32))
        assert (out['visibility'] is None) == (v is None)
        assert (out['rgb'] is None) == (c is None)
        if v is not None:
            assert np.array_equal(out['visibility'], v.astype(np.uint8))
        if c is not None:
            assert np.array_equal(out['rgb'], c)


def test_nan_rejected_or_dropped():
    points = np.array([[0, 0, 1], [np.nan, 0, 1], [0, np.inf, 1], [2, 2, 2]], np.float32)
    vis = np.array([1, 0, 1, 0])
    with pytest.raises(ValueError, match='2 of 4 points have NaN/Inf'):
        pc.pack_points(points, vis)
    packed = pc.pack_points(points, vis, drop_invalid=True)
    assert packed.width == 2 and packed.is_dense
    assert np.array_equal(packed.kept, [True, False, False, True])
    out = pc.unpack_points(packed.data, packed.fields, packed.point_step, packed.width)
    assert np.array_equal(out['points'], points[[0, 3]])
    assert np.array_equal(out['visibility'], [1, 0])


def test_unpack_foreign_layout_padding_big_endian_and_drop():
    # A PCL-style cloud: x, y, z big-endian at 0/4/8, 4 pad bytes, point_step 16, 2x2
    # organised with 8 bytes of row padding.
    fields = [pc.Field('x', 0, pc.FLOAT32), pc.Field('y', 4, pc.FLOAT32),
              pc.Field('z', 8, pc.FLOAT32)]
    pts = np.array([[1, 2, 3], [4, 5, 6], [np.nan, 0, 0], [7, 8, 9]], np.float32)
    rows = []
    for r in range(2):
        row = b''.join(struct.pack('>fff', *p) + b'\xEE' * 4 for p in pts[2 * r: 2 * r + 2])
        rows.append(row + b'\xCC' * 8)
    data = b''.join(rows)
    out = pc.unpack_points(data, fields, 16, 2, height=2, row_step=40, is_bigendian=True)
    np.testing.assert_array_equal(out['points'], pts)
    dropped = pc.unpack_points(data, fields, 16, 2, 2, 40, True, drop_invalid=True)
    assert np.array_equal(dropped['points'], pts[[0, 1, 3]])


def test_unpack_errors_never_over_read():
    packed = pc.pack_points(np.zeros((3, 3), np.float32), np.ones(3))
    with pytest.raises(ValueError, match='needs 48 data bytes, got 47'):
        pc.unpack_points(packed.data[:47], packed.fields, 16, 3)
    with pytest.raises(ValueError, match="no 'z' field"):
        pc.unpack_points(packed.data, packed.fields[:2], 16, 3)
    with pytest.raises(ValueError, match='ends past point_step'):
        pc.unpack_points(packed.data, packed.fields, 12, 4)
    with pytest.raises(ValueError, match=r'shape \(N, 3\)'):
        pc.pack_points(np.zeros((3, 2)))
    with pytest.raises(ValueError, match='rgb must be uint8'):
        pc.pack_points(np.zeros((3, 3)), rgb=np.zeros((3, 3), np.int32))


def test_empty_cloud():
    packed = pc.pack_points(np.zeros((0, 3), np.float32), np.zeros(0))
    assert packed.width == 0 and packed.data.size == 0
    out = pc.unpack_points(packed.data, packed.fields, 16, 0)
    assert out['points'].shape == (0, 3)
