"""TimeSpan and the time <-> sample index arithmetic (TimeSpans.jl semantics, 0-based)."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ondabatches.onda import (
    TimeSpan,
    index_from_time,
    n_samples,
    nanoseconds,
    sample_range,
    time_from_index,
    window_sample_range,
)

S = 1_000_000_000
MS = 1_000_000

# Rates that are not integers, or are below 1 Hz, are where float arithmetic slips.
RATES = [1.0, 100.0, 128.0, 143.5, 256.0, 1 / 30, 0.1, 3.0, 200.0 / 3.0, 1000.0]
rates = st.sampled_from(RATES)
times = st.integers(min_value=0, max_value=10**15)  # up to ~11.5 days in ns


def exact_rate(rate: float) -> Fraction:
    # The rate meant by a float: the simplest fraction that rounds to it (1/30, not 0.0333...3287).
    return Fraction(rate).limit_denominator(10**9)


def exact_floor(t_ns: int, rate: float) -> int:
    return math.floor(Fraction(t_ns, S) * exact_rate(rate))


# ----------------------------------------------------------------------------- TimeSpan


@pytest.mark.parametrize(
    "value",
    [
        dt.timedelta(seconds=30),
        np.timedelta64(30, "s"),
        np.timedelta64(30_000, "ms"),
        np.timedelta64(30 * S, "ns"),
        30 * S,
        np.int64(30 * S),
    ],
)
def test_time_values_convert_to_nanoseconds(value):
    assert nanoseconds(value) == 30 * S
    assert TimeSpan(0, value) == TimeSpan(0, 30 * S)


def test_timedelta_and_timedelta64_keep_sub_second_precision():
    assert nanoseconds(dt.timedelta(days=1, microseconds=3)) == 86_400 * S + 3_000
    assert nanoseconds(np.timedelta64(7, "us")) == 7_000
    assert nanoseconds(np.timedelta64(2, "D")) == 2 * 86_400 * S
    assert nanoseconds(np.timedelta64(-5, "ms")) == -5 * MS


@pytest.mark.parametrize("value", [1.5, 30.0, np.float64(2.0), True])
def test_floats_and_bools_are_not_times(value):
    with pytest.raises(TypeError):
        nanoseconds(value)
    with pytest.raises(TypeError):
        TimeSpan(0, value)


def test_ambiguous_or_missing_timedelta64_is_refused():
    with pytest.raises(TypeError, match="without a unit"):
        nanoseconds(np.timedelta64(5))
    with pytest.raises(ValueError, match="NaT"):
        nanoseconds(np.timedelta64("NaT", "s"))


def test_stop_before_start_is_refused():
    with pytest.raises(ValueError, match="before its start"):
        TimeSpan(10, 5)
    assert TimeSpan(5, 5).duration == 0


def test_from_value_accepts_spans_dicts_and_pairs():
    span = TimeSpan(S, 2 * S)
    assert TimeSpan.from_value(span) is span
    assert TimeSpan.from_value({"start": S, "stop": 2 * S}) == span
    assert TimeSpan.from_value((dt.timedelta(seconds=1), np.timedelta64(2, "s"))) == span
    assert TimeSpan.from_value(span).to_dict() == {"start": S, "stop": 2 * S}


def test_translate():
    span = TimeSpan(10 * S, 20 * S)
    assert span.translate(dt.timedelta(seconds=5)) == TimeSpan(15 * S, 25 * S)
    assert span.translate(-10 * S) == TimeSpan(0, 10 * S)
    assert span.translate(np.timedelta64(-1, "s")).duration == span.duration


def test_contains_is_half_open():
    span = TimeSpan(10 * S, 20 * S)
    assert span.contains(TimeSpan(10 * S, 20 * S))
    assert span.contains(TimeSpan(12 * S, 12 * S))
    assert not span.contains(TimeSpan(9 * S, 12 * S))
    assert not span.contains(TimeSpan(12 * S, 20 * S + 1))
    assert span.contains(10 * S) and span.contains(20 * S - 1)
    assert not span.contains(20 * S)
    assert not span.contains(dt.timedelta(seconds=9))


def test_overlaps_excludes_touching_ends():
    span = TimeSpan(10 * S, 20 * S)
    assert span.overlaps(TimeSpan(19 * S, 30 * S))
    assert span.overlaps(TimeSpan(0, 11 * S))
    assert span.overlaps(TimeSpan(12 * S, 13 * S))
    assert not span.overlaps(TimeSpan(20 * S, 30 * S))
    assert not span.overlaps(TimeSpan(0, 10 * S))


def test_repr_reads_in_seconds_when_whole():
    assert repr(TimeSpan(20 * S, 260 * S)) == "TimeSpan(20 s, 260 s)"
    assert repr(TimeSpan(1, 2 * S)) == "TimeSpan(1 ns, 2 s)"


# ----------------------------------------------------------------------------- index arithmetic


def test_index_from_time_examples_from_timespans_jl():
    # TimeSpans.jl: index_from_time(100, Nanosecond(0)) == 1, (100, Millisecond(999)) == 100,
    # (100, Millisecond(1000)) == 101; 0-based here.
    assert index_from_time(0, 100.0) == 0
    assert index_from_time(999 * MS, 100.0) == 99
    assert index_from_time(1000 * MS, 100.0) == 100


def test_time_from_index_examples_from_timespans_jl():
    # TimeSpans.jl: time_from_index(1, 1) == 0 ns, (1, 2) == 1 s, (100, 100) == 990 ms,
    # (100, 101) == 1 s; 0-based here.
    assert time_from_index(0, 1.0) == 0
    assert time_from_index(1, 1.0) == S
    assert time_from_index(99, 100.0) == 990 * MS
    assert time_from_index(100, 100.0) == S
    # ceil: the first nanosecond at or after the exact sample time.
    assert time_from_index(1, 3.0) == 333_333_334


def test_sample_range_examples_from_timespans_jl():
    # TimeSpans.jl: index_from_time(100, TimeSpan(Second(3), Second(6))) == 301:600
    assert sample_range(TimeSpan(3 * S, 6 * S), 100.0) == range(300, 600)
    # The sample at or before the start is included; the stop is exclusive.
    assert sample_range(TimeSpan(3 * S + 5 * MS, 6 * S + 1), 100.0) == range(300, 601)
    assert sample_range(TimeSpan(3 * S, 3 * S), 100.0) == range(300, 300)


def test_window_may_hold_one_sample_less_than_the_samples_it_touches():
    # At 3 Hz sample 1 is at 333333334 ns and sample 2 at 666666667 ns: the span between
    # them lasts 333333333 ns, less than one period, so a window of it holds no sample.
    span = TimeSpan(time_from_index(1, 3.0), time_from_index(2, 3.0))
    assert sample_range(span, 3.0) == range(1, 2)
    assert window_sample_range(span, 3.0) == range(1, 1)


def test_index_arithmetic_at_non_integer_rates():
    # 143.5 Hz: the ecg fixture, span 8 s..548 s holds 77490 samples.
    assert n_samples(540 * S, 143.5) == 77490
    assert index_from_time(2 * S, 143.5) == 287
    assert time_from_index(287, 143.5) == 2 * S
    # 1/30 Hz: one label per 30 s epoch.
    assert index_from_time(30 * S - 1, 1 / 30) == 0
    assert index_from_time(30 * S, 1 / 30) == 1
    assert time_from_index(4, 1 / 30) == 120 * S
    assert window_sample_range(TimeSpan(60 * S, 150 * S), 1 / 30) == range(2, 5)


def test_negative_times_and_indices_are_refused():
    with pytest.raises(ValueError):
        index_from_time(-1, 100.0)
    with pytest.raises(ValueError):
        time_from_index(-1, 100.0)
    with pytest.raises(ValueError):
        index_from_time(0, 0.0)


@settings(max_examples=200, deadline=None)
@given(t=times, rate=rates)
@example(t=30 * S, rate=1 / 30)
@example(t=10 * S, rate=0.1)
@example(t=2 * S, rate=143.5)
def test_index_from_time_is_exact_floor(t, rate):
    assert index_from_time(t, rate) == exact_floor(t, rate)


@settings(max_examples=200, deadline=None)
@given(i=st.integers(min_value=0, max_value=10**9), rate=rates)
def test_time_from_index_is_the_first_time_of_its_index(i, rate):
    t = time_from_index(i, rate)
    assert index_from_time(t, rate) == i
    assert t == 0 or index_from_time(t - 1, rate) == i - 1


@settings(max_examples=200, deadline=None)
@given(start=times, duration=st.integers(min_value=0, max_value=10**13), rate=rates)
def test_window_always_has_floor_duration_times_rate_samples(start, duration, rate):
    window = window_sample_range(TimeSpan(start, start + duration), rate)
    assert len(window) == exact_floor(duration, rate) == n_samples(duration, rate)
    assert window.start == index_from_time(start, rate)


@settings(max_examples=200, deadline=None)
@given(start=times, duration=st.integers(min_value=1, max_value=10**13), rate=rates)
def test_sample_range_covers_the_samples_inside_the_span(start, duration, rate):
    span = TimeSpan(start, start + duration)
    rows = sample_range(span, rate)
    assert rows.start == index_from_time(start, rate)
    assert rows.stop - 1 == index_from_time(span.stop - 1, rate)
    # Every sample after the first one lies inside the span.
    for i in (rows.start + 1, rows.stop - 1):
        if rows.start < i < rows.stop:
            assert span.contains(time_from_index(i, rate))
    # ... and the sample after the last one does not.
    assert time_from_index(rows.stop, rate) >= span.stop


@settings(max_examples=100, deadline=None)
@given(
    first=st.integers(0, 10**7),
    count=st.integers(0, 10**5),
    # Rates whose sample period is a whole number of nanoseconds: elsewhere the span
    # between two sample times, rounded to ns, may hold one sample less.
    rate=st.sampled_from([1.0, 100.0, 128.0, 256.0, 1000.0, 0.1, 1 / 30]),
)
def test_window_equals_sample_range_on_sample_aligned_spans(first, count, rate):
    span = TimeSpan(time_from_index(first, rate), time_from_index(first + count, rate))
    assert (
        window_sample_range(span, rate) == sample_range(span, rate) == range(first, first + count)
    )
