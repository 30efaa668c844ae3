"""SequentialBatches: every window once, in order; stride; sharding with equal batch counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.batches import BatchState, SequentialBatches
from ondabatches.errors import BatchSpecError
from ondabatches.labels import iter_labeled_signals
from ondabatches.synthetic import EPOCH, labeled_table
from tests.dataset import dataset, labeled  # noqa: F401

MIN = 60 * 10**9


def _all(spec):
    state, batches = spec.initial_state(), []
    while (out := spec.iterate_batch(state)) is not None:
        batch, state = out
        batches.append(batch)
    assert spec.iterate_batch(state) is None
    return batches


def _expected_windows(table, duration, stride):
    out = []
    for row in iter_labeled_signals(table):
        t = row.label_span.start
        while t + duration <= row.label_span.stop:
            out.append((row.signal.file_path, t))
            t += stride
    return out


@pytest.mark.parametrize("stride", [None, EPOCH, 3 * EPOCH])
def test_every_window_once_in_order(labeled, stride):  # noqa: F811
    spec = SequentialBatches(labeled, batch_size=7, batch_duration=MIN, stride=stride)
    batches = _all(spec)
    got = [(it.file_path, it.window.start) for b in batches for it in b]
    assert got == _expected_windows(labeled, MIN, stride or MIN)
    assert len(batches) == len(spec) and all(len(b) == 7 for b in batches[:-1])
    rows = {r.signal.file_path: r for r in iter_labeled_signals(labeled)}
    for item in batches[0]:
        assert list(item.label_codes()) == list(rows[item.file_path].label_codes(item.window))
        assert not item.padding and item.channels is None


@settings(max_examples=30, deadline=None)
@given(world_size=st.integers(1, 5), batch_size=st.integers(1, 6), n_rows=st.integers(1, 4),
       minutes=st.integers(1, 5), drop_last=st.booleans())  # fmt: skip
def test_sharding_puts_each_window_on_exactly_one_rank(
    world_size, batch_size, n_rows, minutes, drop_last
):
    table = labeled_table(n_rows, duration=minutes * MIN)
    n_windows = n_rows * minutes * 2
    if drop_last and n_windows < world_size:
        with pytest.raises(BatchSpecError):
            SequentialBatches(table, batch_size=batch_size, batch_duration=EPOCH,
                              world_size=world_size, drop_last=drop_last)  # fmt: skip
        return
    per_rank = []
    for rank in range(world_size):
        spec = SequentialBatches(table, batch_size=batch_size, batch_duration=EPOCH,
                                 world_size=world_size, rank=rank, drop_last=drop_last)  # fmt: skip
        per_rank.append(_all(spec))
    assert len({len(b) for b in per_rank}) == 1  # equal batch counts
    assert len({tuple(len(x) for x in b) for b in per_rank}) == 1  # and equal batch sizes
    real = [
        (it.recording, it.window.start) for b in per_rank for x in b for it in x if not it.padding
    ]
    assert len(real) == len(set(real))
    every = set(_expected_windows(table, EPOCH, EPOCH))
    got = {(str(r), s) for r, s in real}
    expected = {(p.split("/")[0], s) for p, s in every}
    if drop_last:
        assert len(got) == n_windows // world_size * world_size and got <= expected
        assert not any(it.padding for b in per_rank for x in b for it in x)
    else:
        assert got == expected
        padding = sum(it.padding for b in per_rank for x in b for it in x)
        assert padding == -n_windows % world_size


def test_state_is_bound_but_rank_independent(labeled):  # noqa: F811
    a = SequentialBatches(labeled, batch_size=4, batch_duration=MIN, world_size=2, rank=0)
    b = SequentialBatches(labeled, batch_size=4, batch_duration=MIN, world_size=2, rank=1)
    _, state = a.iterate_batch(a.initial_state())
    assert b.iterate_batch(state) is not None
    c = SequentialBatches(labeled, batch_size=4, batch_duration=MIN, world_size=3)
    with pytest.raises(ValueError, match="world_size"):
        c.iterate_batch(state)
    assert a.iterate_batch(BatchState(0, len(a))) is None


@pytest.mark.parametrize(
    "kw",
    [dict(stride=10**9), dict(rank=2, world_size=2), dict(world_size=0), dict(channels=["nope"]),
     dict(batch_duration=45 * 10**9)],
)  # fmt: skip
def test_bad_parameters(labeled, kw):  # noqa: F811
    kw = {"batch_size": 2, "batch_duration": MIN, **kw}
    with pytest.raises(BatchSpecError):
        SequentialBatches(labeled, **kw)
