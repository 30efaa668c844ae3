"""Ray: materialization on Ray worker actors, and a Batcher living in a Ray actor.

Ray is an optional extra (``pip install 'ondabatches[ray]'``), imported only when one
of these is used. Ray itself is not started here: call ``ray.init(...)`` (or
``ray.init(address=...)`` to join a cluster) first, or let Ray start a local instance
on first use.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .._errors import require
from ._pools import (
    _PREFETCH,
    Materialize,
    WorkerLostError,
    run_task,
    unpack_result,
)
from ._shm import SegmentPool

__all__ = ["RayBatcher"]


@dataclass(frozen=True, slots=True)
class _Shipped:
    """A materialize callable put in the object store once; calls pass this small handle.

    The reference sits in a list so that Ray passes it as is rather than resolving it
    for every call.
    """

    key: str
    refs: list


class _RayWorker:
    """The body of one worker actor: batches one after the other, as a worker process does."""

    def __init__(self) -> None:
        self._callables: dict[str, Materialize] = {}

    def node(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def run(self, shipped: _Shipped, batch: Any, dtype: Any, segment: tuple[str, int] | None):
        materialize = self._callables.get(shipped.key)
        if materialize is None:  # first use, or this actor was restarted
            import ray

            materialize = self._callables[shipped.key] = ray.get(shipped.refs[0])
        return run_task(materialize, batch, dtype, segment)


class RayPool:
    """Run batches on ``workers`` Ray actors of one CPU each, spread over the cluster.

    Each actor holds up to ``_PREFETCH`` calls, so that it never idles for the round
    trip between a result and its next batch (persistent actors also cost far less per
    batch than a Ray task each). An actor that dies is restarted by Ray; the calls it
    held fail and the Batcher retries them. Work goes only to actors that have
    started, so asking for more workers than the cluster has free CPUs still runs, on
    fewer.

    An actor on this process's node writes its batches into shared-memory segments
    leased here, as worker processes do, and only their description travels through
    Ray: the arrays come back writable, without a copy into and out of the object
    store. Batches from other nodes come back as read-only arrays over the object store.
    """

    lazy = False
    #: A materialize callable goes to the object store once (see :class:`_Shipped`).
    sends_once = True

    def __init__(self, *, workers: int):
        self._ray = require("ray", "ray")
        self._shipped: dict[int, tuple[Materialize, _Shipped]] = {}
        actor_class = self._ray.remote(
            num_cpus=1,
            max_restarts=-1,
            # A call lost with its actor fails over to the Batcher's own retries, as a
            # lost worker process does (Ray's retries would also fire, noisily, for
            # the calls that close() kills).
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        )(_RayWorker)
        self._lock = threading.Lock()
        self._closed = False
        self._pending: deque[tuple[Future, Materialize, Any, Any]] = deque()
        self._refs: dict[Future, Any] = {}
        self._node = self._ray.get_runtime_context().get_node_id()
        self._segments = SegmentPool(keep=workers + 2)
        self._leased: dict[Future, str] = {}  # segment of each call to a local actor
        self._actors = [actor_class.remote() for _ in range(workers)]
        self._load = [0] * workers  # calls in flight per actor
        self._started: list[int] = []
        self._local: dict[int, int] = {}  # actors on this node: their process ids
        for i, actor in enumerate(self._actors):
            ready = actor.node.remote()
            ready.future().add_done_callback(functools.partial(self._ready, i))

    def _ready(self, index: int, source: Future) -> None:
        if source.cancelled() or source.exception() is not None:
            return  # killed at close, or never came up: it gets no work
        with self._lock:
            if self._closed:
                return
            self._started.append(index)
            node, pid = source.result()
            if node == self._node:
                self._local[index] = pid
        self._launch()

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        target: Future = Future()
        with self._lock:
            self._pending.append((target, materialize, batch, dtype))
        self._launch()
        return target

    def _launch(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending or not self._started:
                    return
                index = min(self._started, key=self._load.__getitem__)
                if self._load[index] >= _PREFETCH:
                    return
                target, materialize, batch, dtype = self._pending.popleft()
                if not target.set_running_or_notify_cancel():  # cancelled while waiting
                    continue
                segment = self._segments.lease() if index in self._local else None
                ref = self._actors[index].run.remote(self._ship(materialize), batch, dtype, segment)
                if segment is not None:
                    self._leased[target] = segment[0]
                self._load[index] += 1
                self._refs[target] = ref
            ref.future().add_done_callback(functools.partial(self._finished, target, index))

    def _ship(self, materialize: Materialize) -> _Shipped:
        entry = self._shipped.get(id(materialize))
        if entry is None:
            ref = self._ray.put(materialize)
            # The callable is held with its handle, so that its id is not reused.
            entry = self._shipped[id(materialize)] = (materialize, _Shipped(ref.hex(), [ref]))
        return entry[1]

    def _finished(self, target: Future, index: int, source: Future) -> None:
        with self._lock:
            self._refs.pop(target, None)
            self._load[index] -= 1
            segment = self._leased.pop(target, None)
            closed = self._closed
        try:
            result = None
            if closed:  # nobody takes it; close() unlinks its segment
                target.cancel() or target.set_exception(WorkerLostError("the pool was closed"))
                segment = None
            elif source.cancelled():
                target.set_exception(WorkerLostError("the Ray call was cancelled"))
            elif source.exception() is not None:
                target.set_exception(source.exception())
            else:
                result = source.result()
            if segment is not None and (result is None or result[0] != "shm"):
                self._segments.abandon(segment)
            if result is not None:
                try:
                    # Zero-copy either way: arrays over a segment, or read-only views
                    # of the object store that keep the object alive while held
                    # (copying a batch here would cost the manager as much CPU as a
                    # worker spends on it).
                    target.set_result(unpack_result(result, self._segments))
                except BaseException as exc:  # a TaskError: materialize itself failed
                    target.set_exception(exc)
        finally:
            self._launch()

    def cancel(self, future: Future) -> None:
        # A call still waiting here never runs; one sent to an actor runs to its end
        # (its result is dropped): Ray cannot interrupt a running actor call.
        future.cancel()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            calls = list(self._refs.values())
            # Actors that start from now on get no work, so no segment: not waited for.
            local = list(self._local.values())
        for target, *_ in pending:
            target.cancel()
        for actor in self._actors:
            # Kills a worker stuck in a batch; its calls fail, nobody waits for them.
            self._ray.kill(actor, no_restart=True)
        # Ray reports an actor dead before its process is gone and its CPU free: wait
        # for the processes on this node, so that a pool started next (or a trainer
        # task) finds the CPUs free, as it does after closing worker processes.
        deadline = time.monotonic() + timeout
        for pid in local:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._ray.wait(calls, num_returns=len(calls), timeout=max(deadline - time.monotonic(), 0))
        # Every segment name goes, leased or free; arrays the consumer holds stay valid.
        self._segments.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it exists
        return True
    return True


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
    in the actor; with the default ``backend="ray"`` its batches run on Ray actors
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
