"""Seekable framed sample files: independent frames of samples, an index, a footer.

The container of the ``pco`` and ``dbp`` formats. A file is frames of
``frame_samples`` multichannel samples (the last one shorter), each encoded on its own
by the format's codec, channel by channel (channels x time, so that a codec's delta
coding runs along time), followed by an index. A window fetches the frames it overlaps
with one ranged read and decodes only them.

Integrity: the index holds each frame's encoded size and its CRC-32; a window checks
every frame it fetched against it before decoding, and a frame that does not decode to
exactly its samples is refused: either failure is a
[`SampleFileError`][ondabatches._errors.SampleFileError] naming the file and the frame.
A file whose index is missing or inconsistent (a truncated file) is refused, naming the
file.

Layout (little-endian)::

    frames                   the codec's bytes, one piece per frame
    index                    per frame: encoded size (u32), CRC-32 (u32)
    footer (28 bytes)        n_frames (u32), frame_samples (u32), n_channels (u32),
                             n_samples (u64), dtype code (u32), magic (4 bytes)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import fsspec
import numpy as np

from .._errors import ArgumentError, SampleFileError
from ._format_base import SampleFormat
from ._lpcm import file_trailer, read_range, url_of
from ._samples import SamplesInfo

__all__ = ["FramedFormat", "FrameIndex", "parse_index"]

_FOOTER = struct.Struct("<IIIQI4s")
_ENTRY = struct.Struct("<II")
#: Sample types by their code in the footer (codes never change: new types go last).
DTYPES = (
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "int8", "uint8",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """A framed file's frames: where each starts, and its CRC-32."""

    offsets: np.ndarray  # n_frames + 1 int64, the last one = the end of the frames
    crcs: np.ndarray  # n_frames uint32
    frame_samples: int
    n_channels: int
    n_samples: int
    dtype: str


def parse_index(size: int, read: Any, url: str, magic: bytes, name: str) -> FrameIndex:
    """The index of a ``name`` file of ``size`` bytes (``read(start, stop)`` gives bytes)."""
    if size < _FOOTER.size:
        raise SampleFileError(
            f"sample file {url} holds {size} bytes, fewer than a {name} footer "
            f"({_FOOTER.size}): truncated or not a {name} file"
        )
    n_frames, frame, n_channels, n_samples, code, found = _FOOTER.unpack(
        bytes(read(size - _FOOTER.size, size))
    )
    start = size - _FOOTER.size - n_frames * _ENTRY.size
    if found != magic or code >= len(DTYPES) or start < 0 or frame < 1:
        raise SampleFileError(
            f"sample file {url} does not end with a {name} index (magic {found!r}, expected "
            f"{magic!r}): truncated or not a {name} file"
        )
    entries = np.frombuffer(bytes(read(start, size - _FOOTER.size)), dtype="<u4").reshape(-1, 2)
    offsets = np.zeros(n_frames + 1, dtype=np.int64)
    np.cumsum(entries[:, 0], out=offsets[1:])
    if offsets[-1] != start or n_frames != -(-n_samples // frame):
        raise SampleFileError(
            f"sample file {url}: its {name} index gives {n_frames} frames of "
            f"{int(offsets[-1])} bytes for {n_samples} samples in frames of {frame}, but "
            f"{start} bytes precede the index: truncated or altered"
        )
    return FrameIndex(offsets, entries[:, 1].copy(), frame, n_channels, n_samples, DTYPES[code])


@dataclass(frozen=True, slots=True)
class FramedFormat(SampleFormat):
    """A sample format of independently encoded frames with an index (see the module).

    Subclasses name the format, its magic and the sample types it stores, and encode and
    decode one frame.

    Parameters
    ----------
    frame_samples:
        Multichannel samples per frame: a window fetches the frames it overlaps. The
        default, 2048 (8 s at 256 Hz), is about a quarter of a 30 s window.
    """

    NAME: ClassVar[str]
    MAGIC: ClassVar[bytes]
    STORES: ClassVar[tuple[str, ...]]

    frame_samples: int = 2048

    def __post_init__(self) -> None:
        if self.frame_samples < 1:
            raise ArgumentError(f"frame_samples must be positive, got {self.frame_samples}")

    def encode_frame(self, block: np.ndarray) -> bytes:
        """The bytes of one frame: ``block`` is channels x time, C-contiguous."""
        raise NotImplementedError

    def decode_frame(self, piece: np.ndarray, block: np.ndarray, url: str, k: int) -> None:
        """Decode frame ``k``'s bytes ``piece`` (uint8) into ``block`` (channels x time),
        raising a `SampleFileError` naming ``url`` and ``k`` if they do not fit it."""
        raise NotImplementedError

    def decode_into(
        self, piece: np.ndarray, out: np.ndarray, lo: int, hi: int, n: int, url: str, k: int
    ) -> None:
        """Samples ``lo:hi`` of frame ``k`` (``n`` samples long) into ``out`` (channels x
        ``hi - lo``). By default the whole frame is decoded and sliced; a codec that can
        stop early overrides it."""
        block = np.empty((out.shape[0], n), dtype=out.dtype)
        self.decode_frame(piece, block, url, k)
        out[:] = block[:, lo:hi]

    def _index(self, fs: fsspec.AbstractFileSystem, path: str) -> FrameIndex:
        url = url_of(fs, path)
        return file_trailer(
            fs,
            path,
            f"{self.NAME}-index",
            lambda size, read: parse_index(size, read, url, self.MAGIC, self.NAME),
        )

    def check_size(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> None:
        index = self._index(fs, path)
        if (index.n_samples, index.n_channels, index.dtype) != (
            n_total,
            info.n_channels,
            str(info.dtype),
        ):
            raise SampleFileError(
                f"sample file {url_of(fs, path)} holds {index.n_samples} samples x "
                f"{index.n_channels} channels of {index.dtype}; expected {n_total} samples x "
                f"{info.n_channels} channels of {info.dtype}"
            )

    def read(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, rows: range, n_total: int
    ) -> np.ndarray:
        self.check_size(fs, path, info, n_total)
        index = self._index(fs, path)
        url = url_of(fs, path)
        out = np.empty((info.n_channels, len(rows)), dtype=info.dtype)
        if not len(rows):
            return out
        frame = index.frame_samples
        first, last = rows.start // frame, -(-rows.stop // frame)
        base = int(index.offsets[first])
        encoded = read_range(fs, path, base, int(index.offsets[last]))
        offsets = index.offsets[first : last + 1] - base
        for j, k in enumerate(range(first, last)):
            piece = encoded[offsets[j] : offsets[j + 1]]
            if zlib.crc32(piece) != int(index.crcs[k]):
                raise SampleFileError(
                    f"sample file {url} frame {k} (bytes {offsets[j] + base}.."
                    f"{offsets[j + 1] + base - 1}) fails its CRC-32 check: the file is damaged"
                )
        self.decode_frames(encoded, offsets, index, first, rows, out, url)
        return out

    def decode_frames(
        self, encoded: np.ndarray, offsets: np.ndarray, index: FrameIndex, first: int,
        rows: range, out: np.ndarray, url: str,
    ) -> None:  # fmt: skip
        """Samples ``rows`` of the frames ``first``.. (their bytes ``encoded``, frame
        ``first + j`` at ``offsets[j]:offsets[j + 1]``, CRC-checked) into ``out``
        (channels x ``len(rows)``): by default `decode_into` for each frame."""
        frame = index.frame_samples
        for j in range(len(offsets) - 1):
            k = first + j
            a, b = k * frame, min((k + 1) * frame, index.n_samples)
            s, e = max(a, rows.start), min(b, rows.stop)
            piece = encoded[offsets[j] : offsets[j + 1]]
            self.decode_into(piece, out[:, s - rows.start : e - rows.start], s - a, e - a,
                             b - a, url, k)  # fmt: skip

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        dtype = str(info.dtype)
        if dtype not in self.STORES:
            raise ArgumentError(
                f"the {self.NAME} format stores {', '.join(self.STORES)}; got {dtype}"
            )
        data = np.asarray(data, dtype=info.dtype)
        n = data.shape[1]
        frame = self.frame_samples
        entries = bytearray()
        for a in range(0, n, frame):
            piece = self.encode_frame(np.ascontiguousarray(data[:, a : a + frame]))
            file.write(piece)
            entries += _ENTRY.pack(len(piece), zlib.crc32(piece))
        file.write(entries)
        n_frames = len(entries) // _ENTRY.size
        code = DTYPES.index(dtype)
        file.write(_FOOTER.pack(n_frames, frame, data.shape[0], n, code, self.MAGIC))
