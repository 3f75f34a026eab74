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
The node's parameters: one table, declared from it, validated on every runtime change.

``PARAMETERS`` is the single source of truth: the node declares every entry with a
``ParameterDescriptor`` (description, range, read_only), ``config/nova3r.yaml`` lists the same
keys with the same defaults (a test compares them), and the launch-file test checks the YAML
keys against it. Read-only entries are start-up settings (a change needs a restart); the others
apply to the next window once ``validate_change`` accepts them.

ROS-free apart from building descriptors (rcl_interfaces messages, imported there only), so
training and evaluation read the node's defaults from here (heads are fitted, and rows scored,
at the settings the node runs) without importing the ROS layer, and the launch files and tests
import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

from nova3r_ros.geometry.scale import DEPTH_FITS
from nova3r_ros.geometry.scale import MODES as SCALE_MODES

TRANSPORTS = ('raw', 'compressed')
DEVICES_HINT = "'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:<index>'"
PRECISIONS = ('auto', 'fp32', 'bf16')  # = nova3r_ros.model.PRECISIONS (kept torch-free here)
RELIABILITIES = ('best_available', 'best_effort', 'reliable')


@dataclass(frozen=True)
class ParamSpec:
    """
    One declared parameter.

    ``low``/``high`` give an inclusive numeric range (ints: integer_range, floats:
    floating_point_range); ``choices`` is checked by ``validate_change`` and listed in the
    descriptor's ``additional_constraints``.
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


PARAMETERS: tuple[ParamSpec, ...] = (
    # ---- model (start-up) -------------------------------------------------------------------
    ParamSpec('checkpoint', '',
              'Model checkpoint (.safetensors). Empty: the shipped nova3r_tiny.safetensors, '
              'looked up in share/nova3r_ros/checkpoints, then the source tree checkpoints/. '
              'A missing or corrupt file stops the node at start-up.', read_only=True),
    ParamSpec('device', 'auto', f'Torch device: {DEVICES_HINT}.', read_only=True),
    ParamSpec('precision', 'auto',
              "Compute precision: 'auto' (bf16 autocast on a GPU with native bf16, i.e. "
              "Ampere/Orin or newer; fp32 elsewhere), 'fp32', or 'bf16' (also on the CPU: ~10 "
              '% faster windows where the CPU has bf16 instructions, e.g. AVX512-BF16 or AMX, '
              'far slower where it has not).', read_only=True, choices=PRECISIONS),
    ParamSpec('torch_threads', 0,
              'Torch CPU threads of the inference worker; 0 = cores - 1 (at least 1), so the '
              'executor keeps a core.', read_only=True, low=0, high=256),
    # ---- inputs (start-up) ------------------------------------------------------------------
    ParamSpec('image_topics', ['image'],
              'Image topics, one per camera (relative names, remappable). Camera 0 gives view '
              '1. Several topics are matched with ApproximateTime sync.', read_only=True),
    ParamSpec('transport', 'raw',
              "'raw' (sensor_msgs/Image on each topic) or 'compressed' "
              '(sensor_msgs/CompressedImage on <topic>/compressed, image_transport naming).',
              read_only=True, choices=TRANSPORTS),
    ParamSpec('depth_topic', '',
              'Optional raw depth Image registered to camera 0 (16UC1 mm or 32FC1 m), '
              "synchronized with the images; enables scale_mode 'depth'. Empty: none.",
              read_only=True),
    ParamSpec('camera_info_topic', 'camera_info',
              'CameraInfo of camera 0 (latest message kept; needed by depth scale and '
              'colorize). Empty: none.', read_only=True),
    ParamSpec('queue_size', 10, 'ApproximateTime sync queue size per input (messages).',
              read_only=True, low=1, high=1000),
    ParamSpec('slop', 0.05, 'ApproximateTime sync slop, seconds (a set spans less than this; '
              '0 could never match).', low=1e-6, high=10.0),
    # ---- keyframes and windows --------------------------------------------------------------
    ParamSpec('keyframe_min_interval', 0.5,
              'Seconds: no keyframe sooner than this after the previous one.',
              low=0.0, high=3600.0),
    ParamSpec('keyframe_max_interval', 3.0,
              'Seconds: a keyframe is forced once this has passed (> keyframe_min_interval).',
              low=0.0, high=3600.0),
    ParamSpec('keyframe_change_threshold', 0.02,
              'Photometric change (mean abs. difference of zero-mean grey thumbnails, '
              'full-scale units) needed for a keyframe between the two intervals; 0 = any.',
              low=0.0, high=1.0),
    ParamSpec('window_size', 2,
              'Keyframes per window; cameras x window_size views go to the model (<= 8).',
              read_only=True, low=1, high=8),
    ParamSpec('window_stride', 1, 'Keyframes between the starts of consecutive windows.',
              read_only=True, low=1, high=64),
    # ---- inference --------------------------------------------------------------------------
    ParamSpec('num_points', 8192, 'Points sampled per window (published cloud width before '
              'non-finite points are dropped); at most max_points.', low=1, high=262144),
    ParamSpec('max_points', 65536,
              'Resource guard: the largest num_points accepted (a larger value is rejected at '
              'start-up and when set at run time).', read_only=True, low=1, high=262144),
    ParamSpec('max_window_bytes', 268_435_456,
              'Resource guard: a window whose decoded images (RGB + depth, bytes) exceed this '
              'is dropped and counted (diagnostics: windows dropped (too large)).',
              low=1_048_576, high=17_179_869_184),
    ParamSpec('num_steps', 4, 'Flow sampler steps (decoder calls) per window; the step '
              "is the checkpoint's (the shipped one: ddim).",
              low=1, high=200),
    ParamSpec('oversample', 2.0,
              'Draw ceil(num_points x oversample) points and publish num_points of them: the '
              "ones the checkpoint's confidence head ranks most likely on a surface (weighted "
              'towards thinly covered regions), or without that head the ones with the densest '
              'neighbourhoods; 1 = publish every drawn point. The draw is what max_points '
              'guards.', low=1.0, high=4.0),
    ParamSpec('seed', 0,
              'Base seed; each window samples with seed + view-1 stamp (ns) so offline '
              'evaluation can reproduce the node (see pipeline.window_seed).',
              low=0, high=2**31 - 1),
    ParamSpec('window_timeout', 30.0,
              'Watchdog, seconds: a window still in the model after this long is abandoned '
              '(counted, logged; its thread is left to finish and its result discarded) and '
              'later windows run on a fresh thread; 0 = off. At most 2 abandoned threads may '
              'still run; beyond that inference pauses until one returns.',
              low=0.0, high=3600.0),
    ParamSpec('visibility_threshold', 0.5,
              'A point is labelled visible (visibility=1) when the visibility head probability '
              'is >= this.', low=0.0, high=1.0),
    ParamSpec('scale_mode', 'auto',
              "'depth' (fit of the visible points to the depth image of view 1, see "
              "depth_scale_fit), 'fixed' (scale_factor), "
              "'normalized' (model units, not metric) or 'auto' (depth when depth_topic is set, "
              'else normalized with a diagnostics WARN).', choices=SCALE_MODES),
    ParamSpec('scale_factor', 1.0, "Metres per model unit for scale_mode 'fixed'.",
              low=1e-6, high=1e6),
    ParamSpec('scale_min_pixels', 50,
              "Fewest pixels valid in depth and projection for a 'depth' scale; below it the "
              'window is not published.', low=1, high=10_000_000),
    ParamSpec('depth_scale_fit', 'chamfer_shift',
              "How 'depth' mode fits the scale: 'chamfer_shift' (register the visible points "
              "onto the depth image's surface by scale and shift, and keep both: the cloud is "
              "moved onto the measured surface), 'chamfer' (the same fit, scale only; robust to "
              "a cloud spread around surfaces) or 'median_ratio' (median depth/z per pixel; "
              'cheaper, exact for a sharp cloud).',
              choices=DEPTH_FITS),
    ParamSpec('depth_snap', True,
              "In 'depth' mode, move the points view 1's depth camera sees through, or sees "
              'within depth_snap_tolerance of, along their ray onto the measured surface and '
              'label them visible; points further behind (the amodal part) are kept as drawn.'),
    ParamSpec('depth_snap_tolerance', 0.1,
              'How far behind the measured surface a point is still snapped onto it, as a '
              'fraction of the measured depth.', low=0.0, high=1.0),
    ParamSpec('colorize', False,
              "Add an 'rgb' field (colour of view 1 for visible points, grey for occluded "
              'ones); needs camera_info.'),
    ParamSpec('skip_without_subscribers', True,
              'Skip inference while nothing subscribes to ~/points or ~/occluded_points '
              '(windows counted as skipped).'),
    # ---- QoS and diagnostics (start-up) -----------------------------------------------------
    ParamSpec('input_reliability', 'best_available',
              'Reliability of image/depth/camera_info subscriptions.', read_only=True,
              choices=RELIABILITIES),
    ParamSpec('input_depth', 5, 'History depth of input subscriptions (sensor data: 5).',
              read_only=True, low=1, high=1000),
    ParamSpec('output_reliability', 'reliable', 'Reliability of the cloud publishers.',
              read_only=True, choices=('best_effort', 'reliable')),
    ParamSpec('output_depth', 1, 'History depth (keep-last) of the cloud publishers.',
              read_only=True, low=1, high=100),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.',
              read_only=True, low=0.05, high=60.0),
    ParamSpec('stale_input_timeout', 2.0,
              'Seconds without frames from a camera before diagnostics report it as stopped.',
              low=0.1, high=3600.0),
    ParamSpec('min_input_rate', 0.0,
              'Expected least rate of every image/depth input, Hz (0: unchecked). Diagnostics '
              'WARN when an input runs more than 10 % below it over the last 5 s (as '
              "diagnostic_updater's FrequencyStatus), e.g. a camera throttled by USB bandwidth.",
              low=0.0, high=1000.0),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
RUNTIME: tuple[str, ...] = tuple(spec.name for spec in PARAMETERS if not spec.read_only)


def descriptor(spec: ParamSpec):
    """``rcl_interfaces/ParameterDescriptor`` for a spec (range, read_only, choices)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.low is not None and spec.high is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.low),
                                               to_value=int(spec.high), step=0)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    return desc


def _check_one(name: str, value: Any) -> str | None:
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (use_sim_time, qos overrides...): never reject those
    if spec.choices and value not in spec.choices:
        return f'{name} must be one of {", ".join(spec.choices)}, got {value!r}'
    if isinstance(value, float) and not math.isfinite(value):
        return f'{name} must be finite, got {value}'
    if spec.low is not None and isinstance(value, int | float) and not isinstance(value, bool):
        if not spec.low <= value <= spec.high:
            return f'{name} must be in [{spec.low}, {spec.high}], got {value}'
    return None


def validate_change(current: Mapping[str, Any], changes: Mapping[str, Any],
                    depth_configured: bool) -> str | None:
    """
    Why a set of runtime changes is invalid, or None when it may be applied.

    ``current`` holds the values in force; ``changes`` the new ones (name -> value). Checks
    choices, finiteness and ranges (rclpy checks declared ranges too, but not choices or
    cross-parameter rules), num_points (and the points drawn, num_points x oversample) <=
    max_points, keyframe_max_interval >
    keyframe_min_interval, scale_mode 'depth' only with a depth topic, and depth scaling only
    with a camera_info topic. Unknown names are accepted (not ours to reject).
    """
    for name, value in changes.items():
        problem = _check_one(name, value)
        if problem:
            return problem
    merged = {**current, **changes}
    if merged['num_points'] > merged['max_points']:
        return (f"num_points ({merged['num_points']}) must be <= max_points "
                f"({merged['max_points']}, a start-up guard)")
    # as nova3r_ros.model.density.drawn_points (not imported: that pulls in torch)
    drawn = math.ceil(int(merged['num_points']) * float(merged['oversample']) - 1e-9)
    if drawn > merged['max_points']:
        return (f"num_points x oversample ({merged['num_points']} x {merged['oversample']:g} = "
                f"{drawn} points drawn) must be <= max_points ({merged['max_points']}, a "
                'start-up guard)')
    if merged['keyframe_max_interval'] <= merged['keyframe_min_interval']:
        return (f"keyframe_max_interval ({merged['keyframe_max_interval']} s) must be greater "
                f"than keyframe_min_interval ({merged['keyframe_min_interval']} s)")
    if merged['scale_mode'] == 'depth' and not depth_configured:
        return "scale_mode 'depth' needs a depth_topic (set at start-up)"
    if (merged['scale_mode'] in ('depth', 'auto') and depth_configured
            and not merged.get('camera_info_topic', 'camera_info')):
        # without intrinsics no depth pixel can be compared: every window would go unpublished
        return (f"scale_mode {merged['scale_mode']!r} with a depth_topic needs "
                "camera_info_topic (view 1's intrinsics); set it, or use scale_mode "
                "'normalized' or 'fixed'")
    return None


def validate_startup(values: Mapping[str, Any]) -> None:
    """Check the start-up configuration as a whole; ``ValueError`` with the reason."""
    for name, value in values.items():
        problem = _check_one(name, value)
        if problem:
            raise ValueError(problem)
    topics = list(values['image_topics'])
    if not topics or any(not isinstance(t, str) or not t.strip() for t in topics):
        raise ValueError(f'image_topics must be a non-empty list of topic names, got {topics}')
    if len(set(topics)) != len(topics):
        raise ValueError(f'image_topics has duplicates: {topics}')
    views = len(topics) * int(values['window_size'])
    if views > 8:
        raise ValueError(
            f'{len(topics)} cameras x window_size {values["window_size"]} = {views} views; '
            'the model takes at most 8 per window: lower window_size or use fewer cameras')
    problem = validate_change(values, {}, bool(values['depth_topic']))
    if problem:
        raise ValueError(problem)


def launch_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """
    Node parameters a launch file passes after the params file: only the arguments given.

    Why: launch_ros applies later parameter entries over earlier ones, so a launch-argument
    default ('' or 'auto') passed unconditionally would replace what the user's params file
    says. An empty argument leaves the params file's value; ``use_sim_time`` takes
    true/false (any case); every other name must be a declared string parameter.
    """
    overrides: dict[str, Any] = {}
    for name, text in arguments.items():
        text = text.strip()
        if not text:
            continue
        if name == 'use_sim_time':
            if text.lower() not in ('true', 'false'):
                raise ValueError(f'launch argument use_sim_time: true or false, got {text!r}')
            overrides[name] = text.lower() == 'true'
        elif name in DEFAULTS and isinstance(DEFAULTS[name], str):
            overrides[name] = text
        else:
            raise ValueError(f'launch argument {name!r} is not a string parameter of the node')
    return overrides
