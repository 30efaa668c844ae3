"""The Batcher's side of ``workers="auto"`` and of ``resize``.

`_Resizing` is the part of the [`Batcher`][ondabatches.serve.Batcher] that changes the
worker count: by hand (``resize``) or, with ``workers="auto"``, when the controller of
``_autoscale`` says so at the end of an interval (`_Window`: what the interval saw).
The Batcher sets the attributes it uses in its ``__init__``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _errors
from .._errors import ArgumentError, ArgumentTypeError
from ._autoscale import AutoWorkers, IdleCpus, Measurement, WorkerChange, WorkerController
from ._pools import Pool, per_worker
from ._stats import DataPathMeter

__all__: list[str] = []

logger = logging.getLogger("ondabatches")


@dataclass(slots=True)
class _Window:
    """What one interval of ``workers="auto"`` saw: from when, the consumer's wait
    so far when it began, takes, and takes that found the buffer full of ready batches."""

    started: float = 0.0
    wait_s: float = 0.0
    takes: int = 0
    full: int = 0
    settling: bool = False  # the first interval after a change: not judged


def _auto_workers(workers: Any, backend: Any) -> AutoWorkers | None:
    """The settings of ``workers="auto"``, or None for a fixed count."""
    if isinstance(workers, str):
        if workers != "auto":
            raise ArgumentError(
                f"workers must be an int, 'auto' or an AutoWorkers, got {workers!r}"
            )
        workers = AutoWorkers()
    if not isinstance(workers, AutoWorkers):
        return None
    if backend not in _RESIZABLE:
        shown = backend if isinstance(backend, str) else type(backend).__name__
        raise ArgumentError(
            f"workers='auto' needs a pool that the Batcher makes and resizes: backend "
            f"{' or '.join(map(repr, _RESIZABLE))}, got {shown!r}"
        )
    return workers


#: The backends whose pools resize (what ``workers="auto"`` needs).
_RESIZABLE = ("threads", "processes", "ray")


def _first_worker_count(workers: Any, auto: AutoWorkers | None) -> int:
    """The worker count a Batcher starts with: ``auto``'s least, or ``workers`` (default:
    the usable CPUs), checked."""
    if auto is not None:
        count = auto.min_workers
    else:
        count = _default_workers() if workers is None else workers
        if not isinstance(count, int) or isinstance(count, bool):
            raise ArgumentTypeError(
                f"workers must be an int, 'auto' or an AutoWorkers, got "
                f"{type(count).__name__} {count!r}"
            )
    if count < 1:
        raise ArgumentError(f"workers must be at least 1, got {count}")
    return count


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class _Resizing:
    """Changing a Batcher's worker count (a mixin of it)."""

    backend: Any
    workers: int
    buffer: int
    _buffer_follows: bool
    _pool: Pool | None
    _slots: deque[Any]
    _exhausted: bool
    _meter: DataPathMeter
    _changes: deque[WorkerChange]
    _window: _Window
    _idle: IdleCpus | None
    _controller: WorkerController | None
    _last_wait_fraction: float | None
    _fill: Callable[[], None]  # the Batcher's (_SlotPipeline)

    def _resize(self, workers: int, wait_fraction: float | None, reason: str) -> None:
        before = self.workers
        if workers == before:
            return
        if self._pool is not None:
            self._pool.resize(workers)
        self.workers = workers
        if self._buffer_follows:
            self.buffer = per_worker() * workers
        self._meter.resized(workers)
        self._changes.append(
            WorkerChange(
                at_s=round(time.perf_counter() - self._meter.started, 3),
                workers_before=before,
                workers=workers,
                wait_fraction=None if wait_fraction is None else round(wait_fraction, 3),
                reason=reason,
            )
        )
        logger.info("Batcher workers: %d -> %d (%s)", before, workers, reason)
        if self._pool is not None and not self._pool.lazy:
            self._fill()

    def _cpus(self) -> int:
        """The CPUs "auto" may fill by default: this machine's, or the Ray cluster's."""
        if self.backend == "ray":
            ray = _errors.require("ray", "ray")
            if ray.is_initialized():
                return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return _default_workers()

    def _next_window(self, *, settling: bool = False) -> None:
        self._window = _Window(time.perf_counter(), self._meter.wait_s, settling=settling)

    def _observe(self) -> None:
        """Count one take, and whether every batch of the buffer was ready for it."""
        self._pool.poll()
        window = self._window
        window.takes += 1
        slots = self._slots
        if (len(slots) >= self.buffer or self._exhausted) and all(
            slot.retry_at is None and slot.future.done() for slot in slots
        ):
            window.full += 1

    def _decide(self, now: float) -> None:
        """At the end of an interval: let the controller set the worker count."""
        window = self._window
        elapsed = now - window.started
        wait_fraction = min(max(self._meter.wait_s - window.wait_s, 0.0) / elapsed, 1.0)
        self._last_wait_fraction = wait_fraction
        idle = None if self._idle is None else self._idle.sample()
        if window.settling or window.takes == 0:  # a change is taking effect
            self._next_window()
            return
        full = window.full / window.takes
        measured = Measurement(elapsed, window.takes, wait_fraction, full, idle)
        target = self._controller.step(self.workers, measured)
        if target == self.workers:
            self._next_window()
            return
        if target > self.workers:
            reason = f"the consumer waited {100 * wait_fraction:.0f}% of the last {elapsed:.2f} s"
            if idle is not None:
                reason += f", {idle:.1f} CPUs idle"
        else:
            reason = (
                f"the buffer stayed full of ready batches, the consumer waited "
                f"{100 * wait_fraction:.0f}% of the last {elapsed:.2f} s"
            )
        self._resize(target, wait_fraction, reason)
        self._next_window(settling=True)
