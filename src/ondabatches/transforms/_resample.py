"""scipy's ``resample_poly`` (its default Kaiser filter, zero padding) of a signal's
rows, compiled, time-major and any stretch of its output at a time.

``resample_poly(x, up, down)`` is ``upfirdn`` of a filter designed for the ratio,
with its first outputs dropped; ``upfirdn`` runs each row alone, output after output,
each the sum of one phase's taps times the input samples they reach, oldest first
from 0.0. The kernel here computes the same sums in the same order (so the same bits:
tests compare the two), but over a time-major buffer (time x channels: the filters'
scratch, see `._filtfilt.sosfiltfilt_steps`), all the channels of an output step in
one vectorizable loop, and for any outputs ``first .. first + count`` of the whole
signal's from the input rows they reach alone: a block of a long recording gives the
whole recording's values, whatever its boundaries, with no margin to align. It writes
float32 time steps, as an LPCM file stores them, and can subtract each input step's
mean over the channels first (the average reference, as numpy computes it).

With numba (the ``fast`` extra) missing or the kernels turned off (the settings'
``kernels="numpy"``), `resample_steps` returns False and the caller runs scipy.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np

from .._errors import ArgumentError, require
from ..onda import _kernels

__all__: list[str] = []

log = logging.getLogger(__name__)


def _polyphase(w, base, n_in, taps, up, down, skip, out):  # pragma: no cover
    # out[q] = output skip + q of upfirdn(h, x, up, down) of the whole signal x (n_in
    # rows), of which w holds rows base .. base + w.shape[0]: taps[phase] (that phase's
    # coefficients, flipped, as upfirdn holds them) times the rows they reach, the
    # oldest first, rows outside the signal left out (zero padding).
    # Four taps a pass over the channels, added one after the other as upfirdn adds
    # them (the same bits): a quarter of the loops over the channels, whose set-up
    # costs as much as their work for some 20 channels.
    per, channels = taps.shape[1], out.shape[1]
    acc = np.empty(channels)
    for q in range(out.shape[0]):
        t = (skip + q) * down
        last = t // up
        phase = t - last * up
        for c in range(channels):
            acc[c] = 0.0
        oldest = last - per + 1
        m, stop = max(0, -oldest), min(per, n_in - oldest)
        h = taps[phase]
        while m + 4 <= stop:
            h0, h1, h2, h3 = h[m], h[m + 1], h[m + 2], h[m + 3]
            r0, r1 = w[oldest + m - base], w[oldest + m + 1 - base]
            r2, r3 = w[oldest + m + 2 - base], w[oldest + m + 3 - base]
            for c in range(channels):
                acc[c] = (((acc[c] + r0[c] * h0) + r1[c] * h1) + r2[c] * h2) + r3[c] * h3
            m += 4
        while m < stop:
            h0, r0 = h[m], w[oldest + m - base]
            for c in range(channels):
                acc[c] += r0[c] * h0
            m += 1
        at = out[q]
        for c in range(channels):
            at[c] = acc[c]


def _reference(w, first, stop, channels):  # pragma: no cover
    # Rows first .. stop of w's first ``channels`` columns less their mean over them,
    # numpy's way (x - x.mean(axis=0) of channels x time rows): the sum in channel
    # order, divided by the count.
    for t in range(first, stop):
        row = w[t]
        s = row[0]
        for c in range(1, channels):
            s += row[c]
        mean = s / channels
        for c in range(channels):
            row[c] = row[c] - mean


_REFERENCE: Callable[..., None] | None = None


def _build() -> Callable[..., None]:
    global _REFERENCE
    _REFERENCE = _kernels.jit(_reference)
    return _kernels.jit(_polyphase)


def _try(kernel: Callable[..., None]) -> None:
    w = np.zeros((2, 1))
    kernel(w, 0, 2, np.ones((1, 1)), 1, 1, 0, np.empty((2, 1), np.float32))
    _REFERENCE(w, 0, 2, 1)


#: The compiled kernel (compiled, or loaded from numba's cache, on a tiny input the
#: first time), or None without numba or where it cannot compile it.
_kernel = _kernels.CompileOnce(_build, _try, "compiled resample_poly (scipy's runs)", log)


@functools.lru_cache(maxsize=64)
def polyphase_taps(up: int, down: int, n_in: int) -> tuple[np.ndarray, int]:
    """The filter ``resample_poly(x, up, down)`` runs on ``n_in`` samples (coprime
    ``up`` and ``down``), as its ``upfirdn`` holds it (a row per phase, flipped:
    ``(up, taps per phase)``), and the ``upfirdn`` outputs it drops at the start.

    Designed as scipy designs it: a Kaiser (5.0) low-pass of ``20 max(up, down) + 1``
    taps cut at ``1 / max(up, down)`` of Nyquist, times ``up``, zeros before it so that
    outputs fall on the input's samples, and after it until ``upfirdn`` gives enough.
    """
    firwin = require("scipy.signal", "transforms").firwin
    rate = max(up, down)
    half = 10 * rate
    h = firwin(2 * half + 1, 1.0 / rate, window=("kaiser", 5.0))
    h *= up
    before = down - half % down
    drop = (half + before) // down
    n_out = -(-n_in * up // down)
    after = 0
    while _output_len(len(h) + before + after, n_in, up, down) < n_out + drop:
        after += 1
    size = len(h) + before + after
    full = np.zeros(size + (-size % up))
    full[before : before + len(h)] = h
    return np.ascontiguousarray(full.reshape(-1, up).T[:, ::-1]), drop


def _output_len(taps: int, n_in: int, up: int, down: int) -> int:
    # upfirdn's output length for ``taps`` coefficients.
    return ((n_in - 1) * up + taps - 1) // down + 1


def input_rows(up: int, down: int, n_in: int, first: int, stop: int) -> tuple[int, int]:
    """The input rows ``lo .. hi`` (inside the ``n_in`` samples) that outputs ``first ..
    stop`` of ``resample_poly(x, up, down)`` reach (coprime ``up`` and ``down``)."""
    taps, drop = polyphase_taps(up, down, n_in)
    lo = (drop + first) * down // up - taps.shape[1] + 1
    hi = (drop + stop - 1) * down // up + 1
    return max(lo, 0), min(hi, n_in)


def resample_steps(
    w: np.ndarray,
    base: int,
    n_in: int,
    ratio: tuple[int, int] | None,
    first: int,
    out: np.ndarray,
    reference: tuple[int, int] | None = None,
) -> bool:
    """Outputs ``first .. first + len(out)`` of ``resample_poly(x, up, down, axis=0)``
    (``ratio``: coprime ``(up, down)``; None: the rows of ``x`` themselves) of a signal
    ``x`` of ``n_in`` time steps whose rows ``base .. base + len(w)`` are ``w`` (time x
    channels, float64, C-ordered; they must hold every row those outputs reach, see
    `input_rows`), written to ``out`` (time x channels, float32, C-ordered) as float32:
    the bits of scipy's result so rounded. Columns of ``w`` beyond ``out``'s are left
    out (padding). ``reference = (lo, hi)`` first subtracts their mean over the
    channels from rows ``lo .. hi`` of ``w`` (indices into ``w``), in place. False, with
    nothing written, where the kernel does not run: call scipy."""
    if (
        w.ndim != 2
        or w.dtype != np.float64
        or not w.flags.c_contiguous
        or out.ndim != 2
        or out.dtype != np.float32
        or not out.flags.c_contiguous
        or out.shape[1] > w.shape[1]
        or not _kernels._enabled()
    ):
        return False
    kernel = _kernel()
    if kernel is None:
        return False
    if ratio is None:
        up = down = 1
        taps, drop = np.ones((1, 1)), 0
        lo, hi = first, first + len(out)
    else:
        up, down = ratio
        taps, drop = polyphase_taps(up, down, n_in)
        lo, hi = input_rows(up, down, n_in, first, first + len(out))
    if len(out) and (lo < base or hi > base + len(w)):
        raise ArgumentError(f"rows {base}..{base + len(w)} do not hold the rows {lo}..{hi} needed")
    if reference is not None:
        _REFERENCE(w, *reference, out.shape[1])
    kernel(w, base, n_in, taps, up, down, drop + first, out)
    return True
