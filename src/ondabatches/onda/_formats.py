"""Sample file formats: a registry from ``file_format`` strings to readers/writers.

A format is any object with the two methods of :class:`SampleFormat`. The built-in
ones are ``"lpcm"`` (:class:`LPCMFormat`) and ``"lpcm.zst"`` (:class:`LPCMZstFormat`);
:func:`register_format` adds others, which :func:`~ondabatches.onda.load` and
:func:`~ondabatches.onda.store` then use for signals of that ``file_format``.
"""

from __future__ import annotations

import threading
from typing import BinaryIO, Protocol, runtime_checkable

import fsspec
import numpy as np

from .._errors import UnknownFormatError
from ._lpcm import LPCMFormat
from ._samples import SamplesInfo
from ._zst import LPCMZstFormat

__all__ = [
    "LPCMFormat",
    "LPCMZstFormat",
    "SampleFormat",
    "get_format",
    "register_format",
    "registered_formats",
]


@runtime_checkable
class SampleFormat(Protocol):
    """How samples of one ``file_format`` are read from and written to a file.

    Both methods work on *encoded* samples (``info.sample_type``), channels x time.
    Storage errors may propagate: the caller names the file in its own error.
    """

    def read(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        info: SamplesInfo,
        rows: range,
        n_total: int,
    ) -> np.ndarray:
        """Samples ``rows`` (0-based, ``rows.stop <= n_total``) of a file holding ``n_total``.

        Must read no more of the file than it needs, and raise
        :class:`~ondabatches.SampleFileError` (naming the file, expected and actual
        sizes) when the file disagrees with ``info`` and ``n_total``.
        """
        ...

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        """Write all of ``data`` (encoded, channels x time) to the open binary ``file``."""
        ...


_FORMATS: dict[str, SampleFormat] = {"lpcm": LPCMFormat(), "lpcm.zst": LPCMZstFormat()}
_LOCK = threading.Lock()


def register_format(name: str, fmt: SampleFormat, *, replace: bool = False) -> None:
    """Register ``fmt`` as the reader/writer of signals whose ``file_format`` is ``name``.

    ``store`` also infers ``name`` from a path ending in ``"." + name``.

    Examples
    --------
    >>> class Npy:
    ...     def read(self, fs, path, info, rows, n_total):
    ...         with fs.open(path, "rb") as f:
    ...             return np.load(f)[:, rows.start : rows.stop]
    ...     def write(self, file, data, info):
    ...         np.save(file, data)
    >>> register_format("npy-example", Npy())
    >>> type(get_format("npy-example")).__name__
    'Npy'
    """
    if not isinstance(fmt, SampleFormat):
        raise TypeError(
            f"a sample format needs read(fs, path, info, rows, n_total) and "
            f"write(file, data, info) methods; {type(fmt).__name__} lacks them"
        )
    with _LOCK:
        if name in _FORMATS and not replace and _FORMATS[name] is not fmt:
            raise ValueError(
                f"file_format {name!r} is already registered ({type(_FORMATS[name]).__name__}); "
                "pass replace=True to replace it"
            )
        _FORMATS[name] = fmt


def registered_formats() -> list[str]:
    """The registered ``file_format`` names, sorted.

    Examples
    --------
    >>> registered_formats()[:2]
    ['lpcm', 'lpcm.zst']
    """
    return sorted(_FORMATS)


def get_format(name: str) -> SampleFormat:
    """The format registered for ``file_format`` ``name``.

    >>> type(get_format("lpcm.zst")).__name__
    'LPCMZstFormat'
    """
    try:
        return _FORMATS[name]
    except (KeyError, TypeError):
        raise UnknownFormatError(
            f"unknown file_format {name!r}; registered formats are {registered_formats()} "
            "(add one with register_format)"
        ) from None


def format_from_path(path: str) -> str:
    """The registered format whose name ends ``path`` after a dot (the longest one)."""
    matches = [name for name in _FORMATS if path.endswith("." + name)]
    if not matches:
        raise UnknownFormatError(
            f"cannot infer the file_format of {path!r} from its extension; give file_format= "
            f"one of {registered_formats()}"
        )
    return max(matches, key=len)
