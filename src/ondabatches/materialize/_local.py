"""The everyday case of `materialize_batch`, with its per-item work done once per batch.

Windows of local ``lpcm`` and seekable ``lpcm.zst`` files (a pread each, the frames'
decompression, then the decode kernel) cost little, so
what a batch pays per item beyond those two calls decides its speed. Here the items of
one signal share, within a batch, the work the general path does for each item: the
filesystem lookup and allow-list check, the descriptor and its ``stat`` (the size
check, or the seek table), the decode plan and the kernel's type checks; each window is
read (and decompressed) into scratch buffers of the thread and decoded from there into
its slot of ``x``.

What a signal's items share is also kept for the thread's next batches (see `_open`):
each batch still looks the path up in the descriptor cache, whose ``stat`` says
whether it is still the same file, of the same size and mtime.

Anything unusual (another format, a remote file, a selector object, a window outside
the file, a read or check that fails) is left to the general path, item by item, so
that its errors and values stay the general path's own.

A batch whose leading augmentations fold into the decode (a transform pipeline's gains,
signs, reversals and dropped channels: `Folds`) takes this path too, each window's fold
done by the compiled kernel that `DecodePlan.select` runs for it on the general path
(the same bits).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..batches._item import BatchItem
from ..onda._decoding import decode_plan
from ..onda._descriptors import Holds
from ..onda._formats import get_format
from ..onda._lpcm import LPCMFormat, check_lpcm_size
from ..onda._settings import on_change
from ..onda._storage import filesystem_for, is_local
from ..onda._zst import LPCMZstFormat, SeekTable, _frames_into, local_seek_table
from ._local_edf import decode_edf

__all__ = ["decode_local"]

#: A thread's scratch buffer is kept between batches up to this size (a 30 s window of
#: 19 int16 channels at 256 Hz is 292 KB); larger ones are dropped after their batch.
_KEEP_SCRATCH = 16 << 20

_scratch = threading.local()

#: The formats read here, by name: each the built-in class (a user's re-registered
#: format of one of these names takes the general path).
_FORMATS = {"lpcm": LPCMFormat, "lpcm.zst": LPCMZstFormat}

Decode = Callable[[np.ndarray, Any, np.ndarray], None]


class _Signal:
    """What the items of one signal share within a batch (and, for the same file
    unchanged, the thread's later batches: `_open`)."""

    __slots__ = ("fd", "n_total", "bps", "n_cols", "dtype", "decode", "plan", "folded", "path")

    def __init__(self, fd: int, n_total: int, item: BatchItem, out_type: np.dtype, exact: bool):
        info = item.info
        self.fd, self.n_total, self.path = fd, n_total, ""
        self.bps, self.n_cols, self.dtype = info.bytes_per_sample, info.n_channels, info.dtype
        self.plan = decode_plan(info, out_type, not exact)
        self.decode: Decode | None = self.plan.kernel_decoder(info.dtype)
        self.folded: Any = _UNSEEN  # the folding kernel, made at the first folded window

    def read(self, rows: range, scratch: _Scratch) -> np.ndarray | None:
        """The window's samples, time x channels (a view of scratch); None if short."""
        n = len(rows) * self.bps
        view = scratch.get(0, n)
        if n and os.preadv(self.fd, [view], rows.start * self.bps) != n:
            return None  # the general path reads on, or names where the file ended
        return self.samples(view)

    def samples(self, buf: np.ndarray) -> np.ndarray:
        return buf.view(self.dtype).reshape(-1, self.n_cols)

    def decode_into(self, src: np.ndarray, index: Any, channels: Any, out: np.ndarray) -> None:
        if self.decode is not None:
            self.decode(src, channels, out)
        else:
            self.plan.select(src.T, index, out)

    def decode_folded(self, src: np.ndarray, index: Any, channels: Any, out: np.ndarray,
                      fold: tuple) -> None:  # fmt: skip
        """`decode_into` with a window's ``(gain, reverse, fill)`` (see `DecodePlan.select`)."""
        if self.folded is _UNSEEN:
            self.folded = self.plan.kernel_decoder(self.dtype, folded=True)
        if self.folded is not None:
            self.folded(src, channels, out, *fold)
        else:
            self.plan.select(src.T, index, out, *fold)


class _ZstSignal(_Signal):
    """A local ``lpcm.zst`` file with a seek table: a window's frames, decompressed."""

    __slots__ = ("table", "url")

    def __init__(self, fd: int, n_total: int, item: BatchItem, out_type: np.dtype,
                 exact: bool, table: SeekTable, url: str):  # fmt: skip
        super().__init__(fd, n_total, item, out_type, exact)
        self.table, self.url = table, url

    def read(self, rows: range, scratch: _Scratch) -> np.ndarray | None:
        bps = self.bps
        start, stop = rows.start * bps, rows.stop * bps
        if stop == start:
            return self.samples(np.empty(0, dtype=np.uint8))
        table = self.table
        first, last = table.frames_for(start, stop)
        c = table.compressed_offsets
        a, b = c.item(first), c.item(last)
        compressed = scratch.get(1, b - a)
        if os.preadv(self.fd, [compressed], a) != b - a:
            return None
        origin = table.frame_start(first)
        size = table.frame_start(last) - origin
        buf = _frames_into(compressed, table, first, last, self.url, scratch.get(0, size))
        skip = start - origin
        return buf[skip : skip + stop - start].view(self.dtype).reshape(-1, self.n_cols)


def decode_local(
    items: Sequence[BatchItem],
    plans: Sequence[tuple[range, Any]],
    n_totals: Sequence[int],
    dtype: np.dtype,
    x: np.ndarray,
    exact: bool,
    folds: Sequence[tuple | None] | None = None,
) -> list[int]:
    """Decode into ``x[i]`` each item that is a window of a local ``lpcm`` file.

    ``plans`` holds each item's rows and channel index, ``n_totals`` its signal's
    samples; ``folds``, if given, each item's ``(gain, reverse, fill)`` for the decode
    (None: the plain decode). Returns the positions of the items left for the general
    path.
    """
    if not x.flags.c_contiguous or any(type(get_format(f)) is not t for f, t in _FORMATS.items()):
        return _edf(range(len(items)), items, plans, n_totals, x, dtype, exact, folds)
    left: list[int] = []
    signals: dict[tuple, Any] = {}
    # Per signal and channel index: the signal (None: left to the general path) and the
    # kernel's channels, worked out at the signal's first item.
    shared: dict[tuple, tuple[_Signal | None, Any]] = {}
    channels: dict[tuple, np.ndarray] = {}
    scratch = _Scratch.of_this_thread()
    n_out, n_steps = x.shape[1:] if x.ndim == 3 else (-1, -1)
    with Holds() as held:
        for i, (item, (rows, index), n_total) in enumerate(
            zip(items, plans, n_totals, strict=True)
        ):
            if type(item) is not BatchItem or index is None:
                left.append(i)
                continue
            # By identity (the items hold the objects; a row's items share them): an
            # equal signal of other objects only opens its own entry.
            key = (id(item.file_path), id(item.file_format), id(item.signal_span), id(item.info),
                   id(index))  # fmt: skip
            found = shared.get(key)
            if found is None:
                found = shared[key] = _shared(item, n_total, index, dtype, exact, held, signals,
                                              channels, n_out)  # fmt: skip
            signal, picked = found
            if signal is None or not 0 <= rows.start <= rows.stop <= n_total:
                left.append(i)
                continue
            try:
                src = signal.read(rows, scratch)
                if src is None or src.shape[0] != n_steps:
                    left.append(i)
                    continue
                if folds is None or folds[i] is None:
                    signal.decode_into(src, index, picked, x[i])
                else:
                    signal.decode_folded(src, index, picked, x[i], folds[i])
            except Exception:  # the general path raises its own error for this item
                left.append(i)
    scratch.keep()
    return _edf(left, items, plans, n_totals, x, dtype, exact, folds)


def _shared(
    item: BatchItem,
    n_total: int,
    index: Any,
    dtype: np.dtype,
    exact: bool,
    held: Holds,
    signals: dict[tuple, Any],
    channels: dict[tuple, np.ndarray],
    n_out: int,
) -> tuple[_Signal | None, Any]:
    """What a batch's items of one signal and channel index share: the signal (None if
    the general path reads them) and the kernel's channels (`_channels`)."""
    if item.file_format not in _FORMATS:
        return None, None
    key = (id(item.file_path), id(item.signal_span), id(item.info))
    signal = signals.get(key, _UNSEEN)
    if signal is _UNSEEN:
        signal = signals[key] = _open(item, n_total, dtype, exact, held)
    if signal is None:
        return None, None
    picked = _channels(channels, index, signal.n_cols)
    if picked is _INVALID or n_out != (signal.n_cols if picked is None else len(picked)):
        return None, None
    return signal, picked


def _edf(todo, items, plans, n_totals, x, dtype, exact, folds) -> list[int]:
    """`decode_edf` of the items ``todo`` (EDF/BDF in place) that have no fold; the
    positions left for the general path, in order."""
    if folds is None:
        return decode_edf(todo, items, plans, n_totals, x, dtype, exact)
    folded = [i for i in todo if folds[i] is not None]
    plain = [i for i in todo if folds[i] is None]
    return sorted(folded + decode_edf(plain, items, plans, n_totals, x, dtype, exact))


def _open(
    item: BatchItem, n_total: int, dtype: np.dtype, exact: bool, held: Holds
) -> _Signal | None:
    try:
        # By value, not identity: a worker's batches arrive unpickled, new objects
        # each time, for the same signals. The same settings (a change empties every
        # thread's entries): the file is the one checked if its stat says so. Keyed by
        # what hashes cheaply (a path's hash is kept by the string); the span and the
        # samples info, compared (by identity first) on a hit.
        key = (item.file_path, item.file_format, dtype, exact, n_total)
        kept = _kept_signals().get(key)
        if kept is not None:
            identity, signal, span, info = kept
            if (span is item.signal_span or span == item.signal_span) and (
                info is item.info or info == item.info
            ):
                fd, st = held.hold(signal.path)
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == identity:
                    signal.fd = fd
                    return signal
        opened_signal = _new_signal(item, n_total, dtype, exact, held)
        if opened_signal is None:
            return None
        signal, st = opened_signal
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        _keep(key, (identity, signal, item.signal_span, item.info))
        return signal
    except Exception:  # refused, missing, the wrong size: the general path says so
        return None


def _new_signal(
    item: BatchItem, n_total: int, dtype: np.dtype, exact: bool, held: Holds
) -> tuple[_Signal, os.stat_result] | None:
    """The item's signal, looked up, opened and checked, and the stat it was checked at."""
    fs, path = filesystem_for(item.file_path)
    if not is_local(fs):
        return None
    fd, st = held.hold(path)
    signal: _Signal
    if item.file_format == "lpcm":
        check_lpcm_size(path, st.st_size, item.info, n_total)
        signal = _Signal(fd, n_total, item, dtype, exact)
    else:
        table = local_seek_table(fs, path, fd, st)
        if table is None:  # a stream without a seek table: read from its start
            return None
        check_lpcm_size(path, table.decompressed_size, item.info, n_total, what="decompresses to")
        signal = _ZstSignal(fd, n_total, item, dtype, exact, table, path)
    signal.path = path
    return signal, st


#: Signals kept per thread for its next batches, at most this many (then emptied).
_KEEP_SIGNALS = 1024

# Bumped by every change of the settings (allowed roots, kernels): kept signals of an
# earlier generation are dropped.
_generation = [0]


def _settings_changed(_settings: Any) -> None:
    _generation[0] += 1


on_change(_settings_changed)


def _kept_signals() -> dict[tuple, tuple]:
    kept = getattr(_scratch, "signals", None)
    if kept is None or kept[0] != _generation[0]:
        kept = _scratch.signals = (_generation[0], {})
    return kept[1]


def _keep(key: tuple, entry: tuple) -> None:
    kept = _kept_signals()
    if len(kept) >= _KEEP_SIGNALS:
        kept.clear()
    kept[key] = entry


_UNSEEN = object()

#: `_channels` of an index the kernel must not take (out of range, or not all rows).
_INVALID = np.empty(0, dtype=np.intp)


def _channels(cache: dict[tuple, np.ndarray], index: Any, n_cols: int) -> np.ndarray | None:
    """The kernel's channels of a channel index: None for every channel, else indices in
    range (cached by identity within the batch: `_indices` hands out one list per
    selector and signal layout, and ``plans`` holds it while the batch is read)."""
    if isinstance(index, slice):
        return None if index == slice(None) else _INVALID
    key = (id(index), n_cols)
    found = cache.get(key)
    if found is None:
        found = np.asarray(index, dtype=np.intp)
        ok = found.ndim == 1 and (found.size == 0 or (found.min() >= 0 and found.max() < n_cols))
        found = cache[key] = found if ok else _INVALID
    return found


class _Scratch:
    """A thread's scratch buffers (0: samples, 1: compressed bytes), kept between
    batches while they stay under `_KEEP_SCRATCH` bytes, so that their pages are not
    faulted in again for every window."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: list[np.ndarray | None] = [None, None]

    @classmethod
    def of_this_thread(cls) -> _Scratch:
        scratch = getattr(_scratch, "buffers", None)
        if scratch is None:
            scratch = _scratch.buffers = cls()
        return scratch

    def get(self, slot: int, n: int) -> np.ndarray:
        """A writable uint8 array of ``n`` bytes (a view of the slot's buffer)."""
        buf = self.buffers[slot]
        if buf is None or buf.size < n:
            buf = self.buffers[slot] = np.empty(max(n, 2 * (0 if buf is None else buf.size)),
                                                dtype=np.uint8)  # fmt: skip
        return buf[:n]

    def keep(self) -> None:
        for slot, buf in enumerate(self.buffers):
            if buf is not None and buf.size > _KEEP_SCRATCH:
                self.buffers[slot] = None
