"""Arrow extension types for the columns Julia's Arrow.jl writes in Onda tables.

Onda.jl tables hold two Julia types that Arrow has no native type for:

* ``UUID`` is written as ``fixed_size_binary[16]`` with extension name
  ``JuliaLang.UUID``; the 16 bytes are Julia's ``UInt128`` in little-endian order,
  i.e. the *reverse* of the canonical (RFC 4122) bytes that ``uuid.UUID.bytes`` gives.
* ``TimeSpan`` is written as ``struct<start: duration[ns], stop: duration[ns]>`` with
  extension name ``JuliaLang.TimeSpan`` on the struct and ``JuliaLang.Dates.Period``
  on both of its fields.

Both are registered with pyarrow when this module is imported, so that reading a
Julia file gives typed columns whose ``to_pylist()`` yields `uuid.UUID` and
[`TimeSpan`][ondabatches.onda.TimeSpan], and writing gives back exactly Julia's schema.

The second half converts a column of an Onda table, given as Arrow or as Python
values, to the Arrow type Onda.jl writes for it (``COERCE``), with a
[`SchemaError`][ondabatches._errors.SchemaError] naming the column and row of a bad value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import ArgumentError, ArgumentTypeError, SchemaError
from ._timespan import TimeSpan, nanoseconds

__all__ = ["JuliaUUIDType", "TimeSpanType"]

UUID_EXTENSION = "JuliaLang.UUID"
TIMESPAN_EXTENSION = "JuliaLang.TimeSpan"
# Arrow.jl tags the struct fields too; keeping the tag makes our files byte-for-byte
# schema-equal to Julia's, and Julia reads the fields back as Dates.Nanosecond.
_PERIOD_METADATA = {
    b"ARROW:extension:name": b"JuliaLang.Dates.Period",
    b"ARROW:extension:metadata": b"",
}

#: The storage of a span column exactly as Onda.jl writes it.
SPAN_STORAGE = pa.struct(
    [
        pa.field("start", pa.duration("ns"), nullable=False, metadata=_PERIOD_METADATA),
        pa.field("stop", pa.duration("ns"), nullable=False, metadata=_PERIOD_METADATA),
    ]
)


class JuliaUUIDScalar(pa.ExtensionScalar):
    """A ``JuliaLang.UUID`` value; ``as_py()`` gives a `uuid.UUID`."""

    def as_py(self, **kwargs) -> uuid.UUID | None:
        raw = self.value.as_py() if self.value is not None else None
        return None if raw is None else uuid.UUID(int=int.from_bytes(raw, "little"))


UUID_STORAGE = pa.binary(16)


def _is_binary_type(t: pa.DataType) -> bool:
    return (
        t == UUID_STORAGE
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or (pa.types.is_binary_view(t))
    )


class JuliaUUIDType(pa.ExtensionType):
    """Arrow type of Julia UUIDs: ``fixed_size_binary[16]`` holding a little-endian ``UInt128``.

    Examples
    --------
    >>> import uuid
    >>> arr = uuid_array([uuid.UUID("176ecfcf-d4c7-49ba-adec-f338d0a0c01f")])
    >>> arr.type.extension_name, arr.storage[0].as_py()[:2]
    ('JuliaLang.UUID', b'\\x1f\\xc0')
    >>> arr.to_pylist()
    [UUID('176ecfcf-d4c7-49ba-adec-f338d0a0c01f')]
    """

    def __init__(self, storage_type: pa.DataType = UUID_STORAGE) -> None:
        # Tables that went through polars come back with binary or large_binary storage
        # (polars has no fixed-size binary); they are accepted here and normalized to
        # fixed_size_binary[16] when a table is normalized (see _coerce_uuid).
        super().__init__(storage_type, UUID_EXTENSION)

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(
        cls, storage_type: pa.DataType, serialized: bytes
    ) -> JuliaUUIDType:
        if not _is_binary_type(storage_type):
            raise SchemaError(
                f"{UUID_EXTENSION} needs fixed_size_binary[16] (or binary) storage, "
                f"got {storage_type}"
            )
        return cls(storage_type)

    def __arrow_ext_scalar_class__(self) -> type:
        return JuliaUUIDScalar

    def __reduce__(self):
        return JuliaUUIDType, (self.storage_type,)


class TimeSpanScalar(pa.ExtensionScalar):
    """A ``JuliaLang.TimeSpan`` value; ``as_py()`` gives a
    [`TimeSpan`][ondabatches.onda.TimeSpan]."""

    def as_py(self, **kwargs) -> TimeSpan | None:
        if self.value is None or not self.value.is_valid:
            return None
        return TimeSpan(self.value["start"].value, self.value["stop"].value)


class TimeSpanType(pa.ExtensionType):
    """Arrow type of Onda spans: ``struct<start, stop: duration[ns]>``, ``JuliaLang.TimeSpan``.

    Examples
    --------
    >>> arr = timespan_array([0], [30_000_000_000])
    >>> arr.type.extension_name, arr.to_pylist()
    ('JuliaLang.TimeSpan', [TimeSpan(0 s, 30 s)])
    """

    def __init__(self, storage_type: pa.DataType = SPAN_STORAGE) -> None:
        # Files from other writers may use another duration unit or untagged fields;
        # they are accepted here and converted to SPAN_STORAGE when a table is normalized.
        super().__init__(storage_type, TIMESPAN_EXTENSION)

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(
        cls, storage_type: pa.DataType, serialized: bytes
    ) -> TimeSpanType:
        return cls(storage_type)

    def __arrow_ext_scalar_class__(self) -> type:
        return TimeSpanScalar

    def __reduce__(self):
        return TimeSpanType, (self.storage_type,)


def _register(ext_type: pa.ExtensionType) -> None:
    try:
        pa.register_extension_type(ext_type)
    except pa.ArrowKeyError:
        # Already registered (module reloaded): replace it so the live class is used.
        pa.unregister_extension_type(ext_type.extension_name)
        pa.register_extension_type(ext_type)


_register(JuliaUUIDType())
_register(TimeSpanType())


def uuid_array(values: Iterable[uuid.UUID | None]) -> pa.ExtensionArray:
    """A ``JuliaLang.UUID`` array of ``values`` (``None`` gives a null)."""
    values = list(values)
    raw = [None if v is None else v.int.to_bytes(16, "little") for v in values]
    storage = pa.array(raw, type=pa.binary(16))
    return pa.ExtensionArray.from_storage(JuliaUUIDType(), storage)


def uuid_array_from_bytes(canonical: np.ndarray) -> pa.ExtensionArray:
    """A ``JuliaLang.UUID`` array from canonical UUID bytes, shape ``(n, 16)`` uint8.

    The column-wise counterpart of `uuid_array`, without a Python object per row.
    """
    canonical = np.asarray(canonical, dtype=np.uint8)
    if canonical.ndim != 2 or canonical.shape[1] != 16:
        raise ArgumentError(
            f"expected canonical UUID bytes of shape (n, 16), got {canonical.shape}"
        )
    # Julia's little-endian UInt128 is the canonical bytes reversed.
    storage = np.ascontiguousarray(canonical[:, ::-1])
    arr = pa.Array.from_buffers(
        pa.binary(16), len(storage), [None, pa.py_buffer(storage.tobytes())]
    )
    return pa.ExtensionArray.from_storage(JuliaUUIDType(), arr)


def uuids_from_array(arr: pa.Array | pa.ChunkedArray) -> list[uuid.UUID | None]:
    """The `uuid.UUID` values of a ``JuliaLang.UUID`` array, converted column-wise."""
    storage = _storage(arr)
    return [
        None if b is None else uuid.UUID(int=int.from_bytes(b, "little"))
        for b in storage.to_pylist()
    ]


def timespan_array(
    starts: Sequence[int] | np.ndarray | pa.Array,
    stops: Sequence[int] | np.ndarray | pa.Array,
    mask: Sequence[bool] | np.ndarray | None = None,
) -> pa.ExtensionArray:
    """A ``JuliaLang.TimeSpan`` array from start and stop nanoseconds (``mask`` marks nulls)."""
    start = pa.array(starts, type=pa.int64()).cast(pa.duration("ns"))
    stop = pa.array(stops, type=pa.int64()).cast(pa.duration("ns"))
    storage = pa.StructArray.from_arrays(
        [start, stop],
        fields=list(SPAN_STORAGE),
        mask=None if mask is None else pa.array(mask, type=pa.bool_()),
    )
    return pa.ExtensionArray.from_storage(TimeSpanType(), storage)


def span_bounds(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop nanoseconds (int64 numpy arrays) of a ``TimeSpanType`` array without nulls."""
    storage = _storage(arr)
    start = storage.field("start").cast(pa.duration("ns")).cast(pa.int64())
    stop = storage.field("stop").cast(pa.duration("ns")).cast(pa.int64())
    return start.to_numpy(zero_copy_only=False), stop.to_numpy(zero_copy_only=False)


def spans_from_array(arr: pa.Array | pa.ChunkedArray) -> list[TimeSpan | None]:
    """The [`TimeSpan`][ondabatches.onda.TimeSpan] values of a ``TimeSpanType`` array,
    converted column-wise."""
    storage = _storage(arr)
    valid = storage.is_valid().to_pylist()
    start = storage.field("start").cast(pa.duration("ns")).cast(pa.int64()).fill_null(0)
    stop = storage.field("stop").cast(pa.duration("ns")).cast(pa.int64()).fill_null(0)
    return [
        TimeSpan(a, b) if ok else None
        for a, b, ok in zip(start.to_pylist(), stop.to_pylist(), valid, strict=True)
    ]


def _storage(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        # combine_chunks copies even a single chunk: a whole column, for nothing.
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    return arr.storage if isinstance(arr, pa.ExtensionArray) else arr


# ----------------------------------------------------------------------------- Onda columns
# Column kinds: "string", "float64", "channels", "uuid", "span".

# Julia's Arrow.jl names the list item field "" and marks it non-nullable.
CHANNELS_TYPE = pa.list_(pa.field("", pa.string(), nullable=False))
COLUMN_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "float64": pa.float64(),
    "channels": CHANNELS_TYPE,
    "uuid": JuliaUUIDType(),
    "span": TimeSpanType(),
}
_EXPECTED: dict[str, str] = {
    "string": "string",
    "float64": "float64 (double)",
    "channels": "list<string>",
    "uuid": "JuliaLang.UUID (or arrow.uuid, or UUID strings)",
    "span": "JuliaLang.TimeSpan (or struct<start, stop: duration or int64 ns>)",
}


def is_arrow(values: Any) -> bool:
    return isinstance(values, (pa.Array, pa.ChunkedArray))


def chunked(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr], type=arr.type)


def _mistyped(what: str, col_kind: str, actual: Any) -> SchemaError:
    return SchemaError(f"{what}: expected {_EXPECTED[col_kind]}, got {actual}")


def bad_value(what: str, row: int, message: str) -> SchemaError:
    return SchemaError(f"{what} row {row}: {message}")


def check_no_nulls(arr: pa.Array | pa.ChunkedArray, what: str) -> None:
    if arr.null_count:
        row = int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])
        raise bad_value(what, row, "missing value (Onda columns are not nullable)")


def _python_first_bad(values: list[Any], ok: Callable[[Any], bool]) -> int | None:
    return next((i for i, v in enumerate(values) if v is not None and not ok(v)), None)


def _is_string_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _coerce_string(values: Any, fld: pa.Field | None, what: str) -> pa.Array | pa.ChunkedArray:
    if is_arrow(values):
        if not _is_string_type(values.type):
            raise _mistyped(what, "string", values.type)
        # ChunkedArray.cast imports pandas (tens of MB in every process): skip no-op casts.
        return values if values.type == pa.string() else values.cast(pa.string())
    bad = _python_first_bad(values, lambda v: isinstance(v, str))
    if bad is not None:
        raise bad_value(
            what, bad, f"expected a string, got {type(values[bad]).__name__} {values[bad]!r}"
        )
    return pa.array(values, type=pa.string())


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def _coerce_float64(values: Any, fld: pa.Field | None, what: str) -> pa.Array | pa.ChunkedArray:
    if is_arrow(values):
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise _mistyped(what, "float64", values.type)
        return values.cast(pa.float64(), safe=False)
    bad = _python_first_bad(values, _is_real)
    if bad is not None:
        raise bad_value(
            what, bad, f"expected a number, got {type(values[bad]).__name__} {values[bad]!r}"
        )
    return pa.array([None if v is None else float(v) for v in values], type=pa.float64())


def _is_list_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _coerce_channels(values: Any, fld: pa.Field | None, what: str) -> pa.Array | pa.ChunkedArray:
    if is_arrow(values):
        if not (_is_list_type(values.type) and _is_string_type(values.type.value_type)):
            raise _mistyped(what, "channels", values.type)
        arr = values.cast(CHANNELS_TYPE)
        # The cast does not enforce the item field's non-nullability; check it here.
        items = pc.list_flatten(arr)
        if items.null_count:
            parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
            nulls = np.flatnonzero(pc.is_null(items).to_numpy(zero_copy_only=False))
            raise bad_value(what, int(parents[nulls[0]]), "a channel name is missing")
        return arr
    out: list[list[str] | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if (
            isinstance(v, (str, bytes))
            or not isinstance(v, Sequence)
            or not all(isinstance(c, str) for c in v)
        ):
            raise bad_value(what, i, f"expected a list of channel names (strings), got {v!r}")
        out.append(list(v))
    return pa.array(out, type=CHANNELS_TYPE)


def _is_julia_uuid_field(fld: pa.Field | None) -> bool:
    # A Julia file read where our extension type is not registered keeps only the tag.
    return (
        fld is not None and (fld.metadata or {}).get(b"ARROW:extension:name") == b"JuliaLang.UUID"
    )


def _uuid_value(v: Any) -> uuid.UUID:
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, str):
        return uuid.UUID(v)
    if isinstance(v, (bytes, bytearray)):
        # Julia stores reversed bytes and uuid.UUID.bytes are canonical: refuse to guess.
        raise ArgumentError(
            f"16 raw bytes {bytes(v)!r} are ambiguous (Julia stores UUIDs little-endian); "
            "give uuid.UUID or str values (ondabatches.onda.to_pandas keeps UUIDs as uuid.UUID)"
        )
    raise ArgumentError(f"expected a UUID, got {type(v).__name__} {v!r}")


def _julia_uuid_storage(values: pa.Array | pa.ChunkedArray, what: str) -> pa.ChunkedArray:
    """Julia UUID bytes in any binary storage as ``JuliaLang.UUID`` over fixed_size_binary[16]."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out, offset = [], 0
    for chunk in chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        if storage.type != UUID_STORAGE:
            lengths = pc.binary_length(storage)
            wrong = pc.fill_null(pc.not_equal(lengths, 16), False)
            if pc.any(wrong).as_py():
                i = int(np.flatnonzero(wrong.to_numpy(zero_copy_only=False))[0])
                raise bad_value(
                    what, offset + i, f"a UUID needs 16 bytes, got {lengths[i].as_py()}"
                )
            storage = storage.cast(UUID_STORAGE)
        out.append(pa.ExtensionArray.from_storage(JuliaUUIDType(), storage))
        offset += len(chunk)
    return pa.chunked_array(out, type=JuliaUUIDType())


def _coerce_uuid(values: Any, fld: pa.Field | None, what: str) -> pa.Array | pa.ChunkedArray:
    if is_arrow(values):
        t = values.type
        if isinstance(t, JuliaUUIDType) and t.storage_type == UUID_STORAGE:
            return values
        if isinstance(t, JuliaUUIDType) or (_is_binary_type(t) and _is_julia_uuid_field(fld)):
            # Tagged Julia bytes in any binary storage (polars gives large_binary).
            return _julia_uuid_storage(values, what)
        if getattr(t, "extension_name", None) == "arrow.uuid":
            return uuid_array(values.to_pylist())
        if _is_string_type(t):
            values = values.to_pylist()
        elif _is_binary_type(t):
            raise _mistyped(
                what,
                "uuid",
                f"{t} without the JuliaLang.UUID tag (byte order is ambiguous)",
            )
        else:
            raise _mistyped(what, "uuid", t)
    out = []
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else _uuid_value(v))
        except ValueError as exc:
            raise bad_value(what, i, str(exc)) from None
    return uuid_array(out)


def _ns(v: Any) -> int:
    asm8 = getattr(v, "asm8", None)  # pandas.Timedelta: its own ns, not timedelta's us
    return nanoseconds(asm8 if isinstance(asm8, np.timedelta64) else v)


def _span_value(v: Any) -> tuple[int, int]:
    if isinstance(v, TimeSpan):
        return v.start, v.stop
    if isinstance(v, Mapping):
        return _ns(v["start"]), _ns(v["stop"])
    if hasattr(v, "start") and hasattr(v, "stop") and not isinstance(v, range):
        return _ns(v.start), _ns(v.stop)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return _ns(v[0]), _ns(v[1])
    raise ArgumentTypeError(
        f"expected a TimeSpan, a (start, stop) pair or a {{'start', 'stop'}} dict, got {v!r}"
    )


def _coerce_span(values: Any, fld: pa.Field | None, what: str) -> pa.Array | pa.ChunkedArray:
    if is_arrow(values):
        arr = _arrow_span(values, what)
    else:
        starts, stops, mask = [], [], []
        for i, v in enumerate(values):
            try:
                start, stop = (0, 0) if v is None else _span_value(v)
            except (TypeError, ValueError, KeyError) as exc:
                raise bad_value(what, i, str(exc)) from None
            starts.append(start)
            stops.append(stop)
            mask.append(v is None)
        arr = timespan_array(starts, stops, mask)
    if arr.null_count == 0:
        # Compared in Arrow, chunk by chunk: no copy of a column of millions of spans.
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        storage = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in chunks]
        backwards = pa.chunked_array(
            [pc.less(s.field("stop"), s.field("start")) for s in storage], type=pa.bool_()
        )
        if pc.any(backwards).as_py():
            i = int(np.flatnonzero(backwards.to_numpy())[0])
            first, last = span_bounds(arr)
            raise bad_value(
                what, i, f"span stop ({last[i]} ns) is before its start ({first[i]} ns)"
            )
    return arr


def _arrow_span(values: pa.Array | pa.ChunkedArray, what: str) -> pa.Array | pa.ChunkedArray:
    t = values.type
    if isinstance(t, TimeSpanType) and t.storage_type.equals(SPAN_STORAGE, check_metadata=True):
        return values
    storage_type = t.storage_type if isinstance(t, TimeSpanType) else t
    if not (
        pa.types.is_struct(storage_type) and {f.name for f in storage_type} >= {"start", "stop"}
    ):
        raise _mistyped(what, "span", t)
    for name in ("start", "stop"):
        ft = storage_type.field(name).type
        if not (pa.types.is_duration(ft) or pa.types.is_integer(ft)):
            raise _mistyped(what, "span", f"{t} (field {name!r} is {ft})")
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    ns = []
    for name in ("start", "stop"):
        # Integers are nanoseconds; other duration units are converted exactly (or refused).
        child = pc.struct_field(storage, name)
        try:
            if pa.types.is_duration(child.type):
                child = child.cast(pa.duration("ns"))
            ns.append(child.cast(pa.int64()).fill_null(0))
        except pa.ArrowInvalid as exc:
            raise SchemaError(
                f"{what}: span {name} does not fit int64 nanoseconds ({exc})"
            ) from None
    return timespan_array(ns[0], ns[1], pc.is_null(storage).to_numpy(zero_copy_only=False))


COERCE: dict[str, Callable[[Any, pa.Field | None, str], pa.Array | pa.ChunkedArray]] = {
    "string": _coerce_string,
    "float64": _coerce_float64,
    "channels": _coerce_channels,
    "uuid": _coerce_uuid,
    "span": _coerce_span,
}


def infer_column(values: list[Any], what: str) -> pa.Array:
    """An Arrow array for an extra column given as Python values (UUIDs and spans as Julia's)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, uuid.UUID) for v in present):
        return uuid_array(values)
    if present and all(isinstance(v, TimeSpan) for v in present):
        return timespan_array(
            [0 if v is None else v.start for v in values],
            [0 if v is None else v.stop for v in values],
            [v is None for v in values],
        )
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaError(f"{what}: cannot store these values in Arrow: {exc}") from None
