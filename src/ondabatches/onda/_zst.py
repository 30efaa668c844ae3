"""The ``lpcm.zst`` format: LPCM bytes compressed with zstd.

Reading accepts any valid zstd stream: Onda.jl writes one frame without a content
size, other writers several frames or skippable frames, so decompression always reads
across frames. Writing uses the zstd *seekable format* (independent frames of
32 KiB of samples followed by a seek table in a skippable frame), which the ``zstd``
command-line tool decompresses like any other file. When a file has a seek table, a
window decompresses only the frames it overlaps, fetched with one ranged read (and,
where zstandard's cffi backend loads, decompressed by one call of zstd's own into the
window's buffer); otherwise the stream is decompressed from its start up to the
window's end.

Integrity: every frame written carries its content size and a checksum (the low 32
bits of XXH64, which zstd verifies when it reaches the frame's end; the seek table
repeats it). A window decompresses each frame it overlaps to its end, so a flipped
byte fails the checksum, and each frame must give exactly the bytes that the seek
table says, so a table that lies cannot shift a window: either is a
[`SampleFileError`][ondabatches._errors.SampleFileError] naming the file and the frame.
Files written without checksums (earlier versions, Onda.jl) are still read, with the
size checks.

Seek table layout (little-endian), at the end of the file::

    skippable frame header   magic 0x184D2A5E (u32), frame size (u32)
    one entry per frame      compressed size (u32), decompressed size (u32)[, checksum (u32)]
    footer (9 bytes)         number of frames (u32), descriptor (u8), magic 0x8F92EAB1 (u32)
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import fsspec
import numpy as np
import zstandard

from .._errors import ArgumentError, SampleFileError
from ._descriptors import opened
from ._format_base import SampleFormat
from ._lpcm import (
    channels_by_time,
    check_lpcm_size,
    file_meta,
    file_trailer,
    interleaved_chunks,
    read_at,
    read_range,
    remote_size,
    url_of,
)
from ._samples import SamplesInfo
from ._storage import is_local, open_regular

__all__ = ["LPCMZstFormat"]

_SEEK_TABLE_MAGIC = 0x8F92EAB1
_SKIPPABLE_MAGIC = 0x184D2A5E
_FOOTER = struct.Struct("<IBI")
_SKIPPABLE_HEADER = struct.Struct("<II")
_ENTRY = struct.Struct("<II")  # compressed, decompressed size (then the checksum)
_CHECKSUM_FLAG = 0x80
_RESERVED_BITS = 0x7C

# The longest zstd frame header (magic, descriptor, window, dictionary id, content size).
_FRAME_HEADER_MAX = 18

# The largest zstd block, and so the most that 4 compressed bytes (an RLE block) give.
_MAX_BLOCK = 128 * 1024

# Onda.jl-style single-frame files are streamed from remote storage in blocks this big.
_STREAM_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class SeekTable:
    """Where each frame starts, in the compressed file and in the decompressed bytes.

    Frames of the same decompressed size (all but the last, as our writer makes them)
    keep only their compressed offsets: 8 bytes per frame, in every worker that caches
    the table, and one byte that marks the frame's header checked (see
    `_sizes_in_headers`).
    """

    compressed_offsets: np.ndarray  # n_frames + 1 int64, the last one = end of the frames
    decompressed_size: int
    frame_size: int  # decompressed bytes of every frame but the last; 0 when they vary
    varying: np.ndarray | None = None  # n_frames + 1 decompressed offsets, when they vary
    # Per frame, 1 once its header was seen to declare the size this table gives it.
    headers_seen: bytearray = field(default_factory=bytearray, compare=False, repr=False)

    @classmethod
    def from_sizes(cls, compressed: np.ndarray, decompressed: np.ndarray) -> SeekTable:
        """The table of frames of these compressed and decompressed sizes."""
        n = len(compressed)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(compressed, out=offsets[1:])
        total = int(decompressed.sum(dtype=np.int64))
        first = int(decompressed[0]) if n else 0
        if first and (decompressed[:-1] == first).all() and 0 < decompressed[-1] <= first:
            return cls(offsets, total, first, None, bytearray(n))
        varying = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(decompressed, out=varying[1:])
        return cls(offsets, total, 0, varying, bytearray(n))

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        varying = 0 if self.varying is None else self.varying.nbytes
        return self.compressed_offsets.nbytes + varying + len(self.headers_seen)

    @property
    def decompressed_offsets(self) -> np.ndarray:
        """Where each frame starts in the decompressed bytes (n_frames + 1, int64)."""
        if self.varying is not None:
            return self.varying
        n = len(self.compressed_offsets) - 1
        offsets = np.arange(n + 1, dtype=np.int64) * self.frame_size
        return np.minimum(offsets, self.decompressed_size)

    def frame_start(self, frame: int) -> int:
        """The decompressed offset of ``frame``."""
        if self.varying is not None:
            return int(self.varying[frame])
        return min(frame * self.frame_size, self.decompressed_size)

    def frames_for(self, start: int, stop: int) -> tuple[int, int]:
        """The frames ``[first, last)`` that hold decompressed bytes ``start:stop``."""
        if self.varying is None:
            n = len(self.compressed_offsets) - 1
            return min(start // self.frame_size, n - 1), min(-(-stop // self.frame_size), n)
        d = self.varying
        first = int(np.searchsorted(d, start, side="right")) - 1
        last = int(np.searchsorted(d, stop, side="left"))
        return first, last


def parse_seek_table(size: int, read: Callable[[int, int], bytes | np.ndarray]) -> SeekTable | None:
    """The seek table of a zstd file of ``size`` bytes, or ``None`` if it has none.

    ``read(start, stop)`` returns bytes of the file. Anything that does not look like
    a consistent seek table gives ``None``: streaming is always correct.
    """
    if size < _SKIPPABLE_HEADER.size + _FOOTER.size:
        return None
    n_frames, descriptor, magic = _FOOTER.unpack(bytes(read(size - _FOOTER.size, size)))
    if magic != _SEEK_TABLE_MAGIC or descriptor & _RESERVED_BITS:
        return None
    entry_size = 12 if descriptor & _CHECKSUM_FLAG else 8
    table_size = n_frames * entry_size + _FOOTER.size
    table_start = size - table_size - _SKIPPABLE_HEADER.size
    if table_start < 0:
        return None
    raw = bytes(read(table_start, size - _FOOTER.size))
    frame_magic, frame_size = _SKIPPABLE_HEADER.unpack_from(raw)
    if frame_magic != _SKIPPABLE_MAGIC or frame_size != table_size:
        return None
    entries = np.frombuffer(raw, dtype="<u4", offset=_SKIPPABLE_HEADER.size).reshape(
        n_frames, entry_size // 4
    )
    table = SeekTable.from_sizes(entries[:, 0], entries[:, 1])
    if table.compressed_offsets[-1] != table_start:
        return None
    return table


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (one is not safe to share between threads; reused, it
    keeps its buffers and tables between windows)."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def _one_shot() -> Callable[[np.ndarray, np.ndarray], bool] | None:
    """This thread's ``decompress(compressed, out)``: zstd's ``ZSTD_decompressDCtx``
    (through zstandard's cffi backend), which decompresses every frame of
    ``compressed`` straight into ``out``, checking each frame's checksum and the content
    size its header declares, in one call; True if the frames give exactly
    ``len(out)`` bytes (False for any zstd error, a short result or more than fits).
    None where that backend cannot be loaded (no ``cffi``): windows take
    ``stream_reader``, which gives the same bytes for a few microseconds more.
    """
    found = getattr(_local, "one_shot", _UNLOADED)
    if found is _UNLOADED:
        found = _local.one_shot = _load_one_shot()
    return found


_UNLOADED = object()


def _load_one_shot() -> Callable[[np.ndarray, np.ndarray], bool] | None:
    try:
        from zstandard.backend_cffi import ffi, lib  # type: ignore[attr-defined]

        dctx = ffi.gc(lib.ZSTD_createDCtx(), lib.ZSTD_freeDCtx)
    except Exception:  # no cffi, a zstandard without that backend: the stream path
        return None
    if dctx == ffi.NULL:  # pragma: no cover - out of memory
        return None
    run, failed, from_buffer = lib.ZSTD_decompressDCtx, lib.ZSTD_isError, ffi.from_buffer

    def decompress(compressed: np.ndarray, out: np.ndarray) -> bool:
        n = len(out)
        got = run(dctx, from_buffer(out, require_writable=True), n, from_buffer(compressed),
                  len(compressed))  # fmt: skip
        return got == n and not failed(got)

    return decompress


def local_seek_table(
    fs: fsspec.AbstractFileSystem, path: str, fd: int, st: os.stat_result
) -> SeekTable | None:
    """The seek table of local ``path`` (open as ``fd``, of stat ``st``), parsed once
    for each size and mtime the file has; None for a stream without one."""
    key = ("seek-table", st.st_size, st.st_mtime_ns)
    return file_meta(
        fs,
        path,
        key,
        lambda: parse_seek_table(st.st_size, lambda a, b: read_at(fd, a, b - a, path)),
    )


def _frames_into(
    compressed: np.ndarray,
    table: SeekTable,
    first: int,
    last: int,
    url: str,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decompress frames ``[first, last)`` (``compressed`` holds exactly them), each to
    its end, checking that each gives the bytes the seek table says it holds; into the
    start of ``out`` (uint8) if it is given and large enough."""
    c = table.compressed_offsets
    base, origin = c.item(first), table.frame_start(first)
    size = table.frame_start(last) - origin
    buf = out[:size] if out is not None and out.size >= size else np.empty(size, dtype=np.uint8)
    # zstd itself holds each frame to the content size in its header (and to its
    # checksum): where the headers declare the table's sizes, one pass across the
    # frames, on to the end of the last, suffices; any failure takes the frame by frame
    # pass below, which names the frame.
    if _sizes_in_headers(compressed, table, first, last):
        one_shot = _one_shot()
        if one_shot(compressed, buf) if one_shot is not None else _one_pass(compressed, buf):
            return buf
    view = memoryview(buf)
    dctx = _decompressor()
    for frame in range(first, last):
        lo, hi = table.frame_start(frame) - origin, table.frame_start(frame + 1) - origin
        got, extra = lo, 0
        try:
            reader = dctx.stream_reader(
                compressed[int(c[frame]) - base : int(c[frame + 1]) - base],
                read_across_frames=False,
            )
            while got < hi:
                k = reader.readinto(view[got:hi])
                if not k:
                    break
                got += k
            # Reading on to the frame's end is what makes zstd verify its checksum.
            extra = len(reader.read(1)) if got == hi else 0
        except zstandard.ZstdError as exc:
            raise SampleFileError(
                f"sample file {url} frame {frame} (compressed bytes {c[frame]}..{c[frame + 1] - 1})"
                f" is not valid zstd data: {exc}"
            ) from exc
        if got < hi or extra:
            raise SampleFileError(
                f"sample file {url} frame {frame} decompresses to "
                f"{'only ' + str(got - lo) if got < hi else 'more than ' + str(hi - lo)} bytes; "
                f"its seek table says {hi - lo} bytes (a damaged or altered seek table)"
            )
    return buf


def _one_pass(compressed: np.ndarray, buf: np.ndarray) -> bool:
    """Whether ``compressed`` (whole frames) decompresses, read across its frames to the
    end, to exactly ``len(buf)`` bytes, written to ``buf`` (`_one_shot`'s stream twin)."""
    view = memoryview(buf)
    try:
        reader = _decompressor().stream_reader(compressed, read_across_frames=True)
        got = 0
        while got < len(buf):
            k = reader.readinto(view[got:])
            if not k:
                break
            got += k
        return got == len(buf) and not reader.read(1)
    except zstandard.ZstdError:
        return False


def _sizes_in_headers(compressed: np.ndarray, table: SeekTable, first: int, last: int) -> bool:
    """Whether every frame ``[first, last)`` declares, in its header, the content size that
    the seek table gives it (what our writer does; earlier files declare none).

    A frame found to do so is marked in the table, and not looked at again: the table
    is parsed once per file size and mtime (`local_seek_table`), and so are the headers
    it vouches for. Every read still has zstd hold each frame to its header's size and
    checksum, and the window to the table's size.
    """
    seen = table.headers_seen
    if len(seen) >= last and 0 not in seen[first:last]:
        return True
    # Plain ints, converted once: this runs for every window read.
    offsets = table.compressed_offsets[first:last].tolist()
    if table.varying is not None:
        starts = table.varying[first : last + 1].tolist()
        sizes = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
    else:  # every frame of frame_size bytes but the file's last, which holds the rest
        size, total = table.frame_size, table.decompressed_size
        sizes = [size] * (last - first)
        if sizes and last == len(table.compressed_offsets) - 1:
            sizes[-1] = total - (last - 1) * size
    base = offsets[0]
    data = memoryview(compressed)
    size_of = zstandard.frame_content_size
    try:
        for offset, size in zip(offsets, sizes, strict=True):
            start = offset - base
            if size_of(data[start : start + _FRAME_HEADER_MAX]) != size:
                return False
    except zstandard.ZstdError:
        return False
    if len(seen) >= last:
        seen[first:last] = b"\1" * (last - first)
    return True


def _stream_into(
    source: BinaryIO | np.ndarray, skip: int, n: int, url: str, *, expect_end: bool
) -> np.ndarray:
    """Decompress ``source`` (a file or a buffer) across frames from its start.

    Drops ``skip`` bytes and returns the next ``n``; with ``expect_end``, the stream
    must end right after them.
    """
    reader = _decompressor().stream_reader(source, read_across_frames=True, closefd=False)
    buf = np.empty(n, dtype=np.uint8)
    view = memoryview(buf)
    got = 0
    try:
        reached = reader.seek(skip) if skip else 0  # seeking forward decompresses and drops
        while reached == skip and got < n:
            k = reader.readinto(view[got:])
            if not k:
                break
            got += k
        extra = len(reader.read(1)) if expect_end and got == n else 0
    except zstandard.ZstdError as exc:
        raise SampleFileError(f"sample file {url} is not valid zstd data: {exc}") from exc
    finally:
        reader.close()  # the thread's decompressor is free for the next window
    if reached < skip or got < n:
        raise SampleFileError(
            f"sample file {url} decompresses to only {reached + got} bytes; expected at least "
            f"{skip + n} bytes"
        )
    if extra:
        raise SampleFileError(
            f"sample file {url} decompresses to more than the {skip + n} bytes its signal holds"
        )
    return buf


class SeekableWriter:
    """Writes bytes as zstd frames of ``frame`` bytes each, then the seek table.

    Each frame is compressed in one shot, so that its header records its content size
    and it ends with a checksum, which the seek table repeats: a reader can check
    every frame against the table (a streaming compressor records no content size).
    """

    def __init__(self, file: BinaryIO, frame: int, level: int):
        self._file, self._frame = file, frame
        self._cctx = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
        self._pending = b""  # fewer than ``frame`` bytes not yet compressed
        self._entries = bytearray()
        self._n_frames = 0

    def _frame_out(self, piece: memoryview | bytes) -> None:
        compressed = self._cctx.compress(piece)
        self._file.write(compressed)
        # The frame ends with its checksum, which the seek table repeats.
        self._entries += _ENTRY.pack(len(compressed), len(piece)) + compressed[-4:]
        self._n_frames += 1

    def write(self, data: bytes | memoryview) -> None:
        """Add ``data`` (LPCM bytes, any length) after what was written before."""
        frame = self._frame
        view = memoryview(data).cast("B")
        if self._pending:
            need = frame - len(self._pending)
            self._pending += bytes(view[:need])
            view = view[need:]
            if len(self._pending) < frame:
                return
            self._frame_out(self._pending)
            self._pending = b""
        whole = len(view) - len(view) % frame
        for offset in range(0, whole, frame):
            self._frame_out(view[offset : offset + frame])
        self._pending = bytes(view[whole:])

    def close(self) -> None:
        """Write the last, short frame and the seek table."""
        if self._pending:
            self._frame_out(self._pending)
            self._pending = b""
        entries = self._entries
        self._file.write(_SKIPPABLE_HEADER.pack(_SKIPPABLE_MAGIC, len(entries) + _FOOTER.size))
        self._file.write(entries)
        self._file.write(_FOOTER.pack(self._n_frames, _CHECKSUM_FLAG, _SEEK_TABLE_MAGIC))

    def __enter__(self) -> SeekableWriter:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is None:  # a failed write leaves no seek table to a half file
            self.close()


@dataclass(frozen=True, slots=True)
class LPCMZstFormat(SampleFormat):
    """Onda's ``"lpcm.zst"``: LPCM compressed with zstd, written in the seekable format.

    Parameters
    ----------
    frame_bytes:
        Decompressed size of each frame written, rounded down to a whole number of
        multichannel samples; a window read fetches and decompresses the frames it
        overlaps, so a frame well under a typical window keeps reads close to the
        window's own bytes. The default, 32 KiB, is a ninth of a 30 s window of 19
        int16 channels at 256 Hz; compression is the same as with 1 MiB frames on EEG,
        and the seek table costs 8 bytes per frame (1 MB for 3.8 GB of samples).
    level:
        zstd compression level.

    Examples
    --------
    >>> import io, zstandard
    >>> info = SamplesInfo("x", ("a", "b"), "u", 1.0, 0.0, "int16", 1.0)
    >>> buf = io.BytesIO()
    >>> LPCMZstFormat().write(buf, np.array([[1, 2], [3, 4]], dtype=np.int16), info)
    >>> zstandard.ZstdDecompressor().decompress(buf.getvalue())
    b'\\x01\\x00\\x03\\x00\\x02\\x00\\x04\\x00'
    """

    frame_bytes: int = 32 * 1024
    level: int = 3

    def __post_init__(self) -> None:
        if self.frame_bytes < 1:
            raise ArgumentError(f"frame_bytes must be positive, got {self.frame_bytes}")

    def read(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, rows: range, n_total: int
    ) -> np.ndarray:
        bps = info.bytes_per_sample
        start, stop = rows.start * bps, rows.stop * bps
        if is_local(fs):
            # One stat and a cached descriptor serve the seek table's key and the read.
            with opened(path) as (fd, st):
                table = local_seek_table(fs, path, fd, st)
                if table is not None:
                    return self._frames(table, info, start, stop, n_total, path, fd=fd)
        else:
            table = self._seek_table(fs, path)
            if table is not None:
                return self._frames(table, info, start, stop, n_total, path, fs=fs)
        url = url_of(fs, path)
        with self._open(fs, path) as file:
            buf = _stream_into(file, start, stop - start, url, expect_end=rows.stop == n_total)
        return channels_by_time(buf, info)

    @staticmethod
    def _frames(
        table: SeekTable,
        info: SamplesInfo,
        start: int,
        stop: int,
        n_total: int,
        path: str,
        *,
        fd: int | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
    ) -> np.ndarray:
        """Bytes ``start:stop`` of a seekable file: its frames that hold them, decompressed.

        Read with ``fd`` (a local file) or from ``fs`` (elsewhere).
        """
        url = path if fs is None else url_of(fs, path)
        check_lpcm_size(url, table.decompressed_size, info, n_total, what="decompresses to")
        if stop == start:
            return channels_by_time(np.empty(0, dtype=np.uint8), info)
        first, last = table.frames_for(start, stop)
        c = table.compressed_offsets
        a, b = int(c[first]), int(c[last])
        compressed = read_at(fd, a, b - a, url) if fs is None else read_range(fs, path, a, b)
        skip = start - table.frame_start(first)
        buf = _frames_into(compressed, table, first, last, url)
        return channels_by_time(buf[skip : skip + stop - start], info)

    def check_size(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> None:
        """Refuse, before anything is allocated for them, ``n_total`` samples that the
        file cannot hold: its seek table's size, or, for a stream without one, the most
        that its compressed bytes can decompress to (a 128 KiB block from 4 bytes)."""
        table = self._seek_table(fs, path)
        url = url_of(fs, path)
        if table is not None:
            check_lpcm_size(url, table.decompressed_size, info, n_total, what="decompresses to")
            return
        size = os.stat(path).st_size if is_local(fs) else remote_size(fs, path)
        most = (size // 4 + 1) * _MAX_BLOCK
        if n_total * info.bytes_per_sample > most:
            raise SampleFileError(
                f"sample file {url} holds {size} compressed bytes, which decompress to at most "
                f"{most} bytes; expected {n_total * info.bytes_per_sample} bytes = {n_total} "
                f"samples x {info.n_channels} channels x {info.dtype.itemsize}-byte "
                f"{info.sample_type}"
            )

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        with self.stream_writer(file, info) as out:
            for chunk in interleaved_chunks(data, info):
                out.write(chunk)

    def stream_writer(self, file: BinaryIO, info: SamplesInfo) -> SeekableWriter:
        """A writer of this format that takes the LPCM bytes a block at a time.

        What [`write`][ondabatches.onda.LPCMZstFormat.write] uses; an importer streaming
        a long recording in blocks uses it directly, so that memory does not grow with
        the recording. Close it (or use it as a context manager) to write the seek
        table.

        Examples
        --------
        >>> import io
        >>> info = SamplesInfo("x", ("a",), "u", 1.0, 0.0, "int16", 1.0)
        >>> buf = io.BytesIO()
        >>> with LPCMZstFormat(frame_bytes=4).stream_writer(buf, info) as out:
        ...     out.write(b"\\x01\\x00\\x02\\x00\\x03\\x00")
        >>> table = parse_seek_table(len(buf.getvalue()), lambda a, b: buf.getvalue()[a:b])
        >>> len(table.compressed_offsets) - 1, table.decompressed_size  # two frames, 6 bytes
        (2, 6)
        """
        bps = info.bytes_per_sample
        return SeekableWriter(file, max(bps, self.frame_bytes // bps * bps), self.level)

    @staticmethod
    def _seek_table(fs: fsspec.AbstractFileSystem, path: str) -> SeekTable | None:
        return file_trailer(fs, path, "seek-table", parse_seek_table)

    @staticmethod
    def _open(fs: fsspec.AbstractFileSystem, path: str) -> BinaryIO:
        if is_local(fs):
            return open_regular(path)[0]
        return fs.open(path, "rb", block_size=_STREAM_BLOCK, cache_type="readahead")
