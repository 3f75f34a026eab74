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
ROS-free ``sensor_msgs/PointCloud2`` byte layouts <-> numpy (DESIGN.md §6).

Layouts (all little-endian, unorganised ``height = 1``, ``is_dense = True``):

====================  ======================================================  ==========
layout                fields (name @ byte offset, PointField datatype)        point_step
====================  ======================================================  ==========
xyz + visibility      x@0, y@4, z@8 FLOAT32; visibility@12 UINT8              16
xyz + rgb + vis.      x@0, y@4, z@8 FLOAT32; rgb@12 FLOAT32; visibility@16    20
xyz                   x@0, y@4, z@8 FLOAT32 (``visibility=None``)             12
xyz + rgb             x@0, y@4, z@8, rgb@12 FLOAT32 (``visibility=None``)     16
====================  ======================================================  ==========

``visibility`` is 1 for a point visible in some input view, 0 for an occluded (amodal) one.
``rgb`` is the uint32 ``0x00RRGGBB`` reinterpreted as float32 (PCL/RViz convention; on a
little-endian wire the bytes are B, G, R, 0). Packing and unpacking are single structured-array
copies (no per-point Python), and a round trip is bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPE_TO_NUMPY: dict[int, str] = {
    INT8: 'i1', UINT8: 'u1', INT16: 'i2', UINT16: 'u2',
    INT32: 'i4', UINT32: 'u4', FLOAT32: 'f4', FLOAT64: 'f8',
}


@dataclass(frozen=True)
class Field:
    """One ``sensor_msgs/PointField``: name, byte offset in the point, datatype, count."""

    name: str
    offset: int
    datatype: int
    count: int = 1


XYZ_FIELDS = (Field('x', 0, FLOAT32), Field('y', 4, FLOAT32), Field('z', 8, FLOAT32))
XYZV_FIELDS = XYZ_FIELDS + (Field('visibility', 12, UINT8),)
XYZRGB_FIELDS = XYZ_FIELDS + (Field('rgb', 12, FLOAT32),)
XYZRGBV_FIELDS = XYZRGB_FIELDS + (Field('visibility', 16, UINT8),)
POINT_STEP = {XYZ_FIELDS: 12, XYZV_FIELDS: 16, XYZRGB_FIELDS: 16, XYZRGBV_FIELDS: 20}


def layout(with_visibility: bool = True, with_rgb: bool = False) -> tuple[tuple[Field, ...], int]:
    """Return the (fields, point_step) of one of the package's layouts."""
    fields = {
        (False, False): XYZ_FIELDS, (True, False): XYZV_FIELDS,
        (False, True): XYZRGB_FIELDS, (True, True): XYZRGBV_FIELDS,
    }[(bool(with_visibility), bool(with_rgb))]
    return fields, POINT_STEP[fields]


def dtype_from_fields(fields, point_step: int, is_bigendian: bool = False,
                      rgb_as_uint32: bool = False) -> np.dtype:
    """
    Structured numpy dtype for PointFields (any object with name/offset/datatype/count).

    ``count > 1`` becomes a sub-array. ``rgb_as_uint32`` types an ``rgb``/``rgba`` FLOAT32 field
    as uint32 so the packed colour is handled as integer bits.
    """
    order = '>' if is_bigendian else '<'
    names, formats, offsets = [], [], []
    for field in fields:
        if field.datatype not in DATATYPE_TO_NUMPY:
            raise ValueError(f'PointField {field.name!r}: unknown datatype {field.datatype}')
        code = DATATYPE_TO_NUMPY[field.datatype]
        if rgb_as_uint32 and field.name in ('rgb', 'rgba') and code == 'f4':
            code = 'u4'
        fmt = np.dtype(order + code)
        count = int(getattr(field, 'count', 1) or 1)
        if int(field.offset) < 0 or int(field.offset) + fmt.itemsize * count > point_step:
            raise ValueError(f'PointField {field.name!r} ends past point_step {point_step}')
        names.append(field.name)
        formats.append((fmt, (count,)) if count > 1 else fmt)
        offsets.append(int(field.offset))
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': int(point_step)})
    return dtype


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 (N, 3) RGB -> uint32 (N,) ``0x00RRGGBB``."""
    rgb = rgb.astype(np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """uint32 (N,) ``0x00RRGGBB`` (or its float32 bits) -> uint8 (N, 3) RGB."""
    packed = np.asarray(packed)
    if packed.dtype.kind == 'f':
        packed = packed.astype(packed.dtype.newbyteorder('<'), copy=False).view('<u4')
    packed = packed.astype(np.uint32, copy=False)
    return np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF],
                    axis=1).astype(np.uint8)


def _finite_rows(points: np.ndarray) -> np.ndarray:
    """Bool (N,): all three coordinates finite (column-wise, faster than all(axis=1))."""
    return np.isfinite(points[:, 0]) & np.isfinite(points[:, 1]) & np.isfinite(points[:, 2])


@dataclass
class PackedCloud:
    """
    Bytes and metadata of an unorganised little-endian PointCloud2 body.

    ``data`` is a 1-D uint8 ndarray of ``width * point_step`` bytes, a view of ``storage``
    (the buffer from ``alloc``, or ``data`` itself); ``kept`` is the bool (N,) mask of input
    points that were packed (all True unless ``drop_invalid`` removed some).
    """

    data: np.ndarray
    fields: tuple[Field, ...]
    point_step: int
    width: int
    kept: np.ndarray
    storage: object = None
    height: int = 1
    is_bigendian: bool = False
    is_dense: bool = True

    @property
    def row_step(self) -> int:
        return self.point_step * self.width


def pack_points(points: np.ndarray, visibility: np.ndarray | None = None,
                rgb: np.ndarray | None = None, drop_invalid: bool = False,
                alloc: Callable[[int], object] | None = None) -> PackedCloud:
    """
    Pack points into the DESIGN §6 layout chosen by which optional arrays are given.

    points: float (N, 3) x, y, z in metres (or normalised units), any frame; cast to float32.
    visibility: (N,) bool/uint8, 1 = visible, 0 = occluded; None omits the field.
    rgb: uint8 (N, 3) RGB; None omits the field.
    A point with a NaN/Inf coordinate raises ``ValueError`` unless ``drop_invalid`` (then it is
    left out), so the result is always ``is_dense``.
    alloc: optional ``nbytes -> zeroed writable buffer`` (e.g. ``array.array('B')``) that the
    points are written into directly, so a message can adopt it without a second copy.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {points.shape}')
    num = points.shape[0]
    points = points.astype(np.float32, copy=False)
    if visibility is not None:
        visibility = np.asarray(visibility)
        if visibility.shape != (num,):
            raise ValueError(f'visibility must have shape ({num},), got {visibility.shape}')
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (num, 3) or rgb.dtype != np.uint8:
            raise ValueError(f'rgb must be uint8 ({num}, 3), got {rgb.dtype} {rgb.shape}')
    # Whole-array check first: 0.1 ms for 1e5 points, vs 5 ms for a per-row all(axis=1).
    all_finite = bool(np.isfinite(points).all())
    finite = np.ones(num, bool) if all_finite else _finite_rows(points)
    if not all_finite and not drop_invalid:
        bad = int(num - np.count_nonzero(finite))
        raise ValueError(
            f'{bad} of {num} points have NaN/Inf coordinates; pass drop_invalid=True to drop them'
        )
    if not all_finite:
        points = points[finite]
        visibility = None if visibility is None else visibility[finite]
        rgb = None if rgb is None else rgb[finite]
    fields, point_step = layout(visibility is not None, rgb is not None)
    nbytes = points.shape[0] * point_step
    # Zeroed, so the padding bytes after visibility never carry stale memory onto the wire.
    storage = np.zeros(nbytes, np.uint8) if alloc is None or nbytes == 0 else alloc(nbytes)
    buf = np.frombuffer(storage, np.uint8) if nbytes else storage
    if buf.size != nbytes or not buf.flags.writeable:
        raise ValueError(f'alloc({nbytes}) must return a writable buffer of {nbytes} bytes')
    cloud = buf.view(dtype_from_fields(fields, point_step, rgb_as_uint32=True))
    cloud['x'] = points[:, 0]
    cloud['y'] = points[:, 1]
    cloud['z'] = points[:, 2]
    if visibility is not None:
        cloud['visibility'] = visibility != 0
    if rgb is not None:
        cloud['rgb'] = pack_rgb(rgb)
    return PackedCloud(data=buf, fields=fields, point_step=point_step, width=cloud.shape[0],
                       kept=finite, storage=storage)


def cloud_array(data, fields, point_step: int, width: int, height: int = 1,
                row_step: int | None = None, is_bigendian: bool = False) -> np.ndarray:
    """
    PointCloud2 body -> structured (height * width,) array view (zero-copy when rows are tight).

    Validates sizes against ``len(data)`` (never reads past it); ``row_step`` padding is cropped.
    """
    point_step, width, height = int(point_step), int(width), int(height)
    row_step = point_step * width if row_step is None else int(row_step)
    buf = np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    dtype = dtype_from_fields(fields, point_step, is_bigendian, rgb_as_uint32=True)
    if width < 0 or height < 0 or row_step < point_step * width:
        raise ValueError(
            f'cloud {width}x{height} with point_step {point_step} has row_step {row_step}'
        )
    if buf.size != row_step * height:
        raise ValueError(
            f'cloud {width}x{height} with row_step {row_step} needs {row_step * height} data '
            f'bytes, got {buf.size}'
        )
    if width * height == 0:
        return np.empty(0, dtype)
    rows = buf.reshape(height, row_step)[:, :point_step * width]
    if row_step != point_step * width:
        rows = np.ascontiguousarray(rows)
    return rows.reshape(-1).view(dtype)


def unpack_points(data, fields, point_step: int, width: int, height: int = 1,
                  row_step: int | None = None, is_bigendian: bool = False,
                  drop_invalid: bool = False) -> dict[str, np.ndarray | None]:
    """
    Unpack a PointCloud2 body into native-endian copies.

    Returns dict(points float32 (N, 3), visibility uint8 (N,) or None, rgb uint8 (N, 3) or
    None).

    Needs FLOAT32 ``x, y, z`` fields (any offsets). NaN/Inf points are kept unless
    ``drop_invalid`` (then removed from every array).
    """
    names = [field.name for field in fields]
    for axis in 'xyz':
        if axis not in names:
            raise ValueError(f'PointCloud2 has no {axis!r} field (fields: {names})')
        if fields[names.index(axis)].datatype != FLOAT32:
            raise ValueError(f'PointCloud2 field {axis!r} must be FLOAT32')
    cloud = cloud_array(data, fields, point_step, width, height, row_step, is_bigendian)
    return points_from_cloud_array(cloud, drop_invalid)


def points_from_cloud_array(cloud: np.ndarray,
                            drop_invalid: bool = False) -> dict[str, np.ndarray | None]:
    """
    Structured cloud array (fields x, y, z, optional visibility, rgb/rgba) -> dict of arrays.

    Same result dict as ``unpack_points``; ``rgb`` may be float32 (bit pattern) or uint32.
    ValueError when one of these fields is an array (``count > 1``) or ``rgb`` is not 4 bytes
    (each output array then has exactly one row per point). ``visibility`` is 1 where the
    field is non-zero, whatever its datatype.
    """
    names = cloud.dtype.names or ()
    for name in ('x', 'y', 'z', 'visibility', 'rgb', 'rgba'):
        if name in names and cloud.dtype.fields[name][0].shape != ():
            raise ValueError(f'PointCloud2 field {name!r} has count '
                             f'{cloud.dtype.fields[name][0].shape[0]}; expected 1')
    for name in ('rgb', 'rgba'):
        if name in names and cloud.dtype.fields[name][0].itemsize != 4:
            raise ValueError(f'PointCloud2 field {name!r} must be a 4-byte packed colour, got '
                             f'{cloud.dtype.fields[name][0]}')
    cloud = cloud.reshape(-1)
    points = np.empty((cloud.shape[0], 3), np.float32)
    points[:, 0] = cloud['x']
    points[:, 1] = cloud['y']
    points[:, 2] = cloud['z']
    # != 0, not a cast: defined for every datatype (a float NaN or 0.7, an int8 -1 -> 1)
    visibility = (cloud['visibility'] != 0).astype(np.uint8) if 'visibility' in names else None
    rgb = None
    for name in ('rgb', 'rgba'):
        if name in names:
            rgb = unpack_rgb(cloud[name])
            break
    if drop_invalid and not np.isfinite(points).all():
        finite = _finite_rows(points)
        points = points[finite]
        visibility = None if visibility is None else visibility[finite]
        rgb = None if rgb is None else rgb[finite]
    return {'points': points, 'visibility': visibility, 'rgb': rgb}
