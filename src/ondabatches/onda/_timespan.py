"""Time spans and the time <-> sample index arithmetic of TimeSpans.jl / AlignedSpans.jl.

All times are integer nanoseconds and spans are half-open ``[start, stop)``. Index
arithmetic is exact: a float sample rate is taken as the exact rational number it
stores, so ``143.5 Hz`` or ``1/30 Hz`` never suffer from float rounding at a boundary.
Indices here are 0-based (Julia's are 1-based; the arithmetic is otherwise the same).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from .._errors import ArgumentError, ArgumentTypeError, SpanError

__all__ = [
    "TimeLike",
    "TimeSpan",
    "index_from_time",
    "n_samples",
    "nanoseconds",
    "sample_range",
    "time_from_index",
    "window_sample_range",
]

NS_PER_S = 1_000_000_000

TimeLike = int | np.integer | np.timedelta64 | _dt.timedelta


def nanoseconds(value: Any) -> int:
    """Convert a time value to integer nanoseconds.

    Accepts ``int`` (nanoseconds), ``numpy.integer``, ``numpy.timedelta64`` and
    ``datetime.timedelta``. Floats are refused: a bare float has no unit, and guessing
    seconds is how off-by-10^9 bugs are born.

    >>> nanoseconds(_dt.timedelta(seconds=30))
    30000000000
    >>> nanoseconds(np.timedelta64(5, "ms"))
    5000000
    """
    if isinstance(value, bool):
        raise ArgumentTypeError(
            f"a time must be nanoseconds, a timedelta or a timedelta64, not {value!r}"
        )
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.timedelta64):
        return int(value)
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            raise ArgumentError("a time cannot be NaT")
        if np.datetime_data(value.dtype)[0] == "generic":
            raise ArgumentTypeError(f"numpy.timedelta64 without a unit is ambiguous: {value!r}")
        return int(value.astype("timedelta64[ns]").astype(np.int64))
    if hasattr(value, "asm8"):  # pandas.Timedelta: a timedelta with nanoseconds beyond it
        return nanoseconds(value.asm8)
    if isinstance(value, _dt.timedelta):
        # Exact: timedelta is days, seconds and microseconds, all integers.
        return ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 1_000
    if isinstance(value, (float, np.floating)):
        raise ArgumentTypeError(
            f"a bare float ({value!r}) is not taken as a time: give integer nanoseconds, "
            "datetime.timedelta(seconds=...) or numpy.timedelta64(..., 's')"
        )
    raise ArgumentTypeError(f"cannot convert {type(value).__name__} {value!r} to nanoseconds")


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """A half-open span of time ``[start, stop)`` in integer nanoseconds.

    Parameters
    ----------
    start, stop:
        Integer nanoseconds, ``datetime.timedelta`` or ``numpy.timedelta64``.

    Examples
    --------
    >>> from datetime import timedelta
    >>> span = TimeSpan(timedelta(seconds=30), timedelta(seconds=90))
    >>> span.duration
    60000000000
    >>> span.contains(TimeSpan(30_000_000_000, 60_000_000_000))
    True
    """

    start: int
    stop: int

    def __init__(self, start: TimeLike, stop: TimeLike):
        # Plain ints (the batch samplers make one span per item) skip the conversion.
        if type(start) is int and type(stop) is int:
            start_ns, stop_ns = start, stop
        else:
            start_ns, stop_ns = nanoseconds(start), nanoseconds(stop)
        if stop_ns < start_ns:
            raise SpanError(f"TimeSpan stop ({stop_ns} ns) is before its start ({start_ns} ns)")
        object.__setattr__(self, "start", start_ns)
        object.__setattr__(self, "stop", stop_ns)

    @classmethod
    def from_value(cls, value: Any) -> TimeSpan:
        """A span from a ``TimeSpan``, a ``(start, stop)`` pair or a ``{"start", "stop"}`` dict."""
        if isinstance(value, TimeSpan):
            return value
        if isinstance(value, dict):
            return cls(value["start"], value["stop"])
        if hasattr(value, "start") and hasattr(value, "stop") and not isinstance(value, range):
            return cls(value.start, value.stop)
        start, stop = value
        return cls(start, stop)

    @property
    def duration(self) -> int:
        """``stop - start`` in nanoseconds."""
        return self.stop - self.start

    def translate(self, by: TimeLike) -> TimeSpan:
        """This span shifted by ``by`` (which may be negative)."""
        delta = nanoseconds(by)
        return TimeSpan(self.start + delta, self.stop + delta)

    def contains(self, other: TimeSpan | TimeLike) -> bool:
        """Whether ``other`` (a span, or a time point) lies inside this span."""
        if isinstance(other, TimeSpan):
            return self.start <= other.start and other.stop <= self.stop
        t = nanoseconds(other)
        return self.start <= t < self.stop

    def overlaps(self, other: TimeSpan) -> bool:
        """Whether the two spans share any time (touching ends do not overlap)."""
        return self.start < other.stop and other.start < self.stop

    def to_dict(self) -> dict[str, int]:
        return {"start": self.start, "stop": self.stop}

    def __reduce__(self):
        # Batch items carry spans to workers: a plain tuple pickles far faster than
        # the dataclass default.
        return (TimeSpan, (self.start, self.stop))

    def __repr__(self) -> str:
        return f"TimeSpan({_fmt(self.start)}, {_fmt(self.stop)})"


_NEW = object.__new__
_SET_START, _SET_STOP = TimeSpan.start.__set__, TimeSpan.stop.__set__  # type: ignore[attr-defined]


def span_of_ints(start: int, stop: int) -> TimeSpan:
    """``TimeSpan(start, stop)`` of plain ints known to be in order, without the
    conversion and the check (the layouts make one for every item of every batch)."""
    span = _NEW(TimeSpan)
    _SET_START(span, start)
    _SET_STOP(span, stop)
    return span


def _fmt(ns: int) -> str:
    if ns % NS_PER_S == 0:
        return f"{ns // NS_PER_S} s"
    return f"{ns} ns"


@lru_cache(maxsize=256)
def _rate(sample_rate: float) -> Fraction:
    if not (math.isfinite(float(sample_rate)) and sample_rate > 0):
        raise ArgumentError(f"sample rate must be positive and finite, got {sample_rate!r}")
    # The float stored for 1/30 Hz is not exactly 1/30; taking its exact binary value
    # would make a 30 s epoch hold 0 samples. Rates are meant as simple rationals, so
    # recover the intended one (exact for every integer and for 143.5, 1/30, ...).
    rate = Fraction(sample_rate).limit_denominator(10**9)
    return rate if float(rate) == float(sample_rate) else Fraction(sample_rate)


def index_from_time(time: TimeLike, sample_rate: float) -> int:
    """0-based index of the most recent sample at or before ``time``: ``floor(t * rate)``.

    >>> index_from_time(999_000_000, 100.0), index_from_time(1_000_000_000, 100.0)
    (99, 100)
    """
    t = nanoseconds(time)
    if t < 0:
        raise ArgumentError(f"time must be >= 0 ns, got {t} ns")
    rate = _rate(sample_rate)
    return (t * rate.numerator) // (NS_PER_S * rate.denominator)


def time_from_index(index: int, sample_rate: float) -> int:
    """Time in nanoseconds of the 0-based sample ``index``: ``ceil(i * 1e9 / rate)``.

    >>> time_from_index(1, 3.0)
    333333334
    """
    if index < 0:
        raise ArgumentError(f"sample index must be >= 0, got {index}")
    rate = _rate(sample_rate)
    return -((-index * NS_PER_S * rate.denominator) // rate.numerator)


def n_samples(duration: TimeLike, sample_rate: float) -> int:
    """The number of samples in any window of ``duration``: ``floor(duration * rate)``."""
    return index_from_time(duration, sample_rate)


def sample_range(span: TimeSpan, sample_rate: float) -> range:
    """0-based sample indices of ``span``: ``floor(start*rate)`` .. ``floor((stop-1ns)*rate)``.

    >>> sample_range(TimeSpan(3 * NS_PER_S, 6 * NS_PER_S), 100.0)
    range(300, 600)
    """
    first = index_from_time(span.start, sample_rate)
    if span.stop <= span.start:
        return range(first, first)
    last = index_from_time(span.stop - 1, sample_rate)
    return range(first, last + 1)


def window_sample_range(span: TimeSpan, sample_rate: float) -> range:
    """Indices of a window holding exactly ``floor(duration * rate)`` samples.

    The start is rounded down (AlignedSpans' constant-samples mode), so that every
    window of the same duration has the same number of samples wherever it starts.

    >>> window_sample_range(TimeSpan(1_005_000_000, 2_005_000_000), 100.0)
    range(100, 200)
    """
    first = index_from_time(span.start, sample_rate)
    return range(first, first + n_samples(span.duration, sample_rate))
