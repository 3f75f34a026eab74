"""The inference worker thread: newest window in, published cloud out, executor never blocked.

It waits on the node's ``LatestWindowSlot`` (newest window wins; a replaced window is counted as
dropped by the slot), reads the runtime ``Settings`` once per window, runs
``pipeline.run_window`` and hands the result to ``publish``. Exceptions inside the model are
logged (throttled) and counted; the thread keeps going. Torch uses ``threads`` CPU threads
(the node passes cores - 1 on CPU so the executor and the selector keep a core).

Resource guards: a window whose decoded images exceed ``Settings.max_window_bytes`` is
dropped before preprocessing (``windows_too_large``); an out-of-memory error of the model
(``torch.OutOfMemoryError``, CUDA or CPU allocator) is logged and the window retried once with
half the points (``oom_retries``); a second one counts as a failed window.

Timing (steady clock): *latency* is newest view received (its callback) -> publish returned;
*stage* timings come from ``run_window`` plus ``wait`` (newest view received -> worker starts)
and ``publish`` (message building + ``publish()``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from nova3r_ros.model import Nova3r
from nova3r_ros.ros.diagnostics import RollingStats
from nova3r_ros.ros.pipeline import Settings, WindowOutput, run_window, window_bytes
from nova3r_ros.ros.window import LatestWindowSlot, Window

STAGES = ('wait', 'preprocess', 'encode', 'sample', 'scale', 'colour', 'publish')
LOG_THROTTLE_S = 5.0


class InferenceWorker:
    """Runs windows from ``slot`` on ``model`` in its own thread.

    Args:
        model: loaded model (eval mode, on its device).
        slot: the newest-wins hand-off the node puts windows into.
        get_settings: returns the ``Settings`` in force (called once per window).
        publish: ``publish(window, output)``, called from the worker thread.
        should_run: False skips the window (e.g. nobody subscribes); counted as skipped.
        logger: rclpy logger (``error``/``warning`` accept ``throttle_duration_sec``).
        threads: torch CPU threads (``torch.set_num_threads``; process-wide in torch).
    """

    def __init__(self, model: Nova3r, slot: LatestWindowSlot,
                 get_settings: Callable[[], Settings],
                 publish: Callable[[Window, WindowOutput], None],
                 should_run: Callable[[], bool], logger: Any, threads: int = 1) -> None:
        self.model = model
        self.slot = slot
        self._get_settings = get_settings
        self._publish = publish
        self._should_run = should_run
        self._logger = logger
        self.threads = max(1, int(threads))
        self._thread: threading.Thread | None = None
        self.busy = False
        self.windows_done = 0  # published
        self.windows_skipped = 0  # nobody listening
        self.windows_failed = 0  # exception in preprocessing / model / publish
        self.scale_failures = 0  # no scale for the window (depth mode), not published
        self.nonfinite_points = 0  # NaN/Inf points removed before publishing
        self.windows_too_large = 0  # decoded images above max_window_bytes, not run
        self.oom_retries = 0  # out of memory, retried with half the points
        self.last_error = ''
        self.last_scale = None
        self.latency = RollingStats()  # seconds, newest view received -> published
        self.stages = {name: RollingStats() for name in STAGES}  # seconds

    def start(self) -> None:
        """Start the thread (daemon, so a hung model cannot keep the process alive)."""
        if self._thread is not None:
            raise RuntimeError('worker already started')
        self._thread = threading.Thread(target=self._loop, name='nova3r_inference', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Close the slot and join the thread; True when it has exited."""
        self.slot.close()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        if self.model.device.type == 'cpu':
            torch.set_num_threads(self.threads)
        while True:
            window = self.slot.get(timeout=0.5)
            if window is None:
                if self.slot.closed:
                    return
                continue
            self.process(window)

    def process(self, window: Window) -> bool:
        """Run and publish one window (also callable directly in tests); True if published."""
        if not self._should_run():
            self.windows_skipped += 1
            return False
        self.busy = True
        try:
            return self._process(window)
        finally:
            self.busy = False

    def _run(self, window: Window, settings: Settings) -> WindowOutput:
        """``run_window``; on out-of-memory, once more with half the points."""
        try:
            return run_window(self.model, window, settings)
        except torch.OutOfMemoryError as exc:
            half = max(1, settings.num_points // 2)
            self.oom_retries += 1
            first_line = (str(exc).splitlines() or [''])[0]
            self._logger.warning(
                f'window {window.sequence}: out of memory with {settings.num_points} points '
                f'({first_line}); retrying once with {half} points',
                throttle_duration_sec=LOG_THROTTLE_S)
        # Out of the except block: the exception's traceback (holding the failed attempt's
        # tensors) is released, so the cache can hand their blocks back before the retry.
        if self.model.device.type == 'cuda':
            torch.cuda.empty_cache()
        return run_window(self.model, window, dataclasses.replace(settings, num_points=half))

    def _process(self, window: Window) -> bool:
        newest_received_ns = max(view.payload.received_ns for view in window.views)
        self.stages['wait'].add((time.monotonic_ns() - newest_received_ns) / 1e9)
        settings = self._get_settings()
        size = window_bytes(window)
        if size > settings.max_window_bytes:
            self.windows_too_large += 1
            self._logger.warning(
                f'window {window.sequence} dropped: its decoded images take {size} bytes > '
                f'max_window_bytes {settings.max_window_bytes}',
                throttle_duration_sec=LOG_THROTTLE_S)
            return False
        try:
            output = self._run(window, settings)
        except Exception as exc:  # noqa: BLE001 - any model failure: count, log, keep running
            self.windows_failed += 1
            self.last_error = f'{type(exc).__name__}: {exc}'
            self._logger.error(f'window {window.sequence} failed in the model: '
                               f'{self.last_error}', throttle_duration_sec=LOG_THROTTLE_S)
            return False
        self.nonfinite_points += output.nonfinite
        self.last_scale = output.scale
        if output.nonfinite:
            self._logger.warning(f'{output.nonfinite} non-finite points dropped (model output)',
                                 throttle_duration_sec=LOG_THROTTLE_S)
        if output.scale.scale is None:
            self.scale_failures += 1
            self._logger.warning(f'window not published: no {output.scale.mode} scale '
                                 f'({output.scale.reason})',
                                 throttle_duration_sec=LOG_THROTTLE_S)
            return False
        start = time.perf_counter()
        try:
            self._publish(window, output)
        except Exception as exc:  # noqa: BLE001 - e.g. a context shut down mid-publish
            self.windows_failed += 1
            self.last_error = f'publish: {type(exc).__name__}: {exc}'
            self._logger.error(self.last_error, throttle_duration_sec=LOG_THROTTLE_S)
            return False
        output.timings['publish'] = time.perf_counter() - start
        self.latency.add((time.monotonic_ns() - newest_received_ns) / 1e9)
        for name, seconds in output.timings.items():
            self.stages[name].add(seconds)
        self.windows_done += 1
        return True
