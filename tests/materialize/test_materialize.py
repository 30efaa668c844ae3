"""materialize_batch_item / materialize_batch and channel selectors."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from ondabatches.batches import BatchItem, BatchState, RandomBatches, SequentialBatches
from ondabatches.errors import ArgumentError, BatchShapeError, BatchSpecError
from ondabatches.materialize import (
    Bipolar,
    ChannelSelector,
    EvenOddCompartments,
    ZeroFillMontage,
    materialize_batch,
    materialize_batch_item,
    register_selector,
)
from ondabatches.onda import load, window_sample_range
from tests.dataset import any_labeled, dataset, eeg_rows_at, labeled, lazy_labeled  # noqa: F401

MIN = 60 * 10**9


def _manual(item: BatchItem, dtype=np.float64) -> np.ndarray:
    """Load the whole file, decode, then slice the window: the plain path."""
    whole = load(item.signal(), dtype=dtype).data
    rows = window_sample_range(
        item.window.translate(-item.signal_span.start), item.info.sample_rate
    )
    index = [item.info.channels.index(c) for c in item.channels]
    return whole[index, rows.start : rows.stop]


def test_the_reads_in_flight_are_a_setting(labeled, monkeypatch):  # noqa: F811
    from ondabatches.materialize import _materialize
    from ondabatches.onda import use_settings

    spec = RandomBatches(eeg_rows_at(labeled, 128.0), batch_size=12, batch_duration=MIN)
    batch = spec.iterate_batch(BatchState(5))[0]
    plain = materialize_batch(batch)
    pools = []

    class Recorded(_materialize.ThreadPoolExecutor):
        def __init__(self, max_workers, **kw):
            pools.append(max_workers)
            super().__init__(max_workers, **kw)

    # Local files read as remote ones are: all the batch's reads at once, in a pool.
    monkeypatch.setattr(_materialize, "_is_remote", lambda item: True)
    monkeypatch.setattr(_materialize, "ThreadPoolExecutor", Recorded)
    for limit in (3, None):
        with use_settings(**({} if limit is None else {"max_concurrent_reads": limit})):
            x, y = materialize_batch(batch)
        np.testing.assert_array_equal(x, plain[0])
        np.testing.assert_array_equal(y, plain[1])
    assert pools == [3, 24]  # the default, 32, is more than the 2 x 12 reads


def test_item_values_equal_a_manual_load_and_slice(any_labeled):  # noqa: F811
    spec = RandomBatches(any_labeled, n_channels=2, batch_size=12, batch_duration=MIN)
    for item in spec.iterate_batch(BatchState(11))[0]:
        x, y = materialize_batch_item(item, dtype=np.float64)
        np.testing.assert_array_equal(x, _manual(item))
        assert x.shape == (2, int(60 * item.info.sample_rate)) and x.dtype == np.float64
        assert y.shape == (1, 2) and y.dtype == np.uint8
        np.testing.assert_array_equal(y[0], item.label_codes())
        x32, _ = materialize_batch_item(item)
        assert x32.dtype == np.float32
        np.testing.assert_allclose(x32, x, rtol=1e-6)


def test_batch_equals_stacked_items(any_labeled):  # noqa: F811
    table = eeg_rows_at(any_labeled, 128.0)
    spec = RandomBatches(table, n_channels=1, batch_size=3, batch_duration=MIN)
    batch, _ = spec.iterate_batch(BatchState(1))
    x, y = materialize_batch(batch)
    assert x.shape == (3, 1, 7680) and y.shape == (3, 1, 2)
    items = [materialize_batch_item(it) for it in batch]
    np.testing.assert_array_equal(x, np.stack([a for a, _ in items]))
    np.testing.assert_array_equal(y, np.stack([b for _, b in items]))


def test_lazy_and_eager_materialize_identically(labeled, lazy_labeled):  # noqa: F811
    a = RandomBatches(eeg_rows_at(labeled, 128.0), batch_size=4, batch_duration=MIN)
    b = RandomBatches(eeg_rows_at(lazy_labeled, 128.0), batch_size=4, batch_duration=MIN)
    xa, ya = materialize_batch(a.iterate_batch(BatchState(5))[0])
    xb, yb = materialize_batch(b.iterate_batch(BatchState(5))[0])
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)


def test_mismatched_shapes_list_every_item(labeled):  # noqa: F811
    spec = SequentialBatches(labeled, batch_size=200, batch_duration=MIN)
    batch, _ = spec.iterate_batch(spec.initial_state())
    with pytest.raises(BatchShapeError, match="item 0: x") as info:
        materialize_batch(batch)
    assert isinstance(info.value, ValueError)
    assert str(info.value).count("item ") == len(batch)
    with pytest.raises(BatchShapeError, match="empty"):
        materialize_batch([])


def _one_item(table, channels):
    spec = SequentialBatches(
        eeg_rows_at(table, 128.0), batch_size=1, batch_duration=MIN, channels=channels
    )
    return spec.iterate_batch(spec.initial_state())[0][0]


def test_zero_fill_montage(labeled):  # noqa: F811
    item = _one_item(labeled, ZeroFillMontage(("c4", "fp1", "c3")))
    x, _ = materialize_batch_item(item, dtype=np.float64)
    plain = _manual(replace(item, channels=("c4", "c3")))
    np.testing.assert_array_equal(x, [plain[0], np.zeros(7680), plain[1]])


def test_even_odd_compartments_make_a_3d_item(labeled):  # noqa: F811
    item = _one_item(labeled, EvenOddCompartments())
    x, _ = materialize_batch_item(item, dtype=np.float64)
    plain = _manual(replace(item, channels=item.info.channels))
    assert x.shape == (2, 3, 7680)
    np.testing.assert_array_equal(x[0], plain[0::2])
    np.testing.assert_array_equal(x[1], plain[1::2])
    xb, _ = materialize_batch([item, item])
    assert xb.shape == (2, 2, 3, 7680)


def test_bipolar_derivations(labeled):  # noqa: F811
    item = _one_item(labeled, Bipolar(("c3-m2", "c4-m1", "o1")))
    x, _ = materialize_batch_item(item, dtype=np.float64)
    p = _manual(replace(item, channels=("c3", "m2", "c4", "m1", "o1")))
    np.testing.assert_allclose(x, [p[0] - p[1], p[2] - p[3], p[4]])
    with pytest.raises(BatchSpecError, match="fp1-m2"):
        materialize_batch_item(replace(item, channels=Bipolar(("fp1-m2",))))


@register_selector("test-mean-reference")
@dataclass(frozen=True)
class MeanReference:
    """A user-defined selector: every channel minus the mean of all channels."""

    def select(self, samples):
        return samples.data - samples.data.mean(axis=0, keepdims=True)

    def to_dict(self):
        return {}

    @classmethod
    def from_dict(cls, d):
        return cls()


def test_a_user_defined_selector_plugs_in(labeled):  # noqa: F811
    assert isinstance(MeanReference(), ChannelSelector)
    item = _one_item(labeled, MeanReference())
    x, _ = materialize_batch_item(item, dtype=np.float64)
    p = _manual(replace(item, channels=item.info.channels))
    np.testing.assert_allclose(x, p - p.mean(axis=0))
    back = BatchItem.from_dict(json.loads(json.dumps(item.to_dict())))
    assert back == item and back.channels == MeanReference()


@pytest.mark.parametrize("selector", [ZeroFillMontage(("c3", "x")), EvenOddCompartments(("a", "b")),
                                      Bipolar(("c3-m2",)), None, ("c3", 1)])  # fmt: skip
def test_selectors_round_trip_through_json(labeled, selector):  # noqa: F811
    item = _one_item(labeled, None)
    item = replace(item, channels=selector)
    assert BatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item


def test_unregistered_selector_objects_cannot_go_to_json(labeled):  # noqa: F811
    class Anonymous:
        def select(self, samples):
            return samples.data

    item = replace(_one_item(labeled, None), channels=Anonymous())
    with pytest.raises(BatchSpecError, match="register"):
        item.to_dict()


def test_float32_items_are_the_plain_float64_decode_rounded_once(any_labeled):  # noqa: F811
    from ondabatches.onda._decoding import FAST_MAX_ERROR, exact_decode

    spec = RandomBatches(any_labeled, n_channels=2, batch_size=16, batch_duration=MIN)
    for item in spec.iterate_batch(BatchState(5))[0]:
        whole = load(item.signal(), encoded=True).data
        rows = window_sample_range(
            item.window.translate(-item.signal_span.start), item.info.sample_rate
        )
        index = [item.info.channels.index(c) for c in item.channels]
        encoded = whole[index, rows.start : rows.stop]
        expected = exact_decode(encoded, item.info, np.dtype(np.float32))
        x, _ = materialize_batch_item(item)
        assert x.dtype == np.float32
        assert x.tobytes() == expected.tobytes(), item.info
        fast, _ = materialize_batch_item(item, exact=False)
        bound = FAST_MAX_ERROR * (
            np.abs(encoded * item.info.sample_resolution_in_unit)
            + abs(item.info.sample_offset_in_unit)
        )
        assert (np.abs(fast.astype(np.float64) - expected) <= bound).all()


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("n_channels", [None, 2])  # all channels, or a pick of two
def test_batches_are_the_same_with_and_without_compiled_kernels(
    any_labeled,  # noqa: F811
    monkeypatch,
    exact,
    n_channels,
):
    from ondabatches.onda import _kernels

    table = eeg_rows_at(any_labeled, 128.0)
    spec = RandomBatches(table, n_channels=n_channels, batch_size=8, batch_duration=MIN)
    batches = [spec.iterate_batch(BatchState(k))[0] for k in range(3)]
    with_kernels = [materialize_batch(b, exact=exact)[0] for b in batches]
    monkeypatch.setattr(_kernels, "ENABLED", False)
    for batch, x in zip(batches, with_kernels, strict=True):
        plain = materialize_batch(batch, exact=exact)[0]
        assert plain.dtype == x.dtype and plain.tobytes() == x.tobytes()


def test_plan_gives_each_items_rows_and_samples_as_the_item_functions_do(labeled):  # noqa: F811
    """`_plan`'s inline rows (whole nanoseconds from the signal's start) and what it
    shares per signal equal `_rows`, `_n_total` and `_channel_index` of every item; a
    window that starts before its signal takes `_rows` itself, and its error."""
    from ondabatches.materialize import _materialize
    from ondabatches.onda import TimeSpan

    spec = RandomBatches(labeled, batch_size=16, batch_duration=60 * 10**9)
    items = list(spec.iterate_batch(spec.initial_state(seed=3))[0])
    first = items[0]
    base = first.signal_span.start + 10 * 10**9
    window = TimeSpan(base, base + 10**9)
    for shift in (0, 1, 7 * 10**9 + 3):  # odd nanoseconds from the signal's start
        span = TimeSpan(base - shift, first.signal_span.stop)
        items.append(replace(first, window=window, signal_span=span))
    before = replace(first, window=window, signal_span=TimeSpan(base + 1, base + 10**10))
    with pytest.raises(ArgumentError, match="time must be >= 0 ns"):
        _materialize._rows(before)
    with pytest.raises(ArgumentError, match="time must be >= 0 ns"):  # the same error
        _materialize._plan([*items, before])
    plans, shapes, totals = _materialize._plan(items)
    for item, (rows, index), shape, total in zip(items, plans, shapes, totals, strict=True):
        assert rows == _materialize._rows(item)
        assert index == _materialize._channel_index(item)
        assert total == _materialize._n_total(item)
        assert shape == (len(range(item.info.n_channels)[index]) if isinstance(index, slice)
                         else len(index), len(rows))  # fmt: skip
