"""Running statistics of a data path: what reached the consumer, and who waited for whom.

One `DataPathMeter` per consumer (a Batcher, a dataset, a device feed) counts
batches and bytes, the time the consumer spent blocked waiting for the next batch, and,
where a pool's in-flight batches are known, how much of the workers' time had a batch
to work on. Recording costs a few ``time.perf_counter`` calls and additions per batch
(well under a microsecond), in the consumer's thread; the figures are computed only
when `DataPathMeter.snapshot` is asked for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from .._errors import ArgumentError

__all__ = ["DataPathMeter", "IntervalLogger", "format_stats", "nbytes"]


def nbytes(arrays: Any) -> int:
    """Bytes of the arrays (or tensors) of a batch: any nesting of tuples, lists and dicts.

    Examples
    --------
    >>> import numpy as np
    >>> nbytes(({"eeg": np.zeros((2, 4)), "mask": {"eeg": np.ones(2, bool)}}, np.zeros(3)))
    90
    """
    if type(arrays) is tuple and len(arrays) == 2:
        try:  # the usual (x, y) of numpy arrays, at a tenth of the general cost
            return arrays[0].nbytes + arrays[1].nbytes
        except AttributeError:
            pass
    if isinstance(arrays, Mapping):  # one array per modality, a nested mask dict...
        return sum(nbytes(a) for a in arrays.values())
    if isinstance(arrays, (tuple, list)):
        return sum(nbytes(a) for a in arrays)
    n = getattr(arrays, "nbytes", None)
    if n is None and hasattr(arrays, "element_size"):  # a torch tensor of an older torch
        n = arrays.element_size() * arrays.nelement()
    return int(n or 0)


class DataPathMeter:
    """Counts of one consumer's batches and waits, and (optionally) worker occupancy.

    Updated by one thread only (the consumer's), so it needs no lock. ``workers``
    enables the occupancy figure: the time batches spent in flight (from submission
    to completion, `in_flight`), divided by ``workers`` and the wall time, capped
    at 1: the average number of batches a worker had, by Little's law. Batches waiting
    ready in a buffer do not count, so a pool that is ahead of its consumer reads
    as idle and one the consumer waits for reads as busy.
    """

    __slots__ = (
        "workers", "started", "batches", "bytes", "wait_s", "busy_s", "retries", "repositions",
        "_worker_s", "_since",
    )  # fmt: skip

    def __init__(self, workers: int | None = None):
        self.workers = workers
        self.reset()

    def reset(self) -> None:
        """Start counting afresh from now."""
        self.started = time.perf_counter()
        self.batches = 0
        self.bytes = 0
        self.wait_s = 0.0
        self.busy_s = 0.0
        self.retries = 0
        self.repositions = 0
        self._worker_s = 0.0  # worker-seconds before the count last changed
        self._since = self.started

    def resized(self, workers: int) -> None:
        """The pool runs ``workers`` workers from now on (occupancy counts each count
        for the time it lasted)."""
        now = time.perf_counter()
        if self.workers is not None:
            self._worker_s += self.workers * (now - self._since)
        self._since = now
        self.workers = workers

    def took(self, arrays: Any, waited: float) -> None:
        """One batch reached the consumer after it waited ``waited`` seconds for it."""
        self.batches += 1
        self.bytes += nbytes(arrays)
        self.wait_s += waited

    def in_flight(self, seconds: float) -> None:
        """A batch was in flight (submitted, not finished) for ``seconds``."""
        self.busy_s += seconds

    def snapshot(self) -> dict[str, Any]:
        """The figures so far, as a JSON-able dict."""
        wall = max(time.perf_counter() - self.started, 1e-9)
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
            worker_s = self._worker_s + self.workers * (self.started + wall - self._since)
            out["worker_busy"] = min(self.busy_s / max(worker_s, 1e-9), 1.0)
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
    if "min_workers" in stats:  # workers="auto": the count it chose
        parts.append(f"{stats['workers']} workers (auto)")
    if stats.get("retries"):
        parts.append(f"{stats['retries']} retries")
    return ", ".join(parts)


class IntervalLogger:
    """Logs a meter's figures at INFO every ``interval`` seconds (None: never).

    A hot loop checks ``now >= logger.next_at`` (infinite when there is no interval)
    and calls `emit` only then; `maybe` does both.
    """

    __slots__ = ("logger", "interval", "what", "next_at")

    def __init__(self, logger: logging.Logger, interval: float | None, what: str):
        if interval is not None and not interval > 0:
            raise ArgumentError(
                f"log_interval must be a positive number of seconds, got {interval}"
            )
        self.logger = logger
        self.interval = interval
        self.what = what
        self.next_at = math.inf if interval is None else time.perf_counter() + interval

    def emit(self, now: float, stats: Any) -> None:
        """Log ``stats()`` now and schedule the next line."""
        if self.interval is not None:
            self.next_at = now + self.interval
            self.logger.info("%s: %s", self.what, format_stats(stats()))

    def maybe(self, now: float, stats: Any) -> None:
        """Log ``stats()`` if the interval has passed (``stats`` is called only then)."""
        if now >= self.next_at:
            self.emit(now, stats)
