"""Check an Onda dataset and summarize it: what ``ondabatches inspect`` prints.

:func:`inspect_dataset` takes a signals table, an annotations table, or a folder
holding them, and returns a :class:`DatasetReport`: counts, sensors, sample rates,
durations, label counts, and the :class:`Problem` s found (missing or short sample
files, spans out of range, annotations of recordings without signals). It never
raises for a problem in the *data*; only a path that is not an Onda table at all
raises (:class:`~ondabatches.SchemaError`, :class:`~ondabatches.SampleFileNotFoundError`).
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from ._errors import OndaBatchesError, SampleFileNotFoundError, SchemaError
from .onda import (
    Signal,
    filesystem_for,
    iter_annotations,
    iter_signals,
    load_rows,
    read_annotations,
    read_signals,
)

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
]

NS_PER_S = 1_000_000_000
_SCHEMA_KEY = b"legolas_schema_qualified"
_ANNOTATION_CORE = ("recording", "id", "span")


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
    """What :func:`inspect_dataset` found; ``str(report)`` is the readable summary."""

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
                lines.append(
                    f"  {label}: {count} annotation(s), {_hours(ns)} ({100 * ns / total:.1f}%)"
                )
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


def _table_kind(path: Path) -> str:
    """``"signals"`` or ``"annotations"``, from the Legolas schema name or the columns."""
    try:
        with pa.memory_map(str(path)) as source:
            try:
                schema = ipc.open_file(source).schema
            except pa.ArrowInvalid:
                source.seek(0)
                schema = ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path} is not an Arrow table ({exc})") from None
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
        f"{path} is neither an onda.signal nor an onda.annotation table "
        f"(schema {qualified or 'unnamed'}, columns {sorted(names)})"
    )


def find_tables(path: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """The signals and annotations tables at ``path`` (a table file or a folder).

    A folder is searched (not recursively) for ``*.arrow`` files that are Onda tables;
    other Arrow files there, labeled-signal tables included, are ignored.

    Examples
    --------
    >>> import tempfile
    >>> find_tables(tempfile.mkdtemp())
    ([], [])
    """
    path = Path(path)
    if not path.exists():
        raise SampleFileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        kind = _table_kind(path)
        return ([path], []) if kind in ("signals", "labeled") else ([], [path])
    signals, annotations = [], []
    for candidate in sorted(path.glob("*.arrow")):
        try:
            kind = _table_kind(candidate)
        except SchemaError:
            continue
        if kind == "signals":
            signals.append(candidate)
        elif kind == "annotations":
            annotations.append(candidate)
    return signals, annotations


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

    ``column`` defaults to :func:`label_column`; a table without one is a
    :class:`~ondabatches.SchemaError`.
    """
    column = column or label_column(annotations)
    if column is None:
        raise SchemaError(
            f"the annotations have no label column (stage or a string column); "
            f"columns are {annotations.column_names}"
        )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for ann in iter_annotations(annotations):
        label = str(ann.extra[column])
        per = out[str(ann.recording)]
        per[label] = per.get(label, 0) + ann.span.duration
    return dict(out)


def in_folder(folder: str | os.PathLike[str]) -> Callable[[str], str]:
    """A ``reroot`` for :func:`~ondabatches.read_signals`: each file by its base name in ``folder``.

    >>> in_folder("/mnt/data")("/home/ubuntu/onda/rec_eeg.lpcm")
    '/mnt/data/rec_eeg.lpcm'
    """
    root = os.fspath(folder)
    return lambda path: os.path.join(root, posixpath.basename(path))


def _read_all(paths: list[Path], reader: Any, reroot: Any) -> pa.Table | None:
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
        fs, fs_path = filesystem_for(path)
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
        in which each sample file is found by its base name (see :func:`in_folder`), or
        what :func:`~ondabatches.read_signals` accepts (a prefix mapping or a function).
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
        if check_files:
            problem = _check_sample_file(sig)
            if problem is not None:
                problems.append(problem)

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

    column = None
    counts: Counter[str] = Counter()
    durations: Counter[str] = Counter()
    n_annotations = 0
    recordings = set(extent)
    if annotations_tab is not None:
        column = label_column(annotations_tab)
        orphans: Counter[str] = Counter()
        for ann in iter_annotations(annotations_tab):
            n_annotations += 1
            rec = str(ann.recording)
            recordings.add(rec)
            if column is not None:
                label = str(ann.extra[column])
                counts[label] += 1
                durations[label] += ann.span.duration
            if not signals:
                continue  # an annotations table on its own: nothing to check it against
            if rec not in extent:
                orphans[rec] += 1
            elif ann.span.start < 0 or ann.span.start >= extent[rec][1]:
                problems.append(
                    Problem(
                        "span_out_of_range",
                        f"annotation {ann.id} of recording {rec} spans {ann.span}, outside "
                        f"the recording's signals (up to {_hours(extent[rec][1])})",
                        str(annotation_paths[0]) if len(annotation_paths) == 1 else None,
                        rec,
                    )
                )
        problems.extend(
            Problem(
                "orphan_annotations",
                f"{n} annotation(s) of recording {rec}, which has no signals",
                None,
                rec,
            )
            for rec, n in sorted(orphans.items())
        )

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
