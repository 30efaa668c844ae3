"""The two Onda tables as files: Arrow IPC files, local or at an fsspec URL, read with
their Legolas schema checked and their sample paths resolved, and written atomically."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from .._errors import SampleFileNotFoundError, SchemaError, StorageError
from ._tables import (
    _ANNOTATIONS,
    _SIGNALS,
    Reroot,
    TableLike,
    _check_signal_values,
    _normalize,
    annotations_table,
    signals_table,
)

__all__ = ["read_annotations", "read_signals", "write_annotations", "write_signals"]


def _read_arrow(path: str | os.PathLike, storage_options: Mapping[str, Any] | None) -> pa.Table:
    url = os.fspath(path)
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise SampleFileNotFoundError(f"table file not found: {url}") from exc
    except OSError as exc:
        raise StorageError(f"cannot read table file {url}: {exc}") from exc
    buffer = pa.py_buffer(data)
    try:
        return pa.ipc.open_file(buffer).read_all()
    except pa.ArrowInvalid:
        pass  # Arrow.jl writes the stream format when given an IO instead of a path
    try:
        return pa.ipc.open_stream(buffer).read_all()
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"{url}: not an Arrow IPC file or stream ({exc})") from None


def _write_arrow(
    path: str | os.PathLike, table: pa.Table, storage_options: Mapping[str, Any] | None
) -> None:
    url = os.fspath(path)
    try:
        fs, fs_path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(fs._parent(fs_path), exist_ok=True)
        with fs.open(fs_path, "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
    except OSError as exc:
        raise StorageError(f"cannot write table file {url}: {exc}") from exc


def _is_url(path: str) -> bool:
    return "://" in path


def _rerooted(path: str, reroot: Reroot) -> str:
    if reroot is None:
        return path
    if callable(reroot):
        return reroot(path)
    # The longest prefix wins, and a prefix matches whole path segments only.
    for old in sorted(reroot, key=len, reverse=True):
        stem = old.rstrip("/")
        if path == stem or path.startswith(stem + "/"):
            return reroot[old].rstrip("/") + path[len(stem) :]
    return path


def _resolved(path: str, table_url: str) -> str:
    if _is_url(path) or os.path.isabs(path):
        return path
    if _is_url(table_url):
        scheme, rest = table_url.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(table_url)), path))


def read_signals(
    path: str | os.PathLike,
    *,
    reroot: Reroot = None,
    resolve_paths: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read an ``onda.signal@2`` Arrow file (local path or fsspec URL).

    Parameters
    ----------
    path:
        The table file, e.g. ``"data/signals.arrow"`` or ``"s3://bucket/signals.arrow"``.
    reroot:
        Rewrites the ``file_path`` values as stored (absolute paths of the machine that
        wrote the table, say): a mapping ``{old_prefix: new_prefix}`` (whole path
        segments, longest prefix first) or a function ``str -> str``.
    resolve_paths:
        Resolve relative ``file_path`` values (after ``reroot``) against the folder
        (or URL prefix) of the table file, so that loading needs no table location.
    storage_options:
        Passed to fsspec (credentials, endpoint, ...).

    Raises
    ------
    SampleFileNotFoundError
        The file does not exist.
    SchemaError
        The file is not Arrow, not an ``onda.signal@2`` table, or has bad columns.

    Examples
    --------
    >>> from ondabatches.onda import iter_signals
    >>> from ondabatches.synthetic import make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0)
    >>> signals = read_signals("data/signals.arrow", reroot={str(ds.root): "/mnt/data"})
    >>> paths = [s.file_path for s in iter_signals(signals)]
    >>> paths[0].endswith("data/5f82c2d9-cfeb-4fa3-a1d7-d982f8bd1045/eeg.lpcm")  # was relative
    True
    >>> paths[2]  # was written absolute, under ds.root
    '/mnt/data/2516ac85-e2eb-45e3-8cdb-31fe6899a08e/eeg.lpcm.zst'
    """
    url = os.fspath(path)
    table = _normalize(_read_arrow(url, storage_options), _SIGNALS, url, from_file=True)
    _check_signal_values(table, url)
    if reroot is None and not resolve_paths:
        return table
    paths = []
    for p in table.column("file_path").to_pylist():
        p = _rerooted(p, reroot)
        paths.append(_resolved(p, url) if resolve_paths else p)
    i = table.schema.get_field_index("file_path")
    return table.set_column(i, table.schema.field(i), pa.array(paths, type=pa.string()))


def read_annotations(
    path: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None
) -> pa.Table:
    """Read an ``onda.annotation@1`` Arrow file (or a table of an extension of it).

    Examples
    --------
    >>> from ondabatches.onda import iter_annotations
    >>> from ondabatches.synthetic import make_dataset
    >>> _ = make_dataset("data", n_recordings=1, duration=120 * 10**9, sample_rate=128.0)
    >>> annotations = read_annotations("data/annotations.arrow")  # or "s3://bucket/..."
    >>> annotations.num_rows, next(iter_annotations(annotations)).extra["stage"]
    (2, 'wake')
    """
    url = os.fspath(path)
    return _normalize(_read_arrow(url, storage_options), _ANNOTATIONS, url, from_file=True)


def write_signals(
    path: str | os.PathLike, table: TableLike, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write ``table`` (anything [`signals_table`][ondabatches.onda.signals_table]
    accepts) as an Arrow file Onda.jl reads.

    ``file_path`` values are written as given; relative ones are read back relative to
    ``path``'s folder.

    Examples
    --------
    >>> from ondabatches.synthetic import make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0)
    >>> write_signals("copy.arrow", ds.signals.slice(0, 2))
    >>> read_signals("copy.arrow").column("sensor_label").to_pylist()
    ['eeg', 'eog']
    """
    _write_arrow(path, signals_table(table), storage_options)


def write_annotations(
    path: str | os.PathLike, table: TableLike, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write ``table`` (anything
    [`annotations_table`][ondabatches.onda.annotations_table] accepts) as an Arrow file
    Onda.jl reads.

    Examples
    --------
    >>> import uuid
    >>> from ondabatches.onda import Annotation, TimeSpan, iter_annotations
    >>> rows = [Annotation.new(uuid.uuid4(), TimeSpan(0, 30 * 10**9), stage="wake")]
    >>> write_annotations("stages.arrow", rows)
    >>> [a.extra for a in iter_annotations(read_annotations("stages.arrow"))]
    [{'stage': 'wake'}]
    """
    _write_arrow(path, annotations_table(table), storage_options)


# ----------------------------------------------------------------------------- rows
