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
Hostile Image / CompressedImage fields (property-based, hypothesis).

Property for every input: the converters return a correct result or raise the documented
``ValueError``; nothing else escapes. ``data`` is a memoryview slice of a larger buffer whose
guard bytes around it hold a marker, and every accepted image is compared with a
reference decode of exactly the slice's bytes, so reading one byte past either end would
show up as a wrong pixel.
"""

import struct
import zlib

import cv2
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from nova3r_ros.io import images as im
from nova3r_ros.ros import msgs
import numpy as np
import pytest

GUARD = 0xEE  # marker in the guard bytes
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

encodings = st.one_of(st.sampled_from(sorted(im.ENCODINGS)), st.text(max_size=8))
sizes = st.one_of(st.integers(-2, 9), st.sampled_from([2**31, 2**40]))


def guarded(payload: bytes, guard: int = 7) -> memoryview:
    """``payload`` as a memoryview into a buffer with ``guard`` marker bytes on each side."""
    buf = bytearray([GUARD] * guard) + bytearray(payload) + bytearray([GUARD] * guard)
    return memoryview(buf)[guard:guard + len(payload)]


def reference_decode(encoding: str, height: int, width: int, step: int, big: bool,
                     payload: bytes) -> np.ndarray:
    """Row by row with plain ``bytes`` slicing: the bytes an exact decoder may look at."""
    info = im.ENCODINGS[encoding]
    row_bytes = width * info.bytes_per_pixel
    rows = b''.join(payload[r * step:r * step + row_bytes] for r in range(height))
    values = np.frombuffer(rows, info.dtype.newbyteorder('>' if big else '<'))
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    return values.reshape(shape).astype(info.dtype)


@st.composite
def raw_images(draw):
    """Draw (encoding, height, width, step, is_bigendian, payload), mostly near-consistent."""
    encoding = draw(encodings)
    height, width = draw(sizes), draw(sizes)
    bpp = im.ENCODINGS[encoding].bytes_per_pixel if encoding in im.ENCODINGS else 1
    row_bytes = max(width, 0) * bpp
    step = draw(st.one_of(st.integers(-3, 6).map(lambda d: row_bytes + d),
                          st.integers(-5, 64)))
    wanted = step * height if 0 <= step * height <= 4096 else 16
    length = draw(st.one_of(st.just(wanted), st.integers(-3, 3).map(lambda d: wanted + d),
                            st.integers(0, 64)))
    payload = draw(st.binary(min_size=max(length, 0), max_size=max(length, 0)))
    return encoding, height, width, step, draw(st.booleans()), payload


def consistent(encoding, height, width, step, payload) -> bool:
    if encoding not in im.ENCODINGS or height <= 0 or width <= 0:
        return False
    return step >= width * im.ENCODINGS[encoding].bytes_per_pixel and \
        len(payload) == step * height


@SETTINGS
@given(raw_images())
def test_image_to_numpy_exact_or_value_error(case):
    encoding, height, width, step, big, payload = case
    data = guarded(payload)
    if not consistent(encoding, height, width, step, payload):
        with pytest.raises(ValueError):
            im.image_to_numpy(encoding, height, width, step, big, data)
        return
    out = im.image_to_numpy(encoding, height, width, step, big, data)
    expected = reference_decode(encoding, height, width, step, big, payload)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert out.nbytes <= len(payload)  # never more data than the buffer holds
    assert np.array_equal(out, expected, equal_nan=out.dtype.kind == 'f')
    assert data.obj[:7] == bytes([GUARD] * 7)  # the buffer is never written either


@SETTINGS
@given(raw_images())
def test_rgb8_and_depth_helpers_never_raise_anything_else(case):
    encoding, height, width, step, big, payload = case
    data = guarded(payload)
    try:
        rgb = im.image_to_rgb8(encoding, height, width, step, big, data)
    except ValueError:
        assert not consistent(encoding, height, width, step, payload) \
            or encoding not in im.COLOUR_ENCODINGS
    else:
        assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    try:
        depth = im.image_to_depth(encoding, height, width, step, big, data)
    except ValueError:
        assert not consistent(encoding, height, width, step, payload) \
            or encoding not in im.DEPTH_ENCODINGS
    else:
        assert depth.shape == (height, width) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth >= 0).all()  # 0 = invalid, never NaN


@SETTINGS
@given(raw_images())
def test_rclpy_image_message_same_contract(case):
    """The message wrapper (fallback io path without cv_bridge) keeps the same contract."""
    from sensor_msgs.msg import Image

    encoding, height, width, step, big, payload = case
    if not (0 <= height < 2**32 and 0 <= width < 2**32 and 0 <= step < 2**32):
        return  # not representable in the message's uint32 fields
    msg = Image(encoding=encoding, height=height, width=width, step=step,
                is_bigendian=big)
    msg.data = msgs.to_uint8_array(payload)
    try:
        out = msgs.image_msg_to_numpy(msg)
    except ValueError:
        assert not consistent(encoding, height, width, step, payload)
    else:
        assert consistent(encoding, height, width, step, payload)
        assert np.array_equal(out, reference_decode(encoding, height, width, step, big,
                                                    payload), equal_nan=True)


# ---- CompressedImage ------------------------------------------------------------------------


def _png_header_only(width: int, height: int, rows: bytes = b'\0' * 9) -> bytes:
    """
    Build a PNG (8-bit grey) claiming any size, by default with almost no pixel data.

    ``rows``: the filtered scanlines to deflate into its IDAT chunk.
    """
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', crc)
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
            + chunk(b'IDAT', zlib.compress(rows, 9)) + chunk(b'IEND', b''))


@st.composite
def compressed_payloads(draw):
    kind = draw(st.sampled_from(['random', 'damaged', 'header']))
    if kind == 'random':
        return draw(st.binary(max_size=256))
    if kind == 'header':
        # small sizes, or sizes beyond OpenCV's pixel limit (2^30): never in between, where
        # the decoder would really allocate gigabytes (see the report on decompression bombs)
        side = st.one_of(st.integers(0, 16), st.integers(2**16, 2**31 - 1))
        return _png_header_only(draw(side), draw(side))
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    channels = draw(st.sampled_from([1, 3, 4]))
    image = np.frombuffer(draw(st.binary(min_size=shape[0] * shape[1] * channels,
                                         max_size=shape[0] * shape[1] * channels)),
                          np.uint8).reshape(*shape, channels)
    ext = draw(st.sampled_from(['.png', '.jpg'])) if channels != 4 else '.png'
    ok, encoded = cv2.imencode(ext, image)
    payload = bytearray(encoded.tobytes())
    for _ in range(draw(st.integers(0, 4))):  # flip bytes
        payload[draw(st.integers(0, len(payload) - 1))] ^= draw(st.integers(1, 255))
    cut = draw(st.integers(0, len(payload)))
    return bytes(payload[:cut] if draw(st.booleans()) else payload)


formats = st.one_of(st.sampled_from(['', 'jpeg', 'png', 'rgb8; jpeg compressed bgr8',
                                     '16UC1; png compressed mono16', 'compressedDepth png']),
                    st.text(max_size=24))


@SETTINGS
@given(formats, compressed_payloads())
def test_decode_compressed_value_error_or_valid_image(fmt, payload):
    data = guarded(payload)
    try:
        image, encoding = im.decode_compressed(fmt, data)
    except ValueError:
        return
    assert encoding in im.ENCODINGS
    info = im.ENCODINGS[encoding]
    assert image.dtype == info.dtype
    assert image.shape[2:] == (() if info.channels == 1 else (info.channels,))
    rgb = im.compressed_to_rgb8(fmt, data)
    assert rgb.shape == image.shape[:2] + (3,) and rgb.dtype == np.uint8


def test_png_header_beyond_pixel_limit_is_a_value_error():
    """
    Regression: check the declared size before decoding, so the error is a ValueError.

    OpenCV raised ``cv2.error`` (not ValueError) for a header over its limit.
    """
    with pytest.raises(ValueError, match='declares 100000x100000 pixels'):
        im.decode_compressed('png', _png_header_only(100_000, 100_000))


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    """
    Refuse a PNG whose declared size is over MAX_DECODE_PIXELS, never calling the decoder.

    A 10000 x 10000 PNG of zeros is ~100 kB and would decode to 100 MB (a 30000 x 30000
    one: under 1 MB -> 900 MB).
    """
    side = 10_000
    assert side * side > im.MAX_DECODE_PIXELS
    payload = _png_header_only(side, side, (b'\0' * (side + 1)) * side)  # every row
    assert len(payload) < 200_000
    assert im.compressed_dimensions(payload) == (side, side)

    def no_decode(*args):
        raise AssertionError('imdecode must not run')
    monkeypatch.setattr(im.cv2, 'imdecode', no_decode)
    with pytest.raises(ValueError, match=f'declares {side}x{side} pixels, more than'):
        im.decode_compressed('png', payload)


def test_other_codecs_are_not_decoded():
    """Refuse BMP, TIFF, PPM... (OpenCV decodes them too): CompressedImage is JPEG or PNG only."""
    ok, bmp = cv2.imencode('.bmp', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='not a JPEG or PNG payload'):
        im.decode_compressed('jpeg', bmp.tobytes())
    ok, ppm = cv2.imencode('.ppm', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='not a JPEG or PNG payload'):
        im.decode_compressed('png', ppm.tobytes())


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(['.png', '.jpg']),
       st.sampled_from([1, 3]), st.integers(0, 200))
def test_compressed_dimensions_match_the_decoder(width, height, ext, channels, cut):
    image = np.full((height, width, channels), 77, np.uint8)
    ok, encoded = cv2.imencode(ext, image)
    payload = encoded.tobytes()
    assert im.compressed_dimensions(payload) == (width, height)
    decoded, _ = im.decode_compressed('', guarded(payload))
    assert decoded.shape[:2] == (height, width)
    head = im.compressed_dimensions(guarded(payload[:cut]))  # cut anywhere: never raises
    assert head is None or head == (width, height)
