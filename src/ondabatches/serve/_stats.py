"""Running statistics of a data path: what reached the consumer, and who waited for whom.

One :class:`DataPathMeter` per consumer (a Batcher, a dataset, a device feed) counts
batches and bytes, the time the consumer spent blocked waiting for the next batch, and,
where a pool's in-flight batches are known, how much of the workers' time had a batch
to work on. Recording costs a couple of ``time.perf_counter`` calls per batch; the
figures are computed only when :meth:`DataPathMeter.snapshot` is asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["DataPathMeter", "IntervalLogger", "format_stats", "nbytes"]


def nbytes(arrays: Any) -> int:
    """Bytes of the arrays (or tensors) of a batch: a tuple, list or dict of them."""
    if isinstance(arrays, Mapping):
        arrays = arrays.values()
    elif not isinstance(arrays, (tuple, list)):
        arrays = (arrays,)
    total = 0
    for a in arrays:
        n = getattr(a, "nbytes", None)
        if n is None and hasattr(a, "element_size"):  # a torch tensor
            n = a.element_size() * a.nelement()
        total += int(n or 0)
    return total


class DataPathMeter:
    """Counts of one consumer's batches, its waits, and (optionally) worker occupancy.

    ``workers`` enables the occupancy figure: the time-weighted
    ``min(batches in flight, workers) / workers``, measured from the submitting side
    (a worker with a batch assigned counts as busy), so that a pool whose buffer is full
    of ready batches reads as idle and one the consumer waits for reads as busy.
    """

    __slots__ = (
        "workers", "started", "batches", "bytes", "wait_s", "retries", "repositions",
        "_lock", "_in_flight", "_busy_area", "_last_change", "_counted",
    )  # fmt: skip

    def __init__(self, workers: int | None = None):
        self.workers = workers
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start counting afresh from now."""
        with self._lock:
            self.started = time.perf_counter()
            self.batches = 0
            self.bytes = 0
            self.wait_s = 0.0
            self.retries = 0
            self.repositions = 0
            self._busy_area = 0.0
            self._last_change = self.started
            self._in_flight = getattr(self, "_in_flight", 0)
            self._counted: set[Any] = getattr(self, "_counted", set())

    def took(self, arrays: Any, waited: float) -> None:
        """One batch reached the consumer after it waited ``waited`` seconds for it."""
        self.batches += 1
        self.bytes += nbytes(arrays)
        self.wait_s += waited

    # -- worker occupancy: called by the submitting side and by completion callbacks --

    def _advance(self, now: float) -> None:
        busy = min(self._in_flight, self.workers or 1)
        self._busy_area += busy * (now - self._last_change)
        self._last_change = now

    def submitted(self, key: Any) -> None:
        with self._lock:
            self._advance(time.perf_counter())
            self._counted.add(key)
            self._in_flight += 1

    def finished(self, key: Any) -> None:
        """``key`` is no longer in flight (done, failed or discarded); idempotent."""
        with self._lock:
            if key in self._counted:
                self._advance(time.perf_counter())
                self._counted.discard(key)
                self._in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """The figures so far, as a JSON-able dict."""
        with self._lock:
            now = time.perf_counter()
            if self.workers is not None:
                self._advance(now)
            wall = max(now - self.started, 1e-9)
            out: dict[str, Any] = {
                "batches": self.batches,
                "bytes": self.bytes,
                "wall_s": wall,
                "batches_per_s": self.batches / wall,
                "mb_per_s": self.bytes / 1e6 / wall,
                "wait_s": self.wait_s,
                "wait_fraction": min(self.wait_s / wall, 1.0),
                "retries": self.retries,
                "repositions": self.repositions,
            }
            if self.workers is not None:
                out["workers"] = self.workers
                out["in_flight"] = self._in_flight
                out["worker_busy"] = min(self._busy_area / (wall * self.workers), 1.0)
            return out


def format_stats(stats: Mapping[str, Any]) -> str:
    """One line for a log or a progress bar."""
    parts = [
        f"{stats['batches_per_s']:.1f} batches/s",
        f"{stats['mb_per_s']:.0f} MB/s",
        f"waited {100 * stats['wait_fraction']:.1f}%",
    ]
    if "worker_busy" in stats:
        parts.append(f"workers busy {100 * stats['worker_busy']:.0f}%")
    if stats.get("retries"):
        parts.append(f"{stats['retries']} retries")
    return ", ".join(parts)


class IntervalLogger:
    """Logs a meter's figures at INFO every ``interval`` seconds (None: never)."""

    __slots__ = ("logger", "interval", "what", "_next")

    def __init__(self, logger: logging.Logger, interval: float | None, what: str):
        if interval is not None and not interval > 0:
            raise ValueError(f"log_interval must be a positive number of seconds, got {interval}")
        self.logger = logger
        self.interval = interval
        self.what = what
        self._next = time.perf_counter() + (interval or 0.0)

    def maybe(self, now: float, stats: Any) -> None:
        """Log ``stats()`` if the interval has passed (``stats`` is called only then)."""
        if self.interval is not None and now >= self._next:
            self._next = now + self.interval
            self.logger.info("%s: %s", self.what, format_stats(stats()))
