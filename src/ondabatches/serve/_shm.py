"""Handing arrays from a worker process to the manager through POSIX shared memory.

A worker writes the arrays of one batch into a single segment whose name the manager
chose beforehand, and sends back only a small :class:`SharedArrays` descriptor. The
manager maps the segment, unlinks its name at once and hands out arrays over the
mapping, without copying: the memory goes back to the system when the last of those
arrays is gone. Because the manager knows every name it handed out, it can also
unlink the segment of a worker that died before reporting, so nothing is left behind
in ``/dev/shm``.

Why not the obvious ``SharedMemory.buf`` both ways: filling a fresh segment through a
mapping takes a page fault per 4 KiB page, which for 50 MB costs more than decoding
the batch did; ``pwrite`` fills it in a few large kernel copies. On the manager's
side, a copy out of the segment would cost as much again, where mapping costs nothing.
"""

from __future__ import annotations

import mmap
import os
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

__all__: list[str] = []

# Offsets of the arrays inside a segment are rounded up to this many bytes so that
# every array starts on a cache line, whatever the dtypes before it.
_ALIGN = 64


@dataclass(frozen=True, slots=True)
class SharedArrays:
    """Where a worker left its arrays: the segment's name and each array's layout."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    offsets: tuple[int, ...]


def new_segment_name() -> str:
    """A fresh, unguessable segment name, prefixed so a leak is easy to attribute."""
    return f"ondabatches_{os.getpid()}_{secrets.token_hex(8)}"


def _layout(arrays: tuple[np.ndarray, ...]) -> tuple[tuple[int, ...], int]:
    offsets = []
    end = 0
    for array in arrays:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + array.nbytes
    return tuple(offsets), end


def write_shared(name: str, arrays: tuple[np.ndarray, ...]) -> SharedArrays:
    """Copy ``arrays`` into a new segment called ``name`` and describe them.

    Object arrays cannot live in shared memory and raise ``TypeError``.
    """
    for array in arrays:
        if array.dtype.hasobject:
            raise TypeError(f"arrays of dtype {array.dtype} cannot go through shared memory")
    offsets, size = _layout(arrays)
    # A segment cannot be empty; arrays with a 0-size dimension still need a name.
    segment = shared_memory.SharedMemory(name=name, create=True, size=max(size, 1))
    try:
        for array, offset in zip(arrays, offsets, strict=True):
            _pwrite_all(segment._fd, np.ascontiguousarray(array), offset)
    except BaseException:
        segment.close()
        segment.unlink()
        raise
    segment.close()
    return SharedArrays(
        name=name,
        shapes=tuple(a.shape for a in arrays),
        dtypes=tuple(a.dtype for a in arrays),
        offsets=offsets,
    )


def _pwrite_all(fd: int, array: np.ndarray, offset: int) -> None:
    data = memoryview(array.reshape(-1).view(np.uint8))
    while data:  # pwrite may write less than asked (at most ~2 GiB at once on Linux)
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def read_shared(shared: SharedArrays) -> tuple[np.ndarray, ...]:
    """Writable arrays over ``shared``'s segment, whose name is unlinked at once.

    The arrays share one mapping of the segment; it is unmapped, and the
    memory freed, when the last of them is garbage-collected.
    """
    segment = shared_memory.SharedMemory(name=shared.name)
    try:
        mapping = mmap.mmap(segment._fd, segment.size)
    finally:
        segment.close()
        segment.unlink()
    arrays = []
    for shape, dtype, offset in zip(shared.shapes, shared.dtypes, shared.offsets, strict=True):
        if 0 in shape:
            arrays.append(np.empty(shape, dtype))
            continue
        count = int(np.prod(shape, dtype=np.int64))
        arrays.append(np.frombuffer(mapping, dtype, count, offset).reshape(shape))
    return tuple(arrays)


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
    segment.unlink()
