"""Ray: materialization as Ray tasks, and a Batcher living in a Ray actor.

Ray is an optional extra (``pip install 'ondabatches[ray]'``), imported only when one
of these is used. Ray itself is not started here: call ``ray.init(...)`` (or
``ray.init(address=...)`` to join a cluster) first, or let Ray start a local instance
on first use.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

from .._errors import require
from ._pools import Materialize, WorkerLostError, run_task, unpack_result

__all__ = ["RayBatcher"]


class RayPool:
    """Run each batch as a Ray task, at most ``workers`` at once; Ray re-runs a task whose
    worker died. Batches come back as read-only arrays over Ray's object store.

    The limit is what makes ``workers`` mean the same as for the other backends: Ray
    itself would run as many tasks at once as the cluster has CPUs, whatever the
    Batcher's buffer; the buffer then holds finished batches rather than more tasks.
    """

    lazy = False

    def __init__(self, *, workers: int, max_retries: int):
        self._ray = require("ray", "ray")
        self._remote = self._ray.remote(run_task).options(max_retries=max_retries)
        self._limit = workers
        self._pending: deque[tuple[Future, Materialize, Any, Any]] = deque()
        self._refs: dict[Future, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        target: Future = Future()
        with self._lock:
            self._pending.append((target, materialize, batch, dtype))
        self._launch()
        return target

    def _launch(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._refs) >= self._limit or not self._pending:
                    return
                target, materialize, batch, dtype = self._pending.popleft()
                if not target.set_running_or_notify_cancel():  # cancelled while waiting
                    continue
                ref = self._remote.remote(materialize, batch, dtype)
                self._refs[target] = ref
            ref.future().add_done_callback(functools.partial(self._finished, target))

    def _finished(self, target: Future, source: Future) -> None:
        with self._lock:
            self._refs.pop(target, None)
        try:
            if source.cancelled():
                target.set_exception(WorkerLostError("the Ray task was cancelled"))
            elif source.exception() is not None:
                target.set_exception(source.exception())
            else:
                try:
                    # Zero-copy: read-only views of the object store that keep the
                    # object alive while the consumer holds them (copying a batch here
                    # would cost the manager as much CPU as a worker spends on it).
                    target.set_result(unpack_result(source.result()))
                except BaseException as exc:  # a TaskError: materialize itself failed
                    target.set_exception(exc)
        finally:
            self._launch()

    def cancel(self, future: Future) -> None:
        if future.cancel():  # still waiting for a free worker: it never runs
            return
        with self._lock:
            ref = self._refs.get(future)
        if ref is not None:
            self._ray.cancel(ref)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            refs = list(self._refs.values())
            pending, self._pending = list(self._pending), deque()
        for target, *_ in pending:
            target.cancel()
        for ref in refs:
            # force=True kills a worker stuck in a batch; Ray starts a new one.
            self._ray.cancel(ref, force=True)


class _BatcherActor:
    """The body of the actor behind :class:`RayBatcher`."""

    def __init__(self, batches: Any, kwargs: dict[str, Any]):
        from ._batcher import Batcher

        self._batcher = Batcher(batches, **kwargs)

    def start(self, state: Any) -> None:
        self._batcher.start(state)

    def take(self, state: Any, timeout: float | None):
        return self._batcher.take(state, timeout=timeout)

    def stop(self) -> None:
        self._batcher.stop()

    def status(self):
        return self._batcher.status


class RayBatcher:
    """A :class:`~ondabatches.Batcher` running in a Ray actor, usable from anywhere.

    The object is a light, picklable handle: pass it to Ray tasks or actors (a
    training process, say) and call :meth:`take` there. The Batcher's manager runs
    in the actor; with the default ``backend="ray"`` its batches run as Ray tasks
    across the cluster.

    Parameters
    ----------
    batches:
        A batch scheme (``iterate_batch(state)``); it is shipped to the actor.
    **kwargs:
        Passed to :class:`~ondabatches.Batcher` (``backend``, ``workers``, ``buffer``,
        ``retries``, ``materialize``, ``dtype``...).

    Examples
    --------
    With ``batches`` and ``state`` as in the :class:`~ondabatches.Batcher` example and
    Ray started (``ray.init()``; the docstring tests skip these lines, which need a
    Ray instance):

    >>> batcher = RayBatcher(batches, buffer=4)  # doctest: +SKIP
    >>> batcher.start(state)  # doctest: +SKIP
    >>> (x, y), state = batcher.take(state)  # doctest: +SKIP
    >>> x.shape, state.index, batcher.status  # doctest: +SKIP
    ((3, 1, 7680), 1, 'running')
    >>> batcher.shutdown()  # doctest: +SKIP
    """

    def __init__(self, batches: Any, **kwargs: Any):
        ray = require("ray", "ray")
        kwargs.setdefault("backend", "ray")
        # The manager is light: it must not hold a CPU that a batch task could use.
        actor_class = ray.remote(num_cpus=0)(_BatcherActor)
        self._actor = actor_class.remote(batches, kwargs)

    def _call(self, method: str, *args: Any):
        ray = require("ray", "ray")
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            # Give callers our own exception (WorkerError, BatcherError...), not Ray's wrapper.
            raise exc.cause from None

    def start(self, state: Any) -> None:
        """Start (or restart) the actor's Batcher from ``state``."""
        self._call("start", state)

    def take(self, state: Any, *, timeout: float | None = None):
        """``((x, y), next_state)`` for ``state``, or ``None`` at the end: see ``Batcher.take``."""
        return self._call("take", state, timeout)

    def stop(self) -> None:
        """Stop the actor's Batcher; the actor stays, so :meth:`start` works again."""
        self._call("stop")

    @property
    def status(self):
        """The actor's Batcher's status: see ``Batcher.status``."""
        return self._call("status")

    def shutdown(self) -> None:
        """Stop the Batcher and end the actor."""
        ray = require("ray", "ray")
        self.stop()
        ray.kill(self._actor)

    def __enter__(self) -> RayBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
