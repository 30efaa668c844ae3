"""Sample file formats: a registry from ``file_format`` strings to readers/writers.

A format is a [`SampleFormat`][ondabatches.abc.SampleFormat] (``read``, ``write`` and
``check_size``). The built-in ones are ``"lpcm"``
([`LPCMFormat`][ondabatches.onda.LPCMFormat]), ``"lpcm.zst"``
([`LPCMZstFormat`][ondabatches.onda.LPCMZstFormat]) and ``"edf"``/``"bdf"``
([`EdfFormat`][ondabatches.onda.EdfFormat]: EDF/BDF files served in place, read-only),
``"dbp"`` (`DbpFormat`: frames of bit-packed second differences with an index, the
smallest fast one for integer biosignals) and ``"pco"`` (`PcoFormat`: pcodec frames
with an index; needs pcodec);
[`register_format`][ondabatches.onda.register_format] adds others, which
[`load`][ondabatches.onda.load] and [`store`][ondabatches.onda.store] then use for
signals of that ``file_format``.
"""

from __future__ import annotations

import logging
import pickle
import threading

from .._errors import ArgumentError, UnknownFormatError
from ._dbp import DbpFormat
from ._edf import EdfFormat
from ._format_base import SampleFormat, as_sample_format
from ._lpcm import LPCMFormat
from ._pco import PcoFormat
from ._zst import LPCMZstFormat

__all__ = [
    "EdfFormat",
    "LPCMFormat",
    "LPCMZstFormat",
    "SampleFormat",
    "get_format",
    "register_format",
    "registered_formats",
]


_FORMATS: dict[str, SampleFormat] = {
    "lpcm": LPCMFormat(),
    "lpcm.zst": LPCMZstFormat(),
    "pco": PcoFormat(),
    "dbp": DbpFormat(),
    "edf": EdfFormat("edf"),
    "bdf": EdfFormat("bdf"),
}
_BUILT_IN = dict(_FORMATS)
_log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def register_format(name: str, fmt: SampleFormat, *, replace: bool = False) -> None:
    """Register ``fmt`` as the reader/writer of signals whose ``file_format`` is ``name``.

    ``store`` also infers ``name`` from a path ending in ``"." + name``.

    Examples
    --------
    >>> class Npy(SampleFormat):
    ...     def read(self, fs, path, info, rows, n_total):
    ...         with fs.open(path, "rb") as f:
    ...             return np.load(f)[:, rows.start : rows.stop]
    ...     def write(self, file, data, info):
    ...         np.save(file, data)
    >>> register_format("npy-example", Npy())
    >>> type(get_format("npy-example")).__name__
    'Npy'
    """
    fmt = as_sample_format(fmt, name)
    with _LOCK:
        if name in _FORMATS and not replace and _FORMATS[name] != fmt:
            raise ArgumentError(
                f"file_format {name!r} is already registered ({type(_FORMATS[name]).__name__}); "
                "pass replace=True to replace it"
            )
        _FORMATS[name] = fmt


def user_formats() -> dict[str, SampleFormat]:
    """The formats registered in this process beyond the built-in ones (or in place of
    them) that pickle: what worker processes and Ray actors register as they start, so
    that a plug-in works on every backend. One that does not pickle (a class defined
    in a notebook cell) is left out, with a logged warning: its signals then fail on
    workers with an [`UnknownFormatError`][ondabatches._errors.UnknownFormatError]."""
    with _LOCK:
        mine = {k: v for k, v in _FORMATS.items() if _BUILT_IN.get(k) is not v}
    out = {}
    for name, fmt in mine.items():
        try:
            pickle.dumps(fmt)
        except Exception as exc:  # noqa: BLE001 - any reason it cannot travel
            _log.warning("format %r (%s) does not pickle, so worker processes do not get "
                         "it: %s", name, type(fmt).__name__, exc)  # fmt: skip
            continue
        out[name] = fmt
    return out


def install_formats(formats: dict[str, SampleFormat] | None) -> None:
    """Register ``formats`` (from `user_formats` of the process that started
    this one), replacing what is registered under their names."""
    for name, fmt in (formats or {}).items():
        register_format(name, fmt, replace=True)


def registered_formats() -> list[str]:
    """The registered ``file_format`` names, sorted.

    Examples
    --------
    >>> registered_formats()[:4]
    ['bdf', 'dbp', 'edf', 'lpcm']
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
