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
The nova3r node: synchronized images -> keyframe windows -> amodal PointCloud2.

Threads: the executor runs the subscription callbacks (stamp + enqueue only), the parameter
services and the diagnostics timer; ``KeyframeIntake`` decodes and selects keyframes; the
``InferenceWorker`` runs the model on the newest window. Nothing on the executor waits for
the model.

Topics (relative, remappable; the default node name is ``nova3r``):

- in: ``image_topics`` (``sensor_msgs/Image``, or ``CompressedImage`` on ``<topic>/compressed``
  with ``transport:=compressed``), optional ``depth_topic`` (Image, registered to camera 0),
  ``camera_info_topic`` (CameraInfo of camera 0);
- out: ``~/points`` and ``~/occluded_points`` (PointCloud2, DESIGN §6 fields, frame and stamp
  of view 1 = camera 0 of the oldest keyframe), ``/diagnostics`` (DiagnosticArray).

Run: ``nova3r_node --ros-args --params-file config/nova3r.yaml`` (or ``python -m
nova3r_ros.ros.node``); ``nova3r_node --lifecycle`` runs the same node as a managed one
(``Nova3rLifecycleNode``). Parameters: ``nova3r_ros.params.PARAMETERS``.
"""

from __future__ import annotations

import argparse
from functools import partial
import logging
import os
import sys
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray
from nova3r_ros import allocator
from nova3r_ros import params as P
from nova3r_ros.geometry.scale import resolve_mode
from nova3r_ros.model.preprocess import input_size_problem
from nova3r_ros.ros import compat, dds, msgs
from nova3r_ros.ros import sync as own_sync
from nova3r_ros.ros.diagnostics import RateMeter, RollingStats
from nova3r_ros.ros.intake import KeyframeIntake, steady_ns
from nova3r_ros.ros.keyframes import KeyframeSelector
from nova3r_ros.ros.model_loader import (
    CheckpointError,
    device_description,
    load_model,
    worker_threads,
)
from nova3r_ros.ros.node_diagnostics import build_statuses
from nova3r_ros.ros.pipeline import Settings, WindowOutput
from nova3r_ros.ros.qos import diagnostics_qos, input_qos, output_qos
from nova3r_ros.ros.window import LatestWindowSlot, Window, WindowBuilder
from nova3r_ros.ros.worker import InferenceWorker
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

NODE_NAME = 'nova3r'
NS_PER_S = 1_000_000_000
GIL_SWITCH_INTERVAL_S = 0.001


def stamp_msg(stamp_ns: int) -> TimeMsg:
    """Integer ns -> builtin_interfaces/Time without passing through float."""
    return TimeMsg(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)


class _Pipeline:
    """
    The node's behaviour, built in phases so a plain and a lifecycle node share it.

    ``_declare_parameters`` (construction), ``_configure`` (parameters checked, model loaded,
    publishers), ``_activate`` (subscriptions, timers, intake and worker threads),
    ``_deactivate`` (those stopped and destroyed), ``_cleanup`` (publishers gone, model freed).
    """

    def _declare_parameters(self) -> None:
        for spec in P.PARAMETERS:
            try:
                self.declare_parameter(spec.name, spec.default, P.descriptor(spec))
            except InvalidParameterTypeException as exc:  # e.g. slop:=0 for a double
                kind = type(spec.default).__name__
                example = {'float': ' (write 0.0, not 0)', 'str': " (quote it: '...')"}
                raise ValueError(f'parameter {spec.name} must be a {kind}'
                                 f'{example.get(kind, "")}: {exc}') from None
            except InvalidParameterValueException as exc:  # outside the declared range
                allowed = (f' (allowed: [{spec.low:g}, {spec.high:g}])'
                           if spec.low is not None and spec.high is not None else '')
                raise ValueError(f'parameter {spec.name}: {exc}{allowed}') from None

    def _configure(self) -> None:
        """Read and check the parameters, load the model, create the publishers."""
        self.values = {spec.name: self.get_parameter(spec.name).value for spec in P.PARAMETERS}
        self.values['image_topics'] = list(self.values['image_topics'])
        P.validate_startup(self.values)
        self.depth_configured = bool(self.values['depth_topic'])
        self.scale = resolve_mode(self.values['scale_mode'], self.depth_configured)
        self.model, self.checkpoint_path, self.device = load_model(
            self.values['checkpoint'], self.values['device'], self.values['precision'])
        views = len(self.values['image_topics']) * int(self.values['window_size'])
        if views > self.model.cfg.max_views:  # a checkpoint may take fewer than the node's 8
            raise ValueError(
                f'{views} views per window (cameras x window_size), but checkpoint '
                f'{self.checkpoint_path.name} takes at most {self.model.cfg.max_views}')
        self.hardware_id = device_description(self.device)
        self.settings = self._make_settings()
        self.num_cameras = len(self.values['image_topics'])
        self._camera_info: CameraInfo | None = None
        self._camera_info_meter = RateMeter()
        # Seconds inside input callbacks: wall (steady) time, and the CPU time of the callback
        # thread alone (wall minus waiting for the GIL or for a core on a loaded machine).
        self.callback_time = RollingStats(1000)
        self.callback_cpu = RollingStats(1000)
        self.output_age = RollingStats()  # seconds, publish (node clock) - view-1 stamp
        self.points_published = 0
        v = self.values
        out_qos = output_qos(v['output_reliability'], v['output_depth'])
        self.output_qos_incompatible = 0
        self.pub_points = self.create_publisher(
            PointCloud2, '~/points', out_qos,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._on_output_qos))
        self.pub_occluded = self.create_publisher(
            PointCloud2, '~/occluded_points', out_qos,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._on_output_qos))
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', diagnostics_qos())

    def _activate(self) -> None:
        """Subscribe, start the intake and worker threads and the timers."""
        v = self.values
        self.slot = LatestWindowSlot()
        self.intake = KeyframeIntake(
            self.num_cameras, self.depth_configured,
            KeyframeSelector(v['keyframe_min_interval'], v['keyframe_max_interval'],
                             v['keyframe_change_threshold']),
            WindowBuilder(v['window_size'], v['window_stride'], self.num_cameras),
            self.slot, lambda: self._camera_info, self.get_logger(),
            input_check=partial(input_size_problem, cfg=self.model.cfg))
        self._create_inputs()
        self.worker = InferenceWorker(
            self.model, self.slot, lambda: self.settings, self._publish, self._should_run,
            self.get_logger(), worker_threads(v['torch_threads']) if self.device.type == 'cpu'
            else 1, window_timeout=v['window_timeout'])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Steady-clock timers: diagnostics keep coming while a bag (sim time) is paused.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_group = MutuallyExclusiveCallbackGroup()
        self._timers_made = [
            self.create_timer(v['diagnostics_period'], self._publish_diagnostics,
                              callback_group=self._diag_group, clock=steady),
            self.create_timer(0.25, self._resubscribe_pending, callback_group=self._input_group,
                              clock=steady)]
        self.intake.start()
        self.worker.start()
        inputs = [self.resolve_topic_name(t) for t in self.input_names]
        self.get_logger().info(
            f'{self.num_cameras} camera(s), inputs {inputs} ({v["transport"]}), window '
            f'{v["window_size"]}/{v["window_stride"]}, model {self.model.cfg.name} from '
            f'{self.checkpoint_path} on {self.hardware_id}, scale {self.scale.mode}, sync '
            f'{self.sync_backend}, images decoded by {msgs.DECODER}')
        if self.scale.warning:
            self.get_logger().warning(self.scale.warning)

    # ---- inputs -----------------------------------------------------------------------------
    def _create_inputs(self) -> None:
        v = self.values
        qos = input_qos(v['input_reliability'], v['input_depth'])
        self._input_group = MutuallyExclusiveCallbackGroup()
        compressed = v['transport'] == 'compressed'
        msg_type = CompressedImage if compressed else Image
        topics = [self.resolve_topic_name(t) + '/compressed' if compressed else t
                  for t in v['image_topics']]
        inputs = [(msg_type, t) for t in topics]
        if self.depth_configured:
            inputs.append((Image, v['depth_topic']))
        self.input_names = [t for _, t in inputs]
        self.input_meters = [RateMeter() for _ in inputs]
        self.sync = None
        self.sync_backend = 'none (one input)'
        if len(inputs) > 1:
            lib = compat.message_filters if compat.HAVE_MESSAGE_FILTERS else own_sync
            self.sync_backend = 'message_filters' if lib is not own_sync else 'nova3r_ros.sync'
            self._filters = [lib.SimpleFilter() for _ in inputs]
            self.sync = lib.ApproximateTimeSynchronizer(self._filters, v['queue_size'],
                                                        v['slop'])
            self.sync.registerCallback(self._on_set)
            self._jump_guard = own_sync.TimeJumpGuard(self.sync, len(inputs))
        self.sets_synced = 0
        self.qos_incompatible = 0
        self._input_qos = qos
        self._inputs = inputs
        self._resubscribe: set[int] = set()
        # index len(inputs): camera 0's CameraInfo, outside the sync but with the same QoS
        # handling (image_transport publishes it with the image's QoS, often best effort)
        self._info_index = len(inputs) if v['camera_info_topic'] else None
        count = len(inputs) + (self._info_index is not None)
        self._subs: list = [self._subscribe(i) for i in range(count)]

    def _topic(self, index: int) -> tuple[type, str]:
        if index == self._info_index:
            return CameraInfo, self.values['camera_info_topic']
        return self._inputs[index]

    def _subscribe(self, index: int):
        msg_type, name = self._topic(index)
        callback = (self._on_camera_info if index == self._info_index
                    else self._make_callback(index))
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info, i=index: self._on_incompatible_qos(i, info))
        return self.create_subscription(msg_type, name, callback, self._input_qos,
                                        callback_group=self._input_group,
                                        event_callbacks=events)

    def _on_incompatible_qos(self, index: int, info) -> None:
        """
        Handle a publisher we cannot match (logged; best_available re-subscribes).

        BEST_AVAILABLE is resolved when the subscription is created, from the publishers
        discovered then: started before a best-effort camera driver, it becomes RELIABLE and
        never matches it. Re-creating it (from the diagnostics timer, not inside this event)
        resolves it again against the publisher now known.
        """
        self.qos_incompatible += 1
        name = self._topic(index)[1]
        if self.values['input_reliability'] == 'best_available':
            self._resubscribe.add(index)
            self.get_logger().info(f'{name}: publisher with other reliability discovered; '
                                   're-subscribing so best_available matches it',
                                   throttle_duration_sec=5.0)
        else:
            self.get_logger().warning(
                f'{name}: incompatible QoS with a publisher (policy id '
                f'{info.last_policy_kind}); set input_reliability:=best_available or '
                'best_effort', throttle_duration_sec=10.0)

    def _on_output_qos(self, info) -> None:
        """Count a subscriber our clouds can never reach (e.g. reliable against best_effort)."""
        self.output_qos_incompatible += 1
        self.get_logger().warning(
            f'a subscriber of the clouds asks for QoS the publisher does not offer (policy id '
            f'{info.last_policy_kind}, output_reliability '
            f'{self.values["output_reliability"]!r}): it receives nothing',
            throttle_duration_sec=10.0)

    def _resubscribe_pending(self) -> None:
        while self._resubscribe:
            index = self._resubscribe.pop()
            self.destroy_subscription(self._subs[index])
            self._subs[index] = self._subscribe(index)

    def _make_callback(self, index: int):
        meter = self.input_meters[index]
        if self.sync is None:
            def callback(msg) -> None:
                start, cpu_start = time.perf_counter(), time.thread_time()
                now = steady_ns()
                meter.tick(now)
                self.intake.offer((msg,), now)
                self.callback_time.add(time.perf_counter() - start)
                self.callback_cpu.add(time.thread_time() - cpu_start)
        else:
            input_filter = self._filters[index]
            name = self._inputs[index][1]

            def callback(msg) -> None:
                start, cpu_start = time.perf_counter(), time.thread_time()
                meter.tick()
                problem = own_sync.stamp_problem(msg.header.stamp)
                if problem:  # message_filters' Time(...) would raise on it and end the node
                    self.intake.reject(name, ValueError(f'{problem}: not a valid time'))
                    return
                if self._jump_guard.check(index, msg):
                    self.get_logger().warning(
                        f'{name}: time went backwards (bag loop or sim reset): synchronizer '
                        'queues cleared', throttle_duration_sec=5.0)
                input_filter.signalMessage(msg)  # the sync may call _on_set (under its lock)
                self.callback_time.add(time.perf_counter() - start)
                self.callback_cpu.add(time.thread_time() - cpu_start)
        return callback

    def _on_set(self, *messages) -> None:
        self.sets_synced += 1
        # the guard's count tells the intake whether an older set is a time jump or a late match
        self.intake.offer(messages, steady_ns(), self._jump_guard.resets)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg
        self._camera_info_meter.tick()

    # ---- runtime parameters -------------------------------------------------------------------
    def _make_settings(self) -> Settings:
        v = self.values
        return Settings(num_points=v['num_points'], num_steps=v['num_steps'], seed=v['seed'],
                        oversample=v['oversample'],
                        visibility_threshold=v['visibility_threshold'],
                        scale_mode=self.scale.mode, scale_factor=v['scale_factor'],
                        scale_min_pixels=v['scale_min_pixels'],
                        depth_scale_fit=v['depth_scale_fit'], depth_snap=v['depth_snap'],
                        depth_snap_tolerance=v['depth_snap_tolerance'],
                        colorize=v['colorize'],
                        max_window_bytes=v['max_window_bytes'])

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in P.SPECS}
        reason = P.validate_change(self.values, changes, self.depth_configured)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        self.values.update(changes)
        self.scale = resolve_mode(self.values['scale_mode'], self.depth_configured)
        self.settings = self._make_settings()  # atomic swap: the worker reads it per window
        self.worker.window_timeout = float(self.values['window_timeout'])
        keys = ('keyframe_min_interval', 'keyframe_max_interval', 'keyframe_change_threshold')
        if any(k in changes for k in keys):
            with self.intake.lock:
                self.intake.selector.set_parameters(*(self.values[k] for k in keys))
        if 'slop' in changes and self.sync is not None:
            self._set_slop(self.values['slop'])
        if changes:
            self.get_logger().info(f'parameters changed: {changes}')
        return SetParametersResult(successful=True)

    def _set_slop(self, slop: float) -> None:
        with self.sync.lock:
            if hasattr(self.sync, 'slop_ns'):
                self.sync.slop_ns = int(slop * NS_PER_S)
            else:  # upstream message_filters keeps an rclpy Duration
                from rclpy.duration import Duration
                self.sync.slop = Duration(nanoseconds=int(slop * NS_PER_S))

    # ---- output -----------------------------------------------------------------------------
    def _should_run(self) -> bool:
        if not self.values['skip_without_subscribers']:
            return True
        return (self.pub_points.get_subscription_count()
                + self.pub_occluded.get_subscription_count()) > 0

    def _publish(self, window: Window, output: WindowOutput) -> None:
        """Worker thread: pack (numpy fast path) and publish both clouds."""
        view1 = window.view1
        header = Header(frame_id=view1.frame_id, stamp=stamp_msg(view1.stamp_ns))
        visibility = output.visible.astype(np.uint8)
        cloud = msgs.points_to_cloud_msg(output.points, header, visibility, output.rgb,
                                         drop_invalid=True)
        occluded = ~output.visible
        amodal = msgs.points_to_cloud_msg(
            output.points[occluded], header, visibility[occluded],
            None if output.rgb is None else output.rgb[occluded], drop_invalid=True)
        if cloud.width == 0:
            self.get_logger().warning(
                f'window at {view1.stamp_ns} ns: no finite point to publish ({output.nonfinite} '
                'non-finite dropped); an empty cloud goes out', throttle_duration_sec=10.0)
        self.pub_points.publish(cloud)
        self.pub_occluded.publish(amodal)
        self.points_published += cloud.width
        age_ns = self.get_clock().now().nanoseconds - view1.stamp_ns
        self.output_age.add(age_ns / NS_PER_S)
        p50 = self.worker.latency.summary()
        self.intake.expected_latency_s = 0.0 if p50 is None else p50['p95']

    def _publish_diagnostics(self) -> None:
        try:
            array = build_statuses(self)
            array.header.stamp = self.get_clock().now().to_msg()
            self.pub_diag.publish(array)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().error(f'diagnostics failed: {exc}', throttle_duration_sec=10.0)

    # ---- shutdown ---------------------------------------------------------------------------
    def _deactivate(self, timeout: float = 10.0) -> bool:
        """Unsubscribe, stop the timers, join the threads; True when they exited in time."""
        self.remove_on_set_parameters_callback(self._on_set_parameters)
        for timer in self._timers_made:
            self.destroy_timer(timer)
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        intake_done = self.intake.stop(timeout)
        worker_done = self.worker.stop(timeout)
        if worker_done:  # a hung model thread keeps its model
            self.worker.model = None  # the worker holds the model too
        return intake_done and worker_done

    def _cleanup(self) -> None:
        """Destroy the publishers and free the model (GPU memory included)."""
        for publisher in (self.pub_points, self.pub_occluded, self.pub_diag):
            self.destroy_publisher(publisher)
        del self.model
        if self.device.type == 'cuda':
            import torch
            torch.cuda.empty_cache()


class Nova3rNode(_Pipeline, Node):
    """See the module docstring. Raises ``CheckpointError``/``ValueError`` at start-up."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        Node.__init__(self, node_name, **kwargs)
        self._declare_parameters()
        self._configure()
        self._activate()

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop intake and worker threads (joined); True when both exited in time."""
        intake_done = self.intake.stop(timeout)
        worker_done = self.worker.stop(timeout)
        if self.device.type == 'cuda' and worker_done:  # a hung model thread keeps its model
            import torch
            # the worker holds the model too: both references go, or nothing is freed
            self.worker.model = None
            del self.model
            torch.cuda.empty_cache()
        return intake_done and worker_done


class Nova3rLifecycleNode(_Pipeline, LifecycleNode):
    """
    The same node as a managed (lifecycle) node, e.g. under Nav2's lifecycle manager.

    unconfigured --configure--> parameters checked, model loaded (a bad checkpoint fails the
    transition, the node stays up) --activate--> subscribed and running --deactivate--> the
    inputs and threads stopped, the model kept --cleanup--> the model freed (GPU memory too).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, node_name, **kwargs)
        self._declare_parameters()
        self._configured = self._active = False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (CheckpointError, ValueError) as exc:
            self.get_logger().error(f'cannot configure: {exc}')
            self.__dict__.pop('model', None)  # loaded before a later check failed: free it
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        self._active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        if not self._deactivate():
            self.get_logger().warning('worker threads did not stop in time')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Leave whatever state the node is in: threads joined, model freed."""
        done = True
        if self._active:
            self._active = False
            done = self._deactivate(timeout)
        if self._configured:
            self._configured = False
            self._cleanup()
        return done


def _parse_args(argv: list[str]) -> argparse.Namespace:
    table = '\n'.join(f'  {s.name} (default {s.default!r}{", read-only" if s.read_only else ""})'
                      f'\n      {s.description}' for s in P.PARAMETERS)
    parser = argparse.ArgumentParser(
        prog='nova3r_node', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='NOVA3R amodal point cloud node. Configure it with ROS parameters: '
                    'nova3r_node --ros-args --params-file config/nova3r.yaml -p key:=value',
        epilog='parameters:\n' + table)
    parser.add_argument('--lifecycle', action='store_true',
                        help='run as a managed (lifecycle) node: it waits unconfigured for '
                             "configure / activate from a lifecycle manager (e.g. Nav2's, "
                             'node name nova3r) or `ros2 lifecycle set /nova3r configure`')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point (``nova3r_node``); returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(compat.non_ros_args('nova3r_node', argv))
    dds.apply_default_dds_profile()  # before the first DDS participant exists
    allocator.tune_malloc()  # keep freed tensor pages, no page faults per window (allocator.py)
    # Hand the GIL over every 1 ms (default 5 ms): an image callback waiting behind the
    # decoding/inference threads' Python code then waits ~1 ms at most, not ~5 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rclpy.init(args=['nova3r_node', *argv])
    node = None
    code = 0
    try:
        node = Nova3rLifecycleNode() if args.lifecycle else Nova3rNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (CheckpointError, ValueError) as exc:
        if node is None:
            rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {exc}')
            code = 2
        else:
            raise
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # SIGINT/SIGTERM arrived while starting (the context is gone): a clean exit.
    finally:
        if node is not None:
            if not node.shutdown():
                node.get_logger().warning('worker threads did not stop in time')
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def entry() -> None:
    """
    Run `main`, then exit without finalisation (console entry: ``nova3r_node``, ``python -m``).

    Why: with the watchdog on, windows run on model threads; when one has just been joined,
    torch's per-thread C++ state can still be tearing down while the interpreter runs the C++
    static destructors, and the process aborts ("terminate called without an active
    exception", exit -6, seen at the end of a soak). By the time `main` returns, the node is
    shut down, its threads joined and rclpy closed, so skipping finalisation loses nothing.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == '__main__':
    entry()
