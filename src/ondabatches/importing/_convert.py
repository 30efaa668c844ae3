"""One source file to Onda sample files and table rows, streamed block by block.

A source is any object with the members of `Source` (EDF through pyedflib,
anything MNE reads). Each group of channels becomes one sample file written through an
atomic writer, one block of samples at a time, so memory stays bounded by the block
size whatever the length of the recording.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np
import pyarrow as pa

from .._errors import ArgumentError, SourceFileError
from ..onda import (
    LPCMFormat,
    LPCMZstFormat,
    SamplesInfo,
    TimeSpan,
    annotations_table,
    filesystem_for,
    get_format,
    signals_table,
    time_from_index,
)
from ..onda._edf import edf_signal_path
from ..onda._storage import atomic_writer, storage_errors
from ._channels import (
    GENERIC_SENSOR_TYPE,
    SourceChannel,
    group_channels,
    signal_names,
    unique_names,
)

__all__ = ["Source", "convert_source"]

NS_PER_S = 1_000_000_000
PAST_END_POLICIES = ("error", "clip", "drop")

# A namespace of our own for the UUIDv5 ids of imported recordings and annotations.
IMPORT_NAMESPACE = uuid.UUID("6f0b6c2e-5d0a-5b8e-9a53-0dba7c3a1e14")


class Source(Protocol):
    """An open file to import."""

    name: str
    channels: list[SourceChannel]

    def read(self, channels: list[SourceChannel], start: int, n: int) -> np.ndarray:
        """Stored values (channels x n) of ``channels`` from sample ``start``."""
        ...

    def annotations(self) -> list[tuple[float, float, str]]:
        """``(onset s, duration s, text)``; onsets relative to the first sample."""
        ...

    @property
    def start_datetime(self) -> np.datetime64 | None:
        """The first sample's date and time (UTC, naive), to the nanosecond."""
        ...

    def close(self) -> None: ...


def recording_id(digest: str) -> uuid.UUID:
    """The recording UUID of a file whose content has SHA-256 ``digest`` (hex)."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"recording:{digest}")


@dataclass(frozen=True, slots=True)
class SignalSummary:
    """What one Onda signal of an imported file holds (for the import's report)."""

    sensor_label: str
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    sample_rate: float
    guessed: bool

    def __str__(self) -> str:
        text = f"{self.sensor_label} ({len(self.channels)} ch @ {self.sample_rate:g} Hz)"
        if self.guessed:
            text += f" [unrecognised labels grouped: {', '.join(self.labels[:4])}"
            text += ", ...]" if len(self.labels) > 4 else "]"
        return text


def _blocks(source: Source, group: list[SourceChannel], block_bytes: int) -> Iterator[np.ndarray]:
    first = group[0]
    width = np.dtype(first.sample_type).itemsize * len(group)
    step = max(1, block_bytes // width)
    for start in range(0, first.n_samples, step):
        yield source.read(group, start, min(step, first.n_samples - start))


def _write_blocks(file: BinaryIO, blocks: Iterator[np.ndarray], fmt: Any, info: SamplesInfo):
    """Write channels x time blocks to ``file`` in ``fmt``; streamed for the built-in formats."""
    if isinstance(fmt, LPCMFormat):
        for block in blocks:
            file.write(memoryview(np.ascontiguousarray(block.T, dtype=info.dtype)).cast("B"))
        return
    if isinstance(fmt, LPCMZstFormat):
        with fmt.stream_writer(file, info) as out:
            for block in blocks:
                out.write(memoryview(np.ascontiguousarray(block.T, dtype=info.dtype)).cast("B"))
        return
    # A user-registered format writes whole arrays only: memory is that of the signal.
    fmt.write(file, np.concatenate(list(blocks), axis=1), info)


#: What a past-the-end error suggests, spelled for Python; the CLI swaps in its flag.
PAST_END_REMEDY = "pass annotations_past_end='clip' or 'drop' to accept such files"


def _annotation_rows(
    annotations: list[tuple[float, float, str]],
    recording: uuid.UUID,
    duration: int,
    *,
    where: str,
    past_end: str,
    id_seed: str,
    stages: Mapping[str, str | None] | None,
) -> list[dict[str, Any]]:
    rows = []
    for i, (onset, length_s, text) in enumerate(annotations):
        start = round(onset * NS_PER_S)
        if start < 0:
            raise SourceFileError(
                f"{where}: annotation {i} ({text!r}) has a negative onset {onset:g} s; "
                "annotations must lie inside the recording"
            )
        # EDF+ marks "no duration" with -1 (pyedflib) or 0: an instant, whose span is the
        # smallest one, 1 ns, as TimeSpans.jl gives an instant; one at the very end is fine.
        instant = not length_s > 0
        if instant and start == duration and duration > 0:
            start -= 1  # "Recording ends" at the very end: its 1 ns stays inside
        stop = start + (1 if instant else round(length_s * NS_PER_S))
        outside = stop > duration
        if outside:
            if past_end == "error":
                raise SourceFileError(
                    f"{where}: annotation {i} ({text!r}) spans {TimeSpan(start, stop)}, past "
                    f"the end of the recording at {duration / NS_PER_S:g} s ({PAST_END_REMEDY})"
                )
            if past_end == "drop" or start >= duration:
                continue
            stop = duration
        row = {
            "recording": recording,
            "id": uuid.uuid5(IMPORT_NAMESPACE, f"annotation:{id_seed}:{i}"),
            "span": TimeSpan(start, stop),
            "value": text,
        }
        if stages is not None:
            row["stage"] = stages.get(text.strip())
        rows.append(row)
    return rows


def _empty_annotations(stages: bool) -> pa.Table:
    # Rows cannot carry the column types of an empty table.
    columns = {
        "recording": pa.array([], pa.string()),
        "id": pa.array([], pa.string()),
        "span": pa.array([], pa.struct([("start", pa.int64()), ("stop", pa.int64())])),
        "value": pa.array([], pa.string()),
    }
    if stages:
        columns["stage"] = pa.array([], pa.string())
    return pa.table(columns)


def convert_source(
    source: Source,
    out_dir: str,
    file_stem: str,
    recording: uuid.UUID,
    *,
    file_format: str = "lpcm",
    block_bytes: int = 8 << 20,
    annotations: list[tuple[float, float, str]] | None = None,
    annotation_seed: str = "",
    annotations_past_end: str = "error",
    stages: Mapping[str, str | None] | None = None,
    source_file: str | None = None,
    annotations_from: str | None = None,
    in_place: tuple[str, str] | None = None,
) -> tuple[pa.Table, pa.Table, list[SignalSummary]]:
    """Write ``source``'s sample files under ``out_dir`` and return its two tables.

    Sample files are ``<out_dir>/<file_stem>_<sensor_label>.<file_format>``, each
    written atomically; the tables' ``file_path`` values are relative to ``out_dir``.
    ``annotations`` replaces the source's own (a separate hypnogram file, say, named
    ``annotations_from`` in error messages).
    ``source_file`` (and the source's start date and time) go into extra columns.

    ``in_place=(url, local_path)`` writes nothing: each signal's ``file_path`` is
    ``url#signals=...`` in the ``edf``/``bdf`` format ([`EdfFormat`][ondabatches.onda.EdfFormat]),
    read from the source file as it is; everything else in the tables is what an import
    gives. Only sources with an ``in_place`` method (EDF/BDF) can be.
    """
    written: list[tuple[Any, str]] = []
    try:
        return _convert(
            source, out_dir, file_stem, recording, written,
            file_format=file_format, block_bytes=block_bytes, annotations=annotations,
            annotation_seed=annotation_seed, annotations_past_end=annotations_past_end,
            stages=stages, source_file=source_file, annotations_from=annotations_from,
            in_place=in_place,
        )  # fmt: skip
    except BaseException:
        # A file that fails midway leaves none of its sample files behind.
        for fs, path in written:
            with contextlib.suppress(Exception):
                fs.rm_file(path)
        raise


def _convert(
    source: Source,
    out_dir: str,
    file_stem: str,
    recording: uuid.UUID,
    written: list[tuple[Any, str]],
    *,
    file_format: str,
    block_bytes: int,
    annotations: list[tuple[float, float, str]] | None,
    annotation_seed: str,
    annotations_past_end: str,
    stages: Mapping[str, str | None] | None,
    source_file: str | None,
    annotations_from: str | None,
    in_place: tuple[str, str] | None = None,
) -> tuple[pa.Table, pa.Table, list[SignalSummary]]:
    if annotations_past_end not in PAST_END_POLICIES:
        raise ArgumentError(
            f"annotations_past_end must be one of {PAST_END_POLICIES}, got {annotations_past_end!r}"
        )
    fmt = get_format(file_format) if in_place is None else None
    if in_place is not None and not callable(getattr(source, "in_place", None)):
        raise SourceFileError(
            f"{source.name} cannot be served in place: only EDF/EDF+/BDF files read with "
            "the 'edf' reader can (import it into sample files instead)"
        )
    groups = group_channels(source.channels)
    if not groups:
        raise SourceFileError(f"{source.name} holds no signal channels")
    sensor_labels = signal_names(groups)
    start_time = source.start_datetime
    signals, summaries = [], []
    duration = 0
    for group, sensor_label in zip(groups, sensor_labels, strict=True):
        row, summary = _signal_of(
            source, group, sensor_label, recording, written, out_dir=out_dir,
            file_stem=file_stem, file_format=file_format, fmt=fmt, block_bytes=block_bytes,
            source_file=source_file, in_place=in_place,
        )  # fmt: skip
        duration = max(duration, row["span"].stop)
        signals.append(row)
        summaries.append(summary)
    rows = _annotation_rows(
        source.annotations() if annotations is None else annotations,
        recording,
        duration,
        where=annotations_from or source.name,
        past_end=annotations_past_end,
        id_seed=annotation_seed or str(recording),
        stages=stages,
    )
    # The start date and time, where the file gives one, as a timestamp column to the
    # nanosecond (EDF+ starts have sub-second parts finer than a microsecond).
    start_ns = None if start_time is None else np.datetime64(start_time, "ns")
    signal_table = signals_table(signals).append_column(
        pa.field("start_datetime", pa.timestamp("ns")),
        pa.array([start_ns] * len(signals), pa.timestamp("ns")),
    )
    annotation_table = annotations_table(rows or _empty_annotations(stages is not None))
    return signal_table, annotation_table, summaries


def _signal_of(
    source: Source,
    group: list[Any],
    sensor_label: str,
    recording: uuid.UUID,
    written: list[tuple[Any, str]],
    *,
    out_dir: str,
    file_stem: str,
    file_format: str,
    fmt: Any,
    block_bytes: int,
    source_file: str | None,
    in_place: tuple[str, str] | None,
) -> tuple[dict[str, Any], SignalSummary]:
    """One signal of the source (the channels of ``group``): its sample file written
    (and added to ``written``), or, ``in_place``, its path into the source file; its
    row of the signals table and its summary."""
    first = group[0]
    info = SamplesInfo(
        sensor_type=first.sensor_type,
        channels=tuple(unique_names([ch.channel for ch in group])),
        sample_unit=first.unit,
        sample_resolution_in_unit=first.resolution,
        sample_offset_in_unit=first.offset,
        sample_type=first.sample_type,
        sample_rate=first.sample_rate,
    )
    if in_place is not None:
        # Nothing written: the signal reads its channels from the source file itself.
        signal_format, numbers = source.in_place(in_place[1], group)  # type: ignore[attr-defined]
        file_name = edf_signal_path(in_place[0], numbers)
    else:
        signal_format = file_format
        file_name = f"{file_stem}_{sensor_label}.{file_format}"
        url = f"{out_dir.rstrip('/')}/{file_name}"
        fs, path = filesystem_for(url)
        with storage_errors(url, action="write"), atomic_writer(fs, path) as file:
            _write_blocks(file, _blocks(source, group, block_bytes), fmt, info)
        written.append((fs, path))
    stop = time_from_index(first.n_samples, first.sample_rate)
    row = {
        "recording": recording,
        "file_path": file_name,
        "file_format": signal_format,
        "span": TimeSpan(0, stop),
        "sensor_label": sensor_label,
        **info.to_dict(),
        "source_file": source_file or source.name,
    }
    summary = SignalSummary(
        sensor_label,
        info.channels,
        tuple(ch.label for ch in group),
        first.sample_rate,
        first.sensor_type == GENERIC_SENSOR_TYPE and any(ch.guessed for ch in group),
    )
    return row, summary
