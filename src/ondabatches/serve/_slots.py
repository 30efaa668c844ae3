"""The Batcher's buffer: the batches on their way, in state order.

`_SlotPipeline` is the part of the [`Batcher`][ondabatches.serve.Batcher] that walks the
scheme's states, submits each batch to the pool (or, when workers draw their batches
themselves, its state: `DrawAndMaterialize`), keeps up to ``buffer`` of them in flight,
retries failed ones with backoff, and waits for the one ``take`` hands back. The
Batcher sets the attributes it uses (``_slots``, ``_pool``, ``_cursor``, ...) in its
``__init__``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

from .._errors import BatcherError, BatchTimeoutError
from ..materialize._materializer import Materializer
from ._failures import _permanent, _summary, _traceback_of, _worker_error
from ._pools import Pool
from ._stats import DataPathMeter

__all__: list[str] = []

logger = logging.getLogger("ondabatches")

#: The longest wait between two attempts of one batch, whatever the backoff says.
_MAX_BACKOFF = 30.0

#: The most seconds a first take() waits for the other workers' first batches.
_SETTLE_SECONDS = 10.0

#: The attribute a finished future carries its completion time in (perf_counter).
_DONE_AT = "_ondabatches_done_at"


@dataclass(slots=True)
class _Slot:
    """One batch on its way: where it comes from, and its pending result.

    ``batch`` is None when a worker draws the batch itself from ``state``.
    """

    state: Any
    batch: Any
    next_state: Any
    future: Future
    attempts: int = 1
    retry_at: float | None = None
    submitted_at: float = 0.0


class DrawAndMaterialize(Materializer):
    """What a worker runs when it draws its batch itself: the scheme's batch at a state,
    materialized.

    Batch ``k`` is a pure function of its state, so a worker that draws it gets the
    batch the manager would have drawn; the manager then only walks the states
    (``next_state``), whatever the batch size.
    """

    allocates = True

    def __init__(self, batches: Any, materialize: Materializer):
        self.batches = batches
        self.materialize = materialize

    def __call__(self, state: Any, dtype: Any = None, **options: Any):
        allocate = options.get("allocate")
        step = self.batches.iterate_batch(state)
        if step is None:
            raise BatcherError(
                f"the batch scheme has no batch at state {state!r}, although its "
                f"next_state said it had"
            )
        if allocate is not None and self.materialize.allocates:
            return self.materialize(step[0], dtype, allocate=allocate)
        return self.materialize(step[0], dtype)


class _SlotPipeline:
    """Filling, retrying and waiting on the buffer of a Batcher (a mixin of it)."""

    batches: Any
    materialize: Materializer
    dtype: Any
    workers: int
    buffer: int
    retries: int
    backoff: float
    _drawing: DrawAndMaterialize | None
    _pool: Pool | None
    _slots: deque[_Slot]
    _settling: bool
    _position: Any
    _cursor: Any
    _exhausted: bool
    _attention: bool
    _status: str | BaseException
    _meter: DataPathMeter

    def _reposition(self, state: Any) -> None:
        self._discard_slots()
        self._position = state
        self._cursor = state
        self._exhausted = False
        self._status = "running"

    def _discard_slots(self) -> None:
        while self._slots:
            slot = self._slots.popleft()
            if self._pool is not None:
                self._pool.cancel(slot.future)

    def _draws_in_workers(self) -> bool:
        return self._drawing is not None and self._pool is not None and self._pool.sends_once

    def _submit(self, state: Any, batch: Any) -> Future:
        """Materialize ``batch``, or, when it is None, let a worker draw ``state``'s batch."""
        assert self._pool is not None
        if batch is None:
            future = self._pool.submit(self._drawing, state, self.dtype)
        else:
            future = self._pool.submit(self.materialize, batch, self.dtype)
        future.add_done_callback(self._on_done)
        return future

    def _on_done(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._attention = True
        # When the batch finished, for the workers' occupancy (read when it is taken);
        # a foreign future without attributes only loses that figure.
        try:
            setattr(future, _DONE_AT, time.perf_counter())
        except AttributeError:  # pragma: no cover - no such future among our pools
            pass

    def _batch_at(self, state: Any) -> Any:
        """The batch of ``state`` (for an error report when a worker drew it)."""
        try:
            step = self.batches.iterate_batch(state)
        except Exception:  # the report must not fail in turn
            return None
        return None if step is None else step[0]

    def _fill(self) -> None:
        """Retry failed batches whose backoff is over, then top the buffer up."""
        if self._attention:
            self._retry_due()
        window = 1 if self._pool.lazy else self.buffer
        remote = self._draws_in_workers()
        while not self._exhausted and len(self._slots) < window:
            if remote:  # no batch: the worker draws it
                next_state = self.batches.next_state(self._cursor)
                step = None if next_state is None else (None, next_state)
            else:
                step = self.batches.iterate_batch(self._cursor)
            if step is None:
                self._exhausted = True
                break
            batch, next_state = step
            submitted_at = time.perf_counter()
            future = self._submit(self._cursor, batch)
            self._slots.append(
                _Slot(self._cursor, batch, next_state, future, submitted_at=submitted_at)
            )
            self._cursor = next_state

    def _retry_due(self) -> None:
        # Cleared first: a batch failing meanwhile sets it again.
        self._attention = False
        now = time.monotonic()
        for slot in self._slots:
            if slot.retry_at is None and slot.future.done() and slot.future.exception():
                exc = slot.future.exception()
                if slot.attempts <= self.retries and not _permanent(exc):
                    self._schedule_retry(slot, exc, now)
            if slot.retry_at is not None and slot.retry_at <= now:
                self._resubmit(slot)
            if slot.retry_at is not None:
                self._attention = True

    def _schedule_retry(self, slot: _Slot, exc: BaseException, now: float) -> None:
        delay = min(self.backoff * 2 ** (slot.attempts - 1), _MAX_BACKOFF)
        slot.retry_at = now + delay
        self._meter.retries += 1
        logger.warning(
            "batch for state %r failed (attempt %d of %d), retrying in %.2f s: %s",
            slot.state,
            slot.attempts,
            self.retries + 1,
            delay,
            _summary(exc),
        )

    def _resubmit(self, slot: _Slot) -> None:
        slot.retry_at = None
        slot.attempts += 1
        slot.submitted_at = time.perf_counter()
        slot.future = self._submit(slot.state, slot.batch)

    def _settle(self, deadline: float | None) -> None:
        """The first take() of a new pool waits for every worker's first batch and lets
        the pool prepare what the steady state uses (shared memory), so that it pays for
        starting up rather than the batches after it, which then arrive at the steady
        pace. Failures are left to the take() of their batch."""
        self._settling = False
        for slot in list(self._slots)[1 : self.workers]:
            remaining = _SETTLE_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                slot.future.exception(min(remaining, _SETTLE_SECONDS))
            except (TimeoutError, CancelledError):
                break
        self._pool.settle()

    def _wait(self, slot: _Slot, deadline: float | None):
        while True:
            if slot.retry_at is not None:
                delay = slot.retry_at - time.monotonic()
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise BatchTimeoutError(f"the batch for state {slot.state!r} is not ready")
                time.sleep(max(delay, 0.0))
                self._resubmit(slot)
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return slot.future.result(remaining)
            except TimeoutError:
                raise BatchTimeoutError(
                    f"the batch for state {slot.state!r} was not ready within the timeout"
                ) from None
            except Exception as exc:
                if slot.attempts > self.retries or _permanent(exc):
                    error = _worker_error(exc)(
                        f"the batch for state {slot.state!r} failed after "
                        f"{slot.attempts} attempt(s)"
                        f"{' (the data is wrong: not retried)' if _permanent(exc) else ''}: "
                        f"{_summary(exc)}",
                        state=slot.state,
                        batch=slot.batch if slot.batch is not None else self._batch_at(slot.state),
                        worker_traceback=_traceback_of(exc),
                    )
                    self._status = error
                    self._discard_slots()
                    raise error from exc
                self._schedule_retry(slot, exc, time.monotonic())
