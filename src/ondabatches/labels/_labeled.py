"""The labeled-signals table (``labeled.signal@2``): signals with dense labels attached.

A labeled table is an ``onda.signal@2`` table (a `pyarrow.Table`) with two more
columns:

``label_span``
    The span the labels cover, relative to the start of the *recording* (like ``span``).
``labels``
    A struct holding either the label codes themselves (``data``, little-endian
    ``sample_type`` bytes, one per epoch) or a reference to an Onda ``lpcm`` signal file
    holding them (``file_path``, ``file_format``, ``span``), which is read window by
    window. Both carry ``sample_type`` and ``sample_rate`` (``1 / epoch``).

The schema metadata key ``legolas_schema_qualified`` is ``labeled.signal@2>onda.signal@2``.
Rows are handled one at a time as [`LabeledSignal`][ondabatches.labels.LabeledSignal] values.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from .._errors import ArgumentError, ArgumentTypeError, LabelError, SchemaError, SpanError
from ..onda._arrow import (
    TimeSpanType,
    _is_string_type,
    bad_value,
    check_no_nulls,
    span_bounds,
    spans_from_array,
    timespan_array,
)
from ..onda._samples import Samples, SamplesInfo, sample_dtype
from ..onda._signal import Signal
from ..onda._storage import filesystem_for, storage_errors
from ..onda._timespan import NS_PER_S, TimeLike, TimeSpan, nanoseconds, time_from_index

__all__ = [
    "LABELED_SCHEMA",
    "LabeledSignal",
    "StoredLabels",
    "iter_labeled_signals",
    "label_info",
    "labeled_signals_table",
    "load_labeled_signal",
    "read_labeled_signals",
    "store_labels",
    "sub_label_span",
    "write_labeled_signals",
]

#: The Legolas schema of a labeled-signals table.
LABELED_SCHEMA = "labeled.signal@2>onda.signal@2"
_SCHEMA_KEY = b"legolas_schema_qualified"

#: Arrow type of the ``labels`` column.
LABELS_TYPE = pa.struct(
    [
        pa.field("file_path", pa.string()),
        pa.field("file_format", pa.string()),
        pa.field("span", TimeSpanType()),
        pa.field("sample_type", pa.string(), nullable=False),
        pa.field("sample_rate", pa.float64(), nullable=False),
        pa.field("data", pa.large_binary()),
    ]
)

# LABELS_TYPE with the span as its plain storage: what Python dicts convert to.
_LABELS_STORAGE = pa.struct(
    [f if f.name != "span" else pa.field("span", TimeSpanType().storage_type) for f in LABELS_TYPE]
)


def label_info(epoch: TimeLike, sample_type: str = "uint8") -> SamplesInfo:
    """The [`SamplesInfo`][ondabatches.onda.SamplesInfo] of labels sampled once per ``epoch``.

    One channel named ``label``, unit ``label``, identity encoding, rate ``1 / epoch``.

    >>> label_info(30 * 10**9).sample_rate == 1 / 30
    True
    """
    epoch_ns = nanoseconds(epoch)
    if epoch_ns <= 0:
        raise ArgumentError(f"epoch must be positive, got {epoch_ns} ns")
    return SamplesInfo(
        sensor_type="label",
        channels=("label",),
        sample_unit="label",
        sample_resolution_in_unit=1.0,
        sample_offset_in_unit=0.0,
        sample_type=sample_type,
        sample_rate=NS_PER_S / epoch_ns,
    )


def epoch_of(info: SamplesInfo) -> int:
    """The epoch in nanoseconds of labels at ``info.sample_rate``.

    Label rates such as ``1/30`` Hz are not exact floats, so the epoch is recovered by
    rounding and all label arithmetic is done on integer nanoseconds.
    """
    epoch = round(NS_PER_S / info.sample_rate)
    if epoch <= 0 or abs(NS_PER_S / epoch - info.sample_rate) > 1e-9 * info.sample_rate:
        raise LabelError(f"label sample rate {info.sample_rate} Hz is not 1 / (whole nanoseconds)")
    return epoch


@dataclass(frozen=True, slots=True)
class StoredLabels:
    """A reference to labels stored as an Onda signal file, read window by window.

    ``span`` is the labels signal's span relative to the start of the recording.

    Examples
    --------
    >>> import uuid
    >>> ref = StoredLabels(uuid.UUID(int=1), "/data/labels_a.lpcm", "lpcm",
    ...                    TimeSpan(0, 300 * 10**9), label_info(30 * 10**9))
    >>> ref.epoch, ref.n_labels
    (30000000000, 10)
    """

    recording: uuid.UUID
    file_path: str
    file_format: str
    span: TimeSpan
    info: SamplesInfo

    @property
    def epoch(self) -> int:
        return epoch_of(self.info)

    @property
    def n_labels(self) -> int:
        return self.span.duration // self.epoch

    def signal(self) -> Signal:
        """The labels as an Onda [`Signal`][ondabatches.onda.Signal]."""
        # The span's stop is where sample n_labels would fall at the float label rate;
        # that keeps Signal.n_samples == n_labels although 1/epoch is rarely an exact float.
        stop = self.span.start + time_from_index(self.n_labels, self.info.sample_rate)
        span = TimeSpan(self.span.start, max(stop, self.span.stop))
        return Signal(self.recording, self.file_path, self.file_format, span, "label", self.info)

    def load(self, window: TimeSpan) -> np.ndarray:
        """Label codes (1-D, ``info.dtype``) of ``window`` (relative to the recording).

        Only the window's bytes are read. The window's start is rounded down to an
        epoch and it holds exactly ``window.duration // epoch`` labels.
        """
        from ..onda._io import load_rows

        first, count = _label_rows(self.span, window, self.epoch, self.n_labels)
        samples = load_rows(self.signal(), range(first, first + count), encoded=True)
        return np.asarray(samples.data[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording": str(self.recording),
            "file_path": self.file_path,
            "file_format": self.file_format,
            "span": self.span.to_dict(),
            "info": self.info.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoredLabels:
        return cls(
            uuid.UUID(d["recording"]),
            d["file_path"],
            d["file_format"],
            TimeSpan.from_value(d["span"]),
            SamplesInfo.from_dict(d["info"]),
        )


def _label_rows(
    label_span: TimeSpan, window: TimeSpan, epoch: int, n_labels: int
) -> tuple[int, int]:
    if not label_span.contains(window):
        raise SpanError(f"window {window} is not inside the label span {label_span}")
    first = (window.start - label_span.start) // epoch
    count = window.duration // epoch
    if first + count > n_labels:
        raise SpanError(
            f"window {window} needs labels {first}..{first + count - 1} but only {n_labels} exist"
        )
    return first, count


Labels = Union[Samples, StoredLabels]  # noqa: UP007 (a runtime alias on Python 3.10)


@dataclass(frozen=True, slots=True)
class LabeledSignal:
    """One row of a labeled table: a signal, the span its labels cover, and the labels.

    ``labels`` are either encoded [`Samples`][ondabatches.onda.Samples] (one channel
    ``label``, one sample per epoch, covering exactly ``label_span``) or a
    [`StoredLabels`][ondabatches.labels.StoredLabels] reference.

    Raises
    ------
    SpanError
        If ``label_span`` is not inside the signal's span.
    LabelError
        If ``label_span`` is not a whole number of epochs, or in-memory labels do not
        hold exactly one label per epoch of it.
    """

    signal: Signal
    label_span: TimeSpan
    labels: Labels

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_span", TimeSpan.from_value(self.label_span))
        rec = self.signal.recording
        if not self.signal.span.contains(self.label_span):
            raise SpanError(
                f"label span not inside the signal span for recording {rec} "
                f"({self.signal.file_path}): label span {self.label_span}, "
                f"signal span {self.signal.span}"
            )
        epoch = self.epoch
        if self.label_span.duration % epoch:
            raise LabelError(
                f"label span {self.label_span} of recording {rec} is not a whole number "
                f"of {epoch} ns epochs"
            )
        if isinstance(self.labels, Samples):
            if self.labels.n_samples != self.n_labels:
                raise LabelError(
                    f"recording {rec}: label span {self.label_span} holds {self.n_labels} "
                    f"epochs but {self.labels.n_samples} labels are given"
                )
        elif not self.labels.span.contains(self.label_span):
            raise SpanError(
                f"recording {rec}: label span {self.label_span} is not inside the stored "
                f"labels' span {self.labels.span} ({self.labels.file_path})"
            )

    @property
    def epoch(self) -> int:
        """The label epoch in nanoseconds."""
        return epoch_of(self.labels.info)

    @property
    def n_labels(self) -> int:
        """How many labels (epochs) ``label_span`` holds."""
        return self.label_span.duration // self.epoch

    def label_codes(self, window: TimeSpan | None = None) -> np.ndarray:
        """The label codes (1-D) of ``window`` (relative to the recording; all if None)."""
        window = self.label_span if window is None else window
        if isinstance(self.labels, StoredLabels):
            if not self.label_span.contains(window):
                raise SpanError(f"window {window} is not inside the label span {self.label_span}")
            return self.labels.load(window)
        first, count = _label_rows(self.label_span, window, self.epoch, self.n_labels)
        return self.labels.data[0, first : first + count]


def _labels_struct(labels: Sequence[Labels], label_spans: Sequence[TimeSpan]) -> pa.StructArray:
    stored = [isinstance(lab, StoredLabels) for lab in labels]
    spans = [lab.span if s else ls for lab, ls, s in zip(labels, label_spans, stored, strict=True)]
    data = [
        None if s else np.ascontiguousarray(lab.data[0], dtype=lab.info.dtype).tobytes()
        for lab, s in zip(labels, stored, strict=True)
    ]
    return pa.StructArray.from_arrays(
        [
            pa.array(
                [lab.file_path if s else None for lab, s in zip(labels, stored, strict=True)],
                pa.string(),
            ),
            pa.array(
                [lab.file_format if s else None for lab, s in zip(labels, stored, strict=True)],
                pa.string(),
            ),
            timespan_array([sp.start for sp in spans], [sp.stop for sp in spans]),
            pa.array([lab.info.sample_type for lab in labels], pa.string()),
            pa.array([lab.info.sample_rate for lab in labels], pa.float64()),
            pa.array(data, pa.large_binary()),
        ],
        fields=list(LABELS_TYPE),
    )


def inline_labels(
    starts: np.ndarray,
    stops: np.ndarray,
    codes: np.ndarray,
    lengths: np.ndarray,
    info: SamplesInfo,
) -> pa.StructArray:
    """A ``labels`` column of in-memory codes, built column-wise without a copy per row.

    ``codes`` holds every row's label codes one after the other (row ``i`` has
    ``lengths[i]``); the column's data buffer is ``codes`` itself.
    """
    data = np.ascontiguousarray(codes, dtype=info.dtype.newbyteorder("<"))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64) * data.itemsize, out=offsets[1:])
    if offsets[-1] != data.nbytes:
        raise LabelError(f"lengths sum to {offsets[-1]} bytes but codes hold {data.nbytes}")
    n = len(lengths)
    return pa.StructArray.from_arrays(
        [
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            timespan_array(starts, stops),
            pa.array([info.sample_type] * n, pa.string()),
            pa.array(np.full(n, info.sample_rate), pa.float64()),
            pa.Array.from_buffers(
                pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            ),
        ],
        fields=list(LABELS_TYPE),
    )


def with_label_columns(signals: pa.Table, label_span: pa.Array, labels: pa.StructArray) -> pa.Table:
    """``signals`` (normalized ``onda.signal@2``) with ``label_span`` and ``labels`` appended."""
    columns = [c for c in signals.column_names if c not in ("label_span", "labels")]
    table = signals.select(columns)
    table = table.append_column("label_span", label_span)
    table = table.append_column("labels", labels)
    metadata = dict(table.schema.metadata or {})
    metadata[_SCHEMA_KEY] = LABELED_SCHEMA.encode()
    return table.replace_schema_metadata(metadata)


def _with_labels(
    signals: pa.Table, label_spans: Sequence[TimeSpan], labels: Sequence[Labels]
) -> pa.Table:
    """``signals`` (normalized ``onda.signal@2``) with ``label_span`` and ``labels`` appended."""
    return with_label_columns(
        signals,
        timespan_array([s.start for s in label_spans], [s.stop for s in label_spans]),
        _labels_struct(labels, label_spans),
    )


def labeled_signals_table(rows: Iterable[LabeledSignal] | pa.Table | Any) -> pa.Table:
    """A labeled table (``labeled.signal@2``) from
    [`LabeledSignal`][ondabatches.labels.LabeledSignal] rows, or from a labeled table
    gone through pandas or polars (``to_pandas``, ``to_polars``, ``polars.from_arrow``),
    with its UUIDs, spans and labels restored.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> rows = list(iter_labeled_signals(labeled_table(2, duration=300 * 10**9)))
    >>> table = labeled_signals_table(rows[:1])
    >>> table.num_rows, table.schema.metadata[b"legolas_schema_qualified"]
    (1, b'labeled.signal@2>onda.signal@2')
    >>> from ondabatches.onda import to_pandas
    >>> labeled_signals_table(to_pandas(table)).equals(table)
    True
    """
    from ..onda._tables import signals_table

    if isinstance(rows, pa.Table) or type(rows).__module__.split(".")[0] in ("pandas", "polars"):
        return _labeled_from_frame(rows)
    rows = list(rows)
    signals = signals_table([r.signal for r in rows])
    return _with_labels(signals, [r.label_span for r in rows], [r.labels for r in rows])


def _labeled_from_frame(frame: Any) -> pa.Table:
    """A labeled table from an Arrow table or a pandas/polars DataFrame of one.

    polars gives large strings and tagged binary UUIDs, pandas (through
    [`to_pandas`][ondabatches.onda.to_pandas]) UUID objects, TimeSpans and dicts: the signal
    columns are normalized by ``signals_table``, the label columns cast back.
    """
    from ..onda._arrow import COERCE
    from ..onda._tables import signals_table

    where = "labeled-signals table"
    names = list(frame.columns) if not isinstance(frame, pa.Table) else frame.column_names
    missing = [n for n in ("label_span", "labels") if n not in names]
    if missing:
        raise SchemaError(f"{where} lacks column(s) {missing}; it has {names}")
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        signals = signals_table(frame.drop(columns=["label_span", "labels"]))
        label_span = COERCE["span"](frame["label_span"].tolist(), None, f"{where}: 'label_span'")
        raw = [
            None if v is None else {**v, "span": _span_storage(v.get("span"))}
            for v in frame["labels"].tolist()
        ]
        labels: Any = pa.array(raw, type=_LABELS_STORAGE)
    else:
        signals = signals_table(frame.drop(["label_span", "labels"]) if module == "polars"
                                else frame.drop_columns(["label_span", "labels"]))  # fmt: skip
        arrow = frame.select(["label_span", "labels"])
        arrow = arrow.to_arrow() if module == "polars" else arrow
        label_span = COERCE["span"](arrow.column("label_span"), None, f"{where}: 'label_span'")
        labels = arrow.column("labels")
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    try:
        children = []
        for fld in LABELS_TYPE:
            child = labels.field(fld.name)
            if fld.name == "span":
                child = COERCE["span"](child, None, f"{where}: 'labels.span'")
                child = child.combine_chunks() if isinstance(child, pa.ChunkedArray) else child
            else:
                child = child.cast(fld.type)
            children.append(child)
        mask = labels.is_null() if labels.null_count else None
        labels = pa.StructArray.from_arrays(children, fields=list(LABELS_TYPE), mask=mask)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(
            f"{where}: column 'labels' of type {labels.type} does not convert to "
            f"{LABELS_TYPE}: {exc}"
        ) from None
    return with_label_columns(signals, label_span, labels)


def _span_storage(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, TimeSpan):
        return {"start": v.start, "stop": v.stop}
    return {"start": nanoseconds(v["start"]), "stop": nanoseconds(v["stop"])}


def check_labeled(table: pa.Table) -> None:
    """Raise [`SchemaError`][ondabatches._errors.SchemaError] unless ``table`` is a
    usable labeled-signals table.

    Checks what the code that reads the table relies on, so that a table from
    elsewhere (a file someone else wrote, a hand-made table) fails here with the
    column, row and expected vs actual value named, not later with a raw Arrow or
    Python error: every required column present, of a type it can be read as, without
    nulls; the Onda signal columns' values (sample_type, rates, channels); and each
    row's labels held either in memory or in a file.
    """
    from ..onda._tables import _check_signal_values

    if not isinstance(table, pa.Table):
        raise SchemaError(
            f"a labeled-signals table must be a pyarrow.Table, got {type(table).__name__}"
        )
    for name, (ok, expected) in _LABELED_COLUMNS.items():
        if name not in table.column_names:
            raise SchemaError(
                f"labeled-signals table lacks column {name!r}; it has {table.column_names} "
                "(make one with label_signals)"
            )
        actual = table.schema.field(name).type
        if not ok(actual):
            raise SchemaError(
                f"labeled-signals table: column {name!r} has type {actual}, expected {expected}"
            )
        column = table.column(name)
        check_no_nulls(column, f"labeled-signals table: column {name!r}")
        if name == "channels":
            check_no_nulls(pc.list_flatten(column), "labeled-signals table: a channel name in")
    if table.schema.field("labels").type != LABELS_TYPE:
        raise SchemaError(
            f"column 'labels' has type {table.schema.field('labels').type}, expected {LABELS_TYPE}"
        )
    _check_signal_values(table, "labeled-signals table")
    for name in ("span", "label_span"):
        starts, stops = span_bounds(table.column(name))
        reversed_ = np.flatnonzero(stops < starts)
        if reversed_.size:
            i = int(reversed_[0])
            raise bad_value(
                f"labeled-signals table: column {name!r}",
                i,
                f"stop {stops[i]} ns is before start {starts[i]} ns",
            )
    labels = table.column("labels")
    where = "labeled-signals table: column 'labels'"
    for field in ("sample_type", "sample_rate"):
        check_no_nulls(pc.struct_field(labels, field), f"{where} field {field!r}")
    no_data = pc.and_(pc.is_null(pc.struct_field(labels, "file_path")),
                      pc.is_null(pc.struct_field(labels, "data")))  # fmt: skip
    if pc.any(no_data).as_py():
        row = int(np.flatnonzero(no_data.to_numpy(zero_copy_only=False))[0])
        raise bad_value(where, row, "neither labels data nor a file_path")
    stored = pc.is_valid(pc.struct_field(labels, "file_path"))
    for field in ("file_format", "span"):
        missing = pc.and_(stored, pc.is_null(pc.struct_field(labels, field)))
        if pc.any(missing).as_py():
            row = int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])
            raise bad_value(where, row, f"stored labels without a {field}")


def _storage_type(t: pa.DataType) -> pa.DataType:
    return t.storage_type if isinstance(t, pa.ExtensionType) else t


def _is_span_type(t: pa.DataType) -> bool:
    t = _storage_type(t)
    if not pa.types.is_struct(t) or {t.field(i).name for i in range(t.num_fields)} != {
        "start",
        "stop",
    }:
        return False
    return all(
        pa.types.is_duration(f.type) or pa.types.is_integer(f.type)
        for f in (t.field("start"), t.field("stop"))
    )


def _is_uuid_type(t: pa.DataType) -> bool:
    t = _storage_type(t)
    return pa.types.is_fixed_size_binary(t) and t.byte_width == 16


def _is_number_type(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def _is_channels_type(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string_type(t.value_type)


_SPAN = "JuliaLang.TimeSpan (a struct of start and stop, durations or int64 ns)"
#: The columns a labeled table's readers rely on: a test of the type, and its description.
_LABELED_COLUMNS = {
    "recording": (_is_uuid_type, "JuliaLang.UUID (16-byte fixed_size_binary)"),
    "file_path": (_is_string_type, "string"),
    "file_format": (_is_string_type, "string"),
    "span": (_is_span_type, _SPAN),
    "sensor_type": (_is_string_type, "string"),
    "channels": (_is_channels_type, "list<string>"),
    "sample_unit": (_is_string_type, "string"),
    "sample_resolution_in_unit": (_is_number_type, "float64"),
    "sample_offset_in_unit": (_is_number_type, "float64"),
    "sample_type": (_is_string_type, "string"),
    "sample_rate": (_is_number_type, "float64"),
    "label_span": (_is_span_type, _SPAN),
    "labels": (lambda t: t == LABELS_TYPE, str(LABELS_TYPE)),
}


def _labels_from_column(table: pa.Table) -> list[Labels]:
    from ..onda._arrow import uuids_from_array

    col = table.column("labels").combine_chunks()
    recordings = uuids_from_array(table.column("recording"))
    file_paths = col.field("file_path").to_pylist()
    formats = col.field("file_format").to_pylist()
    spans = spans_from_array(col.field("span"))
    types = col.field("sample_type").to_pylist()
    rates = col.field("sample_rate").to_pylist()
    data = col.field("data")
    out: list[Labels] = []
    for i, path in enumerate(file_paths):
        info = replace(label_info(NS_PER_S, types[i]), sample_rate=rates[i])
        if path is None:
            raw = data[i].as_buffer()
            if raw is None:
                raise SchemaError(
                    f"row {i} of the labeled table has neither labels data nor a file_path"
                )
            codes = np.frombuffer(raw, dtype=sample_dtype(types[i])).reshape(1, -1)
            out.append(Samples(codes, info, encoded=True))
        else:
            out.append(StoredLabels(recordings[i], path, formats[i], spans[i], info))
    return out


def iter_labeled_signals(table: pa.Table) -> Iterator[LabeledSignal]:
    """The rows of a labeled table as [`LabeledSignal`][ondabatches.labels.LabeledSignal] values.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> row = next(iter_labeled_signals(labeled_table(2, duration=300 * 10**9)))
    >>> row.signal.span, row.label_span, row.n_labels
    (TimeSpan(0 s, 360 s), TimeSpan(30 s, 330 s), 10)
    """
    from ..onda._tables import iter_signals

    check_labeled(table)
    signals = iter_signals(table.drop_columns(["label_span", "labels"]))
    label_spans = spans_from_array(table.column("label_span"))
    for signal, span, labels in zip(signals, label_spans, _labels_from_column(table), strict=True):
        yield LabeledSignal(signal, span, labels)


def _one_row(labeled: LabeledSignal | pa.Table) -> LabeledSignal:
    if isinstance(labeled, LabeledSignal):
        return labeled
    if isinstance(labeled, pa.Table):
        if labeled.num_rows != 1:
            raise ArgumentError(
                f"expected one labeled signal, got a table of {labeled.num_rows} rows "
                "(select a row with table.slice(i, 1))"
            )
        return next(iter_labeled_signals(labeled))
    raise ArgumentTypeError(
        f"expected a LabeledSignal or a one-row table, got {type(labeled).__name__}"
    )


def load_labeled_signal(
    labeled: LabeledSignal | pa.Table, dtype: Any = np.float64
) -> tuple[Samples, Samples]:
    """Load the samples of ``labeled.label_span`` and their labels.

    Only the bytes of the label span are read. The samples are decoded to ``dtype``;
    the labels are encoded [`Samples`][ondabatches.onda.Samples] (one channel ``label``).

    Parameters
    ----------
    labeled:
        A [`LabeledSignal`][ondabatches.labels.LabeledSignal] or a one-row labeled table.
    dtype:
        The dtype of the decoded samples.

    Examples
    --------
    >>> from ondabatches.labels import label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=1, duration=120 * 10**9, sample_rate=128.0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> samples, labels = load_labeled_signal(labeled.slice(0, 1))  # 90 s at 128 Hz
    >>> samples.data.shape, labels.data.shape
    ((6, 11520), (1, 3))
    """
    from ..onda._io import load_rows
    from ..onda._timespan import window_sample_range

    row = _one_row(labeled)
    rel = row.label_span.translate(-row.signal.span.start)
    rows = window_sample_range(rel, row.signal.sample_rate)
    samples = load_rows(row.signal, rows, encoded=True).decode(dtype)
    info = row.labels.info
    labels = Samples(
        np.asarray(row.label_codes(), dtype=info.dtype).reshape(1, -1), info, encoded=True
    )
    return samples, labels


def sub_label_span(labeled: LabeledSignal | pa.Table, span: TimeSpan) -> LabeledSignal | pa.Table:
    """The labeled signal restricted to ``span`` (relative to the recording).

    ``span`` must lie inside ``label_span`` and fall on its epoch boundaries. In-memory
    labels are sliced; stored labels stay a reference (read lazily later).

    Raises
    ------
    SpanError
        If ``span`` is not inside ``label_span``, or does not fall on epoch boundaries.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from ondabatches.synthetic import labeled_table
    >>> row = next(iter_labeled_signals(labeled_table(1, duration=timedelta(hours=4))))
    >>> part = sub_label_span(row, TimeSpan(timedelta(minutes=120), timedelta(minutes=180)))
    >>> row.n_labels, part.label_span, part.n_labels
    (480, TimeSpan(7200 s, 10800 s), 120)
    """
    row = _one_row(labeled)
    span = TimeSpan.from_value(span)
    if not row.label_span.contains(span):
        raise SpanError(
            f"new label span {span} is not inside the label span {row.label_span} "
            f"of recording {row.signal.recording}"
        )
    epoch = row.epoch
    if (span.start - row.label_span.start) % epoch or span.duration % epoch:
        raise SpanError(
            f"new label span {span} of recording {row.signal.recording} does not fall on the "
            f"{epoch} ns epochs of label span {row.label_span}"
        )
    labels = row.labels
    if isinstance(labels, Samples):
        codes = row.label_codes(span).reshape(1, -1)
        labels = Samples(codes, labels.info, encoded=True)
    new = LabeledSignal(row.signal, span, labels)
    if isinstance(labeled, pa.Table):
        return labeled_signals_table([new])
    return new


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
