"""The checks of a dataset: each sample file against its signal, each annotation
against its recording.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import OndaBatchesError
from ..onda import (
    Signal,
    TimeSpan,
    filesystem_for,
    load_rows,
)
from ..onda._edf import split_edf_path
from ._labels import _uuid_strings, _with_keys, label_column
from ._report import Problem, _hours

__all__ = ["summarize_annotations"]


def _check_sample_file(signal: Signal) -> Problem | None:
    path, recording = signal.file_path, str(signal.recording)
    where = f"{signal.sensor_label} of recording {recording}"
    try:
        # An EDF/BDF served in place names its signals after a '#': the file is before it.
        fs, fs_path = filesystem_for(
            split_edf_path(path)[0] if signal.file_format in ("edf", "bdf") else path
        )
        exists = fs.exists(fs_path)
        size = fs.size(fs_path) if exists else 0
    except (OSError, ValueError) as exc:
        return Problem("unreadable_sample_file", f"{path} ({where}): {exc}", path, recording)
    if not exists:
        return Problem("missing_sample_file", f"{path} ({where}) does not exist", path, recording)
    needed = signal.n_samples
    if signal.file_format == "lpcm":
        width = signal.info.bytes_per_sample
        if size % width:
            return Problem(
                "sample_file_size",
                f"{path} ({where}) has {size} bytes, not a whole number of "
                f"{width}-byte multichannel samples",
                path,
                recording,
            )
        if size // width < needed:
            return Problem(
                "sample_file_size",
                f"{path} ({where}) holds {size // width} samples but its span "
                f"{signal.span} needs {needed}",
                path,
                recording,
            )
        return None
    # Other formats (compressed, custom) cannot be sized from the file: read the last sample.
    if needed == 0:
        return None
    try:
        load_rows(signal, range(needed - 1, needed), encoded=True)
    except (OndaBatchesError, OSError, ValueError) as exc:
        return Problem(
            "sample_file_size",
            f"{path} ({where}) cannot give sample {needed - 1} of its span {signal.span}: {exc}",
            path,
            recording,
        )
    return None


def _annotation_problems(
    annotations: pa.Table,
    keys: pa.Table,
    extent: Mapping[str, tuple[int, int]],
    annotation_paths: list[str],
) -> list[Problem]:
    """Annotations starting before their recording or at or after its last signal's end.

    Compared column-wise: each row's recording end is looked up with ``index_in``; only
    the offending rows become Python objects. Rows of recordings without signals are
    reported as orphans instead.
    """
    known = list(extent)
    if not known:
        return []
    rec_type = keys.column("rec").type
    if pa.types.is_fixed_size_binary(rec_type):  # Julia's UUID bytes: reversed canonical
        value_set = pa.array([uuid.UUID(r).bytes[::-1] for r in known], type=rec_type)
    else:
        value_set = pa.array(known, type=rec_type)
    index = pc.index_in(keys.column("rec"), value_set=value_set)
    idx = index.fill_null(len(known)).to_numpy().astype(np.int64)
    ends = np.array([extent[r][1] for r in known] + [np.iinfo(np.int64).max], dtype=np.int64)
    start = keys.column("start").to_numpy()
    stop = start + keys.column("duration").to_numpy()
    bad = np.flatnonzero((idx < len(known)) & ((start < 0) | (start >= ends[idx])))
    table = annotation_paths[0] if len(annotation_paths) == 1 else None
    ids = annotations.column("id").take(pa.array(bad, pa.int64())).to_pylist()
    return [
        Problem(
            "span_out_of_range",
            f"annotation {ann_id} of recording {known[idx[i]]} spans "
            f"{TimeSpan(int(start[i]), int(stop[i]))}, outside the recording's signals "
            f"(up to {_hours(int(ends[idx[i]]))})",
            table,
            known[idx[i]],
        )
        for i, ann_id in zip(bad, ids, strict=True)
    ]


def summarize_annotations(
    annotations: pa.Table,
    extent: Mapping[str, tuple[int, int]] | None,
    annotation_paths: list[str] = (),
) -> tuple[str | None, dict[str, int], dict[str, int], set[str], list[Problem]]:
    """Label counts and durations, recordings and problems of an annotations table.

    Computed column-wise with Arrow (``group_by``, ``index_in``): no Python object per
    annotation. ``extent`` maps each recording with signals to its ``(start, stop)``;
    ``None`` (an annotations table on its own) skips the checks against signals.

    Returns ``(label column, counts, durations, recordings, problems)``.
    """
    column = label_column(annotations)
    counts: dict[str, int] = {}
    durations: dict[str, int] = {}
    keys = _with_keys(annotations, column)
    if column is not None:
        per_label = keys.group_by("label").aggregate([("duration", "sum"), ("duration", "count")])
        for label, ns, n in zip(
            per_label.column("label").to_pylist(),
            per_label.column("duration_sum").to_pylist(),
            per_label.column("duration_count").to_pylist(),
            strict=True,
        ):
            counts[str(label)], durations[str(label)] = n, ns
    per_rec = keys.group_by("rec").aggregate([("start", "count")])
    rec_names = _uuid_strings(per_rec.column("rec"))
    problems: list[Problem] = []
    if extent is not None:
        problems.extend(_annotation_problems(annotations, keys, extent, list(annotation_paths)))
        problems.extend(
            Problem(
                "orphan_annotations",
                f"{n} annotation(s) of recording {rec}, which has no signals",
                None,
                rec,
            )
            for rec, n in sorted(
                zip(rec_names, per_rec.column("start_count").to_pylist(), strict=True)
            )
            if rec not in extent
        )
    return column, counts, durations, set(rec_names), problems
