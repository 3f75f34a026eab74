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
ROS-free ``sensor_msgs/Image`` and ``CompressedImage`` byte layouts <-> numpy.

Semantics follow cv_bridge's ``imgmsg_to_cv2(msg, 'passthrough')``: the encoding fixes dtype and
channel count, each of the ``height`` rows is ``step`` bytes long (trailing padding is cropped),
multi-byte samples honour ``is_bigendian``, and a one-channel image comes back as (H, W), any
other as (H, W, C) in the message's own channel order. On top of that, the project conventions
(CONTRACTS.md) are provided by two helpers:

- ``to_rgb8``: uint8 (H, W, 3) RGB from any colour or mono encoding;
- ``to_depth_metres``: float32 (H, W) metres along optical z from a depth encoding, 0.0 = invalid.
  ``16UC1``/``mono16`` are millimetres (REP-118), scaled by 0.001; ``32FC1`` is metres (REP-117)
  and NaN, +-Inf and negative values become 0.0. Note that cv_bridge's own 16UC1 -> 32FC1
  conversion is a plain cast (no mm -> m); the scaling here is depth_image_proc's DepthTraits.

The functions take the message *fields*, so the same code serves rclpy messages, rosbags
messages and plain test data. ``data`` may be anything exposing the buffer protocol
(``bytes``, ``array.array('B')``, ``memoryview``, uint8 ndarray); it is never read past its end.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
import struct

import cv2
import numpy as np

MM_TO_M = 0.001  # 16UC1 depth is millimetres (REP-118)
# Largest CompressedImage decoded (8192 x 8192; an 8K camera is 33 Mpx). A PNG of zeros shrinks
# ~1000:1, so without this a 1 MB message would make the decoder allocate about 1 GB.
MAX_DECODE_PIXELS = 2**26
MAX_DEPTH_M = 1000.0  # 32FC1 depth above this is invalid (see to_depth_metres)


@dataclass(frozen=True)
class Encoding:
    """What one ``Image.encoding`` string means: sample type and channel count."""

    name: str
    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _enc(name: str, dtype: type, channels: int) -> tuple[str, Encoding]:
    return name, Encoding(name, np.dtype(dtype), channels)


ENCODINGS: dict[str, Encoding] = dict([
    _enc('rgb8', np.uint8, 3),
    _enc('bgr8', np.uint8, 3),
    _enc('rgba8', np.uint8, 4),
    _enc('bgra8', np.uint8, 4),
    _enc('mono8', np.uint8, 1),
    _enc('8UC1', np.uint8, 1),
    _enc('mono16', np.uint16, 1),
    _enc('16UC1', np.uint16, 1),
    _enc('32FC1', np.float32, 1),
])
COLOUR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '8UC1', 'mono16')
DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1')


def encoding_info(encoding: str) -> Encoding:
    """Look up an encoding; ``ValueError`` listing the supported ones if unknown."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ValueError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(ENCODINGS)}'
        ) from None


def image_to_numpy(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
                   data) -> np.ndarray:
    """
    Decode raw ``Image`` fields to a new native-endian array (passthrough, like cv_bridge).

    Returns (H, W) for one-channel encodings, else (H, W, C), dtype per ``ENCODINGS``,
    channels in the message's order. Raises ``ValueError`` on an unknown encoding, a zero or
    negative size, a ``step`` shorter than a row, or ``len(data) != step * height``.
    """
    info = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    buf = check_image_fields(encoding, height, width, step, data)
    row_bytes = width * info.bytes_per_pixel
    rows = buf.reshape(height, step)[:, :row_bytes]
    order = '>' if is_bigendian else '<'
    pixels = np.ascontiguousarray(rows).view(info.dtype.newbyteorder(order))
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    # astype to the native dtype always copies: the result owns its memory and is writable.
    return pixels.reshape(shape).astype(info.dtype.newbyteorder('='), copy=True)


def check_image_fields(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """
    Check raw ``Image`` fields; return ``data`` as a flat uint8 view.

    Why: every decoder (this module's or cv_bridge) must see the same refusals, so a malformed
    message is a ``ValueError`` with a reason whichever one runs.
    """
    info = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ValueError(f'image with encoding {encoding!r} has size {width}x{height}: empty')
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ValueError(
            f'image {width}x{height} {encoding!r} needs step >= {row_bytes} bytes, got {step}'
        )
    buf = np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    if buf.size != step * height:
        raise ValueError(
            f'image {width}x{height} {encoding!r} with step {step} needs {step * height} data '
            f'bytes, got {buf.size}'
        )
    return buf


def numpy_to_image(array: np.ndarray, encoding: str) -> dict:
    """
    Encode an array as ``Image`` fields (little-endian, tight rows: ``step = W * C * size``).

    ``array`` must be (H, W) or (H, W, 1) for one-channel encodings and (H, W, C) otherwise,
    with the encoding's dtype. Returns a dict with ``height, width, step, is_bigendian,
    encoding, data`` (``data`` is a C-contiguous uint8 ndarray view of the pixels).
    """
    info = encoding_info(encoding)
    array = np.asarray(array)
    if info.channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if info.channels == 1 else 3
    if array.ndim != expected_ndim or (expected_ndim == 3 and array.shape[2] != info.channels):
        want = '(H, W)' if info.channels == 1 else f'(H, W, {info.channels})'
        raise ValueError(f'encoding {encoding!r} needs shape {want}, got {array.shape}')
    if array.dtype != info.dtype:
        raise ValueError(f'encoding {encoding!r} needs dtype {info.dtype}, got {array.dtype}')
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f'image with encoding {encoding!r} has size {width}x{height}: empty')
    little = np.ascontiguousarray(array, dtype=info.dtype.newbyteorder('<'))
    return {
        'height': height,
        'width': width,
        'step': width * info.bytes_per_pixel,
        'is_bigendian': False,
        'encoding': encoding,
        'data': little.reshape(-1).view(np.uint8),
    }


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """
    Convert a decoded image (from ``image_to_numpy``) -> uint8 (H, W, 3) RGB.

    Alpha is dropped; mono is replicated to three channels; ``mono16`` keeps its high byte
    (value >> 8, i.e. scaled by 1/256). Depth encodings (16UC1, 32FC1) are not colour images and
    raise ``ValueError``.
    """
    if encoding not in COLOUR_ENCODINGS:
        raise ValueError(
            f'encoding {encoding!r} is not a colour/mono image; expected one of '
            f'{", ".join(COLOUR_ENCODINGS)}'
        )
    if encoding == 'rgb8':
        return np.ascontiguousarray(array)
    if encoding == 'bgr8':
        return np.ascontiguousarray(array[:, :, ::-1])
    if encoding == 'rgba8':
        return np.ascontiguousarray(array[:, :, :3])
    if encoding == 'bgra8':
        return np.ascontiguousarray(array[:, :, 2::-1])
    if encoding == 'mono16':
        array = (array >> 8).astype(np.uint8)
    return np.repeat(array[:, :, None], 3, axis=2)


def to_depth_metres(array: np.ndarray, encoding: str) -> np.ndarray:
    """
    Convert a decoded depth image -> float32 (H, W) metres along optical z, 0.0 = invalid.

    ``16UC1``/``mono16``: millimetres x 0.001 (0 stays 0). ``32FC1``: metres; NaN, +-Inf,
    values <= 0 and values above ``MAX_DEPTH_M`` (no camera measures them: sentinels) become 0.0.
    """
    if encoding in ('16UC1', 'mono16'):
        return array.astype(np.float32) * np.float32(MM_TO_M)
    if encoding == '32FC1':
        depth = np.array(array, dtype=np.float32, copy=True)
        depth[~(np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH_M))] = 0.0
        return depth
    raise ValueError(
        f'encoding {encoding!r} is not a depth encoding; expected one of '
        f'{", ".join(DEPTH_ENCODINGS)}'
    )


def metres_to_depth(depth_m: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """
    float32 metres (0 = invalid) -> the array for a depth ``encoding`` (inverse of above).

    ``16UC1``: rounded millimetres, clipped to [0, 65535]; invalid (non-finite, <= 0) -> 0.
    ``32FC1``: float32 metres with invalid values set to 0.0.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == '32FC1':
        return np.where(valid, depth, np.float32(0.0)).astype(np.float32)
    if encoding in ('16UC1', 'mono16'):
        mm = np.where(valid, np.rint(depth / np.float32(MM_TO_M)), 0.0)
        return np.clip(mm, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    raise ValueError(f'encoding {encoding!r} is not a depth encoding')


# ---------------------------------------------------------------------------------------------
# CompressedImage (image_transport "compressed": format "<orig>; jpeg|png compressed <target>")

_FORMAT_RE = re.compile(
    r'^\s*(?:(?P<orig>[\w]+)\s*;\s*)?(?P<codec>jpeg|jpg|png)(?:\s+compressed)?'
    r'(?:\s+(?P<target>[\w]+))?\s*$',
    re.IGNORECASE,
)


def parse_compressed_format(fmt: str) -> tuple[str | None, str]:
    """
    ``CompressedImage.format`` -> (original encoding or None, codec 'jpeg'|'png').

    Accepts ``"jpeg"``, ``"png"``, ``"rgb8; jpeg compressed bgr8"`` and the empty string (which
    the message definition says means jpeg). ``compressedDepth`` is a different transport whose
    payload has an extra header; it raises ``ValueError``.
    """
    if not fmt.strip():
        return None, 'jpeg'
    if 'compresseddepth' in fmt.replace(' ', '').lower():
        raise ValueError(f'CompressedImage format {fmt!r}: compressedDepth is not supported')
    match = _FORMAT_RE.match(fmt)
    if match is None:
        raise ValueError(f'unsupported CompressedImage format {fmt!r}; expected jpeg or png')
    codec = match.group('codec').lower()
    return match.group('orig'), 'png' if codec == 'png' else 'jpeg'


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
JPEG_SOI = b'\xff\xd8'
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4/C8/CC.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})


def compressed_dimensions(data) -> tuple[int, int] | None:
    """
    (width, height) a PNG or JPEG payload declares (IHDR / SOF), read without decoding.

    None when the payload is neither, or its header is cut short. Only the marker segment
    headers are read (jumping over each segment), never past the buffer.
    """
    buf = memoryview(data).cast('B')
    if bytes(buf[:8]) == PNG_SIGNATURE:
        if len(buf) >= 24 and bytes(buf[12:16]) == b'IHDR':
            return struct.unpack('>II', buf[16:24])
        return None
    if bytes(buf[:2]) != JPEG_SOI:
        return None
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(buf):
                return None
            height, width = struct.unpack('>HH', buf[i + 5:i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + struct.unpack('>H', buf[i + 2:i + 4])[0]
    return None


def decode_compressed(fmt: str, data) -> tuple[np.ndarray, str]:
    """
    Decode ``CompressedImage`` (format, data) -> (array, encoding of that array).

    ``cv2.imdecode(IMREAD_UNCHANGED)`` gives BGR/BGRA for colour, so the encoding is ``bgr8``
    or ``bgra8``; one channel gives ``mono8``, or ``mono16``/``16UC1`` (16-bit png; ``16UC1``
    when the format names it as the original encoding). Raises ``ValueError`` on an empty or
    undecodable payload, one that is not JPEG/PNG (OpenCV would decode other formats too), and
    one declaring more than ``MAX_DECODE_PIXELS`` pixels (checked before decoding).
    """
    orig, _codec = parse_compressed_format(fmt)
    buf = np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    if buf.size == 0:
        raise ValueError(f'CompressedImage ({fmt!r}) has no data')
    if bytes(buf[:8]) != PNG_SIGNATURE and bytes(buf[:2]) != JPEG_SOI:
        raise ValueError(f'CompressedImage ({fmt!r}, {buf.size} bytes) could not be decoded: '
                         'not a JPEG or PNG payload')
    size = compressed_dimensions(buf)
    if size is not None and size[0] * size[1] > MAX_DECODE_PIXELS:
        raise ValueError(f'CompressedImage ({fmt!r}, {buf.size} bytes) declares '
                         f'{size[0]}x{size[1]} pixels, more than MAX_DECODE_PIXELS '
                         f'({MAX_DECODE_PIXELS}); not decoded')
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV's limit (2^30)
        image = None
    if image is None:
        raise ValueError(f'CompressedImage ({fmt!r}, {buf.size} bytes) could not be decoded')
    if image.ndim == 2:
        if image.dtype == np.uint16:
            return image, '16UC1' if orig == '16UC1' else 'mono16'
        if image.dtype == np.uint8:
            return image, 'mono8'
    elif image.dtype == np.uint8 and image.shape[2] in (3, 4):
        return image, 'bgr8' if image.shape[2] == 3 else 'bgra8'
    raise ValueError(
        f'CompressedImage ({fmt!r}) decoded to unsupported {image.dtype} {image.shape}'
    )


def encode_compressed(array: np.ndarray, encoding: str, codec: str = 'jpeg',
                      quality: int = 90) -> tuple[str, bytes]:
    """
    Encode an image -> (``CompressedImage.format``, payload), image_transport style.

    Colour is converted to BGR before encoding (format ``"<encoding>; jpeg compressed bgr8"``);
    mono8/mono16/16UC1 stay one channel (16-bit only with png). ``quality`` is the jpeg quality
    in [1, 100].
    """
    codec = codec.lower()
    if codec not in ('jpeg', 'png'):
        raise ValueError(f'codec must be jpeg or png, got {codec!r}')
    info = encoding_info(encoding)
    array = np.asarray(array)
    if encoding in ('rgb8', 'rgba8', 'bgra8'):
        image, target = cv2.cvtColor(array, {
            'rgb8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGBA2BGR, 'bgra8': cv2.COLOR_BGRA2BGR,
        }[encoding]), 'bgr8'
    elif encoding == 'bgr8' or info.channels == 1:
        image, target = array, encoding
    else:  # pragma: no cover - every encoding is covered above
        raise ValueError(f'cannot compress encoding {encoding!r}')
    if info.dtype == np.float32 or (info.dtype == np.uint16 and codec == 'jpeg'):
        raise ValueError(f'encoding {encoding!r} cannot be {codec} compressed')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == 'jpeg' else []
    ok, payload = cv2.imencode('.jpg' if codec == 'jpeg' else '.png', image, params)
    if not ok:
        raise ValueError(f'cv2 could not {codec}-encode a {array.dtype} {array.shape} image')
    return f'{encoding}; {codec} compressed {target}', payload.tobytes()


def compressed_to_rgb8(fmt: str, data) -> np.ndarray:
    """``CompressedImage`` -> uint8 (H, W, 3) RGB."""
    image, encoding = decode_compressed(fmt, data)
    return to_rgb8(image, encoding)


def image_to_rgb8(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
                  data) -> np.ndarray:
    """Raw ``Image`` fields of a colour/mono image -> uint8 (H, W, 3) RGB."""
    return to_rgb8(image_to_numpy(encoding, height, width, step, is_bigendian, data), encoding)


def image_to_depth(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
                   data) -> np.ndarray:
    """Raw ``Image`` fields of a depth image -> float32 (H, W) metres, 0.0 = invalid."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f'encoding {encoding!r} is not a depth encoding; expected one of '
            f'{", ".join(DEPTH_ENCODINGS)}'
        )
    return to_depth_metres(
        image_to_numpy(encoding, height, width, step, is_bigendian, data), encoding
    )
