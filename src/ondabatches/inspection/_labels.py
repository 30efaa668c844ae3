"""The labels of an annotations table: which column holds them, how long each lasts per
recording, and the codes of the sleep stages.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa

from .._errors import SchemaError
from ..onda._arrow import span_bounds

__all__ = ["SLEEP_STAGES", "label_column", "label_durations", "label_encoding"]


_ANNOTATION_CORE = ("recording", "id", "span")

#: Sleep stages in OndaBatches' tour order (encoded 1..6 there).
SLEEP_STAGES = ("wake", "nrem1", "nrem2", "nrem3", "rem", "no_stage")


def label_encoding(labels: Iterable[str]) -> dict[str, int]:
    """Codes 1..n for ``labels``: the tour's sleep-stage codes if all are stages, else sorted.

    >>> label_encoding(["rem", "wake"])
    {'wake': 1, 'nrem1': 2, 'nrem2': 3, 'nrem3': 4, 'rem': 5, 'no_stage': 6}
    >>> label_encoding(["spindle", "arousal", "spindle"])
    {'arousal': 1, 'spindle': 2}
    """
    found = set(labels)
    if found <= set(SLEEP_STAGES):
        return {stage: i for i, stage in enumerate(SLEEP_STAGES, 1)}
    return {label: i for i, label in enumerate(sorted(found), 1)}


def label_column(annotations: pa.Table) -> str | None:
    """The column holding the labels: ``stage`` if present, else the first string extra column.

    Examples
    --------
    >>> label_column(pa.table({"recording": ["r"], "id": ["i"], "span": [None], "value": ["x"]}))
    'value'
    """
    if "stage" in annotations.column_names:
        return "stage"
    for f in annotations.schema:
        if f.name not in _ANNOTATION_CORE and (
            pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ):
            return f.name
    return None


def label_durations(annotations: pa.Table, column: str | None = None) -> dict[str, dict[str, int]]:
    """Nanoseconds of each label per recording: ``{recording: {label: ns}}``.

    ``column`` defaults to [`label_column`][ondabatches.inspection.label_column]; a
    table without one is a [`SchemaError`][ondabatches._errors.SchemaError].
    """
    column = column or label_column(annotations)
    if column is None:
        raise SchemaError(
            f"the annotations have no label column (stage or a string column); "
            f"columns are {annotations.column_names}"
        )
    grouped = (
        _with_keys(annotations, column).group_by(["rec", "label"]).aggregate([("duration", "sum")])
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    recs = _uuid_strings(grouped.column("rec"))
    for rec, label, ns in zip(
        recs,
        grouped.column("label").to_pylist(),
        grouped.column("duration_sum").to_pylist(),
        strict=True,
    ):
        out[rec][label] = ns
    return {rec: dict(sorted(per.items())) for rec, per in out.items()}


def _with_keys(annotations: pa.Table, column: str | None) -> pa.Table:
    """``rec`` (the recording's 16 bytes), ``label`` (text), ``start``, ``duration`` (ns)."""
    rec = annotations.column("recording")
    rec = pa.chunked_array(
        [c.storage if isinstance(c, pa.ExtensionArray) else c for c in rec.chunks],
        type=rec.type.storage_type if isinstance(rec.type, pa.ExtensionType) else rec.type,
    )
    start, stop = span_bounds(annotations.column("span"))
    columns = {"rec": rec, "start": pa.array(start), "duration": pa.array(stop - start)}
    if column is not None:
        label = annotations.column(column)
        columns["label"] = label if pa.types.is_string(label.type) else label.cast(pa.string())
    return pa.table(columns)


def _uuid_strings(keys: pa.ChunkedArray | pa.Array) -> list[str]:
    """Recording keys (16 bytes as stored, or strings) as canonical UUID strings."""
    values = keys.to_pylist()
    if values and isinstance(values[0], bytes) and len(values[0]) == 16:
        return [str(uuid.UUID(int=int.from_bytes(v, "little"))) for v in values]
    return [str(v) for v in values]
