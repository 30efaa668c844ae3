"""Onda tables: ``onda.signal@2`` and ``onda.annotation@1`` as Arrow tables.

Tables are read from and written to Arrow IPC files exactly as Onda.jl lays them out
(UUIDs as ``JuliaLang.UUID``, spans as ``JuliaLang.TimeSpan``, non-nullable columns,
the Legolas schema name in the ``legolas_schema_qualified`` schema metadata), so files
pass between Julia and Python unchanged. Every function that takes a table also takes
a pandas or polars DataFrame, a list of row dicts, or a list of
[`Signal`][ondabatches.onda.Signal] / [`Annotation`][ondabatches.onda.Annotation];
[`signals_table`][ondabatches.onda.signals_table] and
[`annotations_table`][ondabatches.onda.annotations_table] normalize any of them to the
canonical Arrow layout and say which column or row is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import ArgumentError, SchemaError, require
from ._arrow import (
    COERCE,
    COLUMN_TYPES,
    JuliaUUIDType,
    TimeSpanType,
    bad_value,
    check_no_nulls,
    chunked,
    infer_column,
    is_arrow,
    spans_from_array,
    uuids_from_array,
)
from ._samples import SAMPLE_TYPES, SamplesInfo
from ._signal import Signal, _as_uuid
from ._timespan import TimeSpan

__all__ = [
    "ANNOTATION_SCHEMA",
    "Annotation",
    "JuliaUUIDType",
    "SIGNAL_SCHEMA",
    "TimeSpanType",
    "annotations_table",
    "iter_annotations",
    "iter_signals",
    "signals_from_table",
    "signals_table",
    "to_pandas",
    "to_polars",
]

#: Legolas schema names (``name@version``) of the two Onda tables.
SIGNAL_SCHEMA = "onda.signal@2"
ANNOTATION_SCHEMA = "onda.annotation@1"
_LEGOLAS_KEY = b"legolas_schema_qualified"

TableLike = Any  # pa.Table, pandas/polars DataFrame, or a sequence of rows / Signals / Annotations
Reroot = Mapping[str, str] | Callable[[str], str] | None


@dataclass(frozen=True)
class _TableKind:
    noun: str  # for messages: "signals" or "annotations"
    schema: str  # the Legolas schema the table must be or extend
    qualified: str  # what we write when the input names no schema (what Onda.jl writes)
    columns: tuple[tuple[str, str], ...]  # required (name, kind) in Onda.jl's column order


# Column order as Onda.jl writes it (samples-info fields first, as the parent schema).
_SIGNALS = _TableKind(
    "signals",
    SIGNAL_SCHEMA,
    "onda.signal@2>onda.samples-info@2",
    (
        ("sensor_type", "string"),
        ("channels", "channels"),
        ("sample_unit", "string"),
        ("sample_resolution_in_unit", "float64"),
        ("sample_offset_in_unit", "float64"),
        ("sample_type", "string"),
        ("sample_rate", "float64"),
        ("recording", "uuid"),
        ("file_path", "string"),
        ("file_format", "string"),
        ("span", "span"),
        ("sensor_label", "string"),
    ),
)
_ANNOTATIONS = _TableKind(
    "annotations",
    ANNOTATION_SCHEMA,
    ANNOTATION_SCHEMA,
    (("recording", "uuid"), ("id", "uuid"), ("span", "span")),
)


@dataclass(frozen=True, slots=True)
class Annotation:
    """One row of an ``onda.annotation@1`` table; extension columns live in ``extra``.

    Examples
    --------
    >>> import uuid
    >>> rec = uuid.UUID("176ecfcf-d4c7-49ba-adec-f338d0a0c01f")
    >>> a = Annotation.new(rec, TimeSpan(0, 30_000_000_000), stage="wake")
    >>> a.id.version, a.extra["stage"]
    (4, 'wake')
    """

    recording: uuid.UUID
    id: uuid.UUID
    span: TimeSpan
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recording", _as_uuid(self.recording))
        object.__setattr__(self, "id", _as_uuid(self.id))
        object.__setattr__(self, "span", TimeSpan.from_value(self.span))

    @classmethod
    def new(cls, recording: uuid.UUID | str, span: Any, **extra: Any) -> Annotation:
        """An annotation with a fresh random (version 4) ``id``; keywords become extra columns."""
        return cls(recording, uuid.uuid4(), span, extra)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Annotation:
        """Build from a mapping with the ``onda.annotation@1`` column names (extras kept)."""
        extra = {k: v for k, v in row.items() if k not in ("recording", "id", "span")}
        return cls(row["recording"], row["id"], row["span"], extra)

    def to_row(self) -> dict[str, Any]:
        """The ``onda.annotation@1`` columns (plus extras) as a flat dict."""
        return {"recording": self.recording, "id": self.id, "span": self.span, **self.extra}


# ----------------------------------------------------------------------------- normalizing


def signals_table(obj: TableLike) -> pa.Table:
    """Normalize ``obj`` to an ``onda.signal@2`` Arrow table laid out as Onda.jl writes it.

    Parameters
    ----------
    obj:
        A ``pyarrow.Table``, a pandas or polars DataFrame, or a sequence of row dicts
        or [`Signal`][ondabatches.onda.Signal]. UUIDs may be ``uuid.UUID``, strings,
        ``JuliaLang.UUID`` or ``arrow.uuid``; spans may be
        [`TimeSpan`][ondabatches.onda.TimeSpan], ``{"start", "stop"}`` dicts or Arrow
        structs of durations. Extra columns are kept after the Onda columns.

    Raises
    ------
    SchemaError
        Naming the missing or mistyped column (expected vs actual type), or the row
        holding a bad value (unknown ``sample_type``, span with stop < start, ...).

    Examples
    --------
    >>> import uuid
    >>> row = dict(recording=uuid.UUID(int=1), file_path="a.lpcm", file_format="lpcm",
    ...            span=TimeSpan(0, 10**10), sensor_type="eeg", sensor_label="eeg",
    ...            channels=["c3", "c4"], sample_unit="microvolt",
    ...            sample_resolution_in_unit=0.5, sample_offset_in_unit=0.0,
    ...            sample_type="int16", sample_rate=128.0, site="lab")
    >>> table = signals_table([row])
    >>> table.schema.metadata[b"legolas_schema_qualified"]
    b'onda.signal@2>onda.samples-info@2'
    >>> table.column("recording").to_pylist(), table.column_names[-1]
    ([UUID('00000000-0000-0000-0000-000000000001')], 'site')
    """
    table = _normalize(obj, _SIGNALS, "signals table")
    _check_signal_values(table, "signals table")
    return table


def annotations_table(obj: TableLike) -> pa.Table:
    """Normalize ``obj`` to an ``onda.annotation@1`` Arrow table laid out as Onda.jl writes it.

    Accepts what [`signals_table`][ondabatches.onda.signals_table] accepts, with
    [`Annotation`][ondabatches.onda.Annotation] instead of
    [`Signal`][ondabatches.onda.Signal]. Extension columns (``stage``, say) are kept.

    Examples
    --------
    >>> import uuid
    >>> rows = [Annotation.new(uuid.UUID(int=1), TimeSpan(0, 30 * 10**9), stage="wake")]
    >>> annotations_table(rows).column_names
    ['recording', 'id', 'span', 'stage']
    """
    return _normalize(obj, _ANNOTATIONS, "annotations table")


def _normalize(
    obj: TableLike, kind: _TableKind, where: str, *, from_file: bool = False
) -> pa.Table:
    columns, fields, metadata = _columns_of(obj, kind, where)
    qualified = _legolas_schema(metadata, kind, where, required=from_file)
    missing = [name for name, _ in kind.columns if name not in columns]
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {missing}; an {kind.schema} table needs "
            f"{[name for name, _ in kind.columns]}; found {list(columns)}"
        )
    out_fields, out_arrays = [], []
    for name, col_kind in kind.columns:
        arr = COERCE[col_kind](columns[name], fields.get(name), f"{where}: column {name!r}")
        check_no_nulls(arr, f"{where}: column {name!r}")
        out_fields.append(pa.field(name, COLUMN_TYPES[col_kind], nullable=False))
        out_arrays.append(chunked(arr))
    required = {name for name, _ in kind.columns}
    for name, values in columns.items():
        if name in required:
            continue
        arr = values if is_arrow(values) else infer_column(values, f"{where}: column {name!r}")
        out_fields.append(fields[name] if name in fields else pa.field(name, arr.type))
        out_arrays.append(chunked(arr))
    out_meta = {k: v for k, v in (metadata or {}).items() if k != b"pandas"}
    out_meta[_LEGOLAS_KEY] = qualified.encode()
    return pa.Table.from_arrays(out_arrays, schema=pa.schema(out_fields, metadata=out_meta))


def _columns_of(
    obj: TableLike, kind: _TableKind, where: str
) -> tuple[dict[str, Any], dict[str, pa.Field], Mapping[bytes, bytes] | None]:
    """Columns by name: Arrow arrays (with their fields) or lists of Python values."""
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    module = type(obj).__module__.split(".")[0]
    if module == "polars" and hasattr(obj, "to_arrow"):
        return _polars_columns(obj, where)
    if isinstance(obj, pa.Table):
        names = obj.column_names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"{where}: duplicate column(s) {duplicates}")
        columns = {n: obj.column(n) for n in names}
        return columns, {n: obj.schema.field(n) for n in names}, obj.schema.metadata
    if module == "pandas" and hasattr(obj, "columns"):
        return _pandas_columns(obj, where), {}, None
    if isinstance(obj, (str, bytes, Mapping)) or not isinstance(obj, Iterable):
        raise SchemaError(
            f"{where}: expected a pyarrow Table, a pandas or polars DataFrame, or a list of "
            f"row dicts / Signal / Annotation; got {type(obj).__name__}"
        )
    return _row_columns(list(obj), kind, where), {}, None


def _polars_columns(
    df: Any, where: str
) -> tuple[dict[str, Any], dict[str, pa.Field], Mapping[bytes, bytes] | None]:
    import polars as pl

    # Object columns (uuid.UUID values from to_polars(uuids="uuid")) have no Arrow form;
    # the rest export losslessly (UUIDs as tagged binary, strings as large_string).
    objects = [n for n, t in df.schema.items() if t == pl.Object]
    arrow = df.drop(objects).to_arrow()
    columns: dict[str, Any] = {}
    fields = {}
    for name in df.columns:
        if name in objects:
            columns[name] = df[name].to_list()
            continue
        col, fld = arrow.column(name), arrow.schema.field(name)
        if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            # polars has only large strings; Onda.jl (and Arrow.jl) write string.
            col, fld = col.cast(pa.string()), fld.with_type(pa.string())
        columns[name], fields[name] = col, fld
    return columns, fields, None


def _pandas_columns(df: Any, where: str) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name in df.columns:
        if not isinstance(name, str):
            raise SchemaError(f"{where}: column names must be strings, got {name!r}")
        series = df[name]
        # Object columns hold Python values (UUIDs, TimeSpans, lists) that Arrow cannot
        # infer; typed columns convert directly and keep their type.
        if series.dtype == object:
            columns[name] = series.tolist()
            continue
        arr = pa.array(series, from_pandas=True)
        # pandas' "str" dtype exports as large_string; Onda.jl (and Arrow.jl) write string.
        columns[name] = arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr
    return columns


def _row_columns(rows: list[Any], kind: _TableKind, where: str) -> dict[str, list[Any]]:
    dicts = []
    for i, row in enumerate(rows):
        if isinstance(row, (Signal, Annotation)):
            row = row.to_row()
        if not isinstance(row, Mapping):
            raise SchemaError(
                f"{where}: row {i} is a {type(row).__name__}; expected a dict, Signal or Annotation"
            )
        dicts.append(row)
    # No rows still make a table: the required columns, empty.
    names: dict[str, None] = {} if dicts else dict.fromkeys(name for name, _ in kind.columns)
    for row in dicts:
        names.update(dict.fromkeys(row))
    for name, _ in kind.columns:
        if name in names:
            lacking = [i for i, row in enumerate(dicts) if name not in row]
            if lacking:
                raise SchemaError(f"{where}: row {lacking[0]} has no {name!r} (required column)")
    return {name: [row.get(name) for row in dicts] for name in names}


def _legolas_schema(
    metadata: Mapping[bytes, bytes] | None, kind: _TableKind, where: str, *, required: bool
) -> str:
    """The ``legolas_schema_qualified`` to write; a wrong one, or none in a file, is an error."""
    raw = (metadata or {}).get(_LEGOLAS_KEY)
    if raw is None:
        if required:
            raise SchemaError(
                f"{where}: not an Onda {kind.noun} table: expected schema metadata "
                f"legolas_schema_qualified naming {kind.schema!r}, found none"
            )
        return kind.qualified
    qualified = raw.decode()
    # "child@1>parent@2": a table of an extension schema is also a table of its parent.
    if kind.schema not in (part.strip() for part in qualified.split(">")):
        raise SchemaError(
            f"{where}: not an Onda {kind.noun} table: expected schema {kind.schema!r} "
            f"(or an extension of it), found legolas_schema_qualified={qualified!r}"
        )
    return qualified


def _check_signal_values(table: pa.Table, where: str) -> None:
    """Row checks that the column types cannot express (named by column and row)."""
    sample_type = table.column("sample_type")
    unknown = np.flatnonzero(
        ~pc.is_in(sample_type, value_set=pa.array(list(SAMPLE_TYPES))).to_numpy(
            zero_copy_only=False
        )
    )
    if unknown.size:
        i = int(unknown[0])
        raise bad_value(
            f"{where}: column 'sample_type'",
            i,
            f"unknown sample_type {sample_type[i].as_py()!r}; "
            f"expected one of {sorted(SAMPLE_TYPES)}",
        )
    checks = (
        ("sample_rate", lambda x: np.isfinite(x) & (x > 0), "a positive finite rate"),
        (
            "sample_resolution_in_unit",
            lambda x: np.isfinite(x) & (x != 0),
            "a finite non-zero resolution",
        ),
        ("sample_offset_in_unit", np.isfinite, "a finite offset"),
    )
    for name, ok, expected in checks:
        x = table.column(name).to_numpy()
        bad = np.flatnonzero(~ok(x))
        if bad.size:
            raise bad_value(
                f"{where}: column {name!r}", int(bad[0]), f"expected {expected}, got {x[bad[0]]}"
            )
    empty = np.flatnonzero(pc.list_value_length(table.column("channels")).to_numpy() == 0)
    if empty.size:
        raise bad_value(
            f"{where}: column 'channels'", int(empty[0]), "a signal needs at least one channel"
        )


# ----------------------------------------------------------------------------- files


def _column_values(col: pa.ChunkedArray) -> list[Any]:
    """Python values of a column, converting UUIDs and spans column-wise (fast)."""
    if isinstance(col.type, JuliaUUIDType):
        return uuids_from_array(col)
    if isinstance(col.type, TimeSpanType):
        return spans_from_array(col)
    return col.to_pylist()


def _extras(table: pa.Table, kind: _TableKind) -> dict[str, list[Any]]:
    required = {name for name, _ in kind.columns}
    return {n: _column_values(table.column(n)) for n in table.column_names if n not in required}


def iter_signals(table: TableLike) -> Iterator[Signal]:
    """The rows of a signals table as [`Signal`][ondabatches.onda.Signal] values (extra
    columns in ``extra``).

    Examples
    --------
    >>> import uuid
    >>> row = dict(recording=uuid.UUID(int=1), file_path="a.lpcm", file_format="lpcm",
    ...            span=TimeSpan(0, 10**10), sensor_type="eeg", sensor_label="eeg",
    ...            channels=["c3"], sample_unit="uV", sample_resolution_in_unit=1.0,
    ...            sample_offset_in_unit=0.0, sample_type="int16", sample_rate=10.0)
    >>> [s.n_samples for s in iter_signals([row])]
    [100]
    """
    table = signals_table(table)
    cols = {name: _column_values(table.column(name)) for name, _ in _SIGNALS.columns}
    extras = _extras(table, _SIGNALS)
    for i in range(table.num_rows):
        info = SamplesInfo(
            sensor_type=cols["sensor_type"][i],
            channels=tuple(cols["channels"][i]),
            sample_unit=cols["sample_unit"][i],
            sample_resolution_in_unit=cols["sample_resolution_in_unit"][i],
            sample_offset_in_unit=cols["sample_offset_in_unit"][i],
            sample_type=cols["sample_type"][i],
            sample_rate=cols["sample_rate"][i],
        )
        yield Signal(
            recording=cols["recording"][i],
            file_path=cols["file_path"][i],
            file_format=cols["file_format"][i],
            span=cols["span"][i],
            sensor_label=cols["sensor_label"][i],
            info=info,
            extra={name: values[i] for name, values in extras.items()},
        )


def signals_from_table(table: TableLike) -> list[Signal]:
    """All rows of a signals table as a list of [`Signal`][ondabatches.onda.Signal] (see
    [`iter_signals`][ondabatches.onda.iter_signals])."""
    return list(iter_signals(table))


def iter_annotations(table: TableLike) -> Iterator[Annotation]:
    """The rows of an annotations table as [`Annotation`][ondabatches.onda.Annotation] values.

    Examples
    --------
    >>> import uuid
    >>> rows = [{"recording": uuid.UUID(int=1), "id": uuid.UUID(int=2),
    ...          "span": TimeSpan(0, 10**9), "stage": "rem"}]
    >>> [a.extra for a in iter_annotations(rows)]
    [{'stage': 'rem'}]
    """
    table = annotations_table(table)
    recordings = uuids_from_array(table.column("recording"))
    ids = uuids_from_array(table.column("id"))
    spans = spans_from_array(table.column("span"))
    extras = _extras(table, _ANNOTATIONS)
    for i in range(table.num_rows):
        yield Annotation(recordings[i], ids[i], spans[i], {n: v[i] for n, v in extras.items()})


_UUID_MODES = ("uuid", "string")


def _check_uuid_mode(uuids: str) -> None:
    if uuids not in _UUID_MODES:
        raise ArgumentError(f"uuids must be one of {_UUID_MODES}, got {uuids!r}")


def _uuid_strings(col: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if u is None else str(u) for u in uuids_from_array(col)], pa.string())


def to_pandas(table: pa.Table, *, uuids: str = "uuid") -> Any:
    """``table.to_pandas()`` with UUIDs as `uuid.UUID` or strings, spans as TimeSpans.

    Plain ``to_pandas()`` gives the raw storage (Julia's reversed UUID bytes), which
    cannot be told apart from canonical bytes; this keeps the values unambiguous, and
    the frame converts back with [`signals_table`][ondabatches.onda.signals_table] /
    [`annotations_table`][ondabatches.onda.annotations_table].

    Parameters
    ----------
    uuids:
        ``"uuid"`` (`uuid.UUID` objects) or ``"string"`` (canonical strings,
        ``"176ecfcf-d4c7-..."``), for tools that do not know UUID objects.

    Examples
    --------
    >>> import uuid
    >>> rows = [{"recording": uuid.UUID(int=1), "id": uuid.UUID(int=2), "span": TimeSpan(0, 10**9)}]
    >>> to_pandas(annotations_table(rows))["span"].tolist()
    [TimeSpan(0 s, 1 s)]
    >>> to_pandas(annotations_table(rows), uuids="string")["id"].tolist()
    ['00000000-0000-0000-0000-000000000002']
    """
    import pandas as pd

    _check_uuid_mode(uuids)
    df = table.to_pandas()
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col.type, JuliaUUIDType) and uuids == "string":
            values: list[Any] = _uuid_strings(col).to_pylist()
        elif isinstance(col.type, (JuliaUUIDType, TimeSpanType)):
            values = _column_values(col)
        else:
            continue
        df[name] = pd.Series(values, index=df.index, dtype=object)
    return df


def to_polars(table: pa.Table, *, uuids: str = "string") -> Any:
    """A polars DataFrame of an Onda table, with UUIDs as canonical strings (or objects).

    polars has no UUID type: by default UUID columns become canonical strings, which
    polars filters, joins and groups like any string; ``uuids="uuid"`` gives
    `uuid.UUID` objects in ``Object`` columns instead. Spans become structs of
    ``start``/``stop`` durations. The frame converts back, UUIDs intact, with
    [`signals_table`][ondabatches.onda.signals_table] /
    [`annotations_table`][ondabatches.onda.annotations_table] (so does
    ``polars.from_arrow`` of an Onda table, whose UUID bytes polars keeps as tagged
    binary).

    Examples
    --------
    >>> import uuid
    >>> rows = [{"recording": uuid.UUID(int=1), "id": uuid.UUID(int=2), "span": TimeSpan(0, 10**9)}]
    >>> df = to_polars(annotations_table(rows))
    >>> df["recording"].to_list()
    ['00000000-0000-0000-0000-000000000001']
    >>> annotations_table(df).column("recording").to_pylist()
    [UUID('00000000-0000-0000-0000-000000000001')]
    """
    pl = require("polars", "polars")
    _check_uuid_mode(uuids)
    objects: dict[str, list[Any]] = {}
    arrays, names = [], []
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col.type, JuliaUUIDType):
            if uuids == "uuid":
                objects[name] = _column_values(col)
            col = _uuid_strings(col)
        elif isinstance(col.type, TimeSpanType):
            col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        arrays.append(col)
        names.append(name)
    df = pl.from_arrow(pa.Table.from_arrays(arrays, names=names))
    if objects:
        df = df.with_columns(
            [pl.Series(name, values, dtype=pl.Object) for name, values in objects.items()]
        )
    return df
