"""Handing arrays from a worker process to the manager through POSIX shared memory.

A worker writes the arrays of one batch into a single segment whose name the manager
chose beforehand, and sends back only a small :class:`SharedArrays` descriptor. The
manager copies the arrays out and unlinks the segment at once. Because the manager
knows every name it handed out, it can also unlink the segment of a worker that died
before reporting, so nothing is left behind in ``/dev/shm``.
"""

from __future__ import annotations

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
            if array.nbytes == 0:  # its offset may lie past the end of the segment
                continue
            view = np.ndarray(array.shape, array.dtype, buffer=segment.buf, offset=offset)
            view[...] = array
            del view
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


def read_shared(shared: SharedArrays) -> tuple[np.ndarray, ...]:
    """Copy the arrays out of ``shared``'s segment, then unlink the segment."""
    segment = shared_memory.SharedMemory(name=shared.name)
    try:
        arrays = []
        for shape, dtype, offset in zip(shared.shapes, shared.dtypes, shared.offsets, strict=True):
            if 0 in shape:
                arrays.append(np.empty(shape, dtype))
                continue
            view = np.ndarray(shape, dtype, buffer=segment.buf, offset=offset)
            arrays.append(view.copy())
            del view
    finally:
        segment.close()
        segment.unlink()
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
