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
from ondabatches.transforms._filtfilt import sosfiltfilt_rows  # noqa: E402
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


@pytest.mark.parametrize("seed", range(4))
def test_compiled_filter_gives_scipys_bits(seed):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        f, rate = _random_filter(rng)
        sos = f._design(rate)
        pad = _padlen(sos)
        channels = int(rng.choice([1, 2, 3, 4, 5, 8, 19, 33]))
        n = int(rng.integers(pad + 1, pad + 5000))
        dtype = np.dtype(rng.choice([np.float32, np.float64]))
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
    # windows' rows): each item has the bits of its window filtered alone by scipy,
    # items at the signal's edges (other margins: other groups) among them.
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
        assert x[i].tobytes() == want.tobytes(), (i, item.window)
