"""Check an Onda dataset and summarize it: what ``ondabatches inspect`` prints.

[`inspect_dataset`][ondabatches.inspection.inspect_dataset] takes a signals table, an
annotations table, or a folder holding them, and returns a
[`DatasetReport`][ondabatches.inspection.DatasetReport]: counts, sensors, sample rates,
durations, label counts, and the [`Problem`][ondabatches.inspection.Problem] s found
(missing or short sample files, spans out of range, annotations of recordings without
signals). It never raises for a problem in the *data*; only a path that is not an Onda
table at all raises ([`SchemaError`][ondabatches._errors.SchemaError],
[`SampleFileNotFoundError`][ondabatches._errors.SampleFileNotFoundError]).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ._errors import OndaBatchesError, SampleFileNotFoundError, SchemaError
from .onda import (
    Signal,
    TimeSpan,
    filesystem_for,
    iter_signals,
    load_rows,
    read_annotations,
    read_signals,
)
from .onda._arrow import span_bounds
from .onda._edf import split_edf_path
from .onda._storage import is_local, storage_errors

__all__ = [
    "DatasetReport",
    "Problem",
    "SLEEP_STAGES",
    "SensorSummary",
    "find_tables",
    "in_folder",
    "inspect_dataset",
    "label_column",
    "label_durations",
    "label_encoding",
    "summarize_annotations",
]

NS_PER_S = 1_000_000_000
_SCHEMA_KEY = b"legolas_schema_qualified"
_ANNOTATION_CORE = ("recording", "id", "span")
# Requests in flight at once when probing tables and sample files (remote storage).
_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a dataset.

    ``kind`` is one of ``no_tables``, ``missing_sample_file``, ``sample_file_size``,
    ``unreadable_sample_file``, ``span_out_of_range``, ``duplicate_sensor_label``,
    ``orphan_annotations``.
    """

    kind: str
    message: str
    file: str | None = None
    recording: str | None = None

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass(frozen=True, slots=True)
class SensorSummary:
    """The signals of one sensor type across the dataset."""

    sensor_type: str
    n_signals: int
    channels: tuple[str, ...]
    sample_rates: tuple[float, ...]
    sample_types: tuple[str, ...]
    sample_units: tuple[str, ...]
    file_formats: tuple[str, ...]
    duration: int


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """What [`inspect_dataset`][ondabatches.inspection.inspect_dataset] found;
    ``str(report)`` is the readable summary."""

    signal_tables: tuple[str, ...]
    annotation_tables: tuple[str, ...]
    recordings: tuple[str, ...]
    sensors: tuple[SensorSummary, ...]
    n_signals: int
    n_annotations: int
    recording_duration: int
    label_column: str | None
    label_counts: Mapping[str, int] = field(default_factory=dict)
    label_durations: Mapping[str, int] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = []
        for path in self.signal_tables:
            lines.append(f"signals table:     {path}")
        for path in self.annotation_tables:
            lines.append(f"annotations table: {path}")
        lines.append(
            f"recordings: {len(self.recordings)}   signals: {self.n_signals}   "
            f"annotations: {self.n_annotations}"
        )
        if self.n_signals:
            lines.append(f"total duration: {_hours(self.recording_duration)} (sum over recordings)")
        if self.sensors:
            lines.append("sensors:")
            for s in self.sensors:
                lines.append(
                    f"  {s.sensor_type}: {s.n_signals} signal(s), {len(s.channels)} channel(s) "
                    f"[{_short_list(s.channels)}], {_join(f'{r:g} Hz' for r in s.sample_rates)}, "
                    f"{_join(s.sample_types)}, {_join(s.sample_units)}, "
                    f"{_join(s.file_formats)}, {_hours(s.duration)}"
                )
        if self.label_column is not None:
            lines.append(f"labels (column {self.label_column!r}):")
            total = sum(self.label_durations.values()) or 1
            for label, count in self.label_counts.items():
                ns = self.label_durations[label]
                # An instant's span is 1 ns (TimeSpans.jl's): labels of instants only have
                # no duration to show, not "1e-09 s".
                extent = (
                    ("instant" if count == 1 else "instants")
                    if ns <= count
                    else f"{_hours(ns)} ({100 * ns / total:.1f}%)"
                )
                lines.append(f"  {label}: {count} annotation(s), {extent}")
        if self.problems:
            lines.append(f"problems: {len(self.problems)}")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("problems: none")
        return "\n".join(lines)


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


def _hours(ns: int) -> str:
    seconds = ns / NS_PER_S
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _join(items: Iterable[Any]) -> str:
    return "/".join(str(i) for i in items)


def _short_list(items: tuple[str, ...], limit: int = 8) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... (+{len(items) - limit})"


def _table_kind(url: str) -> str:
    """``"signals"`` or ``"annotations"``, from the Legolas schema name or the columns."""
    fs, path = filesystem_for(url)
    try:
        with storage_errors(url), fs.open(path, "rb") as source:
            try:
                schema = ipc.open_file(source).schema  # reads the footer only
            except pa.ArrowInvalid:
                source.seek(0)
                schema = ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{url} is not an Arrow table ({exc})") from None
    qualified = (schema.metadata or {}).get(_SCHEMA_KEY, b"").decode()
    if qualified.startswith("labeled.signal@"):
        return "labeled"  # derived from the signals table beside it
    if "onda.signal@" in qualified:
        return "signals"
    if "onda.annotation@" in qualified:
        return "annotations"
    names = set(schema.names)
    if {"file_path", "sample_rate", "channels"} <= names:
        return "signals"
    if set(_ANNOTATION_CORE) <= names:
        return "annotations"
    raise SchemaError(
        f"{url} is neither an onda.signal nor an onda.annotation table "
        f"(schema {qualified or 'unnamed'}, columns {sorted(names)})"
    )


def _url_of(fs: Any, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def find_tables(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """The signals and annotations tables at ``path`` (a table file or a folder, local or URL).

    A folder is searched (not recursively) for ``*.arrow`` files that are Onda tables;
    other Arrow files there, labeled-signal tables included, are ignored. Tables are
    given as local paths or URLs like ``path``.

    Examples
    --------
    >>> import tempfile
    >>> find_tables(tempfile.mkdtemp())
    ([], [])
    """
    url = os.fspath(path)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url):
        exists = fs.exists(fs_path)
        is_file = exists and fs.isfile(fs_path)
        listing = [] if not exists or is_file else sorted(fs.ls(fs_path, detail=False))
    if not exists:
        raise SampleFileNotFoundError(f"no such file or folder: {url}")
    if is_file:
        kind = _table_kind(url)
        return ([url], []) if kind in ("signals", "labeled") else ([], [url])
    candidates = [_url_of(fs, p) for p in listing if p.endswith(".arrow")]
    signals, annotations = [], []
    # Each probe reads a footer: on remote storage, one request each, so issue them together.
    with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
        kinds = list(pool.map(_kind_or_none, candidates))
    for candidate, kind in zip(candidates, kinds, strict=True):
        if kind == "signals":
            signals.append(candidate)
        elif kind == "annotations":
            annotations.append(candidate)
    return signals, annotations


def _kind_or_none(url: str) -> str | None:
    try:
        return _table_kind(url)
    except SchemaError:
        return None


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


def in_folder(folder: str | os.PathLike[str]) -> Callable[[str], str]:
    """A ``reroot`` for [`read_signals`][ondabatches.onda.read_signals]: each file by
    its base name in ``folder``.

    >>> in_folder("/mnt/data")("/home/ubuntu/onda/rec_eeg.lpcm")
    '/mnt/data/rec_eeg.lpcm'
    """
    root = os.fspath(folder)
    return lambda path: os.path.join(root, posixpath.basename(path))


def _read_all(paths: list[str], reader: Any, reroot: Any) -> pa.Table | None:
    if not paths:
        return None
    kwargs = {"reroot": reroot} if reader is read_signals else {}
    tables = [reader(p, **kwargs) for p in paths]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


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


def inspect_dataset(
    path: str | os.PathLike[str],
    *,
    reroot: str | os.PathLike[str] | Mapping[str, str] | Callable[[str], str] | None = None,
    check_files: bool = True,
) -> DatasetReport:
    """Summarize and check the Onda tables at ``path`` (a table or a folder of tables).

    Parameters
    ----------
    path:
        An ``onda.signal`` or ``onda.annotation`` Arrow file, or a folder holding them.
    reroot:
        For tables written elsewhere, whose absolute paths do not exist here: a folder
        in which each sample file is found by its base name (see
        [`in_folder`][ondabatches.inspection.in_folder]), or what
        [`read_signals`][ondabatches.onda.read_signals] accepts (a prefix mapping or a
        function).
    check_files:
        Whether to check each sample file's presence and size.

    Examples
    --------
    >>> import tempfile
    >>> report = inspect_dataset(tempfile.mkdtemp())
    >>> report.ok, [p.kind for p in report.problems]
    (False, ['no_tables'])
    """
    signal_paths, annotation_paths = find_tables(path)
    if isinstance(reroot, (str, os.PathLike)):
        reroot = in_folder(reroot)
    signals_tab = _read_all(signal_paths, read_signals, reroot)
    annotations_tab = _read_all(annotation_paths, read_annotations, None)
    signals = list(iter_signals(signals_tab)) if signals_tab is not None else []
    problems: list[Problem] = []
    if not signal_paths and not annotation_paths:
        problems.append(Problem("no_tables", f"{path} holds no Onda signals or annotations table"))

    extent: dict[str, tuple[int, int]] = {}
    by_sensor: dict[str, list[Signal]] = defaultdict(list)
    labels_seen: dict[str, set[str]] = defaultdict(set)
    for sig in signals:
        rec = str(sig.recording)
        by_sensor[sig.info.sensor_type].append(sig)
        lo, hi = extent.get(rec, (sig.span.start, sig.span.stop))
        extent[rec] = (min(lo, sig.span.start), max(hi, sig.span.stop))
        if sig.span.start < 0:
            problems.append(
                Problem(
                    "span_out_of_range",
                    f"signal {sig.sensor_label} of recording {rec} starts before the "
                    f"recording ({sig.span})",
                    sig.file_path,
                    rec,
                )
            )
        if sig.sensor_label in labels_seen[rec]:
            problems.append(
                Problem(
                    "duplicate_sensor_label",
                    f"recording {rec} has more than one signal labeled {sig.sensor_label!r}",
                    sig.file_path,
                    rec,
                )
            )
        labels_seen[rec].add(sig.sensor_label)
    if check_files and signals:
        # One or two requests per file: on remote storage latency dominates, so overlap them.
        with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
            problems.extend(p for p in pool.map(_check_sample_file, signals) if p is not None)

    sensors = tuple(
        SensorSummary(
            sensor_type=sensor,
            n_signals=len(sigs),
            channels=tuple(dict.fromkeys(c for s in sigs for c in s.channels)),
            sample_rates=tuple(sorted({s.sample_rate for s in sigs})),
            sample_types=tuple(sorted({s.info.sample_type for s in sigs})),
            sample_units=tuple(sorted({s.info.sample_unit for s in sigs})),
            file_formats=tuple(sorted({s.file_format for s in sigs})),
            duration=sum(s.span.duration for s in sigs),
        )
        for sensor, sigs in sorted(by_sensor.items())
    )

    column, counts, durations, n_annotations = None, {}, {}, 0
    recordings = set(extent)
    if annotations_tab is not None:
        summary = summarize_annotations(
            annotations_tab, extent if signals else None, annotation_paths
        )
        column, counts, durations, found, more = summary
        n_annotations = annotations_tab.num_rows
        recordings.update(found)
        problems.extend(more)

    # Sleep stages in their usual order (wake first), other labels sorted.
    order = [label for label in label_encoding(counts) if label in counts]
    return DatasetReport(
        signal_tables=tuple(str(p) for p in signal_paths),
        annotation_tables=tuple(str(p) for p in annotation_paths),
        recordings=tuple(sorted(recordings)),
        sensors=sensors,
        n_signals=len(signals),
        n_annotations=n_annotations,
        recording_duration=sum(hi - lo for lo, hi in extent.values()),
        label_column=column,
        label_counts={label: counts[label] for label in order},
        label_durations={label: durations[label] for label in order},
        problems=tuple(problems),
    )
