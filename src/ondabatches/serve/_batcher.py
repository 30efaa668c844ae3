"""The Batcher: materialize a batch scheme's batches on a worker pool, in order.

The manager (the Batcher itself, in the caller's process) walks the scheme's states
with ``iterate_batch`` (cheap, ordered) and submits each batch's materialization to a
pool (expensive, parallel), keeping up to ``buffer`` batches in flight or ready.
``take(state)`` hands them back strictly in state order, so the output never depends
on the backend, the number of workers or which worker finished first.

When the scheme can step through its states without drawing (``next_state``) and the
pool sends a callable to each worker only once (processes, Ray), the manager submits
states and the workers draw the batches themselves: the manager's cost per batch then
stays the same whatever the batch size.

With ``workers="auto"`` (or an `AutoWorkers`), the manager measures the consumer's waits
and the buffer between batches and resizes the pool (see ``_autoscale``); a resize
changes who computes the batches, never which batches come out or in which order.

The buffer of batches in flight (filling, retries, waiting) is in ``_slots``, the
changes of the worker count in ``_resizing``, and how a failed batch reaches the
trainer in ``_failures``; the Batcher combines them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

import numpy as np

from .. import _errors
from .._errors import ArgumentError, ArgumentTypeError, BatcherError
from ..batches._state import BatchScheme, as_batch_scheme
from ..materialize._materializer import Materializer, as_materializer
from ..transforms._base import Pipeline
from ..transforms._scheme import TransformedBatches
from ._autoscale import AutoWorkers, IdleCpus, WorkerChange, WorkerController
from ._pools import _PREFETCH, ExecutorPool, InlinePool, Pool, per_worker
from ._processes import ProcessPool
from ._resizing import _auto_workers, _first_worker_count, _Resizing, _Window
from ._slots import (
    _DONE_AT,
    DrawAndMaterialize,
    _Slot,
    _SlotPipeline,
)
from ._stats import DataPathMeter, IntervalLogger, nbytes
from ._threads import ThreadPool

__all__ = ["AutoWorkers", "BatchScheme", "Batcher"]

logger = logging.getLogger("ondabatches")


#: How many changes of the worker count stats() lists (the latest ones).
_MAX_CHANGES = 100


class Batcher(_Resizing, _SlotPipeline):
    """Serve materialized batches of a batch scheme, in order, from a worker pool.

    Parameters
    ----------
    batches:
        A batch scheme: any object with ``iterate_batch(state)`` (see
        [`BatchScheme`][ondabatches.batches.BatchScheme]).
    workers:
        How many workers a pool the Batcher creates gets; default: the usable CPUs
        of this machine. For ``"ray"``, how many worker actors (one CPU each) run
        batches across the cluster: pass the cluster's CPUs for batch work (e.g.
        ``int(ray.cluster_resources()["CPU"])``). Ignored for ``"inline"`` and for a
        passed executor. ``"auto"`` (or an
        [`AutoWorkers`][ondabatches.serve.AutoWorkers], which sets bounds and
        thresholds): start with one worker, add workers while the consumer waits for
        batches and CPUs are idle, remove them while the buffer stays full of ready
        batches (threads, processes and Ray; each change is logged at INFO and listed in
        [`stats`][ondabatches.serve.Batcher.stats]). The batches and their order are
        the same whatever the count; [`resize`][ondabatches.serve.Batcher.resize]
        changes it by hand.
    backend:
        ``"processes"`` (default: worker processes, arrays through shared memory),
        ``"threads"``, ``"inline"`` (no pool: the reference), ``"ray"`` (Ray actors,
        needs ``ondabatches[ray]``; batches made on another node arrive as read-only
        views of Ray's object store, copy them to write), or any
        `concurrent.futures.Executor`, which the Batcher uses but never shuts down.
    buffer:
        How many batches may be in flight or ready at once; default ``2 * workers``, or
        ``(worker_tasks + 1) * workers`` with the settings' ``worker_tasks`` above 1
        (following the count when it changes).
    retries:
        How many times a failed batch is tried again (a raised exception or a dead
        worker) before [`WorkerError`][ondabatches._errors.WorkerError] surfaces.
    backoff:
        Seconds before the first retry; each further retry waits twice as long.
    materialize:
        A picklable [`Materializer`][ondabatches.abc.Materializer] (``materializer(batch,
        dtype) -> (x, y)``); default
        [`BatchMaterializer()`][ondabatches.materialize.BatchMaterializer], which runs
        [`materialize_batch`][ondabatches.materialize.materialize_batch]. ``x`` (or
        ``y``) may also be a dict of arrays, one per modality (with a nested ``mask``
        dict, say), or any nesting of dicts, tuples and lists of arrays: it comes back
        with the same structure, its arrays through shared memory as a single array's
        are. One that declares ``allocates`` gets ``allocate(shape, dtype)``, to call
        once per array it makes, so that worker processes decode straight into shared
        memory. A plain function is still accepted (``DeprecationWarning``), called as
        ``fn(batch, dtype)``: wrap it in
        [`FunctionMaterializer`][ondabatches.materialize.FunctionMaterializer].
    dtype:
        The dtype passed to ``materialize``.
    log_interval:
        Seconds between INFO lines of [`stats`][ondabatches.serve.Batcher.stats] on the
        ``"ondabatches"`` logger (None, the default: none).
    transforms:
        A list of `ondabatches.transforms` (or a
        [`Pipeline`][ondabatches.transforms.Pipeline]) run in the workers on each batch:
        the scheme is wrapped in [`TransformedBatches`][ondabatches.transforms.TransformedBatches]
        (so states name the pipeline) and its parameters are checked against the first
        batch's signals here. Needs a ``materialize`` that declares ``runs_transforms``
        (the default does).

    Notes
    -----
    Logging goes to the ``"ondabatches"`` logger (silent unless the application
    configures logging): repositioning and retries at WARNING, start at INFO,
    [`stats`][ondabatches.serve.Batcher.stats] every ``log_interval`` seconds at INFO,
    each batch at DEBUG.

    Examples
    --------
    >>> from ondabatches import RandomBatches, label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, n_channels=1, batch_size=3, batch_duration=60 * 10**9)
    >>> state = batches.initial_state(seed=1)
    >>> with Batcher(batches, workers=2) as batcher:  # two worker processes
    ...     batcher.start(state)
    ...     (x, y), state = batcher.take(state)
    ...     batcher.status
    'running'
    >>> x.shape, y.shape, state.index
    ((3, 1, 7680), (3, 1, 2), 1)
    """

    def __init__(
        self,
        batches: BatchScheme,
        *,
        workers: int | str | AutoWorkers | None = None,
        backend: str | Executor = "processes",
        buffer: int | None = None,
        retries: int = 3,
        backoff: float = 0.1,
        materialize: Materializer | None = None,
        dtype: Any = np.float32,
        log_interval: float | None = None,
        transforms: Pipeline | list[Any] | None = None,
    ):
        batches = as_batch_scheme(batches, "Batcher")
        if not (isinstance(backend, Executor) or backend in _BACKENDS):
            raise ArgumentError(
                f"backend must be one of {sorted(_BACKENDS)} or a concurrent.futures.Executor, "
                f"got {backend!r}"
            )
        #: The settings of the automatic worker count (None: a fixed count).
        self.auto: AutoWorkers | None = _auto_workers(workers, backend)
        self._controller: WorkerController | None = None
        self.workers = _first_worker_count(workers, self.auto)
        self._buffer_follows = buffer is None  # 2 x workers, whatever their number
        self.buffer = per_worker() * self.workers if buffer is None else buffer
        if self.buffer < 1:
            raise ArgumentError(f"buffer must be at least 1, got {self.buffer}")
        if retries < 0 or backoff < 0:
            raise ArgumentError(f"retries and backoff must be >= 0, got {retries} and {backoff}")
        self.materialize = materialize = as_materializer(materialize, "Batcher")
        self.batches = batches = _transformed(batches, transforms, materialize)
        self.backend = backend
        self.retries = retries
        self.backoff = backoff
        self.dtype = dtype
        # Workers draw the batches when the scheme can step through its states
        # without drawing and the pool sends a callable to each worker only once.
        self._drawing = (
            DrawAndMaterialize(batches, self.materialize) if batches.steps_without_drawing else None
        )
        self._pool: Pool | None = None
        self._slots: deque[_Slot] = deque()
        self._settling = False  # the next take() is a new pool's first (see _settle)
        self._position: Any = None  # the state the next take() is expected to pass
        self._cursor: Any = None  # the state of the next batch to submit
        self._exhausted = False
        # Whether a batch in the buffer may have failed or waits for a retry: only then
        # does _fill look through the buffer (set by the futures' callbacks).
        self._attention = False
        self._status: str | BaseException = "stopped"
        self._meter = DataPathMeter(self.workers)
        self._log = IntervalLogger(logger, log_interval, "Batcher")
        self._changes: deque[WorkerChange] = deque(maxlen=_MAX_CHANGES)
        self._window = _Window()  # what the current interval of "auto" saw so far
        self._idle: IdleCpus | None = None
        self._last_wait_fraction: float | None = None  # over the last interval of "auto"
        # take/start/stop from several threads must not interleave.
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def status(self) -> str | BaseException:
        """``"stopped"`` (never started), ``"running"``, ``"done"`` (a finite scheme
        ended), ``"closed"`` (after [`stop`][ondabatches.serve.Batcher.stop]), or the
        exception that stopped it."""
        return self._status

    def start(self, state: Any) -> None:
        """Start serving from ``state``; on a running Batcher, restart from ``state``.

        Examples
        --------
        >>> from ondabatches import RandomBatches, label_signals
        >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
        >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
        ...                   eog_every=0)
        >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
        ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
        >>> batches = RandomBatches(labeled, n_channels=1, batch_size=3, batch_duration=60 * 10**9)
        >>> batcher = Batcher(batches, backend="threads", workers=2)
        >>> batcher.status
        'stopped'
        >>> batcher.start(batches.initial_state(seed=1))
        >>> batcher.status
        'running'
        >>> batcher.stop()
        >>> batcher.status
        'closed'
        """
        with self._lock:
            if isinstance(self._status, BaseException):
                self._close_pool()  # an error may have left the pool unusable
            if self._pool is None:
                if self.auto is not None and self._controller is None:
                    self._controller = self.auto.controller(self._cpus())
                self._pool = self._make_pool()
                self._settling = True
                self._meter.reset()
                self._changes.clear()
                if self.auto is not None:
                    self._idle = IdleCpus() if self.auto.cpu_check else None
                    self._next_window(settling=True)
                logger.info(
                    "Batcher started: %s backend, %s worker(s), buffer %d, at state %r",
                    self.backend if isinstance(self.backend, str) else type(self.backend).__name__,
                    self.workers
                    if self._controller is None
                    else (
                        f"{self.workers} (auto, {self._controller.min_workers} to "
                        f"{self._controller.max_workers})"
                    ),
                    self.buffer,
                    state,
                )
            self._reposition(state)
            if not self._pool.lazy:
                self._fill()

    def stop(self) -> None:
        """Stop the workers and free everything in flight; safe to call more than once.

        Worker processes are killed rather than waited for, so this returns promptly
        even when a batch is stuck. Threads cannot be killed: a thread pool's threads
        end when their current batch does.
        """
        with self._lock:
            self._close_pool()
            self._status = "closed"

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _make_pool(self) -> Pool:
        if isinstance(self.backend, Executor):
            return ExecutorPool(self.backend, owned=False)
        return _BACKENDS[self.backend](self)

    def _close_pool(self) -> None:
        self._discard_slots()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    # -- taking batches ----------------------------------------------------------

    def take(self, state: Any, *, timeout: float | None = None):
        """The batch of ``state`` as ``((x, y), next_state)``, or ``None`` at the end.

        Pass back the ``next_state`` from the previous call to get the next batch. Any
        other state repositions the service there (in-flight work is discarded, and a
        warning is logged) and returns exactly that state's batch.

        Raises
        ------
        WorkerError
            The batch failed on every attempt;
            [`status`][ondabatches.serve.Batcher.status] holds the same error.
        BatcherError
            The Batcher is not running.
        TimeoutError
            ``timeout`` seconds passed before the batch was ready; the Batcher stays usable.

        Examples
        --------
        >>> from ondabatches import RandomBatches, label_signals
        >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
        >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
        ...                   eog_every=0)
        >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
        ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
        >>> batches = RandomBatches(labeled, n_channels=1, batch_size=3, batch_duration=60 * 10**9)
        >>> state = batches.initial_state(seed=1)
        >>> with Batcher(batches, backend="threads", workers=2) as batcher:
        ...     batcher.start(state)
        ...     (x, y), next_state = batcher.take(state)
        >>> x.shape, next_state.index
        ((3, 1, 7680), 1)
        """
        with self._lock:
            if isinstance(self._status, BaseException):
                raise self._status
            if self._pool is None:
                raise BatcherError(
                    f"the Batcher is {self._status}; call start(state) before take(state)"
                )
            if state != self._position:
                logger.warning(
                    "Batcher repositioning: take() got state %r but the service was at %r; "
                    "discarding in-flight batches and restarting from the requested state",
                    state,
                    self._position,
                )
                self._meter.repositions += 1
                self._reposition(state)
            self._fill()
            if not self._slots:
                self._status = "done"
                return None
            slot = self._slots[0]
            if self._controller is not None:
                self._observe()
            began = time.perf_counter()
            deadline = None if timeout is None else time.monotonic() + timeout
            arrays = self._wait(slot, deadline)
            if self._settling:
                self._settle(deadline)
            now = time.perf_counter()
            # The meter's counts, inline: this runs once per batch in the manager.
            meter = self._meter
            meter.batches += 1
            meter.bytes += nbytes(arrays)
            meter.wait_s += now - began
            meter.busy_s += getattr(slot.future, _DONE_AT, now) - slot.submitted_at
            self._slots.popleft()
            self._position = slot.next_state
            if not self._pool.lazy:
                self._fill()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "batch for state %r taken after waiting %.2f ms (attempt %d)",
                    slot.state,
                    1e3 * (now - began),
                    slot.attempts,
                )
            if self._controller is not None and now >= self._window.started + self.auto.interval:
                self._decide(now)
            if now >= self._log.next_at:
                self._log.emit(now, self.stats)
            return arrays, slot.next_state

    def stats(self) -> dict[str, Any]:
        """Running figures of the data path since
        [`start`][ondabatches.serve.Batcher.start] built the pool.

        ``batches``, ``bytes``, ``wall_s`` (seconds since then), ``batches_per_s``,
        ``mb_per_s``; ``wait_s`` and ``wait_fraction``: time the consumer spent blocked
        in [`take`][ondabatches.serve.Batcher.take] waiting for a batch, and its share
        of ``wall_s`` (near 0 when the workers keep ahead, near 1 when training waits
        for data); ``worker_busy``: the average share of the workers that had a batch in
        flight, from submission to completion (near 1: add workers; near 0 with a high
        ``wait_fraction``: the manager or the transport is the bottleneck; measured in
        the manager, where a batch counts as finished when its result is received: exact
        for threads, an upper bound for worker processes, whose results are received
        when ``take`` waits); ``buffered`` (batches in flight or ready now),
        ``workers`` (now), ``retries``, ``repositions``; ``worker_changes``: the latest
        changes of the worker count, each a dict of ``at_s`` (seconds since start),
        ``workers_before``, ``workers``, ``wait_fraction`` (the consumer's, over the
        interval that decided it) and ``reason``. With ``workers="auto"`` also
        ``min_workers``, ``max_workers`` and ``interval_wait_fraction`` (the consumer's
        wait over the last interval measured).

        Examples
        --------
        >>> from ondabatches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> from ondabatches.materialize import FunctionMaterializer
        >>> constant = FunctionMaterializer(lambda b, d: ([0.0], [1]))
        >>> batcher = Batcher(batches, backend="inline", materialize=constant)
        >>> batcher.start(batches.initial_state())
        >>> _ = batcher.take(batches.initial_state())
        >>> stats = batcher.stats()
        >>> stats["batches"], stats["bytes"], 0 <= stats["wait_fraction"] <= 1
        (1, 16, True)
        """
        stats = self._meter.snapshot()
        stats["buffered"] = len(self._slots)
        stats["worker_changes"] = [change.as_dict() for change in self._changes]
        if self._controller is not None:
            stats["min_workers"] = self._controller.min_workers
            stats["max_workers"] = self._controller.max_workers
            stats["interval_wait_fraction"] = self._last_wait_fraction
        return stats

    def resize(self, workers: int) -> None:
        """Run ``workers`` workers from now on: started at once, or retired once they
        have finished the batches they hold. The batches and their order do not change.

        With ``workers="auto"`` the controller goes on from the new count. On the
        ``"inline"`` backend (no workers) only the count changes; a passed executor
        cannot be resized (`BatcherError`).

        Examples
        --------
        >>> from ondabatches.batches import SequentialBatches
        >>> from ondabatches.materialize import FunctionMaterializer
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = SequentialBatches(labeled_table(1, duration=300 * 10**9), batch_size=2,
        ...                             batch_duration=30 * 10**9)
        >>> state = batches.initial_state()
        >>> with Batcher(batches, backend="threads", workers=1,
        ...              materialize=FunctionMaterializer(lambda b, d: ([0.0], [1]))) as batcher:
        ...     batcher.start(state)
        ...     (x, _), state = batcher.take(state)
        ...     batcher.resize(3)
        ...     (x, _), state = batcher.take(state)
        ...     batcher.workers, batcher.stats()["worker_changes"][0]["reason"]
        (3, 'resize() was called')
        """
        if not isinstance(workers, int) or isinstance(workers, bool):
            raise ArgumentTypeError(
                f"resize() takes an int, got {type(workers).__name__} {workers!r}"
            )
        if workers < 1:
            raise ArgumentError(f"resize() needs at least 1 worker, got {workers}")
        with self._lock:
            self._resize(workers, None, "resize() was called")
            if self._controller is not None:
                self._next_window(settling=True)

    def iterate(self, state: Any) -> Iterator[tuple[tuple[Any, Any], Any]]:
        """Yield ``((x, y), next_state)`` from ``state`` on, until a finite scheme ends.

        Starts the Batcher if it is not running; does not stop it.

        Examples
        --------
        >>> from ondabatches import SequentialBatches, label_signals
        >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
        >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
        ...                   eog_every=0)
        >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
        ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
        >>> batches = SequentialBatches(labeled, batch_size=4, batch_duration=30 * 10**9)
        >>> with Batcher(batches, backend="threads", workers=2) as batcher:
        ...     for (x, y), state in batcher.iterate(batches.initial_state()):
        ...         print(x.shape, y.shape)
        (4, 6, 3840) (4, 1, 1)
        (2, 6, 3840) (2, 1, 1)
        """
        if self._pool is None or isinstance(self._status, BaseException):
            self.start(state)
        while (result := self.take(state)) is not None:
            yield result
            state = result[1]


def _transformed(batches: Any, transforms: Any, materialize: Materializer) -> Any:
    """The scheme, wrapped in `TransformedBatches` when there are ``transforms`` (which
    need a materializer that declares ``runs_transforms``: the pipeline runs inside it)."""
    pipeline = Pipeline.of(transforms)
    if pipeline is None:
        return batches
    if not materialize.runs_transforms:
        raise _errors.BatchSpecError(
            "transforms need a materializer that runs them (runs_transforms, as the "
            f"default BatchMaterializer); got {materialize!r}: apply them in it instead"
        )
    return TransformedBatches(batches, pipeline)


def _ray_pool(batcher: Batcher) -> Pool:
    from ._ray import RayPool

    per_worker = -(-batcher.buffer // batcher.workers)
    # Calls to actors on other nodes carry up to 4 batches each when the buffer has
    # room for two such calls per actor (a Ray call costs about a millisecond of CPU).
    return RayPool(
        workers=batcher.workers,
        chunk=max(1, min(4, per_worker // 2)),
        prefetch=max(_PREFETCH, per_worker),
    )


_BACKENDS: dict[str, Callable[[Batcher], Pool]] = {
    "inline": lambda batcher: InlinePool(),
    "threads": lambda batcher: ThreadPool(batcher.workers),
    # Every batch the buffer allows goes to a worker at once: nothing waits in the
    # manager for the consumer's next take().
    "processes": lambda batcher: ProcessPool(
        batcher.workers, prefetch=max(_PREFETCH, -(-batcher.buffer // batcher.workers))
    ),
    "ray": _ray_pool,
}
