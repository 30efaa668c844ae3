"""The ``lpcm`` format, and the byte-range reads that every built-in format uses.

LPCM is interleaved and little-endian: the value of channel ``i`` at sample ``j``
(0-based) sits at byte ``(i + j * n_channels) * width``. A window of samples is
therefore one contiguous byte range, read with a single ``pread`` on local disk or a
single ranged GET (``fs.cat_file(path, start, stop)``) elsewhere.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
import numpy as np

from .._errors import SampleFileError
from ._cache import _FILE_META as _cache_file_meta
from ._cache import cached_range, forget_entries
from ._descriptors import forget, opened
from ._format_base import SampleFormat
from ._samples import SamplesInfo
from ._storage import check_regular, is_local

__all__ = ["LPCMFormat"]

# Remote files are taken as immutable while their metadata is cached (a HEAD request
# per window would cost as much as the window); `forget_file` drops an entry, and
# `store` calls it for every file it writes. Seek tables grow with the file (8 bytes per
# zstd frame), so the cache is bounded in bytes as well as in entries.
_META_MAXSIZE = 4096
_META_MAX_BYTES = 256 << 20
_meta: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_meta_bytes = 0
_meta_lock = threading.Lock()


def _new_lock_in_child() -> None:
    # Another thread of the parent may have held the lock at the fork: in the child it
    # would never be released. The cached values themselves stay valid in the child.
    global _meta_lock
    _meta_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def _nbytes(value: Any) -> int:
    return int(getattr(value, "nbytes", 0))


def cached_meta(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """``compute()``, remembered under ``key`` in a small per-process LRU.

    The LRU holds at most ``_META_MAXSIZE`` entries and ``_META_MAX_BYTES`` bytes of
    values that have an ``nbytes``.
    """
    global _meta_bytes
    with _meta_lock:
        if key in _meta:
            _meta.move_to_end(key)
            return _meta[key]
    value = compute()
    with _meta_lock:
        _meta_bytes += _nbytes(value) - _nbytes(_meta.get(key))
        _meta[key] = value
        while len(_meta) > 1 and (len(_meta) > _META_MAXSIZE or _meta_bytes > _META_MAX_BYTES):
            _meta_bytes -= _nbytes(_meta.popitem(last=False)[1])
    return value


def file_meta(
    fs: fsspec.AbstractFileSystem, path: str, key: tuple[Any, ...], compute: Callable[[], Any]
) -> Any:
    """Metadata of ``path`` (``key`` says which), cached until `forget_file`."""
    return cached_meta((_scope(fs), path, *key), compute)


_cache_file_meta.append(file_meta)  # the cache keys entries by these versions


def _scope(fs: fsspec.AbstractFileSystem) -> Any:
    return "local" if is_local(fs) else getattr(fs, "_fs_token", id(fs))


def file_trailer(
    fs: fsspec.AbstractFileSystem,
    path: str,
    name: str,
    parse: Callable[[int, Callable[[int, int], Any]], Any],
) -> Any:
    """``parse(size, read)`` of ``path`` (``read(a, b)`` its bytes ``a:b``): an index or
    seek table a format keeps in its file, parsed once per file (`file_meta`); a local
    file is parsed again once its size or mtime changes."""
    if is_local(fs):
        st = os.stat(path)
        check_regular(path, st)
        key: tuple[Any, ...] = (name, st.st_size, st.st_mtime_ns)
        size = st.st_size
    else:
        key, size = (name,), remote_size(fs, path)
    return file_meta(fs, path, key, lambda: parse(size, lambda a, b: read_range(fs, path, a, b)))


def remote_size(fs: fsspec.AbstractFileSystem, path: str) -> int:
    return file_meta(fs, path, ("size",), lambda: int(fs.size(path)))


def forget_file(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Drop what is cached about ``path`` (after writing it)."""
    global _meta_bytes
    scope = _scope(fs)
    if scope == "local":
        forget(path)
    else:
        forget_entries(fs, path)
    with _meta_lock:
        for key in [k for k in _meta if k[0] == scope and k[1] == path]:
            _meta_bytes -= _nbytes(_meta.pop(key))


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The path as a user wrote it: a plain path locally, ``proto://...`` elsewhere."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def read_at(fd: int, offset: int, n: int, url: str) -> np.ndarray:
    """Exactly ``n`` bytes at ``offset`` of a local file descriptor, into a new array."""
    buf = np.empty(n, dtype=np.uint8)
    got = os.preadv(fd, [buf], offset) if n else 0
    if got == n:
        return buf
    view = memoryview(buf)
    while got < n:
        k = os.preadv(fd, [view[got:]], offset + got)
        if not k:
            raise SampleFileError(
                f"sample file {url} ended at byte {offset + got}, "
                f"expected bytes {offset}..{offset + n - 1}"
            )
        got += k
    return buf


def read_range(fs: fsspec.AbstractFileSystem, path: str, start: int, stop: int) -> np.ndarray:
    """Bytes ``start:stop`` of a file, with one ranged read, as a writable uint8 array."""
    if is_local(fs):
        with opened(path) as (fd, _):
            return read_at(fd, start, stop - start, path)
    if stop <= start:
        return np.empty(0, dtype=np.uint8)
    data = cached_range(  # keywords: s3fs takes version_id second
        fs, path, start, stop, lambda: fs.cat_file(path, start=start, end=stop)
    )
    if len(data) != stop - start:
        raise SampleFileError(
            f"sample file {url_of(fs, path)} returned {len(data)} bytes for range "
            f"{start}..{stop - 1}, expected {stop - start} (was it changed since it was "
            "first read?)"
        )
    if isinstance(data, np.ndarray):
        return data  # a cache hit, read into a new array
    if not isinstance(data, bytearray):
        data = bytearray(data)
    return np.frombuffer(data, dtype=np.uint8)


#: A remote file of at most this many bytes (stored labels: a byte per 30 s epoch) is
#: read whole once and kept with its metadata: a request costs the same CPU and round
#: trip whatever its size, and a batch would otherwise spend one per item on labels.
SMALL_WHOLE_BYTES = 64 << 10


def read_small_whole(
    fs: fsspec.AbstractFileSystem, path: str, size: int, start: int, stop: int
) -> np.ndarray:
    """Bytes ``start:stop`` of remote ``path`` of ``size`` bytes (a writable copy): from
    the whole file, read once, if it is at most `SMALL_WHOLE_BYTES`."""
    if size > SMALL_WHOLE_BYTES or not 0 <= start < stop <= size:
        return read_range(fs, path, start, stop)
    whole = file_meta(fs, path, ("whole", size), lambda: read_range(fs, path, 0, size))
    return whole[start:stop].copy()


def check_lpcm_size(
    url: str, size: int, info: SamplesInfo, n_total: int, what: str = "holds"
) -> None:
    """Refuse a file whose (decompressed) size is not exactly ``n_total`` samples."""
    bps = info.bytes_per_sample
    expected = n_total * bps
    if size == expected:
        return
    whole = "" if size % bps == 0 else f", not a whole number of {bps}-byte multichannel samples"
    raise SampleFileError(
        f"sample file {url} {what} {size} bytes{whole}; expected {expected} bytes = "
        f"{n_total} samples x {info.n_channels} channels x {info.dtype.itemsize}-byte "
        f"{info.sample_type}"
    )


def channels_by_time(buf: np.ndarray, info: SamplesInfo) -> np.ndarray:
    """View interleaved little-endian bytes as a channels x time matrix (no copy)."""
    return buf.view(info.dtype).reshape(-1, info.n_channels).T


def interleaved_chunks(
    data: np.ndarray, info: SamplesInfo, chunk_bytes: int = 1 << 24
) -> Iterator[memoryview]:
    """The LPCM bytes of ``data`` (channels x time), a bounded chunk at a time."""
    step = max(1, chunk_bytes // info.bytes_per_sample)
    for t0 in range(0, data.shape[1], step):
        chunk = np.ascontiguousarray(data[:, t0 : t0 + step].T, dtype=info.dtype)
        yield memoryview(chunk).cast("B")


@dataclass(frozen=True, slots=True)
class LPCMFormat(SampleFormat):
    """Onda's ``"lpcm"``: uncompressed interleaved little-endian samples.

    Reading a window reads only its bytes, except that a remote file of at most
    `SMALL_WHOLE_BYTES` is read whole once and kept (`read_small_whole`). The file's
    size is checked against the signal on every read (free on local disk, cached for
    remote files).

    Examples
    --------
    >>> import io
    >>> info = SamplesInfo("x", ("a", "b"), "u", 1.0, 0.0, "int16", 1.0)
    >>> buf = io.BytesIO()
    >>> LPCMFormat().write(buf, np.array([[1, 2], [3, 4]], dtype=np.int16), info)
    >>> buf.getvalue()
    b'\\x01\\x00\\x03\\x00\\x02\\x00\\x04\\x00'
    """

    def read(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, rows: range, n_total: int
    ) -> np.ndarray:
        bps = info.bytes_per_sample
        start, stop = rows.start * bps, rows.stop * bps
        if is_local(fs):
            with opened(path) as (fd, st):
                check_lpcm_size(path, st.st_size, info, n_total)
                buf = read_at(fd, start, stop - start, path)
        else:
            size = remote_size(fs, path)
            check_lpcm_size(url_of(fs, path), size, info, n_total)
            buf = read_small_whole(fs, path, size, start, stop)
        return channels_by_time(buf, info)

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        for chunk in interleaved_chunks(data, info):
            file.write(chunk)

    def check_size(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> None:
        """Refuse a file that is not exactly ``n_total`` samples."""
        if is_local(fs):
            st = os.stat(path)
            check_regular(path, st)
            size = st.st_size
        else:
            size = remote_size(fs, path)
        check_lpcm_size(url_of(fs, path), size, info, n_total)
