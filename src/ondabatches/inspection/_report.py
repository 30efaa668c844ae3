"""What an inspection finds: `Problem`, `SensorSummary` and the `DatasetReport` that
``ondabatches inspect`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DatasetReport", "NS_PER_S", "Problem", "SensorSummary"]


NS_PER_S = 1_000_000_000


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
