"""The ``pco`` format: samples compressed with pcodec, in seekable frames with an index.

Of the codecs `benchmarks/codecs.py` compares (docs/codecs.md), pcodec keeps the
least of raw int16 EEG-like signals among the general-purpose libraries. A file is the
framed container of `._framed` (frames of ``frame_samples`` multichannel samples, an
index with a CRC-32 per frame, magic ``b"OBPC"``); each frame is the pcodec standalone
encoding of that frame's samples, channel by channel.

pcodec is optional (``pip install 'ondabatches[codecs]'``), imported when a ``pco``
file is first read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import SampleFileError, require
from ._framed import FramedFormat, FrameIndex
from ._framed import parse_index as _parse

__all__ = ["PcoFormat", "PcoIndex"]

_MAGIC = b"OBPC"
PcoIndex = FrameIndex


def _pcodec() -> Any:
    return require("pcodec", "codecs")


def parse_index(size: int, read: Any, url: str) -> FrameIndex:
    """The index of a ``pco`` file of ``size`` bytes (``read(start, stop)`` gives bytes)."""
    return _parse(size, read, url, _MAGIC, "pco")


@dataclass(frozen=True, slots=True)
class PcoFormat(FramedFormat):
    """``"pco"``: pcodec frames of ``frame_samples`` multichannel samples with an index.
    ``frame_samples`` as in `FramedFormat`
    (default 2048).
    """

    NAME = "pco"
    MAGIC = _MAGIC
    STORES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")

    def encode_frame(self, block: np.ndarray) -> bytes:
        pcodec = _pcodec()
        return pcodec.standalone.simple_compress(block.ravel(), pcodec.ChunkConfig())

    def decode_frame(self, piece: np.ndarray, block: np.ndarray, url: str, k: int) -> None:
        values = block.reshape(-1)
        try:
            progress = _pcodec().standalone.simple_decompress_into(piece.tobytes(), values)
        except (RuntimeError, TypeError) as exc:
            raise SampleFileError(
                f"sample file {url} frame {k} is not valid pcodec data: {exc}"
            ) from exc
        if progress.n_processed != len(values) or not progress.finished:
            raise SampleFileError(
                f"sample file {url} frame {k} decodes to {progress.n_processed} values; "
                f"its index says {len(values)}"
            )
