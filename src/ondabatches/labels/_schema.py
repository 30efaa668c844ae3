"""The schema of a labeled-signals table: its Legolas name, the Arrow type of its
``labels`` column, and the check every reader runs first
([`check_labeled`][ondabatches.labels._schema.check_labeled])."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import SchemaError
from ..onda._arrow import TimeSpanType, _is_string_type, bad_value, check_no_nulls, span_bounds

__all__ = ["LABELED_SCHEMA"]

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
