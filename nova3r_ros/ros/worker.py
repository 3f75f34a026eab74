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
The inference worker thread: newest window in, published cloud out, executor never blocked.

It waits on the node's ``LatestWindowSlot`` (newest window wins; a replaced window is counted as
dropped by the slot), reads the runtime ``Settings`` once per window, runs
``pipeline.run_window`` and hands the result to ``publish``. Exceptions inside the model are
logged (throttled) and counted; the thread keeps going. Torch uses ``threads`` CPU threads
(the node passes cores - 1 on CPU so the executor and the selector keep a core).

Resource guards: a window whose decoded images exceed ``Settings.max_window_bytes`` is
dropped before preprocessing (``windows_too_large``); an out-of-memory error of the model
(``torch.OutOfMemoryError``; the CPU allocator raises a plain RuntimeError instead) is logged
and the window retried once with half the points (``oom_retries``); a second one counts as a
failed window.

Watchdog (``window_timeout`` seconds, 0 = off): with a timeout the model runs on a separate
*model thread* while the worker thread waits for it. A window still running after the timeout
is abandoned (``windows_timed_out``, logged): Python cannot kill a thread, so the stuck model
thread is retired (left running as a daemon; when it returns, its late result is thrown away,
``late_results_discarded``) and the next window gets a fresh model thread. Abandoned threads
still running are bounded by ``max_hung_threads`` (default 2): each may hold a window's
activations and a CPU core, so instead of piling up threads the worker stops taking windows
while that many are hung (``stalled``; the newest-wins slot keeps dropping, diagnostics report
ERROR) and resumes as soon as one of them returns. At most ``max_hung_threads + 1`` model
threads therefore exist. A model exception is not a timeout: it is counted in
``windows_failed`` and the same model thread runs the next window.

Timing (steady clock): *latency* is newest view received (its callback) -> publish returned;
*stage* timings come from ``run_window`` plus ``wait`` (newest view received -> worker starts)
and ``publish`` (message building + ``publish()``).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import queue
import threading
import time
from typing import Any

from nova3r_ros.model import Nova3r
from nova3r_ros.ros.diagnostics import RollingStats
from nova3r_ros.ros.pipeline import run_window, Settings, window_bytes, WindowOutput
from nova3r_ros.ros.window import LatestWindowSlot, Window
import torch

STAGES = ('wait', 'preprocess', 'encode', 'sample', 'scale', 'colour', 'publish')
LOG_THROTTLE_S = 5.0
# torch.OutOfMemoryError is recent (2.4/2.5); older torch (JetPack wheels) only has the cuda
# name, and naming the new one in `except` there would turn every model error into an
# AttributeError.
OUT_OF_MEMORY = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)
MAX_HUNG_THREADS = 2  # abandoned model threads still running before the worker stalls
POLL_S = 0.5  # seconds: how often waits re-check for shutdown


class _Job:
    """One window handed to a model thread; ``finish``/``abandon`` decide who owns the result."""

    def __init__(self, window: Window, settings: Settings) -> None:
        self.window = window
        self.settings = settings
        self.output: WindowOutput | None = None
        self.error: Exception | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._finished = False
        self.abandoned = False

    def finish(self) -> bool:
        """Model thread: mark the result ready; False when the worker already abandoned it."""
        with self._lock:
            self._finished = True
            late = self.abandoned
        self.done.set()
        return not late

    def abandon(self) -> bool:
        """Worker thread: give up on the job; False when it finished in the meantime."""
        with self._lock:
            if self._finished:
                return False
            self.abandoned = True
            return True


class _ModelThread:
    """A daemon thread that runs the worker's jobs one at a time until retired."""

    def __init__(self, worker: InferenceWorker, number: int) -> None:
        self._worker = worker
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f'nova3r_model_{number}',
                                       daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def retire(self) -> None:
        """Exit after the current job (if any); never blocks."""
        self._jobs.put(None)

    def _loop(self) -> None:
        worker = self._worker
        if worker.model.device.type == 'cpu':
            torch.set_num_threads(worker.threads)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.output = worker._run(job.window, job.settings)
            except Exception as exc:  # noqa: BLE001 - handed to the worker thread
                job.error = exc
            if not job.finish():
                worker._discard_late(job)


class InferenceWorker:
    """
    Runs windows from ``slot`` on ``model`` in its own thread.

    Parameters
    ----------
    model
        loaded model (eval mode, on its device).
    slot
        the newest-wins hand-off the node puts windows into.
    get_settings
        returns the ``Settings`` in force (called once per window).
    publish
        ``publish(window, output)``, called from the worker thread.
    should_run
        False skips the window (e.g. nobody subscribes); counted as skipped.
    logger
        rclpy logger (``error``/``warning`` accept ``throttle_duration_sec``).
    threads
        torch CPU threads (``torch.set_num_threads``; process-wide in torch).
    window_timeout
        seconds a window may spend in the model before it is abandoned
        (0 = off: the model runs on the worker thread itself). The node updates the
        attribute when its ``window_timeout`` parameter changes.
    max_hung_threads
        abandoned model threads still running before the worker stalls.

    """

    def __init__(self, model: Nova3r, slot: LatestWindowSlot,
                 get_settings: Callable[[], Settings],
                 publish: Callable[[Window, WindowOutput], None],
                 should_run: Callable[[], bool], logger: Any, threads: int = 1,
                 window_timeout: float = 0.0, max_hung_threads: int = MAX_HUNG_THREADS) -> None:
        if not window_timeout >= 0:
            raise ValueError(f'window_timeout must be >= 0 seconds, got {window_timeout}')
        if max_hung_threads < 0:
            raise ValueError(f'max_hung_threads must be >= 0, got {max_hung_threads}')
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
        self.windows_timed_out = 0  # ran past window_timeout: abandoned, not published
        self.late_results_discarded = 0  # abandoned windows whose model call returned later
        self.model_threads_started = 0
        self.window_timeout = float(window_timeout)  # seconds, 0 = off
        self.max_hung_threads = int(max_hung_threads)
        self._model_thread: _ModelThread | None = None
        self._hung: list[_ModelThread] = []  # abandoned, maybe still running
        self._lock = threading.Lock()  # guards the two above
        self._stalled_logged = False
        self.last_error = ''
        self.last_scale = None
        self.last_snapped = 0  # points of the last window moved onto the measured depth
        self.latency = RollingStats()  # seconds, newest view received -> published
        self.stages = {name: RollingStats() for name in STAGES}  # seconds

    def start(self) -> None:
        """Start the thread (daemon, so a hung model cannot keep the process alive)."""
        if self._thread is not None:
            raise RuntimeError('worker already started')
        self._thread = threading.Thread(target=self._loop, name='nova3r_inference', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """
        Close the slot, join the worker and model threads; True when they have exited.

        Abandoned (hung) model threads are daemons and are not waited for.
        """
        deadline = time.monotonic() + timeout
        self.slot.close()
        done = True
        if self._thread is not None:
            self._thread.join(timeout)
            done = not self._thread.is_alive()
        with self._lock:
            model_thread, self._model_thread = self._model_thread, None
        if model_thread is not None:
            model_thread.retire()
            model_thread.thread.join(max(0.0, deadline - time.monotonic()))
            done = done and not model_thread.alive
        return done

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def hung_threads(self) -> int:
        """Abandoned model threads still running (stuck in, or late from, the model)."""
        with self._lock:
            self._hung = [t for t in self._hung if t.alive]
            return len(self._hung)

    @property
    def stalled(self) -> bool:
        """Return True while ``max_hung_threads`` abandoned threads run: no window can start."""
        return self.window_timeout > 0 and self.hung_threads >= self.max_hung_threads

    def _loop(self) -> None:
        if self.model.device.type == 'cpu':
            torch.set_num_threads(self.threads)
        while True:
            if self.stalled:
                # Leave windows in the newest-wins slot (replaced ones counted as dropped)
                # until a hung thread returns; then the newest one runs.
                self._log_stalled()
                if self.slot.closed:
                    return
                time.sleep(POLL_S)
                continue
            window = self.slot.get(timeout=POLL_S)
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

    def _log_stalled(self) -> None:
        if not self._stalled_logged:
            self._stalled_logged = True
            self._logger.error(
                f'inference stalled: {self.max_hung_threads} abandoned model threads are '
                'still running; no window is started until one of them returns',
                throttle_duration_sec=LOG_THROTTLE_S)

    def _acquire_model_thread(self) -> _ModelThread | None:
        """Return the current model thread (started when needed), or None while stalled."""
        with self._lock:
            if self._model_thread is not None and self._model_thread.alive:
                return self._model_thread
            self._hung = [t for t in self._hung if t.alive]
            if len(self._hung) >= self.max_hung_threads:
                return None
            self.model_threads_started += 1
            self._model_thread = _ModelThread(self, self.model_threads_started)
            self._stalled_logged = False
            return self._model_thread

    def _abandon(self, model_thread: _ModelThread) -> None:
        with self._lock:
            model_thread.retire()
            self._hung.append(model_thread)
            if self._model_thread is model_thread:
                self._model_thread = None

    def _discard_late(self, job: _Job) -> None:
        """Model thread: an abandoned window finished after all; its result is dropped."""
        self.late_results_discarded += 1
        self._logger.warning(f'window {job.window.sequence}: late result discarded (it was '
                             'abandoned by the watchdog)', throttle_duration_sec=LOG_THROTTLE_S)

    def _run_watched(self, window: Window, settings: Settings) -> WindowOutput | None:
        """
        Run ``_run`` under the watchdog; return None when the window was abandoned.

        Abandoned means timeout, stall or shutdown. Model exceptions are re-raised here, on the
        worker thread.
        """
        timeout = self.window_timeout
        if timeout <= 0:
            return self._run(window, settings)
        model_thread = self._acquire_model_thread()
        if model_thread is None:
            self._log_stalled()
            raise RuntimeError(f'inference stalled: {self.max_hung_threads} hung model '
                               'threads')
        job = _Job(window, settings)
        model_thread.submit(job)
        deadline = time.monotonic() + timeout
        while not job.done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            closing = self.slot.closed
            if (time.monotonic() < deadline and not closing) or not job.abandon():
                continue
            self._abandon(model_thread)
            if closing:
                return None
            self.windows_timed_out += 1
            self.last_error = (f'window {window.sequence} ran past window_timeout {timeout:g} s '
                               '(abandoned)')
            self._logger.error(
                f'{self.last_error}; its model thread is left running as a daemon '
                f'({self.hung_threads} hung, at most {self.max_hung_threads}) and later '
                'windows go to a new one', throttle_duration_sec=LOG_THROTTLE_S)
            return None
        if job.error is not None:
            raise job.error
        return job.output

    def _run(self, window: Window, settings: Settings) -> WindowOutput:
        """``run_window``; on out-of-memory, once more with half the points."""
        try:
            return run_window(self.model, window, settings)
        except OUT_OF_MEMORY as exc:
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
            output = self._run_watched(window, settings)
        except Exception as exc:  # noqa: BLE001 - any model failure: count, log, keep running
            self.windows_failed += 1
            self.last_error = f'{type(exc).__name__}: {exc}'
            self._logger.error(f'window {window.sequence} failed in the model: '
                               f'{self.last_error}', throttle_duration_sec=LOG_THROTTLE_S)
            return False
        if output is None:  # abandoned by the watchdog (counted there)
            return False
        self.nonfinite_points += output.nonfinite
        self.last_scale = output.scale
        self.last_snapped = output.snapped
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
