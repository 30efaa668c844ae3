"""Windows of local EDF/BDF files served in place, decoded per batch (see `._local`).

The items of one in-place signal share, within a batch, the header lookup and every
check of the general path (`EdfFormat.prepare`), the descriptor and the decode plan;
each window is one ``preadv`` of the records it covers (contiguous on disk) into a
scratch buffer of the thread, decoded from there into its slot of ``x`` by
`EdfWindows` (record de-interleave and decode fused in one compiled pass). Anything
else, or anything that fails, is left to the general path, whose errors name the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..batches._item import BatchItem
from ..onda._descriptors import opened
from ..onda._edf import EdfFormat
from ..onda._edf_kernels import EdfWindows
from ..onda._formats import get_format
from ..onda._storage import filesystem_for, is_local

__all__ = ["decode_edf"]

_KINDS = ("edf", "bdf")
_KEEP = 16 << 20  # scratch kept between batches up to this many bytes
_local = threading.local()


def decode_edf(
    todo: Sequence[int],
    items: Sequence[BatchItem],
    plans: Sequence[tuple[range, Any]],
    n_totals: Sequence[int],
    x: np.ndarray,
    dtype: np.dtype,
    exact: bool,
) -> list[int]:
    """Decode into ``x[i]``, for ``i`` in ``todo``, each item that is a window of a local
    EDF/BDF file served in place; returns the positions left for the general path."""
    if not x.flags.c_contiguous or any(
        type(get_format(k)) is not EdfFormat or get_format(k).kind != k for k in _KINDS
    ):
        return list(todo)
    left: list[int] = []
    signals: dict[tuple, tuple[int, EdfWindows] | None] = {}
    with contextlib.ExitStack() as held:
        for i in todo:
            item, (rows, index) = items[i], plans[i]
            if type(item) is not BatchItem or item.file_format not in _KINDS or index is None:
                left.append(i)
                continue
            key = (item.file_path, item.file_format, item.info)
            if key not in signals:
                signals[key] = _open(item, n_totals[i], dtype, exact, held)
            found = signals[key]
            if found is None or not _window(found, rows, index, n_totals[i], x[i]):
                left.append(i)
    buf = getattr(_local, "buf", None)
    if buf is not None and buf.size > _KEEP:
        _local.buf = None
    return left


def _open(
    item: BatchItem, n_total: int, dtype: np.dtype, exact: bool, held: contextlib.ExitStack
) -> tuple[int, EdfWindows] | None:
    try:
        fs, path = filesystem_for(item.file_path)
        if not is_local(fs):
            return None
        fmt = get_format(item.file_format)
        file, _, layout, sel = fmt.prepare(fs, path, item.info, n_total)
        if sel.spr == 0:
            return None
        fd, _ = held.enter_context(opened(file))
        return fd, EdfWindows(layout, sel, item.info, dtype, exact)
    except Exception:  # refused, missing, cut short: the general path says so
        return None


def _window(
    found: tuple[int, EdfWindows], rows: range, index: Any, n_total: int, out: np.ndarray
) -> bool:
    """Decode one window into ``out``; False where the general path must take it."""
    fd, windows = found
    n_cols = windows.info.n_channels
    if isinstance(index, slice):
        if index != slice(None):
            return False
        channels = None
    else:
        channels = np.asarray(index, dtype=np.intp)
        if channels.ndim != 1 or (
            channels.size and not 0 <= channels.min() <= channels.max() < n_cols
        ):
            return False
    n_rows = n_cols if channels is None else len(channels)
    if not 0 <= rows.start < rows.stop <= n_total or out.shape != (n_rows, len(rows)):
        return False
    start, stop = windows.span(rows)
    buf = _scratch(stop - start)
    try:
        if os.preadv(fd, [buf], start) != stop - start:
            return False
        windows.decode_into(buf, rows, index, channels, out)
    except Exception:  # the general path raises its own error for this item
        return False
    return True


def _scratch(n: int) -> np.ndarray:
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(max(n, 2 * (0 if buf is None else buf.size)), np.uint8)
    return buf[:n]
