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
Frame delivery over real DDS between two processes (for ``nova3r_bench dds`` and tests).

A subscriber process and a publisher process (``python -m nova3r_ros.ros.delivery sub|pub``)
exchange a stream of ``sensor_msgs/Image`` (rgb8) or ``PointCloud2`` (xyz + visibility)
messages. Message ``i`` carries ``header.stamp = base + i / rate`` and its first four data
bytes hold ``i`` (little-endian), so content differs per message and delivery is counted by
stamp. Each side prints one JSON line: the publisher its sent stamps, the subscriber, per
received stamp, the CRC-32 of ``data`` and of the decoded numpy payload.
``measure_delivery`` starts both with a chosen environment (with or without the package's
Fast DDS profile) and returns the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np

NS_PER_S = 1_000_000_000


def make_payload(kind: str, width: int = 640, height: int = 480, num_points: int = 100_000,
                 seed: int = 0) -> dict:
    """Deterministic base payload: an rgb8 (H, W, 3) image or a (N, 3) cloud + visibility."""
    rng = np.random.default_rng(seed)
    if kind == 'image':
        return {'image': rng.integers(0, 256, (height, width, 3), dtype=np.uint8)}
    if kind == 'cloud':
        return {'points': rng.normal(0.0, 3.0, (num_points, 3)).astype(np.float32),
                'visibility': (rng.random(num_points) < 0.5).astype(np.uint8)}
    raise ValueError(f'kind must be image or cloud, got {kind!r}')


def stamp_payload(data_bytes: bytearray | memoryview, index: int) -> None:
    """Write message index ``index`` into the first four bytes (little-endian uint32)."""
    data_bytes[0:4] = int(index).to_bytes(4, 'little')


def decoded_crc(kind: str, msg) -> int:
    """CRC-32 of the numpy payload decoded from ``msg`` (rgb pixels, or points + visibility)."""
    from nova3r_ros.ros import msgs

    if kind == 'image':
        return zlib.crc32(msgs.image_msg_to_rgb8(msg).tobytes())
    cloud = msgs.cloud_msg_to_points(msg)
    return zlib.crc32(cloud['visibility'].tobytes(), zlib.crc32(cloud['points'].tobytes()))


def expected_crcs(kind: str, index: int, **payload_kw) -> tuple[int, int]:
    """Return the (data CRC, decoded CRC) the subscriber must report for message ``index``."""
    from nova3r_ros.io import pointcloud

    payload = make_payload(kind, **payload_kw)
    if kind == 'image':
        raw = bytearray(payload['image'].tobytes())
        stamp_payload(raw, index)
        return zlib.crc32(raw), zlib.crc32(raw)
    packed = pointcloud.pack_points(payload['points'], payload['visibility'])
    raw = bytearray(packed.data.tobytes())
    stamp_payload(raw, index)
    cloud = pointcloud.unpack_points(raw, packed.fields, packed.point_step, packed.width)
    points_crc = zlib.crc32(cloud['points'].tobytes())
    return zlib.crc32(raw), zlib.crc32(cloud['visibility'].tobytes(), points_crc)


def _qos(reliable: bool, depth: int):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
    )


def _msg_type(kind: str):
    from sensor_msgs.msg import Image, PointCloud2

    return Image if kind == 'image' else PointCloud2


def run_publisher(args: argparse.Namespace) -> dict:
    """Publish ``args.count`` messages at ``args.rate`` Hz once a subscriber has matched."""
    from nova3r_ros.ros import msgs
    import rclpy
    from std_msgs.msg import Header

    rclpy.init()
    node = rclpy.create_node('nova3r_delivery_pub')
    try:
        payload = make_payload(args.kind, args.width, args.height, args.points)
        if args.kind == 'image':
            msg = msgs.numpy_to_image_msg(payload['image'], 'rgb8', Header(frame_id='cam'))
        else:
            msg = msgs.points_to_cloud_msg(payload['points'], Header(frame_id='cam'),
                                           payload['visibility'])
        pub = node.create_publisher(_msg_type(args.kind), args.topic,
                                    _qos(args.reliable, args.depth))
        deadline = time.monotonic() + args.match_timeout
        while pub.get_subscription_count() < 1:
            if time.monotonic() > deadline:
                return {'error': 'no subscriber matched', 'sent': []}
            time.sleep(0.05)
        time.sleep(args.settle)  # let the reader's side of discovery complete too
        period_ns = int(round(NS_PER_S / args.rate))
        base_ns = time.time_ns()
        sent = []
        start = time.monotonic()
        view = memoryview(msg.data)
        for index in range(args.count):
            wait = start + index * period_ns / NS_PER_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            stamp = base_ns + index * period_ns
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, NS_PER_S)
            stamp_payload(view, index)
            pub.publish(msg)
            sent.append(stamp)
        elapsed = time.monotonic() - start
        time.sleep(args.linger)  # best effort: let the last samples leave before teardown
        return {'sent': sent, 'elapsed_s': elapsed}
    finally:
        node.destroy_node()
        rclpy.shutdown()


def run_subscriber(args: argparse.Namespace) -> dict:
    """Receive until ``args.count`` messages arrived, the publisher left, or the timeout."""
    import rclpy

    received: dict[int, tuple[int, int]] = {}
    rclpy.init()
    node = rclpy.create_node('nova3r_delivery_sub')

    def on_msg(msg) -> None:
        stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec
        data_crc = zlib.crc32(memoryview(msg.data))
        received[stamp] = (data_crc, decoded_crc(args.kind, msg) if args.decode else 0)

    try:
        node.create_subscription(_msg_type(args.kind), args.topic, on_msg,
                                 _qos(args.reliable, args.depth))
        print('ready', flush=True)
        deadline = time.monotonic() + args.timeout
        seen_publisher = False
        gone_since = None
        while time.monotonic() < deadline and len(received) < args.count:
            rclpy.spin_once(node, timeout_sec=0.05)
            publishers = node.count_publishers(args.topic)
            seen_publisher = seen_publisher or publishers > 0
            if seen_publisher and publishers == 0:
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 1.0:
                    break
        return {'received': {str(k): v for k, v in received.items()}}
    finally:
        node.destroy_node()
        rclpy.shutdown()


def measure_delivery(kind: str = 'image', count: int = 90, rate: float = 30.0,
                     reliable: bool = False, use_profile: bool = True, depth: int = 5,
                     width: int = 640, height: int = 480, points: int = 100_000,
                     decode: bool = False, topic: str = 'nova3r_delivery',
                     env: dict | None = None, timeout: float | None = None) -> dict:
    """
    Run subscriber + publisher processes; return sent/delivered counts and per-stamp CRCs.

    ``env`` defaults to ``os.environ`` (keep ROS_DOMAIN_ID / discovery range from it);
    ``use_profile`` applies the package Fast DDS profile, otherwise stock Fast DDS settings.
    """
    from nova3r_ros.ros import dds

    env = dict(os.environ if env is None else env)
    if use_profile:
        dds.without_dds_profile(env)
        env.pop('NOVA3R_DDS_PROFILE')
        if dds.apply_default_dds_profile(env) is None:
            raise RuntimeError('the package Fast DDS profile could not be applied')
    else:
        dds.without_dds_profile(env)
    common = [kind, '--topic', topic, '--count', str(count), '--depth', str(depth),
              '--width', str(width), '--height', str(height), '--points', str(points)]
    if reliable:
        common.append('--reliable')
    duration = count / rate
    timeout = timeout if timeout is not None else duration + 30.0
    cmd = [sys.executable, '-m', 'nova3r_ros.ros.delivery']
    sub = subprocess.Popen(
        cmd + ['sub'] + common + ['--timeout', str(timeout)] + (['--decode'] if decode else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = sub.stdout.readline().strip()
        if ready != 'ready':
            raise RuntimeError(f'subscriber failed to start: {ready} {sub.stderr.read()}')
        pub = subprocess.run(cmd + ['pub'] + common + ['--rate', str(rate)], env=env,
                             capture_output=True, text=True, timeout=timeout + 30)
        sub_out, sub_err = sub.communicate(timeout=timeout + 30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    if pub.returncode != 0 or sub.returncode != 0:
        raise RuntimeError(f'delivery processes failed: pub rc={pub.returncode} '
                           f'{pub.stderr[-2000:]} / sub rc={sub.returncode} {sub_err[-2000:]}')
    pub_res = json.loads(pub.stdout.strip().splitlines()[-1])
    sub_res = json.loads(sub_out.strip().splitlines()[-1])
    if 'error' in pub_res:
        raise RuntimeError(f'publisher: {pub_res["error"]}')
    sent = pub_res['sent']
    received = {int(k): tuple(v) for k, v in sub_res['received'].items()}
    delivered = sum(1 for stamp in sent if stamp in received)
    return {'kind': kind, 'sent': len(sent), 'delivered': delivered,
            'ratio': delivered / max(len(sent), 1), 'profile': use_profile,
            'reliable': reliable, 'publish_s': pub_res['elapsed_s'],
            'sent_stamps': sent, 'received': received}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('role', choices=('pub', 'sub'),
                        help='this process publishes or subscribes')
    parser.add_argument('kind', choices=('image', 'cloud'), help='message type sent')
    parser.add_argument('--topic', default='nova3r_delivery', help='topic name')
    parser.add_argument('--count', type=int, default=90, help='messages to send')
    parser.add_argument('--rate', type=float, default=30.0, help='Hz (publisher)')
    parser.add_argument('--depth', type=int, default=5, help='QoS history depth')
    parser.add_argument('--reliable', action='store_true', help='RELIABLE instead of best effort')
    parser.add_argument('--width', type=int, default=640, help='camera image width, px')
    parser.add_argument('--height', type=int, default=480, help='camera image height, px')
    parser.add_argument('--points', type=int, default=100_000, help='points per cloud')
    parser.add_argument('--decode', action='store_true', help='subscriber decodes each message')
    parser.add_argument('--timeout', type=float, default=60.0, help='s (subscriber)')
    parser.add_argument('--match-timeout', type=float, default=20.0, help='s (publisher)')
    parser.add_argument('--settle', type=float, default=0.5, help='s after matching')
    parser.add_argument('--linger', type=float, default=1.0, help='s after the last message')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run_publisher(args) if args.role == 'pub' else run_subscriber(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
