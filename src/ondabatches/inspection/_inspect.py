"""[`inspect_dataset`][ondabatches.inspection.inspect_dataset]: the tables read, the
checks run, the report made.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from ..onda import (
    Signal,
    iter_signals,
    read_annotations,
    read_signals,
)
from ._checks import _check_sample_file, summarize_annotations
from ._labels import label_encoding
from ._report import DatasetReport, Problem, SensorSummary
from ._tables import _CONCURRENCY, _read_all, find_tables, in_folder

__all__ = ["inspect_dataset"]


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

    extent, by_sensor = _signal_extents(signals, problems)
    if check_files and signals:
        # One or two requests per file: on remote storage latency dominates, so overlap them.
        with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
            problems.extend(p for p in pool.map(_check_sample_file, signals) if p is not None)

    sensors = _sensor_summaries(by_sensor)

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


def _signal_extents(
    signals: list[Signal], problems: list[Problem]
) -> tuple[dict[str, tuple[int, int]], dict[str, list[Signal]]]:
    """Each recording's extent (the union of its signals' spans) and the signals by
    sensor type; a span starting before its recording or a repeated sensor label goes
    to ``problems``."""
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
    return extent, by_sensor


def _sensor_summaries(by_sensor: dict[str, list[Signal]]) -> tuple[SensorSummary, ...]:
    return tuple(
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
