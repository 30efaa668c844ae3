"""Handing arrays from a worker process to the manager through POSIX shared memory.

A worker writes the arrays of one batch (``x`` and ``y``, or every array of a batch
that is a tree of them, a dict per modality say) one after the other into a single
segment whose name the manager chose beforehand, and sends back only a small
`SharedArrays` descriptor. The manager maps the segment, unlinks its name at
once and hands out arrays over the mapping, without copying: the memory goes back to
the system when the last of those arrays is gone. Because the manager knows every
name it handed out, it can also unlink the segment of a worker that died before
reporting, so nothing is left behind in ``/dev/shm``.

Why not the obvious ``SharedMemory.buf`` both ways: filling a fresh segment through a
mapping takes a page fault per 4 KiB page, which for 50 MB costs more than decoding
the batch did; ``pwrite`` fills it in a few large kernel copies. On the manager's
side, a copy out of the segment would cost as much again, where mapping costs nothing.
"""

from __future__ import annotations

import ctypes
import errno
import math
import mmap
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from .._errors import ArgumentTypeError, SharedMemoryError, SizeLimitError
from ..onda._settings import MAX_SEGMENT_ENV, current_settings
from ._shm_names import _SHM_DIR, new_segment_name, segment_exists, sweep_dead_segments

__all__: list[str] = []


# Offsets of the arrays inside a segment are rounded up to this many bytes so that
# every array starts on a cache line, whatever the dtypes before it.
_ALIGN = 64
# Segment sizes are rounded up to whole multiples of this, plus one.
_SLACK = 1 << 20
# A worker looks for mappings of unlinked segments every this many tasks.
_SWEEP = 16


def max_segment_bytes() -> int:
    """The most bytes one batch's segment may take: the settings' ``max_segment_bytes``
    (``ONDABATCHES_MAX_SEGMENT_BYTES``, `MAX_SEGMENT_ENV`), or the size of ``/dev/shm``
    (more could never fit, however much is freed)."""
    limit = current_settings().max_segment_bytes
    if limit is not None:
        return limit
    try:
        stats = os.statvfs(_SHM_DIR)
    except OSError:  # pragma: no cover - no such folder (macOS)
        return 1 << 62
    return stats.f_blocks * stats.f_frsize


def check_segment_size(need: int, name: str) -> None:
    """Refuse a segment larger than `max_segment_bytes`: no retry could make room,
    so this is a [`SizeLimitError`][ondabatches._errors.SizeLimitError] (permanent), not
    a full ``/dev/shm``."""
    ceiling = max_segment_bytes()
    if need > ceiling:
        raise SizeLimitError(
            f"a batch needs {need / 1e6:.0f} MB of shared memory (segment {name}), more than "
            f"the ceiling of {ceiling / 1e6:.0f} MB (settings' max_segment_bytes or "
            f"{MAX_SEGMENT_ENV}, by default the size "
            f"of {_SHM_DIR}): is the table's sample_rate or span right, or the batch too large?"
        )


@dataclass(frozen=True, slots=True)
class SharedArrays:
    """Where a worker left its arrays: the segment's name and size, each array's layout.

    ``tree`` is the structure (see ``_tree``) that the arrays, in order, rebuild, or
    None for a plain ``(x, y)`` of two arrays.
    """

    name: str
    size: int
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    offsets: tuple[int, ...]
    tree: Any = None

    def __reduce__(self):
        # One goes back with every batch: plain construction unpickles faster than the
        # generic state of a slotted dataclass.
        return (
            SharedArrays,
            (self.name, self.size, self.shapes, self.dtypes, self.offsets, self.tree),
        )


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _rounded(need: int) -> int:
    # Room to spare, so that the small arrays after a big one (y after x) or a slightly
    # larger batch later do not force a new mapping of the whole segment.
    return (need // _SLACK + 2) * _SLACK


def _map(fd: int, size: int) -> mmap.mmap:
    # MAP_POPULATE faults every page in with one call instead of one fault per page.
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags)


def _reserve(fd: int, size: int, name: str) -> None:
    """Allocate a segment's pages now, so that a full ``/dev/shm`` is an error here
    rather than a SIGBUS when the batch is written (what a mapping beyond the free
    space of a tmpfs gets)."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not on macOS
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
            raise
        raise SharedMemoryError(_full_message(size, name)) from exc


def _full_message(size: int, name: str) -> str:
    mb = 1e6
    try:
        stats = os.statvfs(_SHM_DIR)
        room = (
            f"; {_SHM_DIR} has {stats.f_bavail * stats.f_frsize / mb:.0f} MB free of "
            f"{stats.f_blocks * stats.f_frsize / mb:.0f} MB"
        )
    except OSError:  # pragma: no cover - no such folder
        room = ""
    return (
        f"shared memory is full: segment {name} needs {size / mb:.0f} MB for a batch{room}. "
        f"Give it more room (docker run --shm-size=2g; in Kubernetes a memory-backed "
        f"emptyDir mounted on {_SHM_DIR}), or lower the Batcher's buffer"
    )


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise ArgumentTypeError(f"arrays of dtype {dtype} cannot go through shared memory")


class WorkerSegments:
    """A worker's mappings of the manager's segments, kept while they may be reused.

    ``begin(name, size)`` starts a task that writes into segment ``name`` (``size`` is
    what the manager knows of it, 0 for a new one); ``allocate(shape, dtype)`` returns
    an array over the segment, growing it if needed; ``finish(arrays)`` puts any
    arrays that were not allocated there into it and describes the result.

    Mapping a segment costs a page-table entry per page (a tenth of a millisecond for
    a few MB), so mappings are kept for as long as their segment may come back: up to
    ``keep`` of them, as many as a deep buffer keeps in rotation. A mapping of a
    segment the manager has unlinked would hold its memory, so every ``_SWEEP`` tasks
    the worker lets go of those.
    """

    def __init__(self, keep: int = 64):
        self._keep = keep
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._name: str | None = None
        self._used = 0
        self._layout: list[tuple[np.ndarray, int]] = []
        self._tasks = 0

    def begin(self, name: str, size: int) -> None:
        self._name, self._used, self._layout = name, 0, []
        self._tasks += 1
        if self._tasks % _SWEEP == 0:
            self._sweep()
        mapping = self._maps.get(name)
        if mapping is not None and len(mapping) < size:  # another worker grew it
            self._drop(name)

    def _sweep(self) -> None:
        """Drop the mappings of segments whose name is gone."""
        for name in list(self._maps):
            if not segment_exists(name):
                self._drop(name)

    def _mapping(self, need: int) -> mmap.mmap:
        assert self._name is not None
        name = self._name
        mapping = self._maps.get(name)
        if mapping is not None and len(mapping) >= need:
            self._maps.move_to_end(name)
            return mapping
        if mapping is not None:
            self._drop(name)
        # Opened, never created: the manager creates every segment it leases, so once it
        # has unlinked a name (closed, or given up on a batch), a worker that is still
        # running cannot bring the name back. Opened without SharedMemory, whose
        # resource tracker would unlink the segment when this process ends.
        import _posixshmem

        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        except FileNotFoundError:
            raise SegmentGoneError(
                f"shared memory segment {name} is gone: the pool was closed or gave up on "
                f"this batch"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size < need:  # new, or too small: this worker sizes it
                check_segment_size(need, name)
                size = _rounded(need)
                os.ftruncate(fd, size)
                _reserve(fd, size, name)
            mapping = _map(fd, size)
        finally:
            os.close(fd)
        self._maps[name] = mapping
        while len(self._maps) > self._keep:
            self._drop(next(iter(self._maps)))
        return mapping

    def _drop(self, name: str) -> None:
        mapping = self._maps.pop(name)
        try:
            mapping.close()
        except BufferError:  # a result still refers to it; it goes with that result
            pass

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialized array in the task's segment, after those allocated before."""
        dtype = np.dtype(dtype)
        _check_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        offset = _aligned(self._used)
        nbytes = math.prod(shape) * dtype.itemsize  # math.prod: a tenth of np.prod's cost
        mapping = self._mapping(offset + nbytes)
        self._used = offset + nbytes
        array = np.frombuffer(mapping, dtype, nbytes // dtype.itemsize if nbytes else 0, offset)
        array = array.reshape(shape)
        self._layout.append((array, offset))
        return array

    def finish(self, arrays: tuple[np.ndarray, ...], tree: Any = None) -> SharedArrays:
        """Describe ``arrays``, copying into the segment those that are not already there.

        ``tree`` is the structure the arrays rebuild on the manager's side (None: a
        plain tuple).
        """
        assert self._name is not None
        placed = {id(a): off for a, off in self._layout}
        offsets = []
        for array in arrays:
            _check_dtype(array.dtype)
            offset = placed.get(id(array))
            if offset is None:
                copy = self.allocate(array.shape, array.dtype)
                np.copyto(copy, array, casting="no")
                offset = self._layout[-1][1]
            offsets.append(offset)
        mapping = self._mapping(max(self._used, 1))
        result = SharedArrays(
            name=self._name,
            size=len(mapping),
            shapes=tuple(a.shape for a in arrays),
            dtypes=tuple(a.dtype for a in arrays),
            offsets=tuple(offsets),
            tree=tree,
        )
        self._name, self._layout = None, []
        return result


class SegmentPool:
    """The manager's segments: which are free for reuse, and its mapping of each.

    ``lease()`` gives a segment (name, known size) for a task; ``receive(shared)`` maps
    the segment and returns arrays over it, and the segment comes back to the free
    list when the last of those arrays is garbage-collected. At most ``keep`` free
    segments are kept; others are unlinked. ``close()`` unlinks every name: arrays that
    the consumer still holds stay valid (their mapping outlives the name).

    Sizing ahead: a new segment costs its first batch a zeroed page per 4 KiB in the
    worker (``_reserve``) and a mapping in the manager, which made the batches after
    the first up to 2-3x slower than the steady state, each landing in a segment never
    used before. With ``prepare``, once a first batch tells the size, every segment
    leased and not yet written (those of the tasks already waiting in the workers'
    pipes, and each one leased later) is sized, its pages allocated and mapped here,
    by a background thread while the workers are busy with earlier tasks. Only leased
    segments are sized: nothing is made that the pool does not use. A worker that gets
    to a segment first sizes it itself, as without this (both ways are idempotent).
    """

    def __init__(self, keep: int, prepare: bool = False):
        sweep_dead_segments()
        self._keep = keep
        self._prepare = prepare
        self._lock = threading.Lock()
        self._free: list[tuple[str, int]] = []
        self._names: set[str] = set()
        self._maps: dict[str, mmap.mmap] = {}
        self._closed = False
        self._size = 0  # of a batch's segment, once a first batch told it
        self._unsized: set[str] = set()  # leased new, no result yet
        self._to_size: list[str] = []
        self._wake = threading.Condition(self._lock)
        self._preparer: threading.Thread | None = None

    def lease(self) -> tuple[str, int]:
        with self._lock:
            if self._free:
                return self._free.pop()
            name = self._new_name()
        self._create(name)
        if self._prepare:
            with self._lock:
                self._unsized.add(name)
                if self._size:
                    self._size_later([name])
        return name, 0

    def _new_name(self) -> str:
        """A new segment's name, counted as this pool's (called with the lock held)."""
        name = new_segment_name()
        self._names.add(name)
        return name

    @staticmethod
    def _create(name: str) -> None:
        # Created here, tiny (the worker sizes it): see WorkerSegments._mapping.
        shared_memory.SharedMemory(name=name, create=True, size=1).close()

    def receive(self, shared: SharedArrays) -> tuple[np.ndarray, ...]:
        """Arrays over ``shared``'s segment (no copy), writable."""
        with self._lock:
            mapping = self._maps.get(shared.name)
            if mapping is None or len(mapping) < shared.size:
                segment = shared_memory.SharedMemory(name=shared.name)
                try:
                    mapping = _map(segment._fd, segment.size)
                finally:
                    segment.close()
                self._maps[shared.name] = mapping
            self._unsized.discard(shared.name)
            if self._prepare and not self._size:
                self._size = shared.size
                self._size_later(list(self._unsized))
        # numpy keeps the object it was given alive (through its own memoryview of it),
        # so a fresh exporter per batch tells when the last of its arrays is gone.
        view = (ctypes.c_char * len(mapping)).from_buffer(mapping)
        weakref.finalize(view, self._release, shared.name, shared.size)
        arrays = []
        for shape, dtype, offset in zip(shared.shapes, shared.dtypes, shared.offsets, strict=True):
            count = math.prod(shape)
            arrays.append(np.frombuffer(view, dtype, count, offset).reshape(shape))
        return tuple(arrays)

    def _size_later(self, names: list[str]) -> None:
        """Queue ``names`` for the sizing thread (called with the lock held)."""
        if self._closed or not names:
            return
        self._to_size.extend(names)
        if self._preparer is None:
            self._preparer = threading.Thread(
                target=self._size_segments, name="ondabatches-shm-prepare", daemon=True
            )
            self._preparer.start()
        self._wake.notify()

    def _size_segments(self) -> None:
        """The sizing thread: allocate and map queued segments until the pool closes."""
        while True:
            with self._lock:
                while not self._to_size and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                name, size = self._to_size.pop(0), self._size
                if name not in self._unsized:  # its result came back already
                    continue
            self._size_one(name, size)

    def _size_one(self, name: str, size: int) -> bool:
        """Allocate and map segment ``name``; whether it is now mapped here."""
        mapping = _grow_and_map(name, size)
        if mapping is None:
            return False
        with self._lock:
            if name in self._names and name not in self._maps:
                self._maps[name] = mapping
                return True
        _close_quietly(mapping)  # abandoned, or closed meanwhile
        return False

    def settle(self, spare: int) -> None:
        """Prepare, in this thread, what the steady state will use: now rather than later.

        Once a first batch told the size, sizes every leased segment not sized yet
        and adds up to ``spare`` sized segments to the free list (the batches the
        consumer holds while the workers fill others). A Batcher calls it from its first
        ``take()``, which pays for starting up, so that the batches after it land in
        segments ready to be written.
        """
        with self._lock:
            size = self._size
            if not size or self._closed:
                return
            names = [n for n in self._to_size if n in self._unsized]
            self._to_size.clear()
        for name in names:
            self._size_one(name, size)
        for _ in range(spare):
            with self._lock:
                if self._closed or len(self._free) >= self._keep:
                    return
                name = self._new_name()
            self._create(name)
            if self._size_one(name, size):
                with self._lock:
                    if name in self._names:
                        self._free.append((name, size))
                        continue
            self.abandon(name)

    def _release(self, name: str, size: int) -> None:
        with self._lock:
            if not self._closed and len(self._free) < self._keep:
                self._free.append((name, size))
                return
            self._names.discard(name)
            mapping = self._maps.pop(name, None)
        _close_quietly(mapping)
        unlink_shared(name)

    def abandon(self, name: str) -> None:
        """Forget a segment whose task failed (its content and size are unknown)."""
        with self._lock:
            self._names.discard(name)
            self._unsized.discard(name)
            mapping = self._maps.pop(name, None)
        _close_quietly(mapping)
        unlink_shared(name)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            names, self._names = self._names, set()
            maps, self._maps = self._maps, {}
            self._free.clear()
            self._to_size.clear()
            self._wake.notify_all()
            preparer = self._preparer
        if preparer is not None:
            preparer.join()  # it stops after the segment at hand
        for mapping in maps.values():
            _close_quietly(mapping)
        for name in names:
            unlink_shared(name)


def _grow_and_map(name: str, size: int) -> mmap.mmap | None:
    """Allocate the pages of segment ``name`` up to ``size`` bytes and map it, if it
    still exists and has room; None otherwise (its worker then sizes it, and reports
    a full ``/dev/shm`` by name)."""
    import _posixshmem

    try:
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    except OSError:  # unlinked meanwhile
        return None
    try:
        # fallocate sets the new size only once every page is allocated: a worker sees
        # either the tiny segment (and sizes it itself) or one it can write at once.
        if os.fstat(fd).st_size < size and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        return _map(fd, os.fstat(fd).st_size)
    except (OSError, ValueError):
        # ValueError: a worker resized the segment between fstat and mmap (it was sizing
        # it itself, having seen it small): that worker maps it then.
        return None
    finally:
        os.close(fd)


class SegmentGoneError(OSError):
    """A worker was given a segment that no longer exists."""


def _close_quietly(mapping: mmap.mmap | None) -> None:
    if mapping is None:
        return
    try:
        mapping.close()
    except BufferError:  # arrays over it are still alive; it is unmapped when they go
        pass


def unlink_shared(name: str) -> None:
    """Remove the segment ``name`` if it exists (a worker may have died before creating it)."""
    try:
        segment = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return
    except ValueError:
        # Created but still empty: its worker died between creating and sizing it,
        # before registering it with the resource tracker, so only the name remains.
        import _posixshmem

        _posixshmem.shm_unlink("/" + name)
        return
    segment.close()
    try:
        segment.unlink()
    except FileNotFoundError:  # another thread unlinked it meanwhile
        pass
