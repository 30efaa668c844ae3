"""scipy's ``sosfiltfilt`` (odd padding, its default pad length) of a window's rows,
compiled: the same operations in the same order on every value, all the rows at once.

scipy runs each row's recursion one sample after the other, a row at a time, through
Python-level padding, reversals and copies (about 25 ms for 19 channels of 65 s). The
kernel here transposes the rows into a time-major buffer (padded as scipy pads them,
in float64), runs each second-order section's recursion for every channel of a time
step in one vectorizable loop, forward and then backward (backward only down to the
first sample kept: scipy's values before it are cut off), and writes the result back
as rows of the output dtype. Each channel's values are those of scipy's loop
(``_sosfilt``: the same multiplies and adds, in the same order, rounded the same way;
numba contracts no multiply-add without ``fastmath``), so the output is scipy's to the
bit; tests compare the two.

`decode_filtfilt_into` goes one step further for a batch's windows: it decodes their
reads (time x channels, as LPCM stores them) straight into that time-major buffer, with
the very arithmetic of `._kernels`' decode, so no decoded array is made and neither
transpose is needed; the bits are those of decoding, then filtering (tested).

With numba (the ``fast`` extra) missing or the kernels turned off (the settings'
``kernels="numpy"``), `sosfiltfilt_rows` returns None and the caller runs scipy.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np

from ..onda import _kernels

__all__: list[str] = []

log = logging.getLogger(__name__)


#: Time steps transposed at a time from the time-major scratch to the output rows.
_TILE = 64


def _sections(w, sos, z0, z1, first, stop, step):  # pragma: no cover
    # The cascade of second-order sections (transposed direct form II, scipy's order of
    # operations) over rows first, first + step, ... of ``w`` (time x channels), in
    # place, from the states ``z0``, ``z1`` (sections x channels): the loop over the
    # channels of one time step is the one that vectorizes.
    channels = w.shape[1]
    for t in range(first, stop, step):
        row = w[t]
        for s in range(sos.shape[0]):
            b0, b1, b2 = sos[s, 0], sos[s, 1], sos[s, 2]
            a1, a2 = sos[s, 4], sos[s, 5]
            za, zb = z0[s], z1[s]
            for c in range(channels):
                x_cur = row[c]
                x_new = b0 * x_cur + za[c]
                za[c] = b1 * x_cur - a1 * x_new + zb[c]
                zb[c] = b2 * x_cur - a2 * x_new
                row[c] = x_new


def _filtfilt(x, sos, zi, pad, w, z0, z1, out, before):  # pragma: no cover
    # x: (channels, n) rows; w: (n + 2 pad, channels) float64 scratch; out: rows
    # before .. before + out.shape[1] of the result, of x's dtype. ``_SECTIONS`` and
    # ``_SCRATCH`` are `_sections` and `_scratch` compiled (globals, set before this
    # compiles: numba's cache then keeps them all, where a closure over them would
    # compile again in each process).
    # Transposed one time step at a time (contiguous writes, a read from each row):
    # 2-3x faster than by tiles of time steps, which wrote w a column at a time.
    channels, n = x.shape
    for t in range(n):
        for c in range(channels):
            w[pad + t, c] = np.float64(x[c, t])
    _SCRATCH(sos, zi, pad, w, z0, z1, out, before)


def _scratch(sos, zi, pad, w, z0, z1, out, before):  # pragma: no cover
    # The filter of w's rows pad .. pad + n (time-major, filled by the caller), padded
    # here, its rows before .. before + out.shape[1] written to ``out`` (channels x time).
    channels, n = w.shape[1], w.shape[0] - 2 * pad
    for j in range(pad):  # scipy's odd extension: 2 x[0] - x[pad - j], ...
        for c in range(channels):
            w[j, c] = 2.0 * w[pad, c] - w[2 * pad - j, c]
            w[pad + n + j, c] = 2.0 * w[pad + n - 1, c] - w[pad + n - 2 - j, c]
    last = n + 2 * pad - 1
    for s in range(sos.shape[0]):
        for c in range(channels):
            z0[s, c] = zi[s, 0] * w[0, c]
            z1[s, c] = zi[s, 1] * w[0, c]
    _SECTIONS(w, sos, z0, z1, 0, last + 1, 1)
    for s in range(sos.shape[0]):  # backward, from the forward pass's last value
        for c in range(channels):
            z0[s, c] = zi[s, 0] * w[last, c]
            z1[s, c] = zi[s, 1] * w[last, c]
    _SECTIONS(w, sos, z0, z1, last, pad + before - 1, -1)  # down to the first kept
    first, kept = pad + before, out.shape[1]
    for t0 in range(0, kept, _TILE):
        t1 = min(t0 + _TILE, kept)
        for c in range(channels):
            for t in range(t0, t1):
                out[c, t] = w[first + t, c]


def _decode(src, channels, every, narrow, res, off, wide, pad, w, col):  # pragma: no cover
    # A read window (time x channels, encoded) decoded as `._kernels`' decode does it
    # (float32 arithmetic where ``narrow``, else float64 rounded to float32 unless
    # ``wide``), its channels ``channels`` (all, in order, where ``every``) written,
    # widened to float64, to w's columns col .. and rows pad .. : time-major already,
    # so no transpose either way. The branches stay out of the loops.
    r32, o32 = np.float32(res), np.float32(off)
    n = src.shape[1] if every else channels.shape[0]
    for t in range(src.shape[0]):
        row, at = src[t], w[pad + t]
        if narrow:
            for j in range(n):
                c = j if every else channels[j]
                at[col + j] = np.float64(np.float32(row[c]) * r32 + o32)
        elif wide:
            for j in range(n):
                c = j if every else channels[j]
                at[col + j] = np.float64(row[c]) * res + off
        else:
            for j in range(n):
                c = j if every else channels[j]
                at[col + j] = np.float64(np.float32(np.float64(row[c]) * res + off))


_SECTIONS: Callable[..., None] | None = None
_SCRATCH: Callable[..., None] | None = None
_DECODE: Callable[..., None] | None = None


def _build() -> Callable[..., None]:
    global _SECTIONS, _SCRATCH, _DECODE
    _SECTIONS = _kernels.jit(_sections)
    _SCRATCH = _kernels.jit(_scratch)
    _DECODE = _kernels.jit(_decode)
    return _kernels.jit(_filtfilt)


def _try(kernel: Callable[..., None]) -> None:
    sos = np.array([[1.0, 0.0, 0.0, 1.0, -0.5, 0.0]])
    x, w = np.zeros((1, 4), np.float32), np.empty((6, 1))
    z0, z1 = np.empty((1, 1)), np.empty((1, 1))
    kernel(x, sos, np.zeros((1, 2)), 1, w, z0, z1, np.empty((1, 4), np.float32), 0)


#: The compiled kernel (compiled, or loaded from numba's cache, on a tiny input the
#: first time), or None without numba or where it cannot compile it.
_kernel = _kernels.CompileOnce(_build, _try, "compiled sosfiltfilt (filters run scipy's)", log)


@functools.lru_cache(maxsize=256)
def _zi(sos_bytes: bytes, sections: int) -> np.ndarray:
    from scipy.signal import sosfilt_zi

    return sosfilt_zi(np.frombuffer(sos_bytes).reshape(sections, 6))


def sosfiltfilt_rows(
    sos: np.ndarray,
    x: np.ndarray,
    padlen: int,
    cut: tuple[int, int] = (0, 0),
    out: np.ndarray | None = None,
) -> np.ndarray | None:
    """``scipy.signal.sosfiltfilt(sos, x.astype(float64), axis=-1, padlen=padlen)`` in
    ``x``'s dtype (float32 or float64 rows, channels x time), the same bits, less
    ``cut = (before, after)`` samples at its start and end (the backward pass stops at
    the first sample kept), written into ``out`` if given (C-ordered, of that shape and
    dtype: a batch's slots, with no copy); None where the kernel does not run (no
    numba, kernels off, another layout): call scipy."""
    before, after = cut
    shape = (x.shape[0], x.shape[-1] - before - after)
    if out is not None and (
        out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous
    ):
        return None
    if (
        x.ndim != 2
        or before < 0
        or after < 0
        or before + after > x.shape[1]
        or x.dtype not in (np.float32, np.float64)
        or x.shape[1] <= padlen
        or sos.dtype != np.float64
        or not _kernels._enabled()
    ):
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    sos = np.ascontiguousarray(sos)
    zi = _zi(sos.tobytes(), sos.shape[0])
    channels, n = x.shape
    w = np.empty((n + 2 * padlen, channels))
    z0, z1 = np.empty((len(sos), channels)), np.empty((len(sos), channels))
    out = np.empty(shape, x.dtype) if out is None else out
    kernel(np.ascontiguousarray(x), sos, zi, padlen, w, z0, z1, out, before)
    return out


#: Sample types `decode_filtfilt_into` decodes (native byte order; as `._kernels`).
_SAMPLE_TYPES = frozenset(np.dtype(t) for t in ("i1", "u1", "i2", "u2"))


def decode_filtfilt_into(
    sos: np.ndarray,
    padlen: int,
    reads: list[tuple[np.ndarray, np.ndarray | None, float, float, bool]],
    cut: tuple[int, int],
    out: np.ndarray,
) -> bool:
    """`sosfiltfilt_rows` of windows decoded from their reads, into ``out``: the bits
    of decoding each read to ``out``'s dtype as `._kernels` does (channels x time),
    stacking their rows and filtering them, with no decoded array and no transpose
    (decoded straight into the time-major scratch).

    Each read is ``(encoded, channels, resolution, offset, native)``: a time x channels
    window as read (C-ordered, 8 or 16-bit samples), the ``intp`` indices of its
    channels to keep (None: all) and its decode (``native``: float32 arithmetic, as a
    decode plan proved exact). False, with nothing written, where this does not run:
    then decode and call `sosfiltfilt_rows`.
    """
    before, after = cut
    if not reads or out.dtype not in (np.float32, np.float64) or not out.flags.c_contiguous:
        return False
    n = reads[0][0].shape[0]
    widths = []
    for encoded, channels, *_ in reads:
        if (
            encoded.ndim != 2
            or encoded.dtype not in _SAMPLE_TYPES
            or not encoded.flags.c_contiguous
            or encoded.shape[0] != n
            or (channels is not None and not _in_range(channels, encoded.shape[1]))
        ):
            return False
        widths.append(encoded.shape[1] if channels is None else channels.shape[0])
    rows = sum(widths)
    if (
        out.shape != (rows, n - before - after)
        or min(before, after) < 0
        or n <= padlen
        or sos.dtype != np.float64
        or not _kernels._enabled()
        or _kernel() is None
    ):
        return False
    sos = np.ascontiguousarray(sos)
    zi = _zi(sos.tobytes(), sos.shape[0])
    w = np.empty((n + 2 * padlen, rows))
    col, wide = 0, out.dtype == np.float64
    for (encoded, channels, res, off, native), width in zip(reads, widths, strict=True):
        every = channels is None
        index = _NO_CHANNELS if every else channels
        narrow = native and not wide
        # -0.0 + x == x for every x: a zero offset changes nothing (numpy adds none)
        off = float(off) if off != 0.0 else -0.0
        _DECODE(encoded, index, every, narrow, float(res), off, wide, padlen, w, col)
        col += width
    z0, z1 = np.empty((len(sos), rows)), np.empty((len(sos), rows))
    _SCRATCH(sos, zi, padlen, w, z0, z1, out, before)
    return True


_NO_CHANNELS = np.empty(0, dtype=np.intp)


def _in_range(channels: np.ndarray, n: int) -> bool:
    return (
        channels.ndim == 1
        and channels.dtype == np.intp
        and (channels.size == 0 or (int(channels.min()) >= 0 and int(channels.max()) < n))
    )
