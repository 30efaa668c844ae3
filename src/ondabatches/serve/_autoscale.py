"""How many workers: a policy that follows the consumer.

The Batcher measures, over each interval of a few tenths of a second, how much of it
the consumer spent waiting in ``take``, how often it found the buffer full of ready
batches, and how many CPUs of the machine sat idle; a `WorkerController` turns that
into a worker count. The controller is a plain object fed one `Measurement` at a
time, with no clock and no pool of its own, so that its decisions can be tested by
feeding it measurements.

- More workers when the consumer waited for more than ``add_above`` of an interval and
  at least half a CPU was idle (more workers cannot help when every core is busy).
- One worker fewer when the buffer stayed full (every ``take`` found all its batches
  ready) for ``remove_after`` intervals in a row: the workers are ahead of the consumer.
  A removal that the consumer then paid for (it waited, and the worker came back)
  makes the next removal at that count wait twice as long, so the count settles
  instead of flapping.

Changing the count never changes the batches: the Batcher keeps them in state order
whatever runs them (see ``_batcher``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from .._errors import ArgumentError, ArgumentTypeError

__all__ = ["AutoWorkers"]

#: The least idle CPU (in cores) that makes adding a worker worth it.
_IDLE_ENOUGH = 0.5
#: The most a removal's patience grows to (times ``remove_after``).
_MAX_PATIENCE = 16


@dataclass(frozen=True, slots=True)
class AutoWorkers:
    """The bounds and thresholds of ``Batcher(..., workers=AutoWorkers(...))``.

    ``workers="auto"`` is ``AutoWorkers()``: from 1 worker up to the usable CPUs of
    this machine (for ``backend="ray"``, the cluster's CPUs).

    Parameters
    ----------
    min_workers:
        The fewest workers, and how many the Batcher starts with.
    max_workers:
        The most workers; None: the usable CPUs (the cluster's, for Ray).
    interval:
        Seconds of measurement behind each decision.
    add_above:
        Add workers when the consumer waited for more than this share of an interval
        (and CPUs are idle).
    remove_after:
        Remove a worker when the buffer stayed full for this many intervals in a row.
    cpu_check:
        Add workers only while at least half a CPU of this machine is idle. Turn it off
        where the CPUs are shared with other work that more workers should compete
        with, or where the workers wait on remote storage rather than compute.

    Examples
    --------
    >>> AutoWorkers(min_workers=2, max_workers=8).bounds(cpus=16)
    (2, 8)
    >>> AutoWorkers().bounds(cpus=4)
    (1, 4)
    >>> AutoWorkers(min_workers=3, max_workers=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ondabatches._errors.ArgumentError: AutoWorkers needs min_workers <= max_workers, got ...
    """

    min_workers: int = 1
    max_workers: int | None = None
    interval: float = 0.5
    add_above: float = 0.1
    remove_after: int = 3
    cpu_check: bool = True

    def __post_init__(self) -> None:
        for name in ("min_workers", "max_workers", "remove_after"):
            value = getattr(self, name)
            if value is None and name == "max_workers":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ArgumentTypeError(
                    f"AutoWorkers' {name} must be an int, got {type(value).__name__} {value!r}"
                )
            if value < 1:
                raise ArgumentError(f"AutoWorkers' {name} must be at least 1, got {value}")
        if self.max_workers is not None and self.min_workers > self.max_workers:
            raise ArgumentError(
                f"AutoWorkers needs min_workers <= max_workers, got min_workers="
                f"{self.min_workers} and max_workers={self.max_workers}"
            )
        if not (isinstance(self.interval, (int, float)) and self.interval > 0):
            raise ArgumentError(
                f"AutoWorkers' interval must be a positive number of seconds, got {self.interval!r}"
            )
        if not (isinstance(self.add_above, (int, float)) and 0 <= self.add_above < 1):
            raise ArgumentError(
                f"AutoWorkers' add_above must be a share of time in [0, 1), got {self.add_above!r}"
            )

    def bounds(self, cpus: int) -> tuple[int, int]:
        """``(min_workers, max_workers)`` on a machine (or cluster) of ``cpus`` CPUs."""
        high = max(self.min_workers, cpus) if self.max_workers is None else self.max_workers
        return self.min_workers, high

    def controller(self, cpus: int) -> WorkerController:
        """A new controller for these settings on ``cpus`` CPUs."""
        low, high = self.bounds(cpus)
        return WorkerController(low, high, add_above=self.add_above, remove_after=self.remove_after)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What the Batcher saw over one interval.

    ``wait_fraction``: the share of the interval the consumer spent blocked in
    ``take``; ``full_fraction``: the share of its takes that found every batch of the
    buffer ready; ``idle_cpus``: idle cores of the machine on average (None: unknown).
    """

    seconds: float
    takes: int
    wait_fraction: float
    full_fraction: float
    idle_cpus: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerChange:
    """One change of the worker count, as ``Batcher.stats()["worker_changes"]`` lists it."""

    at_s: float  # seconds since the pool started
    workers_before: int
    workers: int
    wait_fraction: float | None  # over the interval that decided it (None: resize() was called)
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkerController:
    """Turns one `Measurement` after another into a worker count (see the module's notes).

    Deterministic: the same measurements give the same counts.

    Examples
    --------
    >>> c = WorkerController(1, 4, add_above=0.1, remove_after=2)
    >>> starved = Measurement(0.5, 10, wait_fraction=0.8, full_fraction=0.0, idle_cpus=3.0)
    >>> c.step(1, starved), c.step(2, starved)
    (2, 4)
    >>> ahead = Measurement(0.5, 10, wait_fraction=0.0, full_fraction=1.0, idle_cpus=0.0)
    >>> c.step(4, ahead), c.step(4, ahead)
    (4, 3)
    """

    def __init__(self, min_workers: int, max_workers: int, *, add_above: float, remove_after: int):
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.add_above = add_above
        self.remove_after = remove_after
        self._streak = 0  # intervals in a row with the buffer full
        self._patience: dict[int, int] = {}  # count removed from: factor on remove_after
        self._removed_from: int | None = None  # the last removal, until an addition

    def step(self, workers: int, m: Measurement) -> int:
        """The worker count to have after interval ``m``, run with ``workers``."""
        if workers < self.min_workers or workers > self.max_workers:
            return min(max(workers, self.min_workers), self.max_workers)
        idle = m.idle_cpus
        if m.wait_fraction > self.add_above and workers < self.max_workers:
            if idle is None or idle >= _IDLE_ENOUGH:
                self._streak = 0
                if self._removed_from == workers + 1:  # that removal cost the consumer
                    patience = self._patience.get(workers + 1, 1)
                    self._patience[workers + 1] = min(2 * patience, _MAX_PATIENCE)
                self._removed_from = None
                # Doubling, as far as the idle cores go (where they are known).
                more = workers if idle is None else max(1, min(workers, math.floor(idle)))
                return min(workers + more, self.max_workers)
        if m.full_fraction >= 1.0 and m.wait_fraction <= self.add_above:
            self._streak += 1
            needed = self.remove_after * self._patience.get(workers, 1)
            if self._streak >= needed and workers > self.min_workers:
                self._streak = 0
                self._removed_from = workers
                return workers - 1
        else:
            self._streak = 0
        return workers


class IdleCpus:
    """The average number of idle CPUs of this machine since the last `sample`.

    From ``psutil`` where it is installed, else ``/proc/stat`` (Linux), else the load
    average (a minute's average: slow to follow); None where none of those is there.
    """

    def __init__(self) -> None:
        self._read = _idle_seconds_reader()
        self._last = self._sample_now()

    def _sample_now(self) -> tuple[float, float] | None:
        if self._read is None:
            return None
        try:
            return time.monotonic(), self._read()
        except OSError:  # pragma: no cover - /proc went away
            return None

    def sample(self) -> float | None:
        """Idle cores on average since the previous call (or since construction)."""
        if self._read is None:
            return _idle_from_load()
        now = self._sample_now()
        previous, self._last = self._last, now
        if now is None or previous is None or now[0] <= previous[0]:
            return None
        return max(0.0, (now[1] - previous[1]) / (now[0] - previous[0]))


def _idle_seconds_reader():
    """A function returning the machine's idle CPU seconds so far, or None."""
    try:
        import psutil  # optional: not a dependency

        return lambda: psutil.cpu_times().idle
    except ImportError:
        pass
    if os.path.exists("/proc/stat"):
        ticks = os.sysconf("SC_CLK_TCK")
        try:  # only the CPUs this process may run on (a container's, a taskset's)
            mine = {f"cpu{i}".encode() for i in os.sched_getaffinity(0)}
        except AttributeError:  # pragma: no cover - not on Linux
            mine = None

        def read() -> float:
            idle = 0
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if not line.startswith(b"cpu"):
                        break
                    fields = line.split()
                    if fields[0] == b"cpu" or (mine is not None and fields[0] not in mine):
                        continue
                    # cpuN user nice system idle iowait ...: waiting for I/O is idle too.
                    idle += int(fields[4]) + int(fields[5])
            return idle / ticks

        return read
    return None


def _idle_from_load() -> float | None:
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on this platform
        return None
    return max(0.0, (os.cpu_count() or 1) - load)
