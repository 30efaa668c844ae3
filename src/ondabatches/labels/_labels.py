"""Annotations to dense labels: :func:`label_signals`, :func:`sort_and_trim_spans`.

Semantics are OndaBatches.jl's: per group (recording by default) annotations must be
sorted, contiguous and each span (but the last) a whole number of epochs; each span
becomes ``duration // epoch`` copies of its label's code. Beyond OndaBatches, a
``fill`` code may stand for gaps between annotations.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import LabelError, SchemaError, SpanError
from ..onda._arrow import span_bounds, timespan_array
from ..onda._samples import Samples
from ..onda._timespan import TimeLike, TimeSpan, nanoseconds
from ._labeled import _with_labels, label_info

__all__ = ["MissingLabelsWarning", "label_signals", "sort_and_trim_spans"]


class MissingLabelsWarning(UserWarning):
    """Signals without any annotation were dropped by :func:`label_signals`."""


def _as_columns(groups: str | Sequence[str] | None) -> list[str]:
    if groups is None:
        return []
    if isinstance(groups, str):
        return [groups]
    return list(groups)


def _group_keys(table: pa.Table, columns: list[str], what: str) -> list[Hashable]:
    for c in columns:
        if c not in table.column_names:
            raise SchemaError(
                f"{what} table has no column {c!r} to group by; it has {table.column_names}"
            )
    if not columns:
        return [()] * table.num_rows
    values = [_py_values(table.column(c)) for c in columns]
    return list(zip(*values, strict=True))


def _py_values(col: pa.ChunkedArray) -> list[Any]:
    from ..onda._arrow import uuids_from_array

    if isinstance(col.type, pa.ExtensionType) and col.type.extension_name == "JuliaLang.UUID":
        return uuids_from_array(col)
    return col.to_pylist()


def _key_name(columns: list[str], key: tuple) -> str:
    if not columns:
        return "the table"
    return ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=True))


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
    >>> epoch = timedelta(seconds=30)
    >>> ann = sort_and_trim_spans(annotations, epoch=epoch, by="recording")  # doctest: +SKIP
    """
    from ..onda._tables import annotations_table

    table = annotations_table(annotations)
    epoch_ns = _positive(epoch, "epoch")
    columns = _as_columns(by)
    keys = _group_keys(table, columns, "annotations")
    starts, stops = span_bounds(table.column("span"))
    # Sort by group (first appearance order) then start; a stable sort keeps ties in order.
    group_index: dict[Hashable, int] = {}
    codes = np.array([group_index.setdefault(k, len(group_index)) for k in keys], dtype=np.int64)
    order = np.lexsort((starts, codes)) if len(codes) else np.array([], dtype=np.int64)
    starts, stops, codes = starts[order], stops[order], codes[order]
    keep = np.ones(len(order), dtype=bool)
    new_stops = stops.copy()
    last_of_group = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True]) if len(codes) else []
    for i in last_of_group:
        whole = (stops[i] - starts[i]) // epoch_ns * epoch_ns
        new_stops[i] = starts[i] + whole
        keep[i] = whole > 0
    table = table.take(pa.array(order))
    span_index = table.column_names.index("span")
    table = table.set_column(span_index, "span", timespan_array(starts, new_stops))
    return table.filter(pa.array(keep))


def _positive(value: TimeLike, name: str) -> int:
    ns = nanoseconds(value)
    if ns <= 0:
        raise ValueError(f"{name} must be positive, got {ns} ns")
    return ns


def _round(durations: np.ndarray, roundto: int | None) -> np.ndarray:
    if roundto is None:
        return durations
    # Nearest multiple of roundto, ties up (as Julia's Dates rounding).
    return (durations + roundto // 2) // roundto * roundto


def _label_dtype(codes: Mapping[Any, int], fill: int | None) -> str:
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
    labels: list[Any],
    *,
    epoch: int,
    encoding: Mapping[Any, int],
    roundto: int | None,
    fill: int | None,
    dtype: str,
) -> tuple[TimeSpan, np.ndarray]:
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
    try:
        codes = [encoding[label] for label in labels]
    except KeyError as exc:
        raise LabelError(
            f"label {exc.args[0]!r} of {name} is not in the encoding {dict(encoding)}"
        ) from None
    counts = durations // epoch
    values = np.asarray(codes, dtype=dtype)
    if fill is not None and len(gaps):
        # Interleave annotation runs with gap runs: [a0, gap0, a1, gap1, ..., a_last].
        values = np.insert(values, np.arange(1, len(values)), fill).astype(dtype)
        counts = np.insert(counts, np.arange(1, len(counts)), gaps // epoch)
    data = np.repeat(values, counts)
    # The label span is consistent with the labels: one epoch per label from the first start.
    span = TimeSpan(int(starts[0]), int(starts[0]) + len(data) * epoch)
    return span, data


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

    Returns
    -------
    pyarrow.Table
        A ``labeled.signal@2`` table: the signals that have annotations, in their
        order, with ``label_span`` and ``labels`` columns.

    Raises
    ------
    LabelError
        Unsorted, overlapping or non-contiguous annotations, spans not a whole number
        of epochs, or labels missing from ``encoding``; the message names the group.
    SpanError
        A label span not inside its signal's span (naming the recording).

    Warns
    -----
    MissingLabelsWarning
        Signals without annotations are dropped, and named.

    Examples
    --------
    >>> from datetime import timedelta
    >>> stages = {"wake": 1, "nrem1": 2, "nrem2": 3, "nrem3": 4, "rem": 5, "no_stage": 6}
    >>> labeled = label_signals(signals, annotations, labels_column="stage",
    ...                         epoch=timedelta(seconds=30), encoding=stages)  # doctest: +SKIP
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

    ann_keys = _group_keys(annotations, columns, "annotations")
    starts, stops = span_bounds(annotations.column("span"))
    labels = annotations.column(labels_column).to_pylist()
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(ann_keys):
        members.setdefault(key, []).append(i)

    sig_keys = _group_keys(signals, columns, "signals")
    encoded: dict[Hashable, tuple[TimeSpan, np.ndarray]] = {}
    keep, label_spans, label_samples, missing = [], [], [], []
    sig_starts, sig_stops = span_bounds(signals.column("span"))
    for row, key in enumerate(sig_keys):
        if key not in members:
            missing.append(row)
            continue
        if key not in encoded:
            idx = np.asarray(members[key])
            name = _key_name(columns, key)
            encoded[key] = _encode_group(
                name, starts[idx], stops[idx], [labels[i] for i in idx],
                epoch=epoch_ns, encoding=encoding, roundto=roundto_ns, fill=fill, dtype=dtype,
            )  # fmt: skip
        span, data = encoded[key]
        signal_span = TimeSpan(int(sig_starts[row]), int(sig_stops[row]))
        if not signal_span.contains(span):
            raise SpanError(
                f"label span not inside the signal span for {_key_name(columns, key)} "
                f"(signal row {row}): label span {span}, signal span {signal_span}"
            )
        keep.append(row)
        label_spans.append(span)
        label_samples.append(Samples(data.reshape(1, -1), info, encoded=True))
    if missing:
        names = sorted({_key_name(columns, sig_keys[r]) for r in missing})
        warnings.warn(
            f"dropping {len(missing)} signal rows with no labels: {'; '.join(names)}",
            MissingLabelsWarning,
            stacklevel=2,
        )
    kept = signals.take(pa.array(keep, type=pa.int64()))
    return _with_labels(kept, label_spans, label_samples)
