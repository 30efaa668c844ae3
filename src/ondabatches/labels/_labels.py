"""Annotations to dense labels: [`label_signals`][ondabatches.labels.label_signals],
[`sort_and_trim_spans`][ondabatches.labels.sort_and_trim_spans].

Semantics are OndaBatches.jl's: per group (recording by default) annotations must be
sorted, contiguous and each span (but the last) a whole number of epochs; each span
becomes ``duration // epoch`` copies of its label's code. Beyond OndaBatches, a
``fill`` code may stand for gaps between annotations.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import ArgumentError, LabelError, SchemaError, SpanError
from ..onda._arrow import span_bounds, timespan_array, uuids_from_array
from ..onda._timespan import TimeLike, TimeSpan, nanoseconds
from ._labeled import inline_labels, label_info, with_label_columns
from ._stored import (
    digesting,
    label_paths,
    label_root,
    stored_label_key,
    stored_labels_column,
    with_label_digests,
    write_label_files,
)

__all__ = ["MissingLabelsWarning", "label_signals", "sort_and_trim_spans"]


class MissingLabelsWarning(UserWarning):
    """Signals without any annotation were dropped by
    [`label_signals`][ondabatches.labels.label_signals]."""


def _as_columns(groups: str | Sequence[str] | None) -> list[str]:
    if groups is None:
        return []
    if isinstance(groups, str):
        return [groups]
    return list(groups)


def _dictionary_encode(values: pa.ChunkedArray) -> tuple[list[Any], np.ndarray]:
    """The distinct values (null included) in order of first appearance, and each
    value's position among them, computed by Arrow chunk by chunk (no combined copy)."""
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in values.chunks]
    try:
        encoded = pc.dictionary_encode(
            pa.chunked_array(chunks, type=values.type.storage_type)
            if isinstance(values.type, pa.ExtensionType)
            else values,
            null_encoding="encode",
        )
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Values Arrow cannot hash (nested types): number them in Python.
        distinct: dict[str, Any] = {}
        keys = [repr(v) for v in values.to_pylist()]
        for k, v in zip(keys, values.to_pylist(), strict=True):
            distinct.setdefault(k, v)
        position = {k: i for i, k in enumerate(distinct)}
        index = np.fromiter((position[k] for k in keys), dtype=np.int64, count=len(keys))
        return list(distinct.values()), index
    if encoded.num_chunks == 0:
        return [], np.empty(0, dtype=np.int32)
    # One hash table serves all chunks: their indices agree, the last dictionary is whole.
    index = np.concatenate([c.indices.to_numpy() for c in encoded.chunks])
    dictionary = encoded.chunks[-1].dictionary.to_pylist()
    del encoded
    # Arrow's allocator keeps the pages of the hash table and indices: hand them back,
    # or each column encoded adds its temporaries to the peak memory of labeling.
    pa.default_memory_pool().release_unused()
    return dictionary, index


def _group_codes(tables: list[tuple[pa.Table, str]], columns: list[str]) -> list[np.ndarray]:
    """Per table, a group number per row: equal ``columns`` values give equal numbers in
    every table, numbered in order of first appearance (tables in the given order).

    Computed column-wise with Arrow's hashing: no Python object per row, so grouping
    the annotations of thousands of recordings costs about as much as reading them.
    """
    for table, what in tables:
        for c in columns:
            if c not in table.column_names:
                raise SchemaError(
                    f"{what} table has no column {c!r} to group by; it has {table.column_names}"
                )
    sizes = [table.num_rows for table, _ in tables]
    codes: np.ndarray | None = None
    for c in columns:
        cols = [table.column(c) for table, _ in tables]
        first = cols[0].type
        chunks = []
        for col, (_, what) in zip(cols, tables, strict=True):
            if col.type != first:
                try:
                    col = col.cast(first)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    raise SchemaError(
                        f"column {c!r} has type {first} in the {tables[0][1]} table but "
                        f"{col.type} in the {what} table; they cannot be compared"
                    ) from None
            chunks.extend(col.chunks)
        _, column = _dictionary_encode(pa.chunked_array(chunks, type=first))
        if codes is None:
            codes = column
        else:
            # Pair with the codes so far, then renumber: codes stay below the row count.
            pairs = codes.astype(np.int64) * (int(column.max(initial=0)) + 1) + column
            _, codes = _dictionary_encode(pa.chunked_array([pairs]))
    if codes is None:
        codes = np.zeros(sum(sizes), dtype=np.int32)
    return np.split(codes, np.cumsum(sizes)[:-1])


def _key_name(columns: list[str], table: pa.Table, row: int) -> str:
    if not columns:
        return "the table"
    return ", ".join(f"{c}={table.column(c)[row].as_py()}" for c in columns)


def _members(codes: np.ndarray, n_groups: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Rows grouped: ``order[bounds[g]:bounds[g + 1]]`` are group ``g``'s rows, in row order.

    ``order`` is None when the rows are already grouped in code order (as annotation
    files usually are): group ``g`` is then the slice ``bounds[g]:bounds[g + 1]``.
    """
    if len(codes) < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return None, np.searchsorted(codes, np.arange(n_groups + 1))
    order = np.argsort(codes, kind="stable")
    return order, np.searchsorted(codes[order], np.arange(n_groups + 1))


def sort_and_trim_spans(
    annotations: Any, *, epoch: TimeLike, by: str | Sequence[str] | None = None
) -> pa.Table:
    """Sort annotations by start and trim each group's last span to whole epochs.

    Per group of ``by`` (the whole table if None): sort by span start, cut the last
    span down to a whole number of epochs, and drop it if nothing is left.

    Parameters
    ----------
    annotations:
        An ``onda.annotation@1`` table (or anything ``annotations_table`` accepts).
    epoch:
        The label epoch (nanoseconds or timedelta).
    by:
        Column(s) to group by, e.g. ``"recording"``.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from ondabatches.synthetic import make_dataset
    >>> ds = make_dataset("data", n_recordings=1, duration=120 * 10**9, sample_rate=128.0)
    >>> ds.annotations.column("span").to_pylist()
    [TimeSpan(10 s, 70 s), TimeSpan(70 s, 105 s)]
    >>> ann = sort_and_trim_spans(ds.annotations, epoch=timedelta(seconds=30), by="recording")
    >>> ann.column("span").to_pylist()
    [TimeSpan(10 s, 70 s), TimeSpan(70 s, 100 s)]
    """
    from ..onda._tables import annotations_table

    table = annotations_table(annotations)
    epoch_ns = _positive(epoch, "epoch")
    columns = _as_columns(by)
    (codes,) = _group_codes([(table, "annotations")], columns)
    starts, stops = span_bounds(table.column("span"))
    # Sort by group (first appearance order) then start; a stable sort keeps ties in order.
    order = np.lexsort((starts, codes)) if len(codes) else np.array([], dtype=np.int64)
    starts, stops, codes = starts[order], stops[order], codes[order]
    last_of_group = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True]) if len(codes) else codes
    new_stops = stops.copy()
    whole = (stops[last_of_group] - starts[last_of_group]) // epoch_ns * epoch_ns
    new_stops[last_of_group] = starts[last_of_group] + whole
    keep = np.ones(len(order), dtype=bool)
    keep[last_of_group] = whole > 0
    table = table.take(pa.array(order))
    span_index = table.column_names.index("span")
    table = table.set_column(span_index, "span", timespan_array(starts, new_stops))
    return table.filter(pa.array(keep))


def _positive(value: TimeLike, name: str) -> int:
    ns = nanoseconds(value)
    if ns <= 0:
        raise ArgumentError(f"{name} must be positive, got {ns} ns")
    return ns


def _round(durations: np.ndarray, roundto: int | None) -> np.ndarray:
    if roundto is None:
        return durations
    # Nearest multiple of roundto, ties up (as Julia's Dates rounding).
    return (durations + roundto // 2) // roundto * roundto


def _label_dtype(codes: Mapping[Any, int], fill: int | None) -> str:
    if not isinstance(codes, Mapping):
        raise LabelError(
            f"encoding must map each label to its integer code (e.g. {{'wake': 1}}), got "
            f"a {type(codes).__name__}: {codes!r}"
        )
    values = list(codes.values()) + ([fill] if fill is not None else [])
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise LabelError(f"label codes must be non-negative integers, got {v!r}")
    top = max(values, default=0)
    for name in ("uint8", "uint16", "uint32", "uint64"):
        if top <= np.iinfo(name).max:
            return name
    raise LabelError(f"label code {top} does not fit in uint64")


def _encode_group(
    name: str,
    starts: np.ndarray,
    stops: np.ndarray,
    values: np.ndarray,
    *,
    epoch: int,
    roundto: int | None,
    fill: int | None,
    dtype: str,
) -> tuple[TimeSpan, np.ndarray, np.ndarray]:
    """The label span and the labels as runs: ``values[i]`` repeated ``counts[i]`` times."""
    if np.any(starts[1:] < starts[:-1]):
        raise LabelError(f"annotations of {name} are not sorted by start; use sort_and_trim_spans")
    gaps = starts[1:] - stops[:-1]
    if np.any(gaps < 0):
        i = int(np.flatnonzero(gaps < 0)[0])
        raise LabelError(
            f"annotations of {name} overlap: span {TimeSpan(starts[i], stops[i])} and "
            f"span {TimeSpan(starts[i + 1], stops[i + 1])}"
        )
    if fill is None and np.any(gaps > 0):
        i = int(np.flatnonzero(gaps > 0)[0])
        raise LabelError(
            f"annotations of {name} are not contiguous: span {TimeSpan(starts[i], stops[i])} is "
            f"followed by span {TimeSpan(starts[i + 1], stops[i + 1])} (give fill= a code for gaps)"
        )
    durations = _round(stops - starts, roundto)
    bad = np.flatnonzero(durations[:-1] % epoch)
    if len(bad):
        i = int(bad[0])
        raise LabelError(
            f"annotation span {TimeSpan(starts[i], stops[i])} of {name} is "
            f"{int(durations[i])} ns long, not a whole number of {epoch} ns epochs "
            "(pass roundto= to absorb small errors)"
        )
    gaps = _round(np.maximum(gaps, 0), roundto)
    bad = np.flatnonzero(gaps % epoch)
    if len(bad):
        i = int(bad[0])
        raise LabelError(
            f"the gap after annotation span {TimeSpan(starts[i], stops[i])} of {name} is "
            f"{int(gaps[i])} ns, not a whole number of {epoch} ns epochs"
        )
    counts = durations // epoch
    if fill is not None and len(gaps):
        # Interleave annotation runs with gap runs: [a0, gap0, a1, gap1, ..., a_last].
        values = np.insert(values, np.arange(1, len(values)), fill).astype(dtype)
        counts = np.insert(counts, np.arange(1, len(counts)), gaps // epoch)
    # The label span is consistent with the labels: one epoch per label from the first start.
    span = TimeSpan(int(starts[0]), int(starts[0] + counts.sum() * epoch))
    return span, values, counts


def _group_encoder(
    signals: pa.Table,
    annotations: pa.Table,
    columns: list[str],
    labels_column: str,
    encoding: Mapping[Any, int],
    dtype: str,
    *,
    epoch: int,
    roundto: int | None,
    fill: int | None,
) -> tuple[np.ndarray, np.ndarray, Callable[[int], tuple[TimeSpan, np.ndarray, np.ndarray]]]:
    """The group code of each signal row, the bounds of each group's annotations, and a
    function that encodes one group's annotations as ``(label span, values, counts)``."""
    sig_codes, ann_codes = _group_codes(
        [(signals, "signals"), (annotations, "annotations")], columns
    )
    n_groups = int(max(sig_codes.max(initial=-1), ann_codes.max(initial=-1))) + 1
    order, bounds = _members(ann_codes, n_groups)
    starts, stops = span_bounds(annotations.column("span"))
    distinct, label_index = _distinct_labels(annotations, labels_column)
    # Each distinct label is looked up once; unknown ones only matter for signals' groups.
    known = np.array([label in encoding for label in distinct], dtype=bool)
    lut = np.array([encoding.get(label, 0) for label in distinct], dtype=dtype)

    def encode(group: int) -> tuple[TimeSpan, np.ndarray, np.ndarray]:
        lo, hi = int(bounds[group]), int(bounds[group + 1])
        idx = slice(lo, hi) if order is None else order[lo:hi]
        name = _key_name(columns, annotations, lo if order is None else int(order[lo]))
        unknown = np.flatnonzero(~known[label_index[idx]])
        if len(unknown):
            raise LabelError(
                f"label {distinct[label_index[idx][unknown[0]]]!r} of {name} is not in the "
                f"encoding {dict(encoding)}"
            )
        return _encode_group(
            name, starts[idx], stops[idx], lut[label_index[idx]],
            epoch=epoch, roundto=roundto, fill=fill, dtype=dtype,
        )  # fmt: skip

    return sig_codes, bounds, encode


def _label_runs(
    signals: pa.Table,
    annotations: pa.Table,
    columns: list[str],
    labels_column: str,
    encoding: Mapping[Any, int],
    dtype: str,
    *,
    epoch: int,
    roundto: int | None,
    fill: int | None,
    hold: bool = True,
    partial: bool = False,
) -> tuple[list[int], list[int], list[int], Iterable[tuple[np.ndarray, np.ndarray]], list[int]]:
    """Per signal row with annotations: its label span and its labels as runs.

    Returns ``(kept rows, label starts, label stops, runs, rows without annotations)``;
    each kept row's runs are ``(values, counts)``: ``values[i]`` repeated ``counts[i]``
    times. Every row is checked before this returns.

    With ``hold``, the runs are a list and the per-annotation arrays live only here,
    so that they are freed before the caller expands the runs into the labels column.
    Without it, the runs are recomputed row by row as the caller iterates, so that
    those of all rows are never held at once (the per-annotation arrays are).
    """
    sig_codes, bounds, encode = _group_encoder(
        signals, annotations, columns, labels_column, encoding, dtype,
        epoch=epoch, roundto=roundto, fill=fill,
    )  # fmt: skip
    sig_starts, sig_stops = span_bounds(signals.column("span"))
    spans: dict[int, TimeSpan] = {}
    held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    keep, groups, label_starts, label_stops, missing = [], [], [], [], []
    for row, group in enumerate(sig_codes.tolist()):
        if bounds[group] == bounds[group + 1]:
            missing.append(row)
            continue
        if group not in spans:
            span, values, counts = encode(group)
            spans[group] = span
            if hold:
                held[group] = (values, counts)
        span = spans[group]
        if not partial and not (sig_starts[row] <= span.start and span.stop <= sig_stops[row]):
            signal_span = TimeSpan(int(sig_starts[row]), int(sig_stops[row]))
            raise SpanError(
                f"label span not inside the signal span for {_key_name(columns, signals, row)} "
                f"(signal row {row}): label span {span}, signal span {signal_span}"
            )
        keep.append(row)
        groups.append(group)
        label_starts.append(span.start)
        label_stops.append(span.stop)
    runs: Iterable[tuple[np.ndarray, np.ndarray]]
    if hold:
        runs = [held[g] for g in groups]
    else:
        runs = (encode(g)[1:] for g in groups)
    return keep, label_starts, label_stops, runs, missing


def label_signals(
    signals: Any,
    annotations: Any,
    *,
    labels_column: str,
    epoch: TimeLike,
    encoding: Mapping[Any, int],
    groups: str | Sequence[str] = "recording",
    roundto: TimeLike | None = None,
    fill: int | None = None,
    store: str | os.PathLike[str] | None = None,
    store_format: str = "lpcm",
    partial_signals: bool = False,
) -> pa.Table:
    """Attach dense labels, derived from annotations, to signals.

    Per group (by default per recording), the annotations must be sorted by start and
    contiguous, and each span but the last a whole number of ``epoch`` (after rounding
    durations to the nearest ``roundto``, if given); the last is cut down to whole
    epochs. Each span becomes ``duration // epoch`` copies of ``encoding[label]``. The
    labels are encoded samples at rate ``1 / epoch`` (one channel ``label``, the
    smallest unsigned type holding every code), and ``label_span`` starts at the first
    annotation and lasts one epoch per label.

    Parameters
    ----------
    signals:
        An ``onda.signal@2`` table (or anything ``signals_table`` accepts).
    annotations:
        An ``onda.annotation@1`` table with a ``labels_column`` (and the ``groups`` columns).
    labels_column:
        The annotation column holding the labels, e.g. ``"stage"``.
    epoch:
        The label period (nanoseconds or timedelta).
    encoding:
        Label -> non-negative integer code.
    groups:
        Column(s) present in both tables that tie annotations to signals.
    roundto:
        Round annotation durations (and gaps) to the nearest multiple of this first.
    fill:
        If given, the code of the epochs between annotations (gaps must then be whole
        epochs); without it gaps are an error, as in OndaBatches.
    store:
        If given, a local folder or fsspec URL: each row's labels are written there as
        soon as they are computed, and the table refers to those files. The result is
        ``store_labels(label_signals(...), store, file_format=store_format)``, but the
        labels of all rows are never in memory at once (thousands of recordings).
    store_format:
        The format of the label files written to ``store``: ``"lpcm"`` or ``"lpcm.zst"``.
    partial_signals:
        Keep signals whose span does not contain their group's whole label span (a
        recording's EMG that starts late, say), rather than raising. Every row keeps
        the recording's label timeline. Only schemes with ``modalities=`` accept such
        a table: they sample windows inside every signal's span (or zero-fill).

    Returns
    -------
    pyarrow.Table
        A ``labeled.signal@2`` table: the signals that have annotations, in their
        order, with ``label_span`` and ``labels`` columns (references to label files
        if ``store`` is given).

    Raises
    ------
    LabelError
        Unsorted, overlapping or non-contiguous annotations, spans not a whole number
        of epochs, or labels missing from ``encoding``; the message names the group.
        With ``store``, also two rows of a recording whose label files would coincide
        (equal ``file_path`` basenames). Every check is made before any file is written.
    SpanError
        A label span not inside its signal's span (naming the recording), unless
        ``partial_signals``.

    Warns
    -----
    MissingLabelsWarning
        Signals without annotations are dropped, and named.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from ondabatches.synthetic import make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0)
    >>> stages = {"wake": 1, "nrem1": 2, "nrem2": 3, "nrem3": 4, "rem": 5, "no_stage": 6}
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=timedelta(seconds=30), encoding=stages)
    >>> labeled.column("sensor_label").to_pylist(), labeled.column("label_span").to_pylist()
    (['eeg', 'eog', 'eeg'], [TimeSpan(10 s, 100 s), TimeSpan(10 s, 100 s), TimeSpan(14 s, 104 s)])

    At scale, store the labels as they are computed (one small file per row):

    >>> lazy = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                      epoch=timedelta(seconds=30), encoding=stages, store="labels")
    >>> from ondabatches.labels import iter_labeled_signals
    >>> row = next(iter_labeled_signals(lazy))
    >>> type(row.labels).__name__, row.labels.file_path.endswith("labels_eeg.lpcm")
    ('StoredLabels', True)
    """
    from ..onda._tables import annotations_table, signals_table

    signals = signals_table(signals)
    annotations = annotations_table(annotations)
    epoch_ns = _positive(epoch, "epoch")
    roundto_ns = None if roundto is None else _positive(roundto, "roundto")
    if labels_column not in annotations.column_names:
        raise SchemaError(
            f"annotations have no labels column {labels_column!r}; "
            f"they have {annotations.column_names}"
        )
    columns = _as_columns(groups)
    dtype = _label_dtype(encoding, fill)
    info = label_info(epoch_ns, dtype)

    keep, label_starts, label_stops, runs, missing = _label_runs(
        signals, annotations, columns, labels_column, encoding, dtype,
        epoch=epoch_ns, roundto=roundto_ns, fill=fill, hold=store is None,
        partial=partial_signals,
    )  # fmt: skip
    if missing:
        names = sorted({_key_name(columns, signals, r) for r in missing})
        warnings.warn(
            f"dropping {len(missing)} signal rows with no labels: {'; '.join(names)}",
            MissingLabelsWarning,
            stacklevel=2,
        )
    kept = signals.take(pa.array(keep, type=pa.int64()))
    # Arrow's allocator keeps the pages of the grouping temporaries; hand them back
    # before the labels are expanded, so that peak memory is input + output only.
    pa.default_memory_pool().release_unused()
    label_starts_ns = np.array(label_starts, dtype=np.int64)
    label_stops_ns = np.array(label_stops, dtype=np.int64)
    if store is not None:
        return _stored_table(
            kept, runs, label_starts_ns, label_stops_ns, info, store=store,
            store_format=store_format,
        )  # fmt: skip
    return _inline_table(kept, runs, label_starts_ns, label_stops_ns, info, dtype)


def _stored_table(
    kept: pa.Table,
    runs: list[tuple[np.ndarray, np.ndarray]],
    label_starts_ns: np.ndarray,
    label_stops_ns: np.ndarray,
    info: Any,
    *,
    store: Any,
    store_format: str,
) -> pa.Table:
    """The labeled table whose labels are written to files under ``store`` as they are
    expanded from their runs, a few rows at a time."""
    recordings = uuids_from_array(kept.column("recording"))
    paths = label_paths(
        label_root(store),
        recordings,
        kept.column("file_path").to_pylist(),
        store_format,
        range(kept.num_rows),
    )
    # A few rows' labels at a time: the runs are encoded again as they are written.
    digests: dict[str, str] = {}
    write_label_files(
        digesting(
            ((path, np.repeat(values, counts), info)
             for path, (values, counts) in zip(paths, runs, strict=True)),
            (stored_label_key(r, p) for r, p in zip(recordings, paths, strict=True)),
            digests,
        )
    )  # fmt: skip
    table = with_label_columns(
        kept,
        timespan_array(label_starts_ns, label_stops_ns),
        stored_labels_column(paths, store_format, label_starts_ns, label_stops_ns, info),
    )
    return with_label_digests(table, digests)


def _inline_table(
    kept: pa.Table,
    runs: list[tuple[np.ndarray, np.ndarray]],
    label_starts_ns: np.ndarray,
    label_stops_ns: np.ndarray,
    info: Any,
    dtype: Any,
) -> pa.Table:
    """The labeled table holding its labels, expanded from their runs."""
    lengths = np.array([counts.sum() for _, counts in runs], dtype=np.int64)
    # Expanded row by row into the one buffer the column will use: no concatenated
    # copies of the runs next to the labels.
    codes = np.empty(int(lengths.sum()), dtype=dtype)
    offset = 0
    for (values, counts), n in zip(runs, lengths.tolist(), strict=True):
        codes[offset : offset + n] = np.repeat(values, counts)
        offset += n
    return with_label_columns(
        kept,
        timespan_array(label_starts_ns, label_stops_ns),
        inline_labels(label_starts_ns, label_stops_ns, codes, lengths, info),
    )


def _distinct_labels(annotations: pa.Table, labels_column: str) -> tuple[list[Any], np.ndarray]:
    """The distinct labels, and each annotation's position among them (column-wise).

    A missing label is a label too (None), found or not in the encoding.
    """
    return _dictionary_encode(annotations.column(labels_column))
