"""Labels kept in files: each row's label codes written as an Onda signal file beside
the dataset ([`store_labels`][ondabatches.labels.store_labels]) with their content digests
recorded in the table, and labeled tables written and read as Arrow IPC files."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from .._errors import LabelError, SchemaError
from ..onda._arrow import timespan_array
from ..onda._samples import Samples, SamplesInfo
from ..onda._storage import filesystem_for, storage_errors
from ._labeled import Labels, StoredLabels, _with_labels, iter_labeled_signals
from ._schema import _SCHEMA_KEY, LABELED_SCHEMA, LABELS_TYPE, check_labeled

__all__ = ["read_labeled_signals", "store_labels", "write_labeled_signals"]


def _stem(file_path: str) -> str:
    name = posixpath.basename(file_path.rstrip("/"))
    for ext in (".lpcm.zst", ".lpcm"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name.rsplit(".", 1)[0] if "." in name else name


def label_root(root: str | os.PathLike[str]) -> str:
    """``root`` as stored label paths use it: a URL as given, a local folder made absolute."""
    root = os.fspath(root)
    # The table records these paths: relative ones would mean nothing elsewhere.
    return root if _is_url(root) else os.path.abspath(root)


def label_paths(
    root: str,
    recordings: Sequence[uuid.UUID | None],
    file_paths: Sequence[str],
    file_format: str,
    rows: Sequence[int],
) -> list[str]:
    """Each row's label file, ``<root>/<recording>/labels_<stem of file_path>.<format>``.

    Raises [`LabelError`][ondabatches._errors.LabelError], naming the table ``rows``, if
    two rows would share a file.
    """
    seen: dict[str, int] = {}
    paths = []
    for i, recording, file_path in zip(rows, recordings, file_paths, strict=True):
        path = _join(root, str(recording), f"labels_{_stem(file_path)}.{file_format}")
        if path in seen:
            raise LabelError(
                f"rows {seen[path]} and {i} of recording {recording} would both "
                f"store their labels in {path} (their file_path basenames are equal)"
            )
        seen[path] = i
        paths.append(path)
    return paths


def write_label_file(path: str, codes: np.ndarray, info: SamplesInfo) -> None:
    """Write one row's label codes (1-D) as an Onda signal file, atomically."""
    from ..onda._io import store

    store(path, Samples(np.ascontiguousarray(codes).reshape(1, -1), info, encoded=True))


#: Schema metadata of a labeled table: the content digest of each stored label file,
#: by ``"<recording>/<file name>"``, recorded when the file is written. A scheme's
#: fingerprint covers the label values through it without reading any label file, and
#: it survives moving the files (the key holds no folder).
LABEL_DIGESTS_KEY = b"ondabatches_label_digests"


def label_digest(codes: np.ndarray) -> str:
    """A short digest of label codes: their type, their number and their values."""
    codes = np.ascontiguousarray(codes)
    h = hashlib.sha256(f"{codes.dtype.str}:{len(codes)}:".encode())
    h.update(codes.tobytes())
    return h.hexdigest()[:16]


def stored_label_key(recording: uuid.UUID | str | None, file_path: str) -> str:
    """The key of a stored label file in `LABEL_DIGESTS_KEY`'s mapping."""
    return f"{recording}/{posixpath.basename(file_path.replace(os.sep, '/'))}"


def label_digests(table: pa.Table) -> dict[str, str]:
    """The recorded digests of ``table``'s stored label files (empty if none)."""
    raw = (table.schema.metadata or {}).get(LABEL_DIGESTS_KEY)
    if not raw:
        return {}
    try:
        digests = json.loads(raw)
    except ValueError:
        return {}  # damaged metadata: fingerprints fall back to the files' references
    return digests if isinstance(digests, dict) else {}


def with_label_digests(table: pa.Table, digests: dict[str, str]) -> pa.Table:
    """``table`` with ``digests`` added to its recorded label-file digests."""
    if not digests:
        return table
    merged = {**label_digests(table), **digests}
    metadata = dict(table.schema.metadata or {})
    metadata[LABEL_DIGESTS_KEY] = json.dumps(merged, sort_keys=True).encode()
    return table.replace_schema_metadata(metadata)


def digesting(
    files: Iterable[tuple[str, np.ndarray, SamplesInfo]], keys: Iterable[str], out: dict[str, str]
) -> Iterator[tuple[str, np.ndarray, SamplesInfo]]:
    """``files`` as they are written, recording each one's `label_digest` in ``out``
    under the matching key of ``keys``."""
    for (path, codes, info), key in zip(files, keys, strict=True):
        out[key] = label_digest(codes)
        yield path, codes, info


#: Label files written at once to remote storage, where each file is a request whose
#: latency, not its few kB, is the cost.
MAX_CONCURRENT_WRITES = 16


def write_label_files(files: Iterable[tuple[str, np.ndarray, SamplesInfo]]) -> None:
    """Write ``(path, codes, info)`` label files: to a URL, several at once.

    Files are taken from ``files`` only as writes finish, so that at most
    `MAX_CONCURRENT_WRITES` rows' codes are in memory at once. The first error
    is raised once the writes in flight have ended (each file is written atomically).
    """
    files = iter(files)
    first = next(files, None)
    if first is None:
        return
    if not _is_url(first[0]):  # a local disk is not latency-bound
        write_label_file(*first)
        for file in files:
            write_label_file(*file)
        return
    with ThreadPoolExecutor(MAX_CONCURRENT_WRITES, thread_name_prefix="ondabatches-write") as pool:
        in_flight: deque[Future] = deque([pool.submit(write_label_file, *first)])
        for file in files:
            if len(in_flight) >= MAX_CONCURRENT_WRITES:
                in_flight.popleft().result()
            in_flight.append(pool.submit(write_label_file, *file))
        for future in in_flight:
            future.result()


def _string_array(values: Sequence[str]) -> pa.Array:
    """A string array on buffers that Python allocated, equal to ``pa.array(values)``.

    Arrow's default allocator (mimalloc) may map fresh transparent huge pages for a
    buffer of a size it has not served yet: the few hundred kB of paths of thousands
    of label files, built late in labeling, added 6-10 MB to its peak memory.
    """
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.array(values, pa.string())
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def stored_labels_column(
    paths: Sequence[str],
    file_format: str,
    starts: np.ndarray,
    stops: np.ndarray,
    info: SamplesInfo,
) -> pa.StructArray:
    """A ``labels`` column referring to label files that cover ``[starts, stops)``."""
    n = len(paths)
    return pa.StructArray.from_arrays(
        [
            _string_array(paths),
            pa.array([file_format] * n, pa.string()),
            timespan_array(starts, stops),
            pa.array([info.sample_type] * n, pa.string()),
            pa.array(np.full(n, info.sample_rate), pa.float64()),
            pa.nulls(n, pa.large_binary()),
        ],
        fields=list(LABELS_TYPE),
    )


def store_labels(
    labeled: pa.Table, root: str | os.PathLike[str], *, file_format: str = "lpcm"
) -> pa.Table:
    """Write each row's labels as an Onda signal file and refer to it instead.

    The file of a row is ``<root>/<recording>/labels_<stem of file_path>.<format>``
    (the recording folder keeps recordings whose files share a basename apart). Rows
    whose labels are already stored are left as they are. The returned table loads
    labels lazily, window by window; it gives the same batches as ``labeled``, and the
    same scheme fingerprints: the content digest of each file written is recorded in
    the table's metadata (`LABEL_DIGESTS_KEY`), so checkpoints keep covering the
    label values without any label file being read when a scheme is built.

    To label many recordings without holding all their labels in memory, pass
    ``store=root`` to [`label_signals`][ondabatches.labels.label_signals] instead: it returns this
    function's table, writing one recording's labels at a time.

    Parameters
    ----------
    labeled:
        A labeled table.
    root:
        A local folder or fsspec URL.
    file_format:
        ``"lpcm"`` or ``"lpcm.zst"``.

    Raises
    ------
    LabelError
        Two rows of a recording would store their labels in the same file (nothing is
        written then).

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> labeled = labeled_table(2, duration=300 * 10**9)
    >>> lazy = store_labels(labeled, os.path.abspath("labels"))
    >>> row = next(iter_labeled_signals(lazy))
    >>> type(row.labels).__name__, os.path.basename(row.labels.file_path)
    ('StoredLabels', 'labels_eeg.lpcm')
    >>> np.array_equal(row.label_codes(), next(iter_labeled_signals(labeled)).label_codes())
    True
    """
    rows = list(iter_labeled_signals(labeled))
    inline = [i for i, row in enumerate(rows) if isinstance(row.labels, Samples)]
    paths = label_paths(
        label_root(root),
        [rows[i].signal.recording for i in inline],
        [rows[i].signal.file_path for i in inline],
        file_format,
        inline,
    )
    digests: dict[str, str] = {}
    write_label_files(
        digesting(
            ((path, rows[i].labels.data[0], rows[i].labels.info)
             for path, i in zip(paths, inline, strict=True)),
            (stored_label_key(rows[i].signal.recording, path)
             for path, i in zip(paths, inline, strict=True)),
            digests,
        )
    )  # fmt: skip
    stored = iter(paths)
    new_labels: list[Labels] = []
    for row in rows:
        labels = row.labels
        if isinstance(labels, Samples):
            path = next(stored)
            labels = StoredLabels(
                row.signal.recording, path, file_format, row.label_span, labels.info
            )
        new_labels.append(labels)
    columns = [c for c in labeled.column_names if c not in ("label_span", "labels")]
    table = _with_labels(labeled.select(columns), [r.label_span for r in rows], new_labels)
    return with_label_digests(table, digests)


def _is_url(path: str) -> bool:
    return "://" in path


def _join(root: str, *parts: str) -> str:
    if _is_url(root):
        return posixpath.join(root, *parts)
    return os.path.join(root, *parts)


def _resolve(path: str | None, base: str) -> str | None:
    if path is None or _is_url(path) or os.path.isabs(path):
        return path
    return _join(base, path)


def write_labeled_signals(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write a labeled table as an Arrow IPC file (local path or fsspec URL).

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> write_labeled_signals("labeled.arrow", labeled_table(2, duration=300 * 10**9))
    >>> read_labeled_signals("labeled.arrow").num_rows
    2
    """
    check_labeled(table)
    url = os.fspath(path)
    metadata = dict(table.schema.metadata or {})
    metadata[_SCHEMA_KEY] = LABELED_SCHEMA.encode()
    table = table.replace_schema_metadata(metadata)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url, "write"), fs.open(fs_path, "wb") as f:
        with pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)


def read_labeled_signals(path: str | os.PathLike[str]) -> pa.Table:
    """Read a labeled table written by
    [`write_labeled_signals`][ondabatches.labels.write_labeled_signals].

    Relative ``file_path`` values (of signals and of stored labels) are taken relative
    to the table's folder.

    Raises
    ------
    SchemaError
        If the file is not a ``labeled.signal@2`` table.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> write_labeled_signals("labeled.arrow", labeled_table(2, duration=300 * 10**9))
    >>> labeled = read_labeled_signals("labeled.arrow")
    >>> labeled.num_rows, labeled.column("label_span").to_pylist()[0]
    (2, TimeSpan(30 s, 330 s))
    """
    url = os.fspath(path)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url), fs.open(fs_path, "rb") as f:
        data = f.read()
    try:
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    except pa.ArrowException as exc:  # garbage, or a truncated file
        raise SchemaError(f"{url} is not an Arrow IPC file: {exc}") from exc
    schema = (table.schema.metadata or {}).get(_SCHEMA_KEY, b"").decode()
    if not schema.startswith("labeled.signal@2"):
        raise SchemaError(
            f"{url} is not a labeled-signals table: schema {schema!r}, expected {LABELED_SCHEMA!r}"
        )
    check_labeled(table)
    base = posixpath.dirname(url) if _is_url(url) else os.path.dirname(os.path.abspath(url))
    paths = [_resolve(p, base) for p in table.column("file_path").to_pylist()]
    index = table.column_names.index("file_path")
    table = table.set_column(
        index, table.schema.field(index), pa.array(paths, table.schema.field(index).type)
    )
    labels = table.column("labels").combine_chunks()
    label_paths = pa.array(
        [_resolve(p, base) for p in labels.field("file_path").to_pylist()], pa.string()
    )
    fields = [label_paths if f.name == "file_path" else labels.field(f.name) for f in LABELS_TYPE]
    labels = pa.StructArray.from_arrays(fields, fields=list(LABELS_TYPE))
    return table.set_column(table.column_names.index("labels"), "labels", labels)
