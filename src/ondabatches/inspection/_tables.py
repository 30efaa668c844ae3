"""Finding the Onda tables of a folder (or taking the one given) and reading them."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from .._errors import SampleFileNotFoundError, SchemaError
from ..onda import (
    filesystem_for,
    read_signals,
)
from ..onda._storage import is_local, storage_errors
from ._labels import _ANNOTATION_CORE

__all__ = ["find_tables", "in_folder"]


_SCHEMA_KEY = b"legolas_schema_qualified"

# Requests in flight at once when probing tables and sample files (remote storage).
_CONCURRENCY = 16


def _table_kind(url: str) -> str:
    """``"signals"`` or ``"annotations"``, from the Legolas schema name or the columns."""
    fs, path = filesystem_for(url)
    try:
        with storage_errors(url), fs.open(path, "rb") as source:
            try:
                schema = ipc.open_file(source).schema  # reads the footer only
            except pa.ArrowInvalid:
                source.seek(0)
                schema = ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{url} is not an Arrow table ({exc})") from None
    qualified = (schema.metadata or {}).get(_SCHEMA_KEY, b"").decode()
    if qualified.startswith("labeled.signal@"):
        return "labeled"  # derived from the signals table beside it
    if "onda.signal@" in qualified:
        return "signals"
    if "onda.annotation@" in qualified:
        return "annotations"
    names = set(schema.names)
    if {"file_path", "sample_rate", "channels"} <= names:
        return "signals"
    if set(_ANNOTATION_CORE) <= names:
        return "annotations"
    raise SchemaError(
        f"{url} is neither an onda.signal nor an onda.annotation table "
        f"(schema {qualified or 'unnamed'}, columns {sorted(names)})"
    )


def _url_of(fs: Any, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def find_tables(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """The signals and annotations tables at ``path`` (a table file or a folder, local or URL).

    A folder is searched (not recursively) for ``*.arrow`` files that are Onda tables;
    other Arrow files there, labeled-signal tables included, are ignored. Tables are
    given as local paths or URLs like ``path``.

    Examples
    --------
    >>> import tempfile
    >>> find_tables(tempfile.mkdtemp())
    ([], [])
    """
    url = os.fspath(path)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url):
        exists = fs.exists(fs_path)
        is_file = exists and fs.isfile(fs_path)
        listing = [] if not exists or is_file else sorted(fs.ls(fs_path, detail=False))
    if not exists:
        raise SampleFileNotFoundError(f"no such file or folder: {url}")
    if is_file:
        kind = _table_kind(url)
        return ([url], []) if kind in ("signals", "labeled") else ([], [url])
    candidates = [_url_of(fs, p) for p in listing if p.endswith(".arrow")]
    signals, annotations = [], []
    # Each probe reads a footer: on remote storage, one request each, so issue them together.
    with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
        kinds = list(pool.map(_kind_or_none, candidates))
    for candidate, kind in zip(candidates, kinds, strict=True):
        if kind == "signals":
            signals.append(candidate)
        elif kind == "annotations":
            annotations.append(candidate)
    return signals, annotations


def _kind_or_none(url: str) -> str | None:
    try:
        return _table_kind(url)
    except SchemaError:
        return None


def in_folder(folder: str | os.PathLike[str]) -> Callable[[str], str]:
    """A ``reroot`` for [`read_signals`][ondabatches.onda.read_signals]: each file by
    its base name in ``folder``.

    >>> in_folder("/mnt/data")("/home/ubuntu/onda/rec_eeg.lpcm")
    '/mnt/data/rec_eeg.lpcm'
    """
    root = os.fspath(folder)
    return lambda path: os.path.join(root, posixpath.basename(path))


def _read_all(paths: list[str], reader: Any, reroot: Any) -> pa.Table | None:
    if not paths:
        return None
    kwargs = {"reroot": reroot} if reader is read_signals else {}
    tables = [reader(p, **kwargs) for p in paths]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
