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
The node's /diagnostics content: three statuses (inputs, inference, output).

Keys are stable (tests and tools read them). Counters are totals since start-up. Accounting:
``windows formed = windows run + windows dropped + windows pending`` (the newest-wins slot),
and ``windows run = published + skipped + failed + scale failures + dropped (too large) + timed
out``. A timed-out window's model thread may return later: ``late results discarded``.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nova3r_ros.ros import msgs
from nova3r_ros.ros.diagnostics import add_timing, ERROR, OK, Status, to_array, WARN
from nova3r_ros.ros.intake import frame_id_problem
from nova3r_ros.ros.window import tf_cache_warning

FUTURE_STAMP_TOLERANCE_S = 1.0  # a view-1 stamp further ahead of the node clock is flagged
RATE_TOLERANCE = 0.1  # an input may run this fraction under min_input_rate (FrequencyStatus)


def keep_policy(model: Any, oversample: float) -> str:
    """Which drawn points the sampler publishes: 'confidence', 'density' or 'all'."""
    if oversample <= 1.0:
        return 'all'
    return 'confidence' if getattr(model, 'confidence_head', None) is not None else 'density'


def visibility_source(model: Any) -> str:
    """Name what the published `visibility` reads: the head alone or fused with view 1."""
    if getattr(model, 'visibility_fusion', None) is not None:
        pixel = getattr(model, 'pixel_surface', None) is not None
        return 'head + view-1 surface' + (' (pixel net)' if pixel else '')
    return 'head'


def model_release(model: Any) -> str:
    """Name which weights run: the release note's head and how the file stored them."""
    note = getattr(model, 'checkpoint_metadata', {}).get('release', '')
    head = note.split(':', 1)[0].strip() or 'unreleased'
    if len(head) > 60:
        head = head[:57] + '...'
    return f"{head}, {getattr(model, 'checkpoint_storage', 'float32')} storage"


def _inputs(node: Any) -> Status:
    status = Status('inputs')
    stale_after = node.values['stale_input_timeout']
    min_rate = node.values['min_input_rate']
    for name, meter in zip(node.input_names, node.input_meters, strict=True):
        rate = meter.rate()
        status.set(f'{name} rate [Hz]', rate)
        status.set(f'{name} received', meter.total)
        silent = meter.silent_for()
        if silent is None:
            status.raise_level(WARN, f'no messages on {name} yet')
        elif silent > stale_after:
            status.raise_level(WARN, f'{name} stopped ({silent:.1f} s without messages)')
        elif meter.total > 1 and rate < (1.0 - RATE_TOLERANCE) * min_rate:
            status.raise_level(WARN, f'{name} at {rate:.1f} Hz, under min_input_rate '
                                     f'{min_rate:g} Hz')
    intake = node.intake
    if node.values['camera_info_topic']:
        status.set('camera_info received', node._camera_info_meter.total)
        if intake.camera_info_problem:
            status.raise_level(WARN, intake.camera_info_problem)
        elif node.values['colorize'] and node._camera_info_meter.total == 0 and intake.windows:
            status.raise_level(WARN, 'colorize is on but no camera_info arrived: the cloud has '
                                     'no rgb field')
    elif node.values['colorize']:
        status.raise_level(WARN, "colorize needs camera_info_topic (it is ''): no rgb field")
    status.set('incompatible QoS events', node.qos_incompatible)
    if node.qos_incompatible and node.values['input_reliability'] != 'best_available':
        status.raise_level(WARN, f'{node.qos_incompatible} publisher(s) with incompatible QoS '
                                 'never reach us: set input_reliability:=best_available')
    status.set('sync', node.sync_backend)
    status.set('image decoding', msgs.DECODER)
    if node.sync is not None:
        status.set('sets synchronized', node.sets_synced)
        status.set('sync resets (time went backwards)', node._jump_guard.resets)
        previous = getattr(node, '_diag_prev_sets', None)
        received = sum(m.total for m in node.input_meters)
        prev_received = getattr(node, '_diag_prev_received', 0)
        if previous is not None and node.sets_synced == previous and received > prev_received:
            text = ('not synchronized: inputs arrive but no set matched in the last period '
                    f'(received {[m.total for m in node.input_meters]}, slop '
                    f'{node.values["slop"]} s)')
            status.raise_level(WARN, text)
            node.get_logger().warning(text, throttle_duration_sec=10.0)
        node._diag_prev_sets = node.sets_synced
        node._diag_prev_received = received
    status.set('frame sets offered', intake.sets_offered)
    status.set('frame sets dropped (intake busy)', intake.sets_dropped)
    status.set('keyframes', intake.keyframes)
    status.set('bad frames', intake.bad_frames)
    if intake.bad_frames:
        status.set('last bad frame', intake.last_bad_frame)
    status.set('time resets', intake.time_resets)
    if node.sync is not None:
        status.set('sets out of order (late matches, dropped)', intake.sets_out_of_order)
    status.set('frame_id changes', intake.frame_changes)
    status.set('repeated camera 0 stamps', intake.duplicate_stamps)
    frame_id = intake.view1_frame_id
    if frame_id is not None:
        status.set('camera 0 frame_id', frame_id)
        problem = frame_id_problem(frame_id)
        if problem:  # a body-convention frame turns the cloud 90 degrees for every consumer
            status.raise_level(WARN, problem)
    summary = node.callback_time.summary()
    add_timing(status, 'callback time', summary, 1e6, 'us', keys=('mean', 'p99', 'max'))
    add_timing(status, 'callback cpu time', node.callback_cpu.summary(), 1e6, 'us',
               keys=('mean', 'p99', 'max'))
    return status


def _inference(node: Any) -> Status:
    status = Status('inference')
    worker = node.worker
    slot = node.slot.stats()
    status.set('model', f'{node.model.cfg.name} ({node.checkpoint_path})')
    status.set('model release', model_release(node.model))
    status.set('device', node.hardware_id)
    status.set('precision', 'bf16' if node.model.uses_bf16() else 'fp32')
    status.set('torch threads', worker.threads)
    status.set('window size', node.values['window_size'])
    status.set('window stride', node.values['window_stride'])
    status.set('windows formed', node.intake.windows)
    status.set('windows run', slot.run)
    status.set('windows dropped', slot.dropped)
    status.set('windows pending', slot.pending)
    status.set('windows published', worker.windows_done)
    status.set('windows skipped (no subscribers)', worker.windows_skipped)
    status.set('windows failed', worker.windows_failed)
    status.set('scale failures', worker.scale_failures)
    status.set('non-finite points dropped', worker.nonfinite_points)
    status.set('windows dropped (too large)', worker.windows_too_large)
    status.set('out-of-memory retries', worker.oom_retries)
    status.set('window timeout [s]', worker.window_timeout)
    status.set('windows timed out', worker.windows_timed_out)
    status.set('late results discarded', worker.late_results_discarded)
    hung = worker.hung_threads
    status.set('hung model threads', hung)
    status.set('model threads started', worker.model_threads_started)
    status.set('num_points', node.settings.num_points)
    status.set('num_steps', node.settings.num_steps)
    status.set('oversample', node.settings.oversample)
    status.set('keep', keep_policy(getattr(node, 'model', None), node.settings.oversample))
    status.set('visibility', visibility_source(getattr(node, 'model', None)))
    latency = worker.latency.summary()
    add_timing(status, 'latency', latency, 1e3, 'ms')
    if latency is not None:  # the newest window alone (nova3r_bench overhead reads it per window)
        status.set('latency last [ms]', float(worker.latency.values()[-1]) * 1e3)
    for name, stats in worker.stages.items():
        add_timing(status, f'stage {name}', stats.summary(), 1e3, 'ms', keys=('mean',))
    if not worker.alive:
        status.raise_level(ERROR, 'inference worker is not running')
    if worker.windows_failed:
        status.raise_level(WARN, f'{worker.windows_failed} windows failed: {worker.last_error}')
    if worker.windows_timed_out:
        status.raise_level(WARN, f'{worker.windows_timed_out} windows abandoned after '
                                 f'window_timeout ({hung} model threads still hung)')
    if worker.stalled:
        status.raise_level(ERROR, f'inference stalled: {hung} abandoned model threads still '
                                  'running, no window starts until one returns')
    if worker.windows_too_large:
        status.raise_level(WARN, f'{worker.windows_too_large} windows dropped: decoded images '
                                 f'above max_window_bytes ({node.settings.max_window_bytes})')
    if latency is not None:
        warning = tf_cache_warning(node.intake.last_span_s, latency['p95'])
        if warning:
            status.raise_level(WARN, warning)
    if device_memory := _gpu_memory(node):
        status.set('gpu memory allocated [MiB]', device_memory)
    return status


def _gpu_memory(node: Any) -> float | None:
    if node.device.type != 'cuda':
        return None
    import torch
    return torch.cuda.memory_allocated(node.device) / 2**20


def _output(node: Any) -> Status:
    status = Status('output')
    status.set('scale mode', node.scale.mode)
    status.set('scale mode parameter', node.values['scale_mode'])
    last = node.worker.last_scale
    metric = node.scale.mode != 'normalized'
    status.set('metric', metric)
    if last is not None:
        status.set('last scale', 'none' if last.scale is None else last.scale)
        if last.scale is not None and any(last.shift):  # depth_scale_fit chamfer_shift
            status.set('last shift (m)', ' '.join(f'{v:.3f}' for v in last.shift))
        if last.mode == 'depth' and node.values['depth_snap']:
            status.set('last snapped points', node.worker.last_snapped)
        if last.scale is None:
            status.raise_level(WARN, f'no scale for the last window: {last.reason}')
    if node.scale.warning:
        status.raise_level(WARN, node.scale.warning)
    status.set('points published', node.points_published)
    status.set('incompatible QoS events (subscribers)', node.output_qos_incompatible)
    if node.output_qos_incompatible:
        status.raise_level(WARN, f'{node.output_qos_incompatible} subscriber(s) asked for QoS '
                                 'the clouds are not published with (output_reliability '
                                 f'{node.values["output_reliability"]!r}) and receive nothing')
    add_timing(status, 'output age', node.output_age.summary(), 1e3, 'ms')
    ages = node.output_age.values()
    if ages.size and ages[-1] < -FUTURE_STAMP_TOLERANCE_S:
        status.raise_level(WARN, f"the last cloud's view-1 stamp is {-ages[-1]:.1f} s ahead of "
                                 'the node clock: input stamps from the future (camera clock, '
                                 'or use_sim_time without /clock)')
    return status


def build_statuses(node: Any) -> DiagnosticArray:
    """Build the node's DiagnosticArray (header stamp set by the caller from the node clock)."""
    statuses = [_inputs(node), _inference(node), _output(node)]
    for status in statuses:
        if status.level == OK and not status.messages:
            status.messages.append('OK')
    return to_array(statuses, node.get_name(), node.hardware_id, Time())
