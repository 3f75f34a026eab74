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
Drive a nova3r node process over real DDS: start it, feed frames, read clouds and diagnostics.

Used by the node's acceptance tests and by ``node_bench``: the node runs in its own process
(``python -m nova3r_ros.ros.node``), the ``Probe`` node here publishes camera frames (and
``/clock``) and records what comes back. Both sides apply the package's DDS profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from nova3r_ros.ros import msgs
from nova3r_ros.ros.compat import config_file
from nova3r_ros.ros.diagnostics import level_of, values_of
from nova3r_ros.ros.node import stamp_msg
import numpy as np
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

DEFAULT_PARAMS_FILE = config_file('nova3r.yaml')  # None: the node's declared defaults (the same)


def _param_arg(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f'{name}:={str(value).lower()}'
    if isinstance(value, list | tuple):
        return f'{name}:=[{",".join(str(v) for v in value)}]'
    if isinstance(value, str) and value == '':
        return f"{name}:=''"
    return f'{name}:={value}'


def node_command(params: Mapping[str, Any], params_file: Path | None = DEFAULT_PARAMS_FILE,
                 remaps: Mapping[str, str] | None = None) -> list[str]:
    """Argv of ``python -m nova3r_ros.ros.node --ros-args ...``."""
    cmd = [sys.executable, '-m', 'nova3r_ros.ros.node', '--ros-args']
    if params_file is not None:
        cmd += ['--params-file', str(params_file)]
    for name, value in params.items():
        cmd += ['-p', _param_arg(name, value)]
    for src, dst in (remaps or {}).items():
        cmd += ['-r', f'{src}:={dst}']
    return cmd


def start_node(params: Mapping[str, Any], remaps: Mapping[str, str] | None = None,
               params_file: Path | None = DEFAULT_PARAMS_FILE, log_path: Path | None = None
               ) -> subprocess.Popen:
    """Start the node process (stdout+stderr to ``log_path`` or a pipe)."""
    env = dict(os.environ)
    env.setdefault('PYTHONUNBUFFERED', '1')
    out = open(log_path, 'w') if log_path is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(node_command(params, params_file, remaps), stdout=out,
                            stderr=subprocess.STDOUT, env=env, text=True)


@dataclass
class CloudRecord:
    """What the probe keeps of one received PointCloud2."""

    frame_id: str
    stamp_ns: int
    width: int
    fields: dict[str, tuple[int, int]]  # name -> (offset, datatype)
    point_step: int
    is_dense: bool
    finite: bool
    visible: int
    received_s: float  # steady clock


class Probe(Node):
    """Test-side node: camera publishers, cloud and diagnostics subscribers, param client."""

    def __init__(self, image_topics: Sequence[str] = ('image',), node_fqn: str = '/nova3r',
                 reliable_images: bool = False) -> None:
        super().__init__('nova3r_probe')
        qos = 5 if reliable_images else qos_profile_sensor_data
        self.image_pubs = [self.create_publisher(Image, t, qos) for t in image_topics]
        self.clock_pub = self.create_publisher(Clock, '/clock', 10)
        self.clouds: list[CloudRecord] = []
        self.occluded: list[CloudRecord] = []
        self.diagnostics: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.diagnostics_count = 0
        self.create_subscription(PointCloud2, f'{node_fqn}/points',
                                 lambda m: self.clouds.append(self._record(m)), 10)
        self.create_subscription(PointCloud2, f'{node_fqn}/occluded_points',
                                 lambda m: self.occluded.append(self._record(m)), 10)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.param_client = self.create_client(SetParameters, f'{node_fqn}/set_parameters')

    @staticmethod
    def _record(msg: PointCloud2) -> CloudRecord:
        cloud = msgs.cloud_msg_to_points(msg)
        visibility = cloud['visibility']
        return CloudRecord(
            frame_id=msg.header.frame_id,
            stamp_ns=msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
            width=msg.width, fields={f.name: (f.offset, f.datatype) for f in msg.fields},
            point_step=msg.point_step, is_dense=msg.is_dense,
            finite=bool(np.all(np.isfinite(cloud['points']))),
            visible=-1 if visibility is None else int(np.count_nonzero(visibility)),
            received_s=time.monotonic())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics_count += 1
        for status in msg.status:
            task = status.name.split(': ', 1)[-1]
            self.diagnostics[task] = (level_of(status), status.message, values_of(status))
        self.last_hardware_id = msg.status[0].hardware_id if msg.status else ''

    # ---- driving ------------------------------------------------------------------------------
    def spin_for(self, seconds: float) -> None:
        import rclpy
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        import rclpy
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(self, timeout_sec=0.05)
        return predicate()

    def publish_set(self, stamp_ns: int, images: Sequence[np.ndarray],
                    frame_ids: Sequence[str], cameras: Sequence[int] | None = None,
                    clock: bool = False) -> None:
        """Publish one frame per camera (all with ``stamp_ns``); optionally /clock first."""
        if clock:
            self.clock_pub.publish(Clock(clock=stamp_msg(stamp_ns)))
        for index in (range(len(self.image_pubs)) if cameras is None else cameras):
            header = Header(frame_id=frame_ids[index], stamp=stamp_msg(stamp_ns))
            self.image_pubs[index].publish(msgs.numpy_to_image_msg(images[index], 'rgb8',
                                                                   header))

    def stream(self, rate_hz: float, duration_s: float, start_ns: int,
               make_images: Callable[[int], Sequence[np.ndarray]], frame_ids: Sequence[str],
               cameras: Sequence[int] | None = None, clock: bool = False) -> list[int]:
        """Publish sets at ``rate_hz`` for ``duration_s`` (spinning between); returns stamps."""
        period_ns = int(round(1e9 / rate_hz))
        stamps = []
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < duration_s:
            stamp = start_ns + i * period_ns
            self.publish_set(stamp, make_images(i), frame_ids, cameras, clock)
            stamps.append(stamp)
            i += 1
            next_t = t0 + i / rate_hz
            while time.monotonic() < next_t:
                import rclpy
                rclpy.spin_once(self, timeout_sec=max(0.0, next_t - time.monotonic()))
        return stamps

    def set_parameters(self, values: Mapping[str, Any], timeout: float = 10.0):
        """Call the SetParameters service; return the list of SetParametersResult."""
        import rclpy
        if not self.param_client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError('set_parameters service not available')
        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg()
                              for k, v in values.items()]
        future = self.param_client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError('set_parameters call timed out')
        return future.result().results

    def value(self, task: str, key: str, default: str | None = None) -> str | None:
        """Return a diagnostics value of the latest message (None when absent)."""
        return self.diagnostics.get(task, (0, '', {}))[2].get(key, default)

    def counter(self, task: str, key: str) -> int:
        return int(self.value(task, key, '0'))


def stop_node(process: subprocess.Popen, timeout: float = 20.0, sig: int | None = None
              ) -> tuple[int, str]:
    """Send SIGINT (or ``sig``) and wait; returns (exit code, output). Kills on timeout."""
    import signal
    if process.poll() is None:
        process.send_signal(signal.SIGINT if sig is None else sig)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return -9, output or ''
    return process.returncode, output or ''
