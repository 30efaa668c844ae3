"""The compiled zero-phase filter gives scipy's ``sosfiltfilt`` to the bit: random designs
(band-pass, high-pass, low-pass, notch, orders 1 to 8), channel counts (the vectorized
loop's full vectors and remainders), lengths from just above the pad length up, float32
and float64 rows, cut at the ends or not; with the kernels turned off the filters run
scipy."""

from __future__ import annotations

import numpy as np
import pytest

scipy_signal = pytest.importorskip("scipy.signal")
pytest.importorskip("numba")

from ondabatches.onda import _kernels  # noqa: E402
from ondabatches.transforms import Bandpass, Highpass, Lowpass, Notch  # noqa: E402
from ondabatches.transforms._builtins import _padlen  # noqa: E402
from ondabatches.transforms._filtfilt import (  # noqa: E402
    decode_steps,
    sosfiltfilt_rows,
    sosfiltfilt_steps,
)
from tests.dataset import dataset, labeled  # noqa: E402, F401


def _random_filter(rng):
    rate = float(rng.choice([64.0, 128.0, 256.0, 512.0]))
    order = int(rng.integers(1, 9))
    kind = int(rng.integers(4))
    if kind == 0:
        return Bandpass(
            float(rng.uniform(0.1, 2.0)), float(rng.uniform(5, rate / 2.5)), order
        ), rate
    if kind == 1:
        return Highpass(float(rng.uniform(0.1, 5.0)), order), rate
    if kind == 2:
        return Lowpass(float(rng.uniform(2.0, rate / 2.5)), order), rate
    return Notch(float(rng.uniform(5, rate / 2.5)), float(rng.uniform(5, 50))), rate


def _assert_scipys(got, want, interior, where):
    """``got`` is scipy's ``want`` to the bit, or, for a window read with as many rows of
    margin on each side (more than the pad: ``interior``), which is filtered from the
    states its margins leave, to rounding: within 1e-6 of the window's RMS in float32
    (a few units in the last place), 1e-7 in float64."""
    if not interior:
        assert got.tobytes() == want.tobytes(), where
        return
    assert got.dtype == want.dtype and got.shape == want.shape, where
    rms = np.sqrt(np.mean(want.astype(np.float64) ** 2))
    tolerance = 1e-6 if got.dtype == np.float32 else 1e-7
    err = np.max(np.abs(got.astype(np.float64) - want)) / rms
    assert err <= tolerance, (where, err)


def _random_case(rng, longest):
    """A random filter, its rate, design and pad, a length above the pad and a dtype."""
    f, rate = _random_filter(rng)
    sos = f._design(rate)
    pad = _padlen(sos)
    n = int(rng.integers(pad + 1, pad + longest))
    return f, rate, sos, pad, n, np.dtype(rng.choice([np.float32, np.float64]))


@pytest.mark.parametrize("seed", range(4))
def test_compiled_filter_gives_scipys_bits(seed):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        f, rate, sos, pad, n, dtype = _random_case(rng, 5000)
        channels = int(rng.choice([1, 2, 3, 4, 5, 8, 19, 33]))
        # A drift and an offset, as EEG has, on noise.
        t = np.arange(n)
        x = (rng.standard_normal((channels, n)) * 40 + rng.uniform(-500, 500, (channels, 1))
             + 1e-3 * t).astype(dtype)  # fmt: skip
        got = sosfiltfilt_rows(sos, x, pad)
        want = scipy_signal.sosfiltfilt(sos, x.astype(np.float64), axis=-1).astype(dtype)
        where = f"{f!r} at {rate} Hz, {channels} x {n} {dtype}"
        assert got is not None, where
        assert got.dtype == dtype and got.shape == x.shape, where
        assert got.tobytes() == want.tobytes(), where
        # Cut at both ends (the last filter of a pipeline): the same bits, sliced.
        before = int(rng.integers(0, n // 2))
        after = int(rng.integers(0, n - before))
        cut = sosfiltfilt_rows(sos, x, pad, (before, after))
        assert cut.tobytes() == want[:, before : n - after].tobytes(), (where, before, after)
        # Into given rows (a batch's slots): the same bits, written there.
        into = np.full(cut.shape, np.nan, dtype)
        assert sosfiltfilt_rows(sos, x, pad, (before, after), into) is into, where
        assert into.tobytes() == cut.tobytes(), where


def test_rows_to_write_into_of_another_shape_type_or_layout_are_refused():
    sos = Bandpass(0.5, 30.0)._design(256.0)
    x = np.random.default_rng(3).standard_normal((4, 3000)).astype(np.float32)
    pad = _padlen(sos)
    for bad in (np.empty((4, 2999), np.float32), np.empty((4, 3000), np.float64),
                np.empty((3000, 4), np.float32).T):  # fmt: skip
        assert sosfiltfilt_rows(sos, x, pad, (0, 0), bad) is None, (bad.shape, bad.dtype)


def test_filters_run_scipy_with_the_kernels_off(monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4000)).astype(np.float32)
    f = Bandpass(0.5, 30.0)
    sos = f._design(256.0)
    with_kernel, _ = f.apply(x, None, None, 256.0)
    monkeypatch.setattr(_kernels, "ENABLED", False)
    assert sosfiltfilt_rows(sos, x, _padlen(sos)) is None
    without, _ = f.apply(x, None, None, 256.0)
    want = scipy_signal.sosfiltfilt(sos, x.astype(np.float64), axis=-1).astype(np.float32)
    assert without.tobytes() == want.tobytes() == with_kernel.tobytes()


def test_rows_too_short_for_the_pad_are_refused_as_scipy_refuses_them():
    f = Highpass(1.0)
    sos = f._design(128.0)
    x = np.zeros((2, _padlen(sos)), np.float32)
    assert sosfiltfilt_rows(sos, x, _padlen(sos)) is None
    with pytest.raises(ValueError, match="padlen"):
        f.apply(x, None, None, 128.0)


def test_filtered_batches_give_scipys_bits_on_the_windows_read_with_margins(labeled):  # noqa: F811
    # A pipeline of two filters (the last one cut to the window as it filters): the
    # bits of each window's rows read with the pipeline's margins, scipy's sosfiltfilt
    # of each filter in turn (float64, the result in float32), and the window sliced.
    from ondabatches import RandomBatches, materialize_batch
    from ondabatches.materialize._materialize import _n_total, _rows, _x_at
    from ondabatches.transforms import Pipeline

    pipeline = Pipeline([Bandpass(0.5, 20.0), Notch(25.0)])
    scheme = RandomBatches(labeled, n_channels=2, batch_size=6, batch_duration=30 * 10**9)
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=5))
    for i, item in enumerate(batch):  # (one at a time: the items' rates differ)
        x, _ = materialize_batch([item], transforms=pipeline)
        rate = item.info.sample_rate
        margin, rows = pipeline.margin(rate), _rows(item)
        first, stop = max(rows.start - margin, 0), min(rows.stop + margin, _n_total(item))
        want = _x_at(item, range(first, stop), slice(None), np.dtype(np.float32), None)
        want = want[[item.info.channels.index(c) for c in item.channels]]
        for f in pipeline.transforms:
            sos = f._design(rate)
            want = scipy_signal.sosfiltfilt(sos, want.astype(np.float64), axis=-1)
            want = want.astype(np.float32)
        want = want[:, rows.start - first : rows.start - first + len(rows)]
        assert x[0].tobytes() == want.tobytes(), (i, item.window)


@pytest.mark.parametrize("kernels", [True, False], ids=["compiled", "scipy"])
def test_a_batch_filtered_two_items_at_a_time_gives_each_windows_bits(
    labeled,  # noqa: F811
    monkeypatch,
    kernels,
):
    # Items read with the same margins are filtered two at a time (one call over both
    # windows' rows): each item has its window filtered alone by scipy (the bits; to
    # rounding where both margins are whole, see _assert_scipys), items at the
    # signal's edges (other margins: other groups) among them.
    import dataclasses

    from ondabatches import RandomBatches, materialize_batch
    from ondabatches.materialize._materialize import _n_total, _rows, _x_at
    from ondabatches.onda import TimeSpan
    from tests.dataset import eeg_rows_at

    if not kernels:
        monkeypatch.setattr(_kernels, "ENABLED", False)
    f = Highpass(0.5)
    scheme = RandomBatches(eeg_rows_at(labeled, 128.0), n_channels=3, batch_size=7,
                           batch_duration=30 * 10**9)  # fmt: skip
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=11))
    span = batch[1].signal_span
    batch[1] = dataclasses.replace(batch[1], window=TimeSpan(span.start, span.start + 30 * 10**9))
    x, _ = materialize_batch(batch, transforms=[f])
    assert x.shape[0] == 7
    for i, item in enumerate(batch):
        margin, rows = f.margin(128.0), _rows(item)
        first, stop = max(rows.start - margin, 0), min(rows.stop + margin, _n_total(item))
        want = _x_at(item, range(first, stop), slice(None), np.dtype(np.float32), None)
        want = want[[item.info.channels.index(c) for c in item.channels]]
        want = scipy_signal.sosfiltfilt(f._design(128.0), want.astype(np.float64), axis=-1)
        want = want.astype(np.float32)[:, rows.start - first : rows.start - first + len(rows)]
        interior = kernels and rows.start - first == stop - rows.stop == margin
        _assert_scipys(x[i], want, interior, (i, item.window))
        # Filtered alone (other lanes, another group): the same bits.
        alone, _ = materialize_batch([item], transforms=[f])
        assert alone[0].tobytes() == x[i].tobytes(), (i, item.window)


@pytest.mark.parametrize("seed", range(3))
def test_reads_decoded_into_the_filter_give_the_bits_of_decoding_then_filtering(seed):
    # Reads of 8 and 16-bit samples, all channels or some, float64 or float32
    # arithmetic (native), zero offset or not, into float32 or float64 rows: the bits of
    # DecodePlan.select's decode, the rows stacked, then sosfiltfilt_rows (scipy's); to
    # rounding where as many rows are cut each side, more than the pad (a window inside
    # its recording with its margins: filtered from the states they leave).
    from ondabatches.onda._decoding import DecodePlan
    from ondabatches.transforms._filtfilt import decode_filtfilt_into

    rng = np.random.default_rng(seed)
    for _ in range(6):
        f, rate, sos, pad, n, dtype = _random_case(rng, 3000)
        reads, parts = [], []
        for _ in range(int(rng.integers(1, 4))):
            stype = np.dtype(rng.choice(["i1", "u1", "i2", "u2"]))
            info = np.iinfo(stype)
            width = int(rng.integers(1, 20))
            encoded = rng.integers(info.min, info.max, (n, width), endpoint=True).astype(stype)
            if rng.random() < 0.5:
                channels = None
            else:
                channels = rng.permutation(width)[: int(rng.integers(1, width + 1))]
            res, off = float(rng.choice([0.25, 0.1, 1.0])), float(rng.choice([0.0, -8.5]))
            how = "native" if rng.random() < 0.5 else "float64"
            plan = DecodePlan(how, res, off, dtype)
            rows = width if channels is None else len(channels)
            part = np.empty((rows, n), dtype)
            plan.select(encoded.T, slice(None) if channels is None else list(channels), part)
            parts.append(part)
            index = None if channels is None else channels.astype(np.intp)
            reads.append((encoded, index, res, off, how == "native"))
        before = int(rng.integers(0, n // 2))
        after = int(rng.integers(0, n - before))
        where = f"{f!r} at {rate} Hz, {[r[0].dtype for r in reads]} {dtype} {n}"
        if n >= 2 * pad + 3:  # as many rows each side, more than the pad: to rounding
            side = int(rng.integers(pad + 1, (n - 1) // 2 + 1))
            want = sosfiltfilt_rows(sos, np.concatenate(parts), pad, (side, side))
            got = np.full(want.shape, np.nan, dtype)
            assert decode_filtfilt_into(sos, pad, reads, (side, side), got), where
            _assert_scipys(got, want, True, (where, side))
        if before == after > pad:
            before -= 1
        want = sosfiltfilt_rows(sos, np.concatenate(parts), pad, (before, after))
        got = np.full(want.shape, np.nan, dtype)
        assert decode_filtfilt_into(sos, pad, reads, (before, after), got), where
        assert got.tobytes() == want.tobytes(), where
        # A read of another length, or rows of another shape: refused, nothing written.
        short = [(reads[0][0][1:], *reads[0][1:]), *reads[1:]]
        assert not decode_filtfilt_into(sos, pad, short, (before, after), got), where
        assert not decode_filtfilt_into(sos, pad, reads, (before, after + 1), got), where
        assert got.tobytes() == want.tobytes(), where


@pytest.mark.parametrize("exact", [True, False])
def test_filtered_batches_decode_their_reads_into_the_filter(labeled, monkeypatch, exact):  # noqa: F811
    # The batch path decodes the reads straight into the filter's scratch (every group
    # of items, here), with the bits of each window decoded, then filtered by scipy
    # (to rounding where both margins are whole, see _assert_scipys).
    from ondabatches import RandomBatches, materialize_batch
    from ondabatches.materialize._materialize import _n_total, _rows, _x_at
    from ondabatches.transforms import _builtins
    from tests.dataset import eeg_rows_at

    calls = []

    def counted(*args):
        calls.append(_builtins_decode(*args))
        return calls[-1]

    _builtins_decode = _builtins.decode_filtfilt_into
    monkeypatch.setattr(_builtins, "decode_filtfilt_into", counted)
    f = Bandpass(0.5, 20.0)
    scheme = RandomBatches(eeg_rows_at(labeled, 128.0), n_channels=2, batch_size=5,
                           batch_duration=30 * 10**9)  # fmt: skip
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=2))
    x, _ = materialize_batch(batch, transforms=[f], exact=exact)
    assert calls and all(calls), calls
    for i, item in enumerate(batch):
        margin, rows = f.margin(128.0), _rows(item)
        first, stop = max(rows.start - margin, 0), min(rows.stop + margin, _n_total(item))
        index = [item.info.channels.index(c) for c in item.channels]
        want = _x_at(item, range(first, stop), index, np.dtype(np.float32), None, exact)
        want = scipy_signal.sosfiltfilt(f._design(128.0), want.astype(np.float64), axis=-1)
        want = want.astype(np.float32)[:, rows.start - first : rows.start - first + len(rows)]
        interior = rows.start - first == stop - rows.stop == margin
        _assert_scipys(x[i], want, interior, (i, item.window))


@pytest.mark.parametrize("seed", range(3))
def test_filters_back_to_back_in_one_time_major_buffer_give_scipys_bits(seed):
    rng = np.random.default_rng([11, seed])
    for _ in range(6):
        f, rate = _random_filter(rng)
        filters = [f]
        while len(filters) < 3:  # up to 3 filters of one rate
            f, other = _random_filter(rng)
            if other == rate:
                filters.append(f)
        filters = filters[: int(rng.integers(1, 4))]
        cascade = [(f, f._design(rate), _padlen(f._design(rate))) for f in filters]
        pad = max(p for *_, p in cascade)
        n = int(rng.integers(pad + 1, pad + 4000))
        channels = int(rng.choice([1, 3, 4, 19, 20]))
        x = rng.standard_normal((n, channels)) * 40 + rng.uniform(-500, 500, channels)
        extra = int(rng.integers(0, 3))  # rows of the buffer beyond the pad: left alone
        w = np.full((n + 2 * (pad + extra), channels), 7.0)
        w[pad + extra : pad + extra + n] = x
        want = x
        for f, sos, p in cascade:
            assert sosfiltfilt_steps(sos, p, w, pad + extra, n), f
            want = scipy_signal.sosfiltfilt(sos, want, axis=0, padlen=p)
        got = w[pad + extra : pad + extra + n]
        assert got.tobytes() == want.tobytes(), (cascade, n, channels)
        assert (w[:extra] == 7.0).all() and (w[len(w) - extra :] == 7.0).all()


def test_filters_in_a_time_major_buffer_are_refused_off_kernel_or_out_of_shape(monkeypatch):
    sos = Bandpass(0.5, 30.0)._design(256.0)
    pad = _padlen(sos)
    w = np.zeros((3000, 4))
    assert not sosfiltfilt_steps(sos, pad, w, pad - 1, 1000)  # no room for the pad
    assert not sosfiltfilt_steps(sos, pad, w, pad, 3000 - pad)
    assert not sosfiltfilt_steps(sos, pad, w, pad, pad)  # as short as the pad
    assert not sosfiltfilt_steps(sos, pad, w.astype(np.float32), pad, 1000)
    assert not sosfiltfilt_steps(sos, pad, np.zeros((4, 3000)).T, pad, 1000)
    monkeypatch.setattr(_kernels, "ENABLED", False)
    assert not sosfiltfilt_steps(sos, pad, w, pad, 1000)


@pytest.mark.parametrize("sample_type", ["int8", "uint8", "int16", "uint16"])
def test_reads_decoded_into_a_time_major_buffer_give_decode_intos_bits(sample_type):
    from ondabatches.onda import SamplesInfo
    from ondabatches.onda._io import decode_into

    rng = np.random.default_rng(list(sample_type.encode()))
    limits = np.iinfo(sample_type)
    for offset in (0.0, -3.25):
        info = SamplesInfo("eeg", ("a", "b", "c"), "uV", 0.1, offset, sample_type, 256.0)
        encoded = rng.integers(limits.min, limits.max, (1000, 3), endpoint=True,
                               dtype=sample_type)  # fmt: skip
        w = np.full((1004, 4), np.nan)  # a column more: left as it is
        assert decode_steps(encoded, 0.1, offset, w, 2)
        want = decode_into(encoded.T, info).T
        got = np.ascontiguousarray(w[2:1002, :3])
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), offset
        assert np.isnan(w[:2]).all() and np.isnan(w[1002:]).all() and np.isnan(w[:, 3]).all()


def test_reads_of_other_types_or_layouts_are_not_decoded_into_the_buffer(monkeypatch):
    w = np.zeros((100, 3))
    encoded = np.zeros((100, 3), np.int16)
    assert not decode_steps(encoded.astype(np.float32), 1.0, 0.0, w, 0)
    assert not decode_steps(np.zeros((3, 100), np.int16).T, 1.0, 0.0, w, 0)
    assert not decode_steps(encoded, 1.0, 0.0, np.zeros((100, 2)), 0)  # too narrow
    assert not decode_steps(encoded, 1.0, 0.0, w, 1)  # past the buffer's end
    monkeypatch.setattr(_kernels, "ENABLED", False)
    assert not decode_steps(encoded, 1.0, 0.0, w, 0)
