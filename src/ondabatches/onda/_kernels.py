"""Compiled decode kernels: channel selection, transpose and decode in one pass.

A window read from interleaved LPCM is a time x channels array; a batch wants channels x
time. numpy does that in two steps that each touch every sample (a strided gather, and
a float64 pass when the exact values need one); a compiled loop does it in one, decoding
a time step's channels into a small buffer and scattering them to their rows. With
``numba`` (the ``fast`` extra) installed, :func:`decode_rows` runs such a loop; without it
(or with ``ONDABATCHES_KERNELS=numpy``) it returns False and the caller takes numpy's
path. Both give the same bits: the loop does the very operations numpy's path does
(float64 multiply and add rounded once to the output dtype, or float32 arithmetic where
the decode plan chose it), in the same order, with no contraction into fused
multiply-adds; tests compare the two for every sample type.

The kernels are compiled on first use for each sample type and cached on disk by numba
(``NUMBA_CACHE_DIR`` says where, if the package's own folder cannot be written), so a
worker process loads rather than compiles them; :func:`warm_up` does that ahead of the
first batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["available", "decode_rows", "warm_up"]

#: Sample types the kernels take (in native byte order): every value converts to float64
#: exactly, so the loop's float64 arithmetic is numpy's.
_SAMPLE_TYPES = frozenset(np.dtype(t) for t in ("i1", "u1", "i2", "u2", "i4", "u4"))
_OUT_TYPES = frozenset(np.dtype(t) for t in ("f4", "f8"))

log = logging.getLogger(__name__)

#: False turns the kernels off in this process (``ONDABATCHES_KERNELS=numpy`` does at
#: import): read for every window, so not an environment lookup each time.
ENABLED = os.environ.get("ONDABATCHES_KERNELS", "").strip().lower() != "numpy"


class _Kernels(NamedTuple):
    wide: Callable[..., None]
    narrow: Callable[..., None]
    wide_of: Callable[..., None]
    narrow_of: Callable[..., None]


_lock = threading.Lock()
_compiled: _Kernels | None = None
_failed = False


def _compile() -> _Kernels | None:
    """numba's compiled kernels (compiled lazily per type), or None without numba."""
    global _compiled, _failed
    if _compiled is not None or _failed:
        return _compiled
    with _lock:
        if _compiled is None and not _failed:
            try:
                kernels = _build()
                _try(kernels)
            except ImportError:
                _failed = True
            except Exception as exc:  # a numba that cannot compile them: numpy's path
                _failed = True
                log.warning("compiled decode kernels unavailable, using numpy's: %s", exc)
            else:
                _compiled = kernels
    return _compiled


def _try(kernels: _Kernels) -> None:
    """Run each kernel once on a tiny window (compiling it, or loading numba's cache)."""
    src = np.array([[-2, 3]], dtype=np.int16)
    channels = np.array([1, 0], dtype=np.intp)
    for dtype in (np.float32, np.float64):
        buf, dst = np.empty(2, dtype=dtype), np.empty((2, 1), dtype=dtype)
        for add in (False, True):
            kernels.wide(src, 0.1, 0.5, add, buf, dst)
            kernels.wide_of(src, channels, 0.1, 0.5, add, buf, dst)
            if dtype == np.float32:
                kernels.narrow(src, 0.1, 0.5, add, buf, dst)
                kernels.narrow_of(src, channels, 0.1, 0.5, add, buf, dst)


def _build() -> _Kernels:
    import numba

    def jit(f: Callable[..., None]) -> Callable[..., None]:
        options: dict[str, Any] = dict(nogil=True, boundscheck=False, error_model="numpy")
        try:
            return numba.njit(cache=True, **options)(f)
        except RuntimeError:  # no writable cache location: compile in each process
            return numba.njit(**options)(f)

    # Each time step's channels are decoded into ``buf`` (contiguous, vectorized) and
    # then scattered to their rows; ``add`` is False for a zero offset, so that -0.0
    # stays -0.0 as numpy's path leaves it. ``wide`` computes in float64, ``narrow`` in
    # float32 (a decode plan proved it exact, or exact=False asked for it); the ``_of``
    # forms take a list of channels (an indirection that costs vectorization, hence two
    # forms).
    def wide(src, res, off, add, buf, dst):  # pragma: no cover - compiled
        for t in range(src.shape[0]):
            if add:
                for c in range(src.shape[1]):
                    buf[c] = np.float64(src[t, c]) * res + off
            else:
                for c in range(src.shape[1]):
                    buf[c] = np.float64(src[t, c]) * res
            for c in range(src.shape[1]):
                dst[c, t] = buf[c]

    def narrow(src, res, off, add, buf, dst):  # pragma: no cover - compiled
        r, o = np.float32(res), np.float32(off)
        for t in range(src.shape[0]):
            if add:
                for c in range(src.shape[1]):
                    buf[c] = np.float32(src[t, c]) * r + o
            else:
                for c in range(src.shape[1]):
                    buf[c] = np.float32(src[t, c]) * r
            for c in range(src.shape[1]):
                dst[c, t] = buf[c]

    def wide_of(src, channels, res, off, add, buf, dst):  # pragma: no cover - compiled
        for t in range(src.shape[0]):
            if add:
                for j in range(channels.shape[0]):
                    buf[j] = np.float64(src[t, channels[j]]) * res + off
            else:
                for j in range(channels.shape[0]):
                    buf[j] = np.float64(src[t, channels[j]]) * res
            for j in range(channels.shape[0]):
                dst[j, t] = buf[j]

    def narrow_of(src, channels, res, off, add, buf, dst):  # pragma: no cover - compiled
        r, o = np.float32(res), np.float32(off)
        for t in range(src.shape[0]):
            if add:
                for j in range(channels.shape[0]):
                    buf[j] = np.float32(src[t, channels[j]]) * r + o
            else:
                for j in range(channels.shape[0]):
                    buf[j] = np.float32(src[t, channels[j]]) * r
            for j in range(channels.shape[0]):
                dst[j, t] = buf[j]

    return _Kernels(jit(wide), jit(narrow), jit(wide_of), jit(narrow_of))


def available() -> bool:
    """Whether compiled kernels run here (numba is installed and not turned off)."""
    return ENABLED and _compile() is not None


def decode_rows(
    data: np.ndarray,
    index: slice | list[int] | np.ndarray,
    resolution: float,
    offset: float,
    native: bool,
    out: np.ndarray,
) -> bool:
    """Decode rows ``index`` of ``data`` (channels x time) into ``out``; False if it can't.

    ``data`` must be the transpose of a C-ordered time x channels array (what a read of
    interleaved samples gives) and ``out`` C-ordered. ``native`` asks for arithmetic in
    ``out``'s dtype (float32) rather than float64; both round as numpy's path does.
    """
    src = data.T
    if (
        src.dtype not in _SAMPLE_TYPES
        or out.dtype not in _OUT_TYPES
        or not src.flags.c_contiguous
        or not out.flags.c_contiguous
        or out.ndim != 2
        or src.shape[0] != out.shape[1]
        or not ENABLED
    ):
        return False
    kernels = _compile()
    if kernels is None:
        return False
    narrow = native and out.dtype == np.float32
    if narrow and src.dtype.itemsize > 2:
        return False  # numpy multiplies 32-bit samples by a float32 in float64
    buf = np.empty(out.shape[0], dtype=out.dtype)
    args = (float(resolution), float(offset), offset != 0.0, buf, out)
    if isinstance(index, slice):
        if index != slice(None) or src.shape[1] != out.shape[0]:
            return False
        (kernels.narrow if narrow else kernels.wide)(src, *args)
    else:
        channels = np.asarray(index, dtype=np.intp)
        if channels.shape != (out.shape[0],) or not _in_range(channels, src.shape[1]):
            return False  # numpy's path raises, or takes negative indices from the end
        (kernels.narrow_of if narrow else kernels.wide_of)(src, channels, *args)
    return True


def _in_range(channels: np.ndarray, n: int) -> bool:
    return channels.size == 0 or (int(channels.min()) >= 0 and int(channels.max()) < n)


def warm_up() -> bool:
    """Compile the kernels for int16 samples now, or load them from numba's cache.

    A worker calls it before its first batch, so that batch does not pay for it (other
    sample types compile on first use). Returns whether kernels are available.
    """
    return available()
