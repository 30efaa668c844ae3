"""A node-local disk cache of remote byte ranges, shared by every process of a node.

Every ranged read of a remote sample file (``lpcm`` windows, ``lpcm.zst`` frames, EDF
records) goes through `cached_range`; local files never do. Off by default; on
with `set_cache` or the environment variable `CACHE_ENV`
(``ONDABATCHES_CACHE=/path:SIZE``, SIZE in bytes or with a K/M/G/T suffix, read once).
It is part of the process's settings (``cache_directory``, ``cache_max_bytes``), so
the Batcher's worker processes and Ray actors use the same cache (and `storage_env`
forwards it to processes started otherwise).

How it stays correct
--------------------
- An entry is keyed by the URL, the object's version and the byte range. The version
  is the ETag (S3), generation (GCS), or size and modification time from ``fs.info``,
  fetched once per file per process and kept (and each range's entry name with it,
  both until ``forget_file``); a file whose info gives neither is not cached. A changed
  object has a new version, so its old entries are never served.
- An entry is a header (magic, payload length, CRC-32 of the payload) and the payload.
  A read checks all three; a corrupted or truncated entry is deleted and the range
  fetched again, never served. The CRC costs more than the read itself, so a process
  remembers the entries it checked with their inode, size and modification time
  (`_Verified`), and skips the CRC of an entry that still has all three: entries are
  never written in place, and one is remembered only if it was older than the tick of
  file timestamps when checked (`_SETTLE_S`), so that any later write gives it a newer
  modification time. (A change that then sets the old time back by hand is not noticed by
  a process that checked the entry before.) A hit reads the header and the payload
  with one ``preadv`` into the array it returns, through a descriptor kept open
  (`opened`); the space of an entry that another process deletes is freed when this
  process next reads that entry or drops the descriptor from its bounded set.
- Writers write a temporary file in the cache directory and rename it into place
  (``os.replace``, atomic), so readers see a whole entry or none, and a crash leaves
  at most a temporary file, which is ignored and removed once it is an hour old.
- The size bound is kept by eviction of the entries least recently used (a hit
  sets the entry's access time, at most once a second, and keeps its modification
  time): a process scans the directory when its
  estimate of the total passes the bound, and after writing a sixteenth of the bound,
  so that the writes of other processes are counted too. Entries that vanish while
  being scanned, read or evicted (another process evicted them) are misses.
- The directory must be ours and not writable by group or others (anyone who can
  write it could plant bytes): otherwise `set_cache` raises a
  `CacheError`, and a worker given it through its settings or the environment
  warns once and reads uncached. A write that fails (a full disk, a read-only
  directory) warns once per process and the read goes on uncached.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import struct
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from .._errors import CacheError
from ._descriptors import forget, opened
from ._settings import CACHE_ENV, current_settings, parse_size, use_settings

__all__ = ["CACHE_ENV", "cache_stats", "get_cache", "set_cache"]

_MAGIC = b"OBRC1\0\0\0"
_HEADER = struct.Struct("<8sQI")  # magic, payload length, crc32 of the payload
_SUFFIX = ".entry"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0
_TOUCH_S = 1.0  # a hit touches an entry at most this often
# An entry is trusted without its CRC only if it was already this old when checked, so
# that any later write to it has a later modification time: well over the tick of the
# kernel's file timestamps (1 to 10 ms), or over 1 s where the file system keeps whole
# seconds (seen as an mtime of whole seconds).
_SETTLE_S = 0.05
_SETTLE_WHOLE_SECONDS_S = 2.0
_VERIFIED_MAX = 1 << 15  # entries a process remembers having checked


@dataclass
class CacheStats:
    """What this process's cache did: ranges served from disk, fetched, and their bytes."""

    hits: int = 0
    misses: int = 0
    hit_bytes: int = 0
    miss_bytes: int = 0
    evicted: int = 0
    corrupt: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


_stats = CacheStats()


def cache_stats(reset: bool = False) -> CacheStats:
    """This process's cache counters (a copy); ``reset=True`` zeroes them afterwards."""
    global _stats
    out = CacheStats(**vars(_stats))
    if reset:
        _stats = CacheStats()
    return out


class RangeCache:
    """A cache directory of at most ``max_bytes`` bytes of entries."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise CacheError(f"cache size must be a positive number of bytes, got {max_bytes!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._estimate: int | None = None
        self._since_scan = 0
        self._warned = False
        self._verified = _Verified()
        # (filesystem token, path) -> {(start, stop): entry path}: what a hit would
        # otherwise work out from the version and a hash; dropped by `forget_entries`.
        self._names: dict[tuple[str, str], dict[tuple[int, int], str]] = {}
        self._n_names = 0
        self._check_directory()

    def _check_directory(self) -> None:
        path = self.directory
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.stat(path)
        except OSError as exc:
            raise CacheError(f"cannot use {path} as the cache directory: {exc}") from exc
        if _owner(st) != os.getuid():
            raise CacheError(
                f"cache directory {path} belongs to user id {_owner(st)}, not to this user "
                f"({os.getuid()}): refused, another user could plant bytes in it"
            )
        if st.st_mode & 0o022:
            raise CacheError(
                f"cache directory {path} is writable by group or others (mode "
                f"{st.st_mode & 0o777:o}, expected no group/other write): refused"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise CacheError(f"cache directory {path} is not writable by this user")

    # -- entries ---------------------------------------------------------------------

    def entry_path(self, url: str, version: str, start: int, stop: int) -> str:
        return _entry_path(self.directory, url, version, start, stop)

    def known_entry(self, token: str, path: str, start: int, stop: int) -> str | None:
        ranges = self._names.get((token, path))
        return None if ranges is None else ranges.get((start, stop))

    def remember_entry(self, token: str, path: str, start: int, stop: int, entry: str) -> None:
        if self._n_names >= _VERIFIED_MAX:
            self._names.clear()
            self._n_names = 0
        self._names.setdefault((token, path), {})[(start, stop)] = entry
        self._n_names += 1

    def forget_names(self, token: str, path: str) -> None:
        self._names.pop((token, path), None)

    def get(self, path: str, n: int) -> np.ndarray | None:
        """The payload of the entry at ``path`` if it is whole and has ``n`` bytes.

        The descriptor stays open for the next hit (`opened`, checked by its ``fstat``:
        an entry deleted or renamed over has no link left)."""
        try:
            with opened(path, by_descriptor=True) as (fd, st):
                if st.st_size != _HEADER.size + n:
                    return self._drop(path)
                head = bytearray(_HEADER.size)
                out = np.empty(n, dtype=np.uint8)
                got = os.preadv(fd, [head, out], 0)
                if got != _HEADER.size + n or not self._whole(path, st, head, out):
                    return self._drop(path)
                self._touch(fd, st)
                return out
        except OSError:
            return None  # absent, or evicted by another process meanwhile

    @staticmethod
    def _drop(path: str) -> None:
        _stats.corrupt += 1
        _forget_entry(path)

    def _whole(self, path: str, st: os.stat_result, head: bytearray, out: np.ndarray) -> bool:
        """Whether ``head`` and ``out`` are a whole entry: its CRC is checked unless this
        process checked it before and the file is unchanged since (`_Verified`)."""
        magic, length, crc = _HEADER.unpack(head)
        if magic != _MAGIC or length != len(out):
            return False
        fingerprint = (st.st_ino, st.st_size, st.st_mtime_ns, crc)
        if self._verified.get(path) == fingerprint:
            return True
        if zlib.crc32(out) != crc:
            return False
        settle = _SETTLE_WHOLE_SECONDS_S if st.st_mtime_ns % 10**9 == 0 else _SETTLE_S
        if time.time_ns() - st.st_mtime_ns > settle * 1e9:
            self._verified.add(path, fingerprint)
        return True

    @staticmethod
    def _touch(fd: int, st: os.stat_result) -> None:
        """Record a use in the access time (what eviction orders by), at most every
        `_TOUCH_S`; the modification time is kept, since `_Verified` relies on it."""
        now = time.time_ns()
        if now - st.st_atime_ns > _TOUCH_S * 1e9:
            try:
                os.utime(fd, ns=(now, st.st_mtime_ns))
            except OSError:
                pass

    def put(self, path: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``path`` atomically; a failure warns once and is forgotten."""
        n = len(data)
        if n + _HEADER.size > self.max_bytes // 2:
            return  # too large to be worth evicting half the cache for
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, _HEADER.pack(_MAGIC, n, zlib.crc32(data)))
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            _unlink(tmp)
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"cannot write to the cache directory {self.directory} ({exc}); reads go "
                    "on uncached where writing fails",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return
        with self._lock:
            if self._estimate is None:
                self._estimate = self._scan_and_evict()
            self._estimate += n + _HEADER.size
            self._since_scan += n + _HEADER.size
            if self._estimate > self.max_bytes or self._since_scan > self.max_bytes // 16:
                self._estimate = self._scan_and_evict()
                self._since_scan = 0

    def _scan_and_evict(self) -> int:
        """Remove least recently used entries until the total is within the bound."""
        entries: list[tuple[int, int, str]] = []
        now = time.time()
        try:
            folders = list(os.scandir(self.directory))
        except OSError:
            return 0
        for folder in folders:
            try:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                children = list(os.scandir(folder.path))
            except OSError:
                continue
            for child in children:
                try:
                    st = child.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone: evicted by another process
                if child.name.startswith(_TMP_PREFIX):
                    if now - st.st_mtime > _STALE_TMP_S:
                        _unlink(child.path)  # left by a crashed writer
                elif child.name.endswith(_SUFFIX):
                    entries.append((st.st_atime_ns, st.st_size, child.path))
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return total
        target = self.max_bytes * 9 // 10
        entries.sort()
        for _, size, path in entries:
            if total <= target:
                break
            _forget_entry(path)
            total -= size
            _stats.evicted += 1
        return total


class _Verified:
    """The entries this process checked whole: path -> (inode, size, mtime, CRC).

    Entries are never written in place (a writer renames a new file over the path), so
    an entry whose inode, size and modification time are those it had when its CRC was
    checked holds the bytes that were checked. Bounded: the oldest half is forgotten
    when full.
    """

    def __init__(self, max_entries: int = _VERIFIED_MAX):
        self._max = max_entries
        self._known: dict[str, tuple[int, int, int, int]] = {}

    def get(self, path: str) -> tuple[int, int, int, int] | None:
        return self._known.get(path)

    def add(self, path: str, fingerprint: tuple[int, int, int, int]) -> None:
        known = self._known
        if len(known) >= self._max:
            for old in list(itertools.islice(known, self._max // 2)):
                known.pop(old, None)
        known[path] = fingerprint


@functools.lru_cache(maxsize=_VERIFIED_MAX)
def _entry_path(directory: str, url: str, version: str, start: int, stop: int) -> str:
    digest = hashlib.blake2b(
        f"{url}\0{version}\0{start}\0{stop}".encode(), digest_size=20
    ).hexdigest()
    return os.path.join(directory, digest[:2], digest + _SUFFIX)


def _owner(st: os.stat_result) -> int:
    return st.st_uid


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _forget_entry(path: str) -> None:
    """Delete an entry and close this process's descriptor of it (freeing its space)."""
    _unlink(path)
    forget(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- configuration ---------------------------------------------------------------------

_configured: dict[tuple[str, int], RangeCache | None] = {}
# (settings, cache) of the last `get_cache`: a hit then skips the lookup by key (the
# settings are frozen, so the same object means the same cache until `set_cache`).
_last: tuple[Any, RangeCache | None] = (None, None)


def set_cache(directory: str | os.PathLike[str] | None, max_bytes: int | str = "10G") -> None:
    """Cache remote byte ranges in ``directory``, at most ``max_bytes`` (``None``: off).

    Sets the settings' ``cache_directory`` and ``cache_max_bytes`` (see
    [`use_settings`][ondabatches.onda.use_settings]), so that the Batcher's worker
    processes and Ray actors share the cache. The directory is created (mode 0700) if
    missing; one owned by another user, writable by group or others, or not writable
    is a `CacheError`.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> set_cache(folder, "64M")
    >>> get_cache().max_bytes
    67108864
    >>> set_cache(None)
    >>> get_cache() is None
    True
    """
    global _last
    if directory is None:
        use_settings(cache_directory=None)
        return
    size = parse_size(max_bytes) if isinstance(max_bytes, str) else max_bytes
    folder = os.path.abspath(os.fspath(directory))
    cache = RangeCache(folder, size)  # raises CacheError on a bad directory
    _configured[(folder, size)] = cache
    _last = (None, None)
    use_settings(cache_directory=folder, cache_max_bytes=size)


def get_cache() -> RangeCache | None:
    """The cache this process uses (its settings' ``cache_directory``), or ``None`` when off."""
    global _last
    settings = current_settings()
    last_settings, last_cache = _last
    if settings is last_settings:
        return last_cache
    if settings.cache_directory is None:
        return None
    key = (settings.cache_directory, settings.cache_max_bytes)
    if key not in _configured:
        try:
            _configured[key] = RangeCache(*key)
        except CacheError as exc:
            _configured[key] = None
            warnings.warn(f"{exc}; reading uncached", RuntimeWarning, stacklevel=3)
    _last = (settings, _configured[key])
    return _last[1]


def forget_entries(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Forget the entry names worked out for ``path``'s version (`forget_file` calls it,
    with the version itself): its next reads look the version up again."""
    token = getattr(fs, "_fs_token", None)
    for cache in list(_configured.values()):
        if cache is not None and token is not None:
            cache.forget_names(token, path)


def _version(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "generation", "VersionId", "md5Hash", "checksum"):
        value = info.get(key)
        if value:
            return f"{key}={value}"
    for key in ("LastModified", "last_modified", "mtime", "updated", "Last-Modified"):
        value = info.get(key)
        if value:
            return f"size={info.get('size')};{key}={value}"
    return None


_FILE_META: list[Any] = []  # _lpcm.file_meta, given by _lpcm (which imports this module)


def _meta() -> Any:
    return _FILE_META[0]


def cached_range(
    fs: fsspec.AbstractFileSystem, path: str, start: int, stop: int, fetch: Callable[[], bytes]
) -> bytes | bytearray | np.ndarray:
    """Bytes ``start:stop`` of remote ``path``: from the cache if it holds them (a new
    writable uint8 array), else ``fetch()`` (stored when it gives exactly ``stop - start``
    bytes)."""
    cache = get_cache()
    if cache is None or stop <= start:
        return fetch()
    token = getattr(fs, "_fs_token", None)
    entry = None if token is None else cache.known_entry(token, path, start, stop)
    if entry is None:
        url, version = _meta()(
            fs,
            path,
            ("cache-version",),
            lambda: (fs.unstrip_protocol(path), _version(fs.info(path))),
        )
        if version is None:
            return fetch()
        entry = cache.entry_path(url, version, start, stop)
        if token is not None:
            cache.remember_entry(token, path, start, stop, entry)
    n = stop - start
    data = cache.get(entry, n)
    if data is not None:
        _stats.hits += 1
        _stats.hit_bytes += n
        return data
    data = fetch()
    _stats.misses += 1
    _stats.miss_bytes += len(data)
    if len(data) == n:
        cache.put(entry, data)
    return data
