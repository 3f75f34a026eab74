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

r"""
nova3r_bag: make a synthetic bag, play a bag over DDS, record the node's outputs.

    nova3r_bag make --out bags/room --seed 2000000 --frames 90
    nova3r_bag play bags/room --rate 0.25 --remap /camera/image_raw:=/image \
        --wait-for /image --summary play.json
    nova3r_bag record --out bags/room_out --stop-on-clock-silence 3 --use-sim-time

``play`` behaves like ``ros2 bag play --clock 40`` (timing, rate, start offset, loop, /clock,
remaps, recorded QoS; see ``nova3r_ros.ros.player``); ``record`` like ``ros2 bag record`` to
MCAP (``nova3r_ros.ros.recorder``). Both apply the package's Fast DDS profile. The recorder
knows the player ended when ``/clock`` stops (``--stop-on-clock-silence``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import signal
import sys
from typing import Any

from nova3r_ros.cli_format import HelpFormatter, make_out_dir
from nova3r_ros.data.sample import image_size, PRESET_HELP

NODE_NAMES = {'play': 'nova3r_bag_player', 'record': 'nova3r_bag_recorder'}


def _remap(text: str) -> tuple[str, str]:
    if ':=' not in text:
        raise argparse.ArgumentTypeError(f'remap must be FROM:=TO, got {text!r}')
    src, dst = text.split(':=', 1)
    if not src or not dst:
        raise argparse.ArgumentTypeError(f'remap must be FROM:=TO, got {text!r}')
    return src, dst


def _wait_for(text: str) -> tuple[str, int]:
    name, _, count = text.partition('=')
    try:
        value = int(count) if count else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--wait-for must be TOPIC[=COUNT], got {text!r}') from None
    return name, value


def _topic_type(text: str) -> tuple[str, str | None]:
    name, _, msgtype = text.partition(':')
    return name, msgtype or None


def build_parser() -> argparse.ArgumentParser:
    """Parser of the three subcommands (every option documented)."""
    p = argparse.ArgumentParser(prog='nova3r_bag', description=__doc__.strip().split('\n\n')[0],
                                epilog=__doc__.strip().split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    m = sub.add_parser('make', help='render a synthetic drive through a room into a bag',
                       formatter_class=HelpFormatter)
    m.add_argument('--out', type=Path, required=True, help='bag directory to create')
    m.add_argument('--seed', type=int, default=2_000_000,
                   help='room seed (default 2000000, a test-split seed; docs/dataset.md has '
                        'the split ranges)')
    m.add_argument('--frames', type=int, default=90, help='camera frames')
    m.add_argument('--rate', type=float, default=15.0, help='frame rate, Hz (10..30)')
    m.add_argument('--preset', default=None, help=PRESET_HELP)
    m.add_argument('--width', type=int, default=None, help='image width, px')
    m.add_argument('--height', type=int, default=None, help='image height, px')
    m.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                   help='rosbag2 storage format')
    m.add_argument('--gt-points', type=int, default=200_000, help='GT surface points')
    m.add_argument('--speed', type=float, default=0.3, help='robot speed, m/s')

    pl = sub.add_parser('play', help='publish a bag over DDS with its timing and /clock',
                        formatter_class=HelpFormatter)
    pl.add_argument('bag', type=Path, help='rosbag2 directory (MCAP or sqlite3)')
    pl.add_argument('-r', '--rate', type=float, default=1.0, help='playback speed factor')
    pl.add_argument('--start-offset', type=float, default=0.0, help='seconds into the bag')
    pl.add_argument('-l', '--loop', action='store_true', help='loop until interrupted')
    pl.add_argument('--clock', type=float, default=40.0, help='/clock rate, Hz (0 = off)')
    pl.add_argument('--remap', type=_remap, action='append', default=[],
                    help='FROM:=TO topic remap, repeatable')
    pl.add_argument('--topics', nargs='+', default=None, help='play only these bag topics')
    pl.add_argument('--delay', type=float, default=0.0, help='wall seconds before playing')
    pl.add_argument('--wait-for', type=_wait_for, action='append', default=[],
                    help='TOPIC[=N]: wait until the (remapped) topic has N subscribers')
    pl.add_argument('--wait-timeout', type=float, default=120.0,
                    help='seconds to wait for --wait-for, then play anyway')
    pl.add_argument('--clock-tail', type=float, default=0.0,
                    help='wall seconds of /clock after the last message')
    pl.add_argument('--summary', type=Path, default=None, help='write a JSON summary here')

    r = sub.add_parser('record', help='record topics (default: the node outputs) to MCAP',
                       formatter_class=HelpFormatter)
    r.add_argument('--out', type=Path, required=True, help='bag directory to create')
    r.add_argument('--topics', nargs='+', default=None,
                   help='TOPIC[:pkg/msg/Type] (default: '
                        + ' '.join(f'{t}:{m}' for t, m in _default_topics().items()) + ')')
    r.add_argument('--duration', type=float, default=0.0, help='wall seconds (0 = no limit)')
    r.add_argument('--stop-on-clock-silence', type=float, default=0.0,
                   help='stop when /clock was seen and then silent this many seconds '
                        '(the player ended); 0 = off')
    r.add_argument('--linger', type=float, default=5.0,
                   help='seconds to keep recording after the player ended')
    r.add_argument('--use-sim-time', action='store_true', help='log times from /clock')
    r.add_argument('--best-effort', action='store_true', help='best-effort subscriptions')
    r.add_argument('--depth', type=int, default=100, help='subscription keep-last depth')
    r.add_argument('--summary', type=Path, default=None, help='write a JSON summary here')
    return p


def _default_topics() -> dict[str, str]:
    from nova3r_ros.ros.recorder import DEFAULT_TOPICS
    return dict(DEFAULT_TOPICS)


def _make(args: argparse.Namespace) -> int:
    from nova3r_ros.data.bag_export import export_bag

    for flag, value in (('--frames', args.frames), ('--gt-points', args.gt_points)):
        if value < 1:
            raise ValueError(f'{flag} must be >= 1, got {value}')
    width, height = image_size(args.preset, args.width, args.height)
    make_out_dir(args.out.parent)
    info = export_bag(args.out, args.seed, args.frames, args.rate, width, height,
                      args.storage, args.gt_points, speed=args.speed)
    print(f"wrote {args.frames} frames + {len(info['gt_points'])} GT points to {info['path']}")
    return 0


def _ros_node(name: str, use_sim_time: bool = False) -> Any:
    from nova3r_ros.ros.dds import apply_default_dds_profile
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    apply_default_dds_profile()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # we own SIGINT/SIGTERM
    overrides = [Parameter('use_sim_time', Parameter.Type.BOOL, True)] if use_sim_time else []
    return rclpy.create_node(name, parameter_overrides=overrides)


def _on_signals(target: Any) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        target.stop = True
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1))


def _play(args: argparse.Namespace) -> int:
    from nova3r_ros.ros.player import BagPlayer, PlayOptions
    import rclpy

    options = PlayOptions(rate=args.rate, start_offset=args.start_offset, loop=args.loop,
                          clock_hz=args.clock, remaps=dict(args.remap), topics=args.topics,
                          delay=args.delay, wait_for=dict(args.wait_for),
                          wait_timeout=args.wait_timeout, clock_tail=args.clock_tail)
    options.validate()
    node = _ros_node(NODE_NAMES['play'])
    try:
        player = BagPlayer(node, args.bag, options)
        _on_signals(player)
        summary = player.play()
        _write_summary(args.summary, summary)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _record(args: argparse.Namespace) -> int:
    from nova3r_ros.ros.recorder import BagRecorder, RecordOptions
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    topics = _default_topics()
    if args.topics:
        topics = {}
        for name, msgtype in map(_topic_type, args.topics):
            msgtype = msgtype or _default_topics().get(name)
            if msgtype is None:
                raise ValueError(f'give the type of {name} as {name}:pkg/msg/Type')
            topics[name] = msgtype
    options = RecordOptions(topics=topics, duration=args.duration,
                            clock_silence=args.stop_on_clock_silence, linger=args.linger,
                            depth=args.depth, best_effort=args.best_effort)
    options.validate()
    make_out_dir(args.out.parent)
    node = _ros_node(NODE_NAMES['record'], use_sim_time=args.use_sim_time)
    try:
        recorder = BagRecorder(node, args.out, options)
        _on_signals(recorder)
        recorder.start()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not recorder.done():
            executor.spin_once(timeout_sec=0.1)
        counts = recorder.close()
        _write_summary(args.summary, {'bag': str(args.out), 'counts': counts})
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of nova3r_bag; returns the exit status."""
    from nova3r_ros.ros.compat import non_ros_args

    argv = sys.argv[1:] if argv is None else list(argv)
    # launch_ros.actions.Node may append --ros-args ...: not ours to parse.
    args = build_parser().parse_args(non_ros_args('nova3r_bag', argv))
    try:
        return {'make': _make, 'play': _play, 'record': _record}[args.command](args)
    except ValueError as exc:
        print(f'nova3r_bag {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
