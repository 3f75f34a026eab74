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
Hostile PointCloud2 bodies and layouts (property-based, hypothesis).

Random field lists (offsets past ``point_step``, odd datatypes and counts, missing or duplicate
x/y/z), ``point_step``/``row_step``/``width``/``height`` inconsistent with the data length,
organised clouds with row padding, big-endian flags, NaN/Inf. Property: ``unpack_points``
(and the rclpy wrapper ``cloud_msg_to_points``) either returns exactly the values a per-point
``struct.unpack_from`` of the data slice gives, one row per point, or raises ``ValueError``.
The data is a memoryview slice between guard bytes, so an over-read shows as a wrong value.
"""

import struct

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from nova3r_ros.io import pointcloud as pc
from nova3r_ros.ros import msgs
import numpy as np
import pytest

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
GUARD = 0xEE
NAN_BYTES = struct.pack('<f', float('nan'))
INF_BYTES = struct.pack('<f', float('inf'))


def guarded(payload: bytes, guard: int = 8) -> memoryview:
    buf = bytearray([GUARD] * guard) + bytearray(payload) + bytearray([GUARD] * guard)
    return memoryview(buf)[guard:guard + len(payload)]


@st.composite
def layouts(draw):
    """
    (fields, point_step, width, height, row_step or None, is_bigendian, payload).

    Half are well-formed (every field inside the point, x/y/z FLOAT32, sizes matching the
    data) so that accepted clouds are checked value by value; the other half are hostile.
    """
    hostile = draw(st.booleans())
    point_step = draw(st.one_of(st.sampled_from([12, 16, 20, 32]), st.integers(0, 40))
                      if hostile else st.sampled_from([12, 13, 16, 20, 32]))

    def field(name, xyz):
        if hostile:
            datatype = draw(st.one_of(st.just(pc.FLOAT32), st.integers(0, 9)))
            offset = draw(st.one_of(st.integers(0, max(point_step - 4, 0)),
                                    st.integers(-2, 44)))
            count = draw(st.one_of(st.just(1), st.integers(-1, 3)))
            return pc.Field(name, offset, datatype, count)
        datatype = pc.FLOAT32 if xyz else draw(st.sampled_from([1, 2, 4, 7, 8]))
        if name in ('rgb', 'rgba'):
            datatype = draw(st.sampled_from([pc.FLOAT32, pc.UINT32, pc.INT32]))
        size = np.dtype(pc.DATATYPE_TO_NUMPY[datatype]).itemsize
        return pc.Field(name, draw(st.integers(0, point_step - size)), datatype, 1)

    fields = [field(name, True) for name in 'xyz'
              if not hostile or draw(st.integers(0, 9)) > 0]  # 10 %: missing
    extra = st.sampled_from(['visibility', 'rgb', 'rgba', 'intensity', 'x'] if hostile
                            else ['visibility', 'rgb', 'intensity'])
    for name in draw(st.lists(extra, max_size=3, unique=not hostile)):
        fields.append(field(name, False))
    width, height = draw(st.integers(-1 if hostile else 0, 6)), \
        draw(st.integers(-1 if hostile else 0, 4))
    tight = point_step * max(width, 0)
    row_step = draw(st.one_of(st.none(), st.just(tight), st.integers(-2 if hostile else 0, 6)
                              .map(lambda d: tight + d)))
    rows = tight if row_step is None else row_step
    wanted = max(rows * max(height, 0), 0)
    length = wanted if not hostile else draw(st.one_of(
        st.just(wanted), st.integers(-3, 3).map(lambda d: max(wanted + d, 0)),
        st.integers(0, 80)))
    chunks = st.sampled_from([NAN_BYTES, INF_BYTES, b'\0\0\x80\x3f', b'\x01\x02\x03\x04'])
    payload = b''.join(draw(st.lists(st.one_of(chunks, st.binary(min_size=4, max_size=4)),
                                     min_size=length // 4 + 1, max_size=length // 4 + 1)))
    return fields, point_step, width, height, row_step, draw(st.booleans()), payload[:length]


def sizes_consistent(fields, point_step, width, height, row_step, payload) -> bool:
    if width < 0 or height < 0:
        return False
    rows = point_step * width if row_step is None else row_step
    return rows >= point_step * width and len(payload) == rows * height


def expected_xyz(fields, point_step, width, height, row_step, big, payload) -> np.ndarray:
    """float32 (N, 3) by struct.unpack_from of each point: the bytes a reader may use."""
    rows = point_step * width if row_step is None else row_step
    offsets = {f.name: f.offset for f in fields}
    fmt = '>f' if big else '<f'
    out = np.empty((width * height, 3), np.float32)
    for r in range(height):
        for c in range(width):
            base = r * rows + c * point_step
            out[r * width + c] = [struct.unpack_from(fmt, payload, base + offsets[a])[0]
                                  for a in 'xyz']
    return out


def check_result(out, fields, point_step, width, height, row_step, big, payload, drop):
    assert sizes_consistent(fields, point_step, width, height, row_step, payload)
    expected = expected_xyz(fields, point_step, width, height, row_step, big, payload)
    keep = np.isfinite(expected).all(axis=1) if drop else np.ones(len(expected), bool)
    points = out['points']
    assert points.dtype == np.float32 and points.shape == (int(keep.sum()), 3)
    assert np.array_equal(points, expected[keep], equal_nan=True)
    # never more points than the buffer holds (not bytes: fields may alias, x = y = z at one
    # offset turns 4 payload bytes into 12 output bytes)
    if point_step > 0:
        assert len(points) <= len(payload) // point_step
    for key, shape in (('visibility', (len(points),)), ('rgb', (len(points), 3))):
        if out[key] is not None:
            assert out[key].shape == shape and out[key].dtype == np.uint8
    if out['visibility'] is not None:
        assert set(np.unique(out['visibility'])) <= {0, 1}


@SETTINGS
@given(layouts(), st.booleans())
def test_unpack_points_exact_or_value_error(case, drop):
    fields, point_step, width, height, row_step, big, payload = case
    data = guarded(payload)
    try:
        out = pc.unpack_points(data, fields, point_step, width, height, row_step, big,
                               drop_invalid=drop)
    except ValueError:
        return
    check_result(out, fields, point_step, width, height, row_step, big, payload, drop)


@SETTINGS
@given(layouts())
def test_inconsistent_sizes_always_rejected(case):
    fields, point_step, width, height, row_step, big, payload = case
    if sizes_consistent(fields, point_step, width, height, row_step, payload):
        return
    with pytest.raises(ValueError):
        pc.cloud_array(guarded(payload), fields, point_step, width, height, row_step, big)


@SETTINGS
@given(layouts(), st.booleans())
def test_cloud_message_wrapper_same_contract(case, drop):
    from sensor_msgs.msg import PointCloud2, PointField

    fields, point_step, width, height, row_step, big, payload = case
    rows = point_step * max(width, 0) if row_step is None else row_step
    numbers = [point_step, width, height, rows] + [f.offset for f in fields] \
        + [f.count for f in fields]
    if any(not 0 <= n < 2**32 for n in numbers) or any(not 0 <= f.datatype < 256
                                                       for f in fields):
        return  # not representable in the message's unsigned fields
    msg = PointCloud2(height=height, width=width, point_step=point_step, row_step=rows,
                      is_bigendian=big,
                      fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype,
                                         count=f.count) for f in fields])
    msg.data = msgs.to_uint8_array(payload)
    try:
        out = msgs.cloud_msg_to_points(msg, drop_invalid=drop)
    except ValueError:
        return
    check_result(out, fields, point_step, width, height, rows, big, payload, drop)


def test_float_visibility_field_is_zero_or_one():
    """
    Regression: read visibility as 1 wherever the field is non-zero, whatever its type.

    A FLOAT32 visibility field was cast with astype(uint8), undefined (and a RuntimeWarning)
    for NaN, 255 for an INT8 -1.
    """
    fields = [pc.Field('x', 0, pc.FLOAT32), pc.Field('y', 4, pc.FLOAT32),
              pc.Field('z', 8, pc.FLOAT32), pc.Field('visibility', 12, pc.FLOAT32)]
    values = np.zeros((4, 4), np.float32)
    values[:, 3] = [0.0, 0.7, np.nan, -1.0]
    with np.errstate(all='raise'):
        out = pc.unpack_points(values.view(np.uint8).reshape(-1), fields, 16, 4)
    assert out['visibility'].tolist() == [0, 1, 1, 1]


def test_array_or_wide_colour_fields_rejected():
    """
    Regression: raise a clear ValueError for an 8-byte ``rgb`` or a ``count`` > 1 field.

    An 8-byte ``rgb`` gave 2 colour rows per point (or a numpy reshape error), a ``count`` > 1
    visibility/rgb gave (N, k) arrays.
    """
    xyz = [pc.Field('x', 0, pc.FLOAT32), pc.Field('y', 4, pc.FLOAT32),
           pc.Field('z', 8, pc.FLOAT32)]
    data = np.zeros(2 * 24, np.uint8)
    with pytest.raises(ValueError, match="'rgb' must be a 4-byte packed colour"):
        pc.unpack_points(data, xyz + [pc.Field('rgb', 16, pc.FLOAT64)], 24, 2)
    with pytest.raises(ValueError, match="'rgb' has count 2"):
        pc.unpack_points(data, xyz + [pc.Field('rgb', 12, pc.FLOAT32, 2)], 24, 2)
    with pytest.raises(ValueError, match="'visibility' has count 3"):
        pc.unpack_points(data, xyz + [pc.Field('visibility', 12, pc.UINT8, 3)], 24, 2)
    with pytest.raises(ValueError, match="'x' has count 2"):
        pc.unpack_points(data, [pc.Field('x', 0, pc.FLOAT32, 2)] + xyz[1:], 24, 2)
    ok = pc.unpack_points(data, xyz + [pc.Field('rgb', 12, pc.UINT32)], 24, 2)
    assert ok['rgb'].shape == (2, 3)


float_arrays = st.lists(st.one_of(st.floats(width=32), st.sampled_from([np.nan, np.inf])),
                        max_size=30)


@SETTINGS
@given(float_arrays, st.integers(1, 4), st.booleans(), st.booleans(), st.booleans())
def test_pack_points_value_error_or_dense_round_trip(values, columns, vis, rgb, drop):
    points = np.array(values[:len(values) // columns * columns], np.float32).reshape(-1, columns)
    num = len(points)
    visibility = (np.arange(num) % 2) if vis else None
    colours = np.full((num, 3), 7, np.uint8) if rgb else None
    try:
        packed = pc.pack_points(points, visibility, colours, drop_invalid=drop)
    except ValueError:
        finite = np.isfinite(points).all(axis=1) if columns == 3 else None
        assert columns != 3 or (not drop and not finite.all())
        return
    assert columns == 3
    finite = np.isfinite(points).all(axis=1)
    assert packed.data.size == packed.width * packed.point_step == finite.sum() * \
        packed.point_step
    out = pc.unpack_points(packed.data, packed.fields, packed.point_step, packed.width)
    assert np.array_equal(out['points'], points[finite])
    if vis:
        assert np.array_equal(out['visibility'], visibility[finite] != 0)


def test_aliased_fields_read_one_point_per_step():
    """Regression (found by hypothesis): x, y, z at one offset give one point, not three."""
    from sensor_msgs.msg import PointCloud2, PointField

    fields = [PointField(name=n, offset=0, datatype=pc.FLOAT32, count=1)
              for n in ('x', 'y', 'z', 'visibility')]
    msg = PointCloud2(height=1, width=1, point_step=4, row_step=4, fields=fields)
    msg.data = msgs.to_uint8_array(np.float32(2.5).tobytes())
    out = msgs.cloud_msg_to_points(msg, drop_invalid=False)
    assert out['points'].shape == (1, 3) and bool((out['points'] == 2.5).all())
