"""Conversion of a signal's sample file between formats (``dbp``, ``pco``, ``lpcm``...).

Onda.jl reads ``lpcm`` and ``lpcm.zst``; ``dbp`` (`._dbp`) and ``pco`` (`._pco`)
files are smaller and read only by this package. `convert_signal` writes a signal's
samples in another format, exactly (encoded samples are copied, never decoded), and
returns the signal that points at the new file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ._formats import format_from_path
from ._io import load, store
from ._signal import Signal

__all__ = ["convert_signal"]


def convert_signal(
    signal: Signal,
    path: str | os.PathLike[str],
    file_format: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Signal:
    """Write ``signal``'s samples to ``path`` in ``file_format`` and return the signal
    that reads them from there (same recording, span, channels and encoding).

    ``file_format`` defaults to the one named by ``path``'s extension (``.lpcm``,
    ``.lpcm.zst``, ``.dbp``, ``.pco``). The encoded samples are copied bit for bit.
    """
    path = os.fspath(path)
    file_format = file_format or format_from_path(path)
    samples = load(signal, encoded=True, storage_options=storage_options)
    store(path, samples, file_format=file_format, storage_options=storage_options)
    return dataclasses.replace(signal, file_path=path, file_format=file_format)
