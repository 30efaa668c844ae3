"""Open file descriptors of local sample files, kept between reads (a bounded LRU).

Opening a file costs more than reading a 30 s window of it from the page cache, so a
process keeps up to the settings' ``max_open`` descriptors (``ONDABATCHES_MAX_OPEN``,
default `MAX_OPEN`) of the sample files it read last.
Every read still checks, with one ``stat`` of the path, that the path names the file
the descriptor holds (same device and inode): a file replaced since (``store`` renames
a new file over the old one) is opened again, so readers see what a fresh ``open``
would. While the descriptor is held, the old file's inode cannot be reused, so equal
numbers do mean the same file.

Processes: a forked child closes the descriptors it inherited before it uses the cache
(``os.register_at_fork``, and a pid check for any other way a process is copied), so
it never shares a file offset or a descriptor with its parent; a spawned, forkserver
or Ray worker starts with an empty cache. `close_all` closes every descriptor
(the cache is refilled on the next read).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict

from ._settings import DEFAULT_MAX_OPEN, current_settings
from ._storage import check_regular

__all__ = ["MAX_OPEN", "Holds", "close_all", "forget", "open_count", "opened"]

#: The default of the most descriptors a process keeps open for sample files (those
#: being read count until their reads end): the settings' ``max_open`` is the limit.
MAX_OPEN = DEFAULT_MAX_OPEN


class _Held:
    """One open descriptor; closed once dropped from the cache and no read uses it."""

    __slots__ = ("dev", "dropped", "fd", "ino", "users")

    def __init__(self, fd: int, dev: int, ino: int):
        self.fd, self.dev, self.ino = fd, dev, ino
        self.users = 0
        self.dropped = False


_lock = threading.Lock()
_open: OrderedDict[str, _Held] = OrderedDict()
_pid = os.getpid()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:  # pragma: no cover - already closed by someone else
        pass


def _drop(held: _Held) -> None:
    """Take ``held`` out of use (under the lock); close it now if nobody reads it."""
    held.dropped = True
    if held.users == 0:
        _close_quietly(held.fd)


def _after_fork_in_child() -> None:
    global _lock, _pid
    # Another thread of the parent may have held the lock at the fork; its reads do
    # not exist in the child, so every inherited descriptor can be closed.
    _lock = threading.Lock()
    for held in _open.values():
        _close_quietly(held.fd)
    _open.clear()
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class opened:  # noqa: N801 - used as a context manager, like open()
    """``with opened(path) as (fd, st):`` a read-only descriptor of local ``path``, its stat.

    The descriptor belongs to the cache and stays open after the block; it is never
    closed while a block uses it. ``by_descriptor=True`` checks a held descriptor with
    ``fstat`` instead of a ``stat`` of the path (see `_held_file`). Raises what
    ``os.stat`` and ``os.open`` raise (``FileNotFoundError``, ...).
    """

    __slots__ = ("by_descriptor", "held", "path")

    def __init__(self, path: str, by_descriptor: bool = False):
        self.path = path
        self.by_descriptor = by_descriptor

    def __enter__(self) -> tuple[int, os.stat_result]:
        if self.by_descriptor:
            if os.getpid() != _pid:
                _after_fork_in_child()
            if (found := self._held_file()) is not None:
                return found
        self.held, st = _acquire(self.path)
        return self.held.fd, st

    def _held_file(self) -> tuple[int, os.stat_result] | None:
        """The held descriptor and its ``fstat``, without a ``stat`` of the path (a walk
        of every folder in it): the held file is still the path's while it has a link,
        as long as nobody links it elsewhere. ``None`` if none is held or its file was
        deleted or replaced (a rename over the path unlinks it; its space is freed)."""
        path = self.path
        with _lock:
            held = _open.get(path)
            if held is None:
                return None
            _open.move_to_end(path)
            held.users += 1
        self.held = held
        try:
            st = os.fstat(held.fd)
        except BaseException:
            self.__exit__()
            raise
        if st.st_nlink:
            return held.fd, st
        self.__exit__()
        forget(path)
        return None

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _release(self.held)


class Holds:
    """``with Holds() as holds:`` descriptors held until the block ends: ``holds.hold(path)``
    is ``opened(path)``'s ``(fd, stat)``, for as many paths as a batch reads, all
    released at the end under one lock."""

    __slots__ = ("helds",)

    def __init__(self) -> None:
        self.helds: list[_Held] = []

    def __enter__(self) -> Holds:
        return self

    def hold(self, path: str) -> tuple[int, os.stat_result]:
        """A read-only descriptor of local ``path`` and its stat, as `opened` gives."""
        held, st = _acquire(path)
        self.helds.append(held)
        return held.fd, st

    def __exit__(self, *exc: object) -> None:
        with _lock:
            for held in self.helds:
                _release(held)
        self.helds.clear()


def _release(held: _Held) -> None:
    """One use of ``held`` ends (under the lock); closed if it was dropped meanwhile."""
    held.users -= 1
    if held.dropped and held.users == 0:
        _close_quietly(held.fd)


def _acquire(path: str) -> tuple[_Held, os.stat_result]:
    """The held descriptor of local ``path`` (opened if none is held, or if it holds
    another file than the path names now), its use counted, and the path's stat."""
    if os.getpid() != _pid:
        _after_fork_in_child()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        forget(path)  # a deleted file's space is freed once its descriptor closes
        raise
    with _lock:
        held = _open.get(path)
        if held is not None and held.dev == st.st_dev and held.ino == st.st_ino:
            _open.move_to_end(path)
            held.users += 1
            return held, st
    if stat.S_ISDIR(st.st_mode):  # os.open would open it; open() refuses, as we do
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    # Without blocking: a FIFO would block here forever; check_regular refuses it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)  # the file opened, should the path have been replaced since
        check_regular(path, st)
    except BaseException:
        os.close(fd)
        raise
    held = _Held(fd, st.st_dev, st.st_ino)
    held.users = 1
    most = current_settings().max_open
    with _lock:
        stale = _open.pop(path, None)
        _open[path] = held
        if stale is not None:
            _drop(stale)
        while len(_open) > most:
            _drop(_open.popitem(last=False)[1])
    return held, st


def forget(path: str) -> None:
    """Close the descriptor of ``path``, if one is held (after writing the file)."""
    with _lock:
        held = _open.pop(path, None)
        if held is not None:
            _drop(held)


def close_all() -> None:
    """Close every held descriptor (those being read once their reads end).

    Examples
    --------
    >>> close_all(); open_count()
    0
    """
    with _lock:
        for held in _open.values():
            _drop(held)
        _open.clear()


def open_count() -> int:
    """How many descriptors the cache holds now."""
    return len(_open)
