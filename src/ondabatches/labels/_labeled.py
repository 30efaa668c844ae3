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

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from .._errors import ArgumentError, ArgumentTypeError, LabelError, SchemaError, SpanError
from ..onda._arrow import (
    spans_from_array,
    timespan_array,
)
from ..onda._samples import Samples, SamplesInfo, sample_dtype
from ..onda._signal import Signal
from ..onda._timespan import NS_PER_S, TimeLike, TimeSpan, nanoseconds, time_from_index
from ._schema import _LABELS_STORAGE, _SCHEMA_KEY, LABELED_SCHEMA, LABELS_TYPE, check_labeled

__all__ = [
    "LabeledSignal",
    "StoredLabels",
    "iter_labeled_signals",
    "label_info",
    "labeled_signals_table",
    "load_labeled_signal",
    "sub_label_span",
]


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

        Only the window's bytes are read, except that a remote labels file of at most
        64 KiB (22 days of one-byte 30 s labels) is read whole once per process and kept:
        a request per item would cost as much as the item's samples. The window's start
        is rounded down to an epoch and it holds exactly ``window.duration // epoch``
        labels.
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
