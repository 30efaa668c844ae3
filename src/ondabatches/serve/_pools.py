"""Worker pools that run materialization for the Batcher.

Every pool turns ``submit(materialize, batch, dtype)`` into a
`concurrent.futures.Future` of ``(x, y)``. A failure of ``materialize`` itself
resolves the future with `TaskError` (carrying the worker's formatted
traceback); any other exception means the machinery failed (a worker died, a pool
broke). The Batcher retries both.

- `InlinePool` runs in the caller's thread: the reference every other pool must match.
- `ExecutorPool` wraps any `concurrent.futures.Executor` (threads, loky,
  a Dask client's executor); arrays come back by value.
- `ProcessPool` runs its own worker processes; arrays come back through shared
  memory, a dead worker is replaced and its batch fails over to the Batcher's retry
  (in ``_processes``).

What a worker runs for one batch and how its result comes back is in ``_tasks``.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ClassVar

from .._errors import BatcherError
from ..onda._settings import Settings, current_settings
from ._tasks import Materialize, TaskError, chain, run_task, run_with_settings, unpack_result

__all__: list[str] = []


#: Tasks sent ahead to each worker process (see ProcessPool._assign).
_PREFETCH = 2


def per_worker() -> int:
    """Batches in flight or ready per worker when the Batcher's buffer is not given: 2,
    or one more than the settings' ``worker_tasks`` (so a worker always has a batch
    waiting while it materializes that many)."""
    return max(_PREFETCH, current_settings().worker_tasks + 1)


#: Longest wait, in seconds, for another thread to finish receiving results.
_TURN = 0.05


class Pool(ABC):
    """The interface of an executor backend: what the Batcher needs from a worker pool."""

    #: Compute only when asked (the Batcher then keeps nothing in flight).
    lazy: ClassVar[bool] = False
    #: Whether a materialize callable reaches each worker once rather than with every
    #: task (the Batcher then lets workers draw their batches).
    sends_once: ClassVar[bool] = False

    @abstractmethod
    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        """Start ``materialize(batch, dtype)`` on a worker; its future's result is what
        `run_task` returns there."""

    @abstractmethod
    def cancel(self, future: Future) -> None:
        """Give up ``future`` (its worker may be replaced)."""

    @abstractmethod
    def close(self) -> None:
        """Stop every worker and free what the pool holds; idempotent."""

    def settle(self) -> None:
        """Called once the first batches of a new pool are in (its workers warmed up);
        by default nothing."""
        return None

    def resize(self, workers: int) -> None:
        """Run ``workers`` workers from now on, without losing a batch in flight (a pool
        that cannot change raises `BatcherError`)."""
        raise BatcherError(f"a {type(self).__name__} cannot change its number of workers")

    def poll(self) -> None:
        """Take in the results that have arrived, without waiting (for the futures'
        ``done()``); by default nothing: the futures are resolved as results arrive."""
        return None


class InlinePool(Pool):
    """Materialize in the calling thread, at the moment the batch is needed."""

    lazy = True
    sends_once = False

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(unpack_result(run_task(materialize, batch, dtype)))
        except TaskError as exc:
            future.set_exception(exc)
        return future

    def cancel(self, future: Future) -> None:
        pass

    def resize(self, workers: int) -> None:
        pass  # no workers: batches are made when taken

    def close(self) -> None:
        pass


class ExecutorPool(Pool):
    """Run on a `concurrent.futures.Executor`; shut it down on close only if owned."""

    lazy = False
    sends_once = False  # an executor may pickle the callable with every task

    def __init__(
        self,
        executor: Executor,
        *,
        owned: bool,
        close_timeout: float = 5.0,
        settings: Settings | None = None,
    ):
        self._executor = executor
        self._owned = owned
        # Tasks carry the settings to executors whose workers are other processes.
        self._settings = (settings or current_settings(), os.getpid())
        self._close_timeout = close_timeout
        self._sources: dict[Future, Future] = {}
        self._lock = threading.Lock()

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        source = self._executor.submit(run_with_settings, self._settings, materialize, batch, dtype)
        target = chain(source, unpack_result)
        with self._lock:
            self._sources[target] = source
        target.add_done_callback(self._forget)
        return target

    def _forget(self, target: Future) -> None:
        with self._lock:
            self._sources.pop(target, None)

    def cancel(self, future: Future) -> None:
        with self._lock:
            source = self._sources.get(future)
        if source is not None:
            source.cancel()

    def close(self) -> None:
        with self._lock:
            sources = list(self._sources.values())
        for source in sources:
            source.cancel()
        if not self._owned:
            return
        # Joining happens in a helper thread so that a task blocked for a long time
        # cannot hold up stop(); threads cannot be killed, they end with their task.
        joiner = threading.Thread(
            target=self._executor.shutdown,
            kwargs={"wait": True, "cancel_futures": True},
            name="ondabatches-pool-join",
        )
        joiner.start()
        joiner.join(self._close_timeout)


def thread_pool(workers: int) -> ExecutorPool:
    """An `ExecutorPool` over threads it owns."""
    executor = ThreadPoolExecutor(workers, thread_name_prefix="ondabatches-worker")
    return ExecutorPool(executor, owned=True)
