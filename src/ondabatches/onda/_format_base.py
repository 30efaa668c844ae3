"""The interface of sample file formats (see `ondabatches.onda._formats`)."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from typing import Any, BinaryIO

import fsspec
import numpy as np

from .._errors import ArgumentTypeError, SampleFileNotFoundError
from ._samples import SamplesInfo
from ._storage import check_regular, is_local

__all__ = ["SampleFormat"]


class SampleFormat(ABC):
    """How samples of one ``file_format`` are read from and written to a file.

    Subclass it and implement [`read`][ondabatches.abc.SampleFormat.read] and
    [`write`][ondabatches.abc.SampleFormat.write]; override
    [`check_size`][ondabatches.abc.SampleFormat.check_size] where the file tells how
    many samples it holds. Both methods work on *encoded* samples
    (``info.sample_type``), channels x time. Storage errors may propagate: the caller
    names the file in its own error. Check a format with
    [`ondabatches.testing.check_sample_format`][ondabatches.testing.check_sample_format].
    """

    @abstractmethod
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
        [`SampleFileError`][ondabatches._errors.SampleFileError] (naming the file,
        expected and actual sizes) when the file disagrees with ``info`` and
        ``n_total``.
        """

    @abstractmethod
    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        """Write all of ``data`` (encoded, channels x time) to the open binary ``file``."""

    def check_size(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> None:
        """Refuse, before anything is allocated for them, ``n_total`` samples the file
        cannot hold (raise [`SampleFileError`][ondabatches._errors.SampleFileError]).
        Every signal's file is checked with it before a window is read. By default: the
        file exists and is a regular file; formats whose files tell their size check it
        too."""
        if is_local(fs):
            check_regular(path, os.stat(path))
        elif not fs.exists(path):
            raise SampleFileNotFoundError(f"sample file {path} does not exist")


class _DuckFormat(SampleFormat):
    """A format that does not subclass [`SampleFormat`][ondabatches.abc.SampleFormat],
    seen through it: its ``read`` and ``write``, and the default
    [`SampleFormat.check_size`][ondabatches.abc.SampleFormat.check_size]."""

    def __init__(self, fmt: Any):
        self.fmt = fmt

    def read(self, fs, path, info, rows, n_total):
        return self.fmt.read(fs, path, info, rows, n_total)

    def write(self, file, data, info):
        return self.fmt.write(file, data, info)

    def __eq__(self, other: object) -> bool:  # the same object registered again
        return isinstance(other, _DuckFormat) and other.fmt is self.fmt

    def __hash__(self) -> int:
        return id(self.fmt)

    def __repr__(self) -> str:
        return repr(self.fmt)


def as_sample_format(fmt: Any, name: str) -> SampleFormat:
    """``fmt`` as a [`SampleFormat`][ondabatches.abc.SampleFormat]: itself, or
    (deprecated) an object with ``read`` and ``write`` methods."""
    if isinstance(fmt, SampleFormat):
        return fmt
    if callable(getattr(fmt, "read", None)) and callable(getattr(fmt, "write", None)):
        warnings.warn(
            f"format {name!r}: {type(fmt).__name__} does not subclass "
            "ondabatches.abc.SampleFormat; it is used through read and write with the default "
            "check_size. Subclass SampleFormat (objects that do not will be refused in a later "
            "release)",
            DeprecationWarning,
            stacklevel=3,
        )
        return _DuckFormat(fmt)
    raise ArgumentTypeError(
        f"a sample format needs read(fs, path, info, rows, n_total) and write(file, data, "
        f"info) methods (subclass ondabatches.abc.SampleFormat); {type(fmt).__name__} "
        f"lacks them"
    )
