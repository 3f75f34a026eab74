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

"""Image <-> numpy layouts (ROS-free): encodings, step padding, endianness, depth, compression."""

import cv2
from nova3r_ros.io import images
import numpy as np
import pytest


def _padded(array: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Rows of ``array`` as bytes with ``pad`` junk bytes after each row."""
    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    return np.concatenate([rows, junk], axis=1).tobytes(), rows.shape[1] + pad


def test_rgb8_with_step_padding_and_colour_orders():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data, step = _padded(rgb, 5)
    out = images.image_to_numpy('rgb8', 2, 3, step, False, data)
    assert out.shape == (2, 3, 3) and np.array_equal(out, rgb)
    assert out.flags.writeable and out.flags.c_contiguous
    bgr = rgb[:, :, ::-1].copy()
    assert np.array_equal(images.image_to_rgb8('bgr8', 2, 3, 9, False, bgr.tobytes()), rgb)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(images.image_to_rgb8('rgba8', 2, 3, 12, False, rgba.tobytes()), rgb)
    bgra = np.concatenate([bgr, np.full((2, 3, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(images.image_to_rgb8('bgra8', 2, 3, 12, False, bgra.tobytes()), rgb)


def test_mono_encodings_to_rgb():
    mono = np.array([[0, 128], [255, 3]], np.uint8)
    out = images.image_to_rgb8('mono8', 2, 2, 2, False, mono.tobytes())
    assert out.shape == (2, 2, 3) and np.array_equal(out[:, :, 1], mono)
    mono16 = np.array([[0x0100, 0xFF00], [0x12FF, 0]], np.uint16)
    out16 = images.image_to_rgb8('mono16', 2, 2, 4, False, mono16.astype('<u2').tobytes())
    assert np.array_equal(out16[:, :, 0], [[1, 255], [0x12, 0]])


def test_16uc1_big_endian_and_padding_to_metres():
    mm = np.array([[0, 1000, 65535], [1, 2500, 0]], np.uint16)
    data, step = _padded(mm.astype('>u2'), 2)
    depth = images.image_to_depth('16UC1', 2, 3, step, True, data)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[0.0, 1.0, 65.535], [0.001, 2.5, 0.0]], rtol=1e-6)
    # The same bytes read as little-endian give different (byte-swapped) values.
    wrong = images.image_to_numpy('16UC1', 2, 3, step, False, data)
    assert wrong[0, 1] == 0xE803


def test_32fc1_invalid_values_become_zero():
    metres = np.array([[1.5, np.nan, np.inf], [-np.inf, 0.0, -2.0]], np.float32)
    depth = images.image_to_depth('32FC1', 2, 3, 12, False, metres.tobytes())
    assert np.array_equal(depth, [[1.5, 0, 0], [0, 0, 0]])
    big = images.image_to_depth('32FC1', 2, 3, 12, True, metres.astype('>f4').tobytes())
    assert np.array_equal(big, depth)


def test_numpy_to_image_round_trip_all_encodings():
    rng = np.random.default_rng(1)
    for name, info in images.ENCODINGS.items():
        shape = (4, 5) if info.channels == 1 else (4, 5, info.channels)
        if info.dtype == np.float32:
            array = rng.random(shape, dtype=np.float32)
        else:
            array = rng.integers(0, np.iinfo(info.dtype).max, shape, dtype=info.dtype)
        fields = images.numpy_to_image(array, name)
        assert fields['step'] == 5 * info.bytes_per_pixel and not fields['is_bigendian']
        back = images.image_to_numpy(name, fields['height'], fields['width'], fields['step'],
                                     fields['is_bigendian'], fields['data'])
        assert back.dtype == info.dtype and np.array_equal(back, array), name


def test_depth_metres_invalid_values_become_zero():
    float_depth = np.array([[1.5, np.nan, np.inf], [-2.0, 0.0, images.MAX_DEPTH_M],
                            [images.MAX_DEPTH_M * 1.01, 1e30, 3e38]], np.float32)
    got = images.to_depth_metres(float_depth, '32FC1')
    assert got.dtype == np.float32
    assert np.array_equal(got, [[1.5, 0, 0], [0, 0, images.MAX_DEPTH_M], [0, 0, 0]])
    mm = np.array([[0, 1500, 65535]], np.uint16)
    assert np.allclose(images.to_depth_metres(mm, '16UC1'), [[0.0, 1.5, 65.535]])


def test_metres_to_depth_inverse():
    depth = np.array([[0.0, 1.2344, np.nan], [70.0, -1.0, 0.5]], np.float32)
    mm = images.metres_to_depth(depth, '16UC1')
    assert np.array_equal(mm, [[0, 1234, 0], [65535, 0, 500]])
    f = images.metres_to_depth(depth, '32FC1')
    assert np.array_equal(f, [[0.0, np.float32(1.2344), 0.0], [70.0, 0.0, 0.5]])


@pytest.mark.parametrize('kwargs, match', [
    ({'encoding': 'yuv422'}, 'unsupported image encoding'),
    ({'height': 0}, 'empty'),
    ({'step': 5}, 'needs step >= 6'),
    ({'data': bytes(11)}, 'needs 12 data bytes, got 11'),
    ({'data': bytes(13)}, 'needs 12 data bytes, got 13'),
])
def test_decode_errors_name_encoding_and_sizes(kwargs, match):
    args = {'encoding': 'rgb8', 'height': 2, 'width': 2, 'step': 6, 'is_bigendian': False,
            'data': bytes(12)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        images.image_to_numpy(**args)


def test_wrong_kind_of_image_errors():
    with pytest.raises(ValueError, match='not a depth encoding'):
        images.image_to_depth('rgb8', 1, 1, 3, False, bytes(3))
    with pytest.raises(ValueError, match='not a colour'):
        images.image_to_rgb8('16UC1', 1, 1, 2, False, bytes(2))
    with pytest.raises(ValueError, match=r'needs shape \(H, W, 3\)'):
        images.numpy_to_image(np.zeros((2, 2), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match='needs dtype uint16'):
        images.numpy_to_image(np.zeros((2, 2), np.uint8), '16UC1')


def test_compressed_png_lossless_and_jpeg_close():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    fmt, payload = images.encode_compressed(rgb, 'rgb8', 'png')
    assert fmt == 'rgb8; png compressed bgr8'
    decoded, encoding = images.decode_compressed(fmt, payload)
    assert encoding == 'bgr8' and np.array_equal(decoded[:, :, ::-1], rgb)
    assert np.array_equal(images.compressed_to_rgb8(fmt, payload), rgb)
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[:, :, 0] = np.arange(32, dtype=np.uint8)[None, :] * 8
    fmt, payload = images.encode_compressed(smooth, 'rgb8', 'jpeg', quality=95)
    assert fmt == 'rgb8; jpeg compressed bgr8'
    err = np.abs(images.compressed_to_rgb8(fmt, payload).astype(int) - smooth).mean()
    assert err < 3.0
    depth_mm = rng.integers(0, 65535, (8, 8), dtype=np.uint16)
    fmt, payload = images.encode_compressed(depth_mm, '16UC1', 'png')
    decoded, encoding = images.decode_compressed(fmt, payload)
    assert encoding == '16UC1' and np.array_equal(decoded, depth_mm)


def test_compressed_formats_and_errors():
    assert images.parse_compressed_format('') == (None, 'jpeg')
    assert images.parse_compressed_format('png') == (None, 'png')
    assert images.parse_compressed_format('bgr8; jpeg compressed bgr8') == ('bgr8', 'jpeg')
    mono = np.full((4, 4), 9, np.uint8)
    ok, payload = cv2.imencode('.png', mono)
    decoded, encoding = images.decode_compressed('', payload.tobytes())
    assert encoding == 'mono8' and np.array_equal(decoded, mono)
    with pytest.raises(ValueError, match='compressedDepth'):
        images.decode_compressed('16UC1; compressedDepth png', payload.tobytes())
    with pytest.raises(ValueError, match='could not be decoded'):
        images.decode_compressed('jpeg', b'not an image')
    with pytest.raises(ValueError, match='no data'):
        images.decode_compressed('png', b'')
    with pytest.raises(ValueError, match='unsupported CompressedImage format'):
        images.decode_compressed('tiff', payload.tobytes())
