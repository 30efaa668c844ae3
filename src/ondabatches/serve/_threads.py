"""The thread backend: an `ExecutorPool` over threads it owns, resizable while it runs.

A `ThreadPoolExecutor` cannot shrink, so the pool runs at most ``workers`` batches at
once and holds the others back until a running one ends; `ThreadPool.resize` changes
that number. Threads beyond it sit idle (they are started only while needed).
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .._errors import ArgumentError
from ._pools import ExecutorPool
from ._tasks import Materialize, WorkerLostError, run_task, unpack_result

__all__: list[str] = []

#: A cap on threads ever started by one pool (each resize stays below it).
_MAX_THREADS = 1024


class ThreadPool(ExecutorPool):
    """Up to ``workers`` batches at once on threads of its own; see `resize`."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ArgumentError(f"a thread pool needs at least 1 worker, got {workers}")
        executor = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="ondabatches-worker")
        super().__init__(executor, owned=True)
        self._lock = threading.RLock()  # see _launch
        self._limit = workers
        self._running = 0
        self._waiting: deque[tuple[Future, Materialize, Any, Any]] = deque()
        self._closed = False

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        target: Future = Future()
        with self._lock:
            self._waiting.append((target, materialize, batch, dtype))
        self._launch()
        return target

    def resize(self, workers: int) -> None:
        """Run up to ``workers`` batches at once from now on (running ones finish)."""
        if not 1 <= workers <= _MAX_THREADS:
            raise ArgumentError(
                f"a thread pool has between 1 and {_MAX_THREADS} workers, got {workers}"
            )
        with self._lock:
            self._limit = workers
        self._launch()

    def _launch(self) -> None:
        with self._lock:
            while not self._closed and self._waiting and self._running < self._limit:
                target, materialize, batch, dtype = self._waiting.popleft()
                if not target.set_running_or_notify_cancel():  # cancelled while waiting
                    continue
                source = self._executor.submit(run_task, materialize, batch, dtype)
                self._sources[target] = source
                self._running += 1
                # Added under the lock: a callback of a finished task runs at once,
                # and takes the lock again (it is a re-entrant one, see __init__).
                source.add_done_callback(functools.partial(self._done, target))

    def _done(self, target: Future, source: Future) -> None:
        with self._lock:
            self._running -= 1
            self._sources.pop(target, None)
        if source.cancelled():
            target.set_exception(WorkerLostError("the task was cancelled by its executor"))
        elif source.exception() is not None:
            target.set_exception(source.exception())
        else:
            try:
                target.set_result(unpack_result(source.result()))
            except BaseException as exc:  # a TaskError: materialize itself failed
                target.set_exception(exc)
        self._launch()

    def cancel(self, future: Future) -> None:
        if not future.cancel():  # not waiting here: running on a thread
            super().cancel(future)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for target, *_ in waiting:
            target.cancel()
        super().close()
