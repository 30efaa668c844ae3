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
transpose is needed; the bits are those of decoding, then filtering (tested). Where a
window is read with as many rows of margin on each side (more than the pad: inside its
recording, as a batch reads it), the margins are not filtered at all: they enter the
result only through the states they leave at the window's edges (the forward pass's at
its start, the backward pass's at its end), which are linear maps of them, computed
once per filter and margin (`_margin_states`); only the window's rows then run the
recursion (about half of the samples, and of the scratch, of a read with 15 s margins
around 30 s). That is scipy's result to rounding (a few units in the last place of
float32 rows, tested), not to the bit: the states are sums over the margins rather
than the recursion's own.

With numba (the ``fast`` extra) missing or the kernels turned off (the settings'
``kernels="numpy"``), `sosfiltfilt_rows` returns None and the caller runs scipy.
"""

from __future__ import annotations

import functools
import logging
import threading
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
    # Sections whose b0 and b2 are 1 (all but the first of a Butterworth design) skip
    # those two products: x * 1.0 is x, so the values are the same.
    channels, sections = w.shape[1], sos.shape[0]
    unit = np.empty(sections, np.bool_)
    for s in range(sections):
        unit[s] = sos[s, 0] == 1.0 and sos[s, 2] == 1.0
    for t in range(first, stop, step):
        row = w[t]
        for s in range(sections):
            b0, b1, b2 = sos[s, 0], sos[s, 1], sos[s, 2]
            a1, a2 = sos[s, 4], sos[s, 5]
            za, zb = z0[s], z1[s]
            if unit[s]:
                for c in range(channels):
                    x_cur = row[c]
                    x_new = x_cur + za[c]
                    za[c] = b1 * x_cur - a1 * x_new + zb[c]
                    zb[c] = x_cur - a2 * x_new
                    row[c] = x_new
            else:
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
    _PASSES(sos, zi, pad, w, z0, z1, before)
    channels = w.shape[1]
    first, kept = pad + before, out.shape[1]
    for t0 in range(0, kept, _TILE):
        t1 = min(t0 + _TILE, kept)
        for c in range(channels):
            for t in range(t0, t1):
                out[c, t] = w[first + t, c]


def _passes(sos, zi, pad, w, z0, z1, before):  # pragma: no cover
    # scipy's sosfiltfilt of w's rows pad .. pad + n (time-major), in place: the odd
    # extension written to the ``pad`` rows on either side, the forward pass, the
    # backward pass down to row pad + before (the first kept: scipy's values before it
    # are cut off).
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


def _states(w, k, first, acc):  # pragma: no cover
    # acc (states x channels) = k (states x m) @ w[first : first + m] (time x channels):
    # each channel's sum in the same order whatever the others, vectorized over them.
    for i in range(acc.shape[0]):
        for c in range(acc.shape[1]):
            acc[i, c] = 0.0
    for j in range(k.shape[1]):
        row = w[first + j]
        for i in range(0, k.shape[0], 2):  # two states a loop: half the loops, the loads
            c0, c1 = k[i, j], k[i + 1, j]
            a0, a1 = acc[i], acc[i + 1]
            if c0 != 0.0 or c1 != 0.0:  # (zeros: weights too small to count)
                for c in range(row.shape[0]):
                    x = row[c]
                    a0[c] += c0 * x
                    a1[c] += c1 * x


def _windowed(sos, k1, k2, p, before, window, w, work, z0, z1, acc, out):  # pragma: no cover
    # The filter of w's rows before .. before + window (a read decoded time-major, its
    # margins around them), scipy's sosfiltfilt of the whole read up to rounding: the
    # margins enter only through the states they leave, linear in them (`_operators`):
    # the forward pass's at the window's start (``k1`` of the rows before), the
    # backward pass's at its end (``k2`` of the rows after, plus ``p`` of the forward
    # pass's state there). Only the window's own rows run the recursion, in ``work``
    # (window x channels, float64; w may hold float32 values, exactly the decode's).
    sections, channels = sos.shape[0], w.shape[1]
    _STATES(w, k1, 0, acc)
    for s in range(sections):
        for c in range(channels):
            z0[s, c] = acc[2 * s, c]
            z1[s, c] = acc[2 * s + 1, c]
    for t in range(window):
        row, at = w[before + t], work[t]
        for c in range(channels):
            at[c] = row[c]
    _SECTIONS(work, sos, z0, z1, 0, window, 1)
    _STATES(w, k2, before + window, acc)
    for i in range(2 * sections):
        a = acc[i]
        for s in range(sections):
            pa, pb = p[i, 2 * s], p[i, 2 * s + 1]
            za, zb = z0[s], z1[s]
            for c in range(channels):
                a[c] += pa * za[c] + pb * zb[c]
    for s in range(sections):
        for c in range(channels):
            z0[s, c] = acc[2 * s, c]
            z1[s, c] = acc[2 * s + 1, c]
    _SECTIONS(work, sos, z0, z1, window - 1, -1, -1)
    for t0 in range(0, window, _TILE):
        t1 = min(t0 + _TILE, window)
        for c in range(channels):
            for t in range(t0, t1):
                out[c, t] = work[t, c]


def _margin_states(sos, zi, pad, before, after, k1, k2, p):  # pragma: no cover
    # The states scipy's sosfiltfilt of a read (odd extension of ``pad``, each pass from
    # ``sosfilt_zi`` times its first value) leaves at the edges of the window that
    # ``before`` and ``after`` rows of margin surround (both above ``pad``), as linear
    # maps of the margins (the cascade, the padding and the initial states are linear):
    # k1 (states x before) gives the forward pass's state at the window's first row
    # from the rows before; k2 (states x after) and p (states x states) give the
    # backward pass's at its last row from the rows after and the forward pass's state
    # there. States are z0, z1 of each section in turn. Plain loops, no BLAS: the same
    # rounding on every machine, so the same bits.
    sections = sos.shape[0]
    n = 2 * sections
    a, c, b = np.zeros((n, n)), np.zeros(n), np.zeros(n)
    z = np.empty(n)
    for col in range(n + 1):  # one step from each unit state, and from an input of 1
        z[:] = 0.0
        x = 0.0
        if col < n:
            z[col] = 1.0
        else:
            x = 1.0
        for s in range(sections):
            y = sos[s, 0] * x + z[2 * s]
            z[2 * s] = sos[s, 1] * x - sos[s, 4] * y + z[2 * s + 1]
            z[2 * s + 1] = sos[s, 2] * x - sos[s, 5] * y
            x = y
        if col < n:
            c[col] = x
            a[:, col] = z
        else:
            b[:] = z
    steps = pad + max(before, after)
    phi = np.empty((steps, n))  # phi[k]: the state k steps after a unit impulse
    phi[0] = b
    for k in range(1, steps):
        for i in range(n):
            v = 0.0
            for j in range(n):
                v += a[i, j] * phi[k - 1, j]
            phi[k, i] = v
    # Forward: the state after pad + before values, 2 x[0] - x[pad - j] (j < pad) then
    # x[0 .. before), from zi times the first.
    m = pad + before
    free = _POWER(a, zi, m)
    for r in range(n):
        k1[r, :] = 0.0
        for i in range(before):
            k1[r, i] += phi[before - 1 - i, r]
        for j in range(pad):
            k1[r, 0] += 2.0 * phi[m - 1 - j, r]
            k1[r, pad - j] -= phi[m - 1 - j, r]
        k1[r, 0] += 2.0 * free[r]
        k1[r, pad] -= free[r]
    # Backward: the forward outputs y[0 .. m) after the window (of its state there and
    # of e = x[0 .. after), then 2 x[-1] - x[-2 - j]) run backward from zi times the
    # last leave the state sum_k weight[k] y[k].
    m = pad + after
    weight = phi[:m].copy()
    free = _POWER(a, zi, m)
    for r in range(n):
        weight[m - 1, r] += free[r]
    p[:, :] = 0.0
    row = c.copy()  # c A^k: y[k] of each forward state
    for k in range(m):
        for i in range(n):
            for j in range(n):
                p[i, j] += weight[k, i] * row[j]
        nxt = np.zeros(n)
        for j in range(n):
            for i in range(n):
                nxt[j] += row[i] * a[i, j]
        row = nxt
    # e[i] weighs sum_{k >= i} weight[k] h[k - i] (h the impulse response): weight
    # reversed, filtered by the cascade, read backward.
    u = np.empty((m, n))
    for j in range(m):
        u[j] = weight[m - 1 - j]
    z0, z1 = np.zeros((sections, n)), np.zeros((sections, n))
    _SECTIONS(u, sos, z0, z1, 0, m, 1)
    for r in range(n):
        for i in range(after):
            k2[r, i] = u[m - 1 - i, r]
        for j in range(pad):
            e = u[m - 1 - after - j, r]
            k2[r, after - 1] += 2.0 * e
            k2[r, after - 2 - j] -= e


def _power(a, v, m):  # pragma: no cover
    # a^m v by m products.
    n = v.shape[0]
    out = v.copy()
    for _ in range(m):
        nxt = np.zeros(n)
        for i in range(n):
            for j in range(n):
                nxt[i] += a[i, j] * out[j]
        out = nxt
    return out


_SECTIONS: Callable[..., None] | None = None
_SCRATCH: Callable[..., None] | None = None
_PASSES: Callable[..., None] | None = None
_DECODE: Callable[..., None] | None = None
_STATES: Callable[..., None] | None = None
_WINDOWED: Callable[..., None] | None = None
_POWER: Callable[..., None] | None = None
_OPERATORS: Callable[..., None] | None = None


def _build() -> Callable[..., None]:
    global _SECTIONS, _SCRATCH, _PASSES, _DECODE, _STATES, _WINDOWED, _POWER, _OPERATORS
    _SECTIONS = _kernels.jit(_sections)
    _PASSES = _kernels.jit(_passes)
    _SCRATCH = _kernels.jit(_scratch)
    _DECODE = _kernels.jit(_decode)
    _STATES = _kernels.jit(_states)
    _WINDOWED = _kernels.jit(_windowed)
    _POWER = _kernels.jit(_power)
    _OPERATORS = _kernels.jit(_margin_states)
    return _kernels.jit(_filtfilt)


def _try(kernel: Callable[..., None]) -> None:
    sos = np.array([[1.0, 0.0, 0.0, 1.0, -0.5, 0.0]])
    x, w = np.zeros((1, 4), np.float32), np.empty((6, 1))
    z0, z1 = np.empty((1, 1)), np.empty((1, 1))
    kernel(x, sos, np.zeros((1, 2)), 1, w, z0, z1, np.empty((1, 4), np.float32), 0)
    k1, k2, p = _operators(sos.tobytes(), 1, 1, 2, 2)
    for out in (np.empty((1, 2), np.float32), np.empty((1, 2))):
        w, acc = np.zeros((6, 1), out.dtype), np.empty((2, 1))
        _WINDOWED(sos, k1, k2, p, 2, 2, w, np.empty((2, 1)), z0, z1, acc, out)


#: The compiled kernel (compiled, or loaded from numba's cache, on a tiny input the
#: first time), or None without numba or where it cannot compile it.
_kernel = _kernels.CompileOnce(_build, _try, "compiled sosfiltfilt (filters run scipy's)", log)


@functools.lru_cache(maxsize=256)
def _zi(sos_bytes: bytes, sections: int) -> np.ndarray:
    from scipy.signal import sosfilt_zi

    return sosfilt_zi(np.frombuffer(sos_bytes).reshape(sections, 6))


@functools.lru_cache(maxsize=32)
def _operators(
    sos_bytes: bytes, sections: int, pad: int, before: int, after: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_margin_states`' maps for a cut (compiled: the same bits on every machine)."""
    sos = np.frombuffer(sos_bytes).reshape(sections, 6).copy()
    n = 2 * sections
    k1, k2, p = np.empty((n, before)), np.empty((n, after)), np.empty((n, n))
    _OPERATORS(sos, _zi(sos_bytes, sections).reshape(-1), pad, before, after, k1, k2, p)
    for m in (k1, k2, p):
        # A fast section's weights decay to subnormal numbers far from the window, whose
        # products take a microcode assist each (12.9 instead of 3.6 ms for two 30 s
        # windows with 15 s margins): zeros instead, which change no sum by a unit in
        # its last place (they are below 1e-200, sums of samples are far above).
        m[np.abs(m) < _NEGLIGIBLE] = 0.0
    return k1, k2, p


#: Weights of the margins' states at or below which they are taken as zero.
_NEGLIGIBLE = 1e-200


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
    # F-ordered rows (a decoded window: time-major) are read as they lie: no copy
    x = x if x.flags.c_contiguous or x.flags.f_contiguous else np.ascontiguousarray(x)
    kernel(x, sos, zi, padlen, w, z0, z1, out, before)
    return out


def _runs(sos: np.ndarray, n: int, padlen: int) -> bool:
    """Whether the kernel runs a design on ``n`` rows (more than the pad, as scipy
    wants)."""
    return n > padlen and sos.dtype == np.float64 and _kernels._enabled() and _kernel() is not None


def sosfiltfilt_steps(sos: np.ndarray, padlen: int, w: np.ndarray, first: int, n: int) -> bool:
    """``scipy.signal.sosfiltfilt(sos, x, axis=0, padlen=padlen)`` of the rows
    ``x = w[first : first + n]`` of ``w`` (time x channels, float64, C-ordered), in
    place, the same bits: a cascade of filters runs back to back in one time-major
    buffer, with no transpose. The ``padlen`` rows on either side (which must be in
    ``w``) are overwritten as scratch. False, with nothing written, where the kernel
    does not run (no numba, kernels off, another layout): call scipy."""
    if (
        w.ndim != 2
        or w.dtype != np.float64
        or not w.flags.c_contiguous
        or first < padlen
        or first + n + padlen > w.shape[0]
        or not _runs(sos, n, padlen)
    ):
        return False
    sos = np.ascontiguousarray(sos)
    zi = _zi(sos.tobytes(), sos.shape[0])
    z0, z1 = np.empty((len(sos), w.shape[1])), np.empty((len(sos), w.shape[1]))
    _PASSES(sos, zi, padlen, w[first - padlen : first + n + padlen], z0, z1, 0)
    return True


def decode_steps(encoded: np.ndarray, resolution: float, offset: float, w: np.ndarray,
                 first: int) -> bool:  # fmt: skip
    """``encoded`` (time x channels, as LPCM stores them: 8 or 16-bit, C-ordered)
    decoded as `ondabatches.onda.decode_into` decodes it to float64, into rows
    ``first ..`` of ``w`` (time x channels, float64, C-ordered; its first columns, where
    it has more): the same bits, with no decoded array between. False, with nothing
    written, where the
    kernel does not run or the types or layouts differ: decode, then copy."""
    if (
        encoded.ndim != 2
        or encoded.dtype not in _SAMPLE_TYPES
        or not encoded.flags.c_contiguous
        or w.ndim != 2
        or w.dtype != np.float64
        or not w.flags.c_contiguous
        or w.shape[1] < encoded.shape[1]
        or not 0 <= first <= w.shape[0] - encoded.shape[0]
        or not _kernels._enabled()
        or _kernel() is None
    ):
        return False
    # -0.0 + x == x for every x: a zero offset changes nothing (numpy adds none)
    off = float(offset) if offset != 0.0 else -0.0
    _DECODE(encoded, _NO_CHANNELS, True, False, float(resolution), off, True, first, w, 0)
    return True


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
    (decoded straight into the time-major scratch); where ``cut`` is as many rows on
    each side, more than ``padlen`` (a window inside its recording, with its margins),
    that to rounding, the margins entering through the states they leave (see the
    module's docstring).

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
        or not _runs(sos, n, padlen)
    ):
        return False
    sos = np.ascontiguousarray(sos)
    # Margins as a batch reads them inside a recording (as many rows each side, more
    # than the pad): only the window is filtered, from the states the margins leave.
    windowed = before == after > padlen
    col, wide = 0, out.dtype == np.float64
    pad = 0 if windowed else padlen
    # Decoded float32 values are kept as such (exactly; half the bytes) where the
    # window is filtered from a float64 copy of its rows.
    w = _buffer(0, (n + 2 * pad, rows), np.float32 if windowed and not wide else np.float64)
    for (encoded, channels, res, off, native), width in zip(reads, widths, strict=True):
        every = channels is None
        index = _NO_CHANNELS if every else channels
        narrow = native and not wide
        # -0.0 + x == x for every x: a zero offset changes nothing (numpy adds none)
        off = float(off) if off != 0.0 else -0.0
        _DECODE(encoded, index, every, narrow, float(res), off, wide, pad, w, col)
        col += width
    z0, z1 = np.empty((len(sos), rows)), np.empty((len(sos), rows))
    if windowed:
        k1, k2, p = _operators(sos.tobytes(), len(sos), padlen, before, after)
        work = _buffer(1, (n - before - after, rows), np.float64)
        acc = np.empty((2 * len(sos), rows))
        _WINDOWED(sos, k1, k2, p, before, work.shape[0], w, work, z0, z1, acc, out)
    else:
        _SCRATCH(sos, _zi(sos.tobytes(), len(sos)), padlen, w, z0, z1, out, before)
    return True


_NO_CHANNELS = np.empty(0, dtype=np.intp)

#: Each thread's scratch buffers, kept from one call to the next: a fresh one of a few
#: MB costs its page faults at every call (about a millisecond per pair of windows).
_held = threading.local()


def _buffer(slot: int, shape: tuple[int, int], dtype: type) -> np.ndarray:
    """Thread ``slot``'s scratch of ``shape`` and ``dtype`` (uninitialized), grown as
    needed."""
    size = shape[0] * shape[1] * np.dtype(dtype).itemsize
    buffers = getattr(_held, "buffers", None)
    if buffers is None:
        buffers = _held.buffers = {}
    held = buffers.get(slot)
    if held is None or held.size < size:
        held = buffers[slot] = np.empty(size, np.uint8)
    return held[:size].view(dtype).reshape(shape)


def _in_range(channels: np.ndarray, n: int) -> bool:
    return (
        channels.ndim == 1
        and channels.dtype == np.intp
        and (channels.size == 0 or (int(channels.min()) >= 0 and int(channels.max()) < n))
    )
