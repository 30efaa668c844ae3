"""The compiled polyphase resampler gives scipy's ``resample_poly`` of the whole signal
to the bit, for any stretch of its outputs computed from the input rows they reach
alone: ratios up and down (coprime, small and large), odd lengths from a single sample
up, random stretches, channel counts of full vectors and remainders; with the kernels
turned off it refuses and the caller runs scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

scipy_signal = pytest.importorskip("scipy.signal")
pytest.importorskip("numba")

from ondabatches.errors import ArgumentError  # noqa: E402
from ondabatches.onda import _kernels  # noqa: E402
from ondabatches.transforms._resample import input_rows, resample_steps  # noqa: E402

RATIOS = [(25, 64), (1, 2), (3, 2), (2, 3), (5, 7), (7, 3), (1, 5), (4, 1), (125, 128),
          (160, 147), (1, 1)]  # fmt: skip


def _ratio(up, down):
    g = math.gcd(up, down)
    return (up // g, down // g)


@pytest.mark.parametrize(("up", "down"), RATIOS)
def test_any_stretch_of_the_output_is_the_whole_signals_resample_poly(up, down):
    rng = np.random.default_rng([up, down])
    for n in [1, 2, 3, 7, 64, 333, 1001, 4099]:
        channels = int(rng.choice([1, 3, 4, 19]))
        x = rng.standard_normal((n, channels)) * 40 + rng.uniform(-500, 500, channels)
        whole = scipy_signal.resample_poly(x, up, down, axis=0).astype(np.float32)
        ratio = None if (up, down) == (1, 1) else _ratio(up, down)
        for _ in range(6):
            first = int(rng.integers(0, len(whole)))
            stop = int(rng.integers(first, len(whole) + 1))
            lo, hi = (first, stop) if ratio is None else input_rows(*ratio, n, first, stop)
            # A few more rows than needed on either side, where the signal has them.
            lo = max(lo - int(rng.integers(0, 3)), 0)
            hi = min(hi + int(rng.integers(0, 3)), n)
            out = np.full((stop - first, channels), np.nan, np.float32)
            assert resample_steps(np.ascontiguousarray(x[lo:hi]), lo, n, ratio, first, out)
            assert np.array_equal(out, whole[first:stop]), (up, down, n, first, stop)


def test_the_average_reference_is_numpys_before_the_resample():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 19)) * 40 + rng.uniform(-500, 500, 19)
    rows = x.T  # channels x time, as derive's scipy path references them
    want = scipy_signal.resample_poly(rows - rows.mean(axis=0, keepdims=True), 25, 64,
                                      axis=-1).astype(np.float32)  # fmt: skip
    w = x.copy()
    out = np.empty((want.shape[1], 19), np.float32)
    assert resample_steps(w, 0, 5000, (25, 64), 0, out, (0, 5000))
    rms = np.sqrt(np.mean(want.astype(np.float64) ** 2))
    assert np.max(np.abs(out.T - want)) <= 1e-6 * rms
    assert np.allclose(w, x - x.mean(axis=1, keepdims=True), rtol=0, atol=1e-9)


def test_rows_that_miss_what_the_outputs_reach_are_an_error():
    x = np.zeros((100, 2))
    lo, hi = input_rows(25, 64, 1000, 100, 140)
    with pytest.raises(ArgumentError, match="do not hold"):
        resample_steps(x, lo + 1, 1000, (25, 64), 100, np.empty((40, 2), np.float32))


def test_the_resampler_is_refused_off_kernel_or_out_of_layout(monkeypatch):
    x = np.zeros((100, 2))
    out = np.empty((39, 2), np.float32)
    assert not resample_steps(x.astype(np.float32), 0, 100, (25, 64), 0, out)
    assert not resample_steps(np.zeros((2, 100)).T, 0, 100, (25, 64), 0, out)
    assert not resample_steps(x, 0, 100, (25, 64), 0, out.astype(np.float64))
    assert not resample_steps(x, 0, 100, (25, 64), 0, np.empty((39, 3), np.float32))
    monkeypatch.setattr(_kernels, "ENABLED", False)
    assert not resample_steps(x, 0, 100, (25, 64), 0, out)
