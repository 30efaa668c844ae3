"""The ``pco`` format: samples compressed with pcodec, in seekable frames with an index.

Chosen by ``benchmarks/codecs.py`` (docs/codecs.md): of the codecs compared, pcodec
keeps the least of raw int16 EEG-like signals at a decode speed within reach of zstd's.
A file is independent frames of ``frame_samples`` multichannel samples (the last one
shorter), each the pcodec standalone encoding of that frame's samples channel by
channel (channels x time, so that pcodec's delta coding runs along time), followed by
an index. A window fetches the frames it overlaps with one ranged read and decodes
only them.

Integrity: the index holds each frame's compressed size and its CRC-32; a window
checks every frame it fetched against it before decoding, and each frame must decode
to exactly its samples: either failure is a [`SampleFileError`][ondabatches._errors.SampleFileError]
naming the file and the frame. A file whose index is missing or inconsistent (a
truncated file) is refused, naming the file.

Layout (little-endian)::

    frames                   pcodec standalone bytes, one per frame
    index                    per frame: compressed size (u32), CRC-32 (u32)
    footer (28 bytes)        n_frames (u32), frame_samples (u32), n_channels (u32),
                             n_samples (u64), dtype code (u32), magic b"OBPC" (4 bytes)

pcodec is optional (``pip install 'ondabatches[codecs]'``), imported when a ``pco``
file is first read or written.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
import numpy as np

from .._errors import ArgumentError, SampleFileError, require
from ._format_base import SampleFormat
from ._lpcm import file_trailer, read_range, url_of
from ._samples import SamplesInfo

__all__ = ["PcoFormat", "PcoIndex"]

_MAGIC = b"OBPC"
_FOOTER = struct.Struct("<IIIQI4s")
_ENTRY = struct.Struct("<II")
_DTYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")


def _pcodec() -> Any:
    return require("pcodec", "codecs")


@dataclass(frozen=True, slots=True)
class PcoIndex:
    """A ``pco`` file's frames: where each starts, and its CRC-32."""

    offsets: np.ndarray  # n_frames + 1 int64, the last one = the end of the frames
    crcs: np.ndarray  # n_frames uint32
    frame_samples: int
    n_channels: int
    n_samples: int
    dtype: str


def parse_index(size: int, read: Any, url: str) -> PcoIndex:
    """The index of a ``pco`` file of ``size`` bytes (``read(start, stop)`` gives bytes)."""
    if size < _FOOTER.size:
        raise SampleFileError(
            f"sample file {url} holds {size} bytes, fewer than a pco footer ({_FOOTER.size}): "
            "truncated or not a pco file"
        )
    n_frames, frame, n_channels, n_samples, code, magic = _FOOTER.unpack(
        bytes(read(size - _FOOTER.size, size))
    )
    start = size - _FOOTER.size - n_frames * _ENTRY.size
    if magic != _MAGIC or code >= len(_DTYPES) or start < 0 or frame < 1:
        raise SampleFileError(
            f"sample file {url} does not end with a pco index (magic {magic!r}, expected "
            f"{_MAGIC!r}): truncated or not a pco file"
        )
    entries = np.frombuffer(bytes(read(start, size - _FOOTER.size)), dtype="<u4").reshape(-1, 2)
    offsets = np.zeros(n_frames + 1, dtype=np.int64)
    np.cumsum(entries[:, 0], out=offsets[1:])
    if offsets[-1] != start or n_frames != -(-n_samples // frame):
        raise SampleFileError(
            f"sample file {url}: its pco index gives {n_frames} frames of {int(offsets[-1])} "
            f"bytes for {n_samples} samples in frames of {frame}, but {start} bytes precede the "
            "index: truncated or altered"
        )
    return PcoIndex(offsets, entries[:, 1].copy(), frame, n_channels, n_samples, _DTYPES[code])


@dataclass(frozen=True, slots=True)
class PcoFormat(SampleFormat):
    """``"pco"``: pcodec frames of ``frame_samples`` multichannel samples with an index.

    Parameters
    ----------
    frame_samples:
        Multichannel samples per frame: a window fetches the frames it overlaps. The
        default, 2048 (8 s at 256 Hz), is about a quarter of a 30 s window.
    """

    frame_samples: int = 2048

    def __post_init__(self) -> None:
        if self.frame_samples < 1:
            raise ArgumentError(f"frame_samples must be positive, got {self.frame_samples}")

    def _index(self, fs: fsspec.AbstractFileSystem, path: str) -> PcoIndex:
        url = url_of(fs, path)
        return file_trailer(fs, path, "pco-index", lambda size, read: parse_index(size, read, url))

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
        compressed = read_range(fs, path, base, int(index.offsets[last]))
        standalone = _pcodec().standalone
        for k in range(first, last):
            lo, hi = int(index.offsets[k]) - base, int(index.offsets[k + 1]) - base
            piece = compressed[lo:hi]
            if zlib.crc32(piece) != int(index.crcs[k]):
                raise SampleFileError(
                    f"sample file {url} frame {k} (bytes {lo + base}..{hi + base - 1}) fails its "
                    "CRC-32 check: the file is damaged"
                )
            a, b = k * frame, min((k + 1) * frame, index.n_samples)
            values = np.empty((b - a) * info.n_channels, dtype=info.dtype)
            try:
                progress = standalone.simple_decompress_into(piece.tobytes(), values)
            except (RuntimeError, TypeError) as exc:
                raise SampleFileError(
                    f"sample file {url} frame {k} is not valid pcodec data: {exc}"
                ) from exc
            if progress.n_processed != len(values) or not progress.finished:
                raise SampleFileError(
                    f"sample file {url} frame {k} decodes to {progress.n_processed} values; "
                    f"its index says {len(values)}"
                )
            block = values.reshape(info.n_channels, b - a)
            s, e = max(a, rows.start), min(b, rows.stop)
            out[:, s - rows.start : e - rows.start] = block[:, s - a : e - a]
        return out

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        pcodec = _pcodec()
        dtype = str(info.dtype)
        if dtype not in _DTYPES:
            raise ArgumentError(f"the pco format stores {', '.join(_DTYPES)}; got {dtype}")
        data = np.asarray(data, dtype=info.dtype)
        n = data.shape[1]
        frame = self.frame_samples
        entries = bytearray()
        config = pcodec.ChunkConfig()
        for a in range(0, n, frame):
            piece = pcodec.standalone.simple_compress(
                np.ascontiguousarray(data[:, a : a + frame]).ravel(), config
            )
            file.write(piece)
            entries += _ENTRY.pack(len(piece), zlib.crc32(piece))
        file.write(entries)
        n_frames = len(entries) // _ENTRY.size
        file.write(_FOOTER.pack(n_frames, frame, data.shape[0], n, _DTYPES.index(dtype), _MAGIC))
