"""Compiled decode kernels: channel selection, transpose and decode in one pass.

A window read from interleaved LPCM is a time x channels array; a batch wants channels x
time. numpy does that in two steps that each touch every sample (a strided gather, and
a float64 pass when the exact values need one); a compiled loop does it in one, in
either of two orders: one row at a time from a strided read of its channel, or by time
steps (a step's channels decoded into a small buffer and scattered to their rows). Which
is faster depends on the CPU and the window's shape, so for 8 rows and more both are
timed on a small window of that shape at first use, in each process, and the faster is
kept (`orders` tells which). With ``numba`` (the ``fast`` extra) installed, `decode_rows`
runs such a loop; without it (or with the settings' ``kernels="numpy"``, e.g. from
``ONDABATCHES_KERNELS=numpy``) it returns False and the caller takes numpy's path. Both
give the same bits, in either order: the loop does the very operations numpy's path does
(float64 multiply and add rounded once to the output dtype, or float32 arithmetic where
the decode plan chose it), in the same order, with no contraction into fused
multiply-adds; tests compare the two for every sample type.

The kernels are compiled on first use for each sample type and cached on disk by numba
(``NUMBA_CACHE_DIR`` says where, if the package's own folder cannot be written), so a
worker process loads rather than compiles them, at its first window (a Batcher's first
``take()`` waits for every worker's first batch, so later batches do not pay for it).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._settings import Settings, current_settings, on_change

__all__ = ["available", "decode_rows", "decoder", "orders", "warm_up"]

#: Sample types the kernels take (in native byte order): every value converts to float64
#: exactly, so the loop's float64 arithmetic is numpy's.
_SAMPLE_TYPES = frozenset(np.dtype(t) for t in ("i1", "u1", "i2", "u2", "i4", "u4"))
_OUT_TYPES = frozenset(np.dtype(t) for t in ("f4", "f8"))

log = logging.getLogger(__name__)


#: False turns the kernels off in this process: the settings' ``kernels`` (see
#: `ondabatches.onda.use_settings`) as a flag read for every window; None until the
#: settings are first read.
ENABLED: bool | None = None


def _follow(settings: Settings | None) -> None:
    global ENABLED
    ENABLED = None if settings is None else settings.kernels != "numpy"


on_change(_follow)


def _enabled() -> bool:
    if ENABLED is None:
        current_settings()  # reads them, and _follow sets the flag
    return bool(ENABLED)


#: Below this many rows, rows are decoded one at a time, on every CPU measured (1 to 6
#: channels 1.5-10x faster that way). From it on, which loop order is faster depends on
#: the CPU: on one (Intel) time steps were faster for 8 channels and more, on another
#: (AMD EPYC) one row at a time was 1.7x faster for 19. So `_few` measures both at first
#: use, per window shape and types, and keeps the faster (rows only when clearly so:
#: `_ROWS_MARGIN`); both give the same bits.
_FEW = 8

#: The loop order chosen for each key of `_few`: True for one row at a time.
_ROWS: dict[tuple, bool] = {}

#: "rows" or "steps" forces that order for every window (tests, benchmarks); None measures.
FORCED: str | None = None

#: Time steps of the window the two orders decode when `_few` measures them: the first
#: window's own, within these bounds. A fixed 2048 misled: output rows 8 KiB apart (a
#: power of two) make every time step's writes fall in one set of the cache, which
#: slowed the time-steps order 5-7x on that probe alone (Intel Xeon: 0.13 vs 0.019 ms),
#: while on real 30 s windows (7680 steps) the two orders were even.
_PROBE_STEPS = (256, 16384)

#: One row at a time is kept only when it is at least this much faster than time
#: steps: on even terms, time steps read each window once, in order, which held up
#: where two worker processes share a core's caches (2 workers: 329 vs 279 batches/s
#: with rows, Intel Xeon), and gave inline batches the same time.
_ROWS_MARGIN = 1.2

_lock = threading.Lock()
_post: Callable[..., None] | None = None


def jit(f: Callable[..., None]) -> Callable[..., None]:
    """``f`` compiled by numba as every kernel here is (no GIL, no bounds checks, numpy's
    error model, no fastmath: no contraction into fused multiply-adds), cached on disk
    where a cache can be written; ImportError without numba."""
    import numba

    options: dict[str, Any] = dict(nogil=True, boundscheck=False, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(f)
    except RuntimeError:  # no writable cache location: compile in each process
        return numba.njit(**options)(f)


class CompileOnce:
    """A compiled kernel built and tried once per process, or None where it cannot be.

    Calling it returns ``build()``'s kernel once ``attempt(kernel)`` ran it on a tiny
    input (compiling it, or loading numba's cache), or None: without numba (an
    ImportError, logged at INFO as ``missing`` says, if given) or where numba cannot
    compile it (logged as a warning naming ``what``); it then stays None, and callers
    take their numpy or scipy path. Thread-safe: one thread builds, the others wait.
    """

    def __init__(
        self,
        build: Callable[[], Callable[..., None]],
        attempt: Callable[[Callable[..., None]], None],
        what: str,
        logger: logging.Logger,
        missing: str | None = None,
    ):
        self.build, self.attempt, self.what = build, attempt, what
        self.logger, self.missing = logger, missing
        self.kernel: Callable[..., None] | None = None
        self.failed = False
        self._lock = threading.Lock()

    def __call__(self) -> Callable[..., None] | None:
        if self.kernel is not None or self.failed:
            return self.kernel
        with self._lock:
            if self.kernel is None and not self.failed:
                try:
                    kernel = self.build()
                    self.attempt(kernel)
                except ImportError:
                    self.failed = True
                    if self.missing:
                        self.logger.info(self.missing)
                except Exception as exc:  # a numba that cannot compile it
                    self.failed = True
                    self.logger.warning("%s unavailable: %s", self.what, exc)
                else:
                    self.kernel = kernel
        return self.kernel


def _try(kernel: Callable[..., None]) -> None:
    """Run the kernel once on a tiny window (compiling it, or loading numba's cache)."""
    src = np.array([[-2, 3]], dtype=np.int16)
    buf, dst = np.empty(2, "f4"), np.empty((2, 1), "f4")
    kernel(src, np.array([1, 0]), True, False, 0.1, 0.5, buf, dst, _FEW)


def _build() -> Callable[..., None]:
    # Under ``few`` rows (see `_few`): each output row is written in one go from a
    # strided read of its channel. More: each time step's channels are decoded into ``buf``
    # (contiguous, vectorized) and then scattered to their rows. ``narrow`` computes in
    # float32 (a decode plan proved it exact, or exact=False asked for it), else in
    # float64; ``every`` reads all channels in order, else ``channels`` (an indirection
    # that costs vectorization, hence two loops). The offset is always added: a zero
    # offset comes as -0.0, which leaves every value as it is (-0.0 included), as
    # numpy's path does by not adding. One function, so that a worker loads one
    # compiled kernel per sample type.
    def decode(src, channels, every, narrow, res, off, buf, dst, few):  # pragma: no cover
        n = buf.shape[0]
        r32, o32 = np.float32(res), np.float32(off)
        if n < few:
            # A row's channel copied out of the window first (the strided reads alone),
            # then decoded from there in a loop that vectorizes: 1.2x faster for 19
            # int16 channels than decoding from the strided reads.
            tmp = np.empty(src.shape[0], dtype=src.dtype)
            for j in range(n):
                c = j if every else channels[j]
                for t in range(src.shape[0]):
                    tmp[t] = src[t, c]
                if narrow:
                    for t in range(src.shape[0]):
                        dst[j, t] = np.float32(tmp[t]) * r32 + o32
                else:
                    for t in range(src.shape[0]):
                        dst[j, t] = np.float64(tmp[t]) * res + off
        elif every and narrow:
            for t in range(src.shape[0]):
                for c in range(src.shape[1]):
                    buf[c] = np.float32(src[t, c]) * r32 + o32
                for c in range(src.shape[1]):
                    dst[c, t] = buf[c]
        elif every:
            for t in range(src.shape[0]):
                for c in range(src.shape[1]):
                    buf[c] = np.float64(src[t, c]) * res + off
                for c in range(src.shape[1]):
                    dst[c, t] = buf[c]
        elif narrow:
            for t in range(src.shape[0]):
                for j in range(n):
                    buf[j] = np.float32(src[t, channels[j]]) * r32 + o32
                for j in range(n):
                    dst[j, t] = buf[j]
        else:
            for t in range(src.shape[0]):
                for j in range(n):
                    buf[j] = np.float64(src[t, channels[j]]) * res + off
                for j in range(n):
                    dst[j, t] = buf[j]

    return jit(decode)


#: numba's compiled decode kernels (compiled lazily per type), or None without numba.
_compile = CompileOnce(
    _build,
    _try,
    "compiled decode kernels (windows are decoded with numpy)",
    log,
    missing="numba is not installed: windows are decoded with numpy, about 1.4x slower "
    "for 30 s windows (pip install 'ondabatches[fast]')",
)


# The decode of the plain kernel's many-channel loops, then each value multiplied by the
# gain (in the output dtype: the decoded value is rounded first, as numpy's ``out *=
# gain`` after the decode does), written to time step ``t`` or, reversed, to the mirror
# step, and rows ``j`` where ``fill[j]`` is not NaN set to it (a signed zero): a
# window's gain, time reversal and dropped channels for the price of its decode. The
# gain comes as a Python float (numba types one faster than a numpy scalar) holding a
# value of the output dtype, and is made that dtype here; ``few`` as in the plain
# kernel (see `_few`). Module-level functions, the
# row ones called through globals that `_build_post` sets before the kernel compiles:
# numba's cache keeps them all (a closure over a compiled function compiles again in
# each process).


def _row_narrow(src, c, r32, o32, row, gain, reverse, tmp):  # pragma: no cover
    # Few rows: each row in one go, as the plain kernel does: its channel copied out of
    # the window (reversed, if it is) into ``tmp``, then decoded from there in a loop
    # that vectorizes (the gain then costs next to nothing); a function per row, whose
    # loops LLVM vectorizes as it does the plain kernel's.
    _STAGE(src, c, reverse, tmp)
    for t in range(src.shape[0]):  # (float32 throughout, no rounding left)
        row[t] = (np.float32(tmp[t]) * r32 + o32) * gain


def _row_wide(src, c, res, off, row, gain, reverse, tmp):  # pragma: no cover
    # Decoded in float64 and rounded to the row's dtype, then multiplied by the gain in
    # that dtype (two roundings, as numpy's ``out *= gain`` after the decode).
    _STAGE(src, c, reverse, tmp)
    if gain == 1:
        for t in range(src.shape[0]):
            row[t] = np.float64(tmp[t]) * res + off
    else:
        for t in range(src.shape[0]):
            row[t] = row.dtype.type(np.float64(tmp[t]) * res + off) * gain


def _stage(src, c, reverse, tmp):  # pragma: no cover
    last = src.shape[0] - 1
    if reverse:
        for t in range(src.shape[0]):
            tmp[last - t] = src[t, c]
    else:
        for t in range(src.shape[0]):
            tmp[t] = src[t, c]


def _decode_post(
    src, channels, every, narrow, res, off, buf, dst, gain, reverse, fill, few
):  # pragma: no cover
    n = buf.shape[0]
    last = src.shape[0] - 1
    r32, o32 = np.float32(res), np.float32(off)
    gain = dst.dtype.type(gain)
    if n < few:
        tmp = np.empty(src.shape[0], dtype=src.dtype)
        for j in range(n):
            if fill[j] == fill[j]:  # not NaN: the row is set to it
                for at in range(src.shape[0]):
                    dst[j, at] = fill[j]
                continue
            c = j if every else channels[j]
            if narrow:
                _ROW_NARROW(src, c, r32, o32, dst[j], gain, reverse, tmp)
            else:
                _ROW_WIDE(src, c, res, off, dst[j], gain, reverse, tmp)
        return
    # Output step ``at`` in order (its rows are written as streams, ascending), from
    # input step ``t``: the mirror one when reversed (one stream read backwards). The
    # branches stay out of the loops, as in the plain kernel.
    for at in range(src.shape[0]):
        t = last - at if reverse else at
        if every and narrow:
            for j in range(n):
                buf[j] = np.float32(src[t, j]) * r32 + o32
        elif every:
            for j in range(n):
                buf[j] = np.float64(src[t, j]) * res + off
        elif narrow:
            for j in range(n):
                buf[j] = np.float32(src[t, channels[j]]) * r32 + o32
        else:
            for j in range(n):
                buf[j] = np.float64(src[t, channels[j]]) * res + off
        for j in range(n):
            dst[j, at] = buf[j] * gain if fill[j] != fill[j] else fill[j]


_ROW_NARROW: Callable[..., None] | None = None
_ROW_WIDE: Callable[..., None] | None = None
_STAGE: Callable[..., None] | None = None


def _build_post() -> Callable[..., None]:
    global _ROW_NARROW, _ROW_WIDE, _STAGE
    _STAGE = jit(_stage)
    _ROW_NARROW, _ROW_WIDE = jit(_row_narrow), jit(_row_wide)
    return jit(_decode_post)


def _post_kernel() -> Callable[..., None] | None:
    global _post
    if _post is None and _compile() is not None:
        with _lock:
            if _post is None:
                _post = _build_post()
    return _post


def available() -> bool:
    """Whether compiled kernels run here (numba is installed and not turned off)."""
    return _enabled() and _compile() is not None


def decode_rows(
    data: np.ndarray,
    index: slice | list[int] | np.ndarray,
    resolution: float,
    offset: float,
    native: bool,
    out: np.ndarray,
    gain: np.floating | None = None,
    reverse: bool = False,
    fill: np.ndarray | None = None,
) -> bool:
    """Decode rows ``index`` of ``data`` (channels x time) into ``out``; False if it can't.

    ``data`` must be the transpose of a C-ordered time x channels array (what a read of
    interleaved samples gives) and ``out`` C-ordered. ``native`` asks for arithmetic in
    ``out``'s dtype (float32) rather than float64; both round as numpy's path does.
    ``gain`` (a scalar of ``out``'s dtype) multiplies each decoded value, and
    ``reverse`` writes the window reversed in time: the values of ``out *= gain`` and
    ``out[:, ::-1]`` after the plain decode, and ``fill`` (one value per row of ``out``,
    NaN for a row to decode) the rows set to its value after that.
    """
    src = data.T
    if (
        src.dtype not in _SAMPLE_TYPES
        or out.dtype not in _OUT_TYPES
        or not src.flags.c_contiguous
        or not out.flags.c_contiguous
        or out.ndim != 2
        or src.shape[0] != out.shape[1]
        or not _enabled()
    ):
        return False
    kernel = _compile()
    if kernel is None:
        return False
    narrow = native and out.dtype == np.float32
    if narrow and src.dtype.itemsize > 2:
        return False  # numpy multiplies 32-bit samples by a float32 in float64
    if isinstance(index, slice):
        if index != slice(None) or src.shape[1] != out.shape[0]:
            return False
        channels, every = _NO_CHANNELS, True
    else:
        channels, every = np.asarray(index, dtype=np.intp), False
        if channels.shape != (out.shape[0],) or not _in_range(channels, src.shape[1]):
            return False  # numpy's path raises, or takes negative indices from the end
    # -0.0 + x == x for every x: a zero offset changes nothing, as numpy's path adds none
    off = float(offset) if offset != 0.0 else -0.0
    buf = np.empty(out.shape[0], dtype=out.dtype)
    if gain is None and not reverse and fill is None:
        kernel(src, channels, every, narrow, float(resolution), off, buf, out,
               _few(src, channels, every, narrow, buf, out))  # fmt: skip
        return True
    post = _post_kernel()
    if post is None:
        return False
    # The gain as a float of the value it has in out's dtype (made that dtype again in
    # the kernel: exactly the same number).
    gain = 1.0 if gain is None else float(out.dtype.type(gain))
    fill = _no_fill(out.shape[0], out.dtype) if fill is None else fill.astype(out.dtype, copy=False)
    post(src, channels, every, narrow, float(resolution), off, buf, out, gain, bool(reverse),
         fill, _few(src, channels, every, narrow, buf, out))  # fmt: skip
    return True


_NO_CHANNELS = np.empty(0, dtype=np.intp)


def decoder(
    sample_type: np.dtype,
    out_type: np.dtype,
    resolution: float,
    offset: float,
    native: bool,
    folded: bool = False,
) -> Callable[..., None] | None:
    """`decode_rows` with its checks of the types done once, for many windows of a batch.

    Returns ``decode(src, channels, out)`` or None where `decode_rows` would return
    False for these types. ``src`` is a read window as it is laid out (time x channels,
    C-ordered), ``channels`` None for every channel or an ``intp`` array of indices in
    range, ``out`` C-ordered rows x time with as many time steps: the caller vouches for
    all of it (`decode_rows` checks it for each window). The same values as
    `decode_rows`. ``folded=True`` returns ``decode(src, channels, out, gain, reverse,
    fill)`` instead: `decode_rows` with those arguments (a window's folded gain, time
    reversal and dropped rows), by the same kernel, so the same bits.
    """
    sample_type, out_type = np.dtype(sample_type), np.dtype(out_type)
    if sample_type not in _SAMPLE_TYPES or out_type not in _OUT_TYPES or not _enabled():
        return None
    kernel = _compile()
    narrow = native and out_type == np.float32
    if kernel is None or (narrow and sample_type.itemsize > 2):
        return None
    post = _post_kernel() if folded else None
    if folded and post is None:
        return None
    res, off = float(resolution), float(offset) if offset != 0.0 else -0.0
    # Per window shape: the kernel's buffer and its loop order (`_few`), worked out at
    # the first window of that shape (the decoder serves one batch's windows of a signal).
    shapes: dict[tuple[int, int, bool], tuple[np.ndarray, int]] = {}

    def prepared(src: np.ndarray, channels: np.ndarray, every: bool, out: np.ndarray):
        key = (out.shape[0], src.shape[1], every)
        found = shapes.get(key)
        if found is None:
            buf = np.empty(out.shape[0], dtype=out_type)
            found = shapes[key] = (buf, _few(src, channels, every, narrow, buf, out))
        return found

    def decode(src: np.ndarray, channels: np.ndarray | None, out: np.ndarray) -> None:
        every = channels is None
        channels = _NO_CHANNELS if every else channels
        buf, few = prepared(src, channels, every, out)
        kernel(src, channels, every, narrow, res, off, buf, out, few)

    def decode_folded(
        src: np.ndarray,
        channels: np.ndarray | None,
        out: np.ndarray,
        gain: np.floating | None,
        reverse: bool,
        fill: np.ndarray | None,
    ) -> None:
        every = channels is None
        channels = _NO_CHANNELS if every else channels
        buf, few = prepared(src, channels, every, out)
        # As decode_rows passes them: the gain as a float of its value in out's dtype.
        g = 1.0 if gain is None else float(out_type.type(gain))
        fill = (
            _no_fill(out.shape[0], out_type) if fill is None else fill.astype(out_type, copy=False)
        )
        post(src, channels, every, narrow, res, off, buf, out, g, bool(reverse), fill, few)

    return decode_folded if folded else decode


@functools.lru_cache(maxsize=64)
def _no_fill(rows: int, dtype: np.dtype) -> np.ndarray:
    """The ``fill`` of a window with no row set: NaNs (read-only: shared)."""
    fill = np.full(rows, np.nan, dtype)
    fill.flags.writeable = False
    return fill


def _few(src, channels, every, narrow, buf, out) -> int:
    """The kernels' ``few`` argument: under it, one row at a time; else by time steps."""
    n = out.shape[0]
    if n < _FEW:
        return _FEW
    if FORCED is not None:
        return n + 1 if FORCED == "rows" else 0
    key = (n, src.shape[1], src.dtype.char, out.dtype.char, narrow, every)
    rows = _ROWS.get(key)
    if rows is None:
        rows = _ROWS[key] = _rows_faster(src, channels, every, narrow, buf, out)
    return n + 1 if rows else 0


def _rows_faster(src, channels, every, narrow, buf, out) -> bool:
    """Time both loop orders on a window of this shape and length (a few ms at most), in
    turns: whether one row at a time is clearly faster (`_ROWS_MARGIN`)."""
    kernel = _compile()
    steps = min(max(src.shape[0], _PROBE_STEPS[0]), _PROBE_STEPS[1])
    probe = np.zeros((steps, src.shape[1]), dtype=src.dtype)
    dst = np.empty((out.shape[0], steps), dtype=out.dtype)
    best = {True: float("inf"), False: float("inf")}
    for _ in range(3):
        for rows in (True, False):
            started = time.perf_counter()
            kernel(probe, channels, every, narrow, 1.0, -0.0, buf, dst,
                   out.shape[0] + 1 if rows else 0)  # fmt: skip
            best[rows] = min(best[rows], time.perf_counter() - started)
    faster = best[True] * _ROWS_MARGIN <= best[False]
    log.debug("decode of %d rows of %d (%s to %s): %s first (%.3g vs %.3g ms)", out.shape[0],
              src.shape[1], src.dtype, out.dtype, "rows" if faster else "time steps",
              best[faster] * 1e3, best[not faster] * 1e3)  # fmt: skip
    return faster


def orders() -> dict[str, str]:
    """The loop order measured for each window shape decoded so far in this process."""
    return {f"{k[0]} of {k[1]} channels, {np.dtype(k[2])} to {np.dtype(k[3])}":
            "rows" if v else "time steps" for k, v in _ROWS.items()}  # fmt: skip


def _in_range(channels: np.ndarray, n: int) -> bool:
    return channels.size == 0 or (int(channels.min()) >= 0 and int(channels.max()) < n)


def warm_up() -> bool:
    """Compile the kernels for int16 samples now, or load them from numba's cache.

    Other sample types compile on first use. Returns whether kernels are available
    (under the process's settings: none with ``kernels="numpy"``).
    """
    return available()
