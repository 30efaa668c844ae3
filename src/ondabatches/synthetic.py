"""A small synthetic Onda dataset: EEG-like recordings with 30 s sleep-stage annotations.

Used by the tests, the demo and the benchmarks. Recordings differ in channel sets,
sample rates (128, 256, 143.5, 200 Hz), sample types, file formats (``lpcm`` and
``lpcm.zst``), and in whether ``file_path`` is relative to the table or absolute; some
have a second (EOG) signal. Everything is a pure function of the arguments.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .onda._io import store
from .onda._samples import Samples, SamplesInfo
from .onda._tables import (
    annotations_table,
    read_annotations,
    read_signals,
    signals_table,
    write_annotations,
    write_signals,
)
from .onda._timespan import NS_PER_S, TimeLike, TimeSpan, nanoseconds

__all__ = ["EPOCH", "STAGES", "STAGE_ENCODING", "SyntheticDataset", "labeled_table", "make_dataset"]

#: The sleep stages of the annotations, in the order of their codes 1..6.
STAGES = ("wake", "nrem1", "nrem2", "nrem3", "rem", "no_stage")
#: Stage -> label code, as in OndaBatches' tour.
STAGE_ENCODING = {stage: i + 1 for i, stage in enumerate(STAGES)}

EPOCH = 30 * NS_PER_S

# (channels, rate, sample_type, resolution, offset, file_format, absolute file_path)
_EEG_LAYOUTS: tuple[tuple[tuple[str, ...], float, str, float, float, str, bool], ...] = (
    (("c3", "c4", "m1", "m2", "o1", "o2"), 128.0, "int16", 0.1, 0.0, "lpcm", False),
    (("f3", "f4", "c3", "c4", "m1", "m2"), 256.0, "float32", 1.0, 0.0, "lpcm.zst", True),
    (("c3", "c4", "m2"), 143.5, "int32", 0.05, 1.0, "lpcm.zst", False),
    (("c3", "m2", "o1", "o2"), 200.0, "uint16", 0.25, -8192.0, "lpcm", True),
)
_EOG = (("eog-l", "eog-r"), 64.0, "int16", 0.5, 0.0, "lpcm", False)


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`make_dataset` wrote: the folder, the two table files and the tables read back."""

    root: Path
    signals_path: Path
    annotations_path: Path
    signals: pa.Table
    annotations: pa.Table


def _eeg(rng: np.random.Generator, n_channels: int, n: int, rate: float) -> np.ndarray:
    t = np.arange(n) / rate
    out = np.empty((n_channels, n))
    for c in range(n_channels):
        alpha = 20 * np.sin(2 * np.pi * (9 + rng.random() * 3) * t + rng.random() * 6.3)
        delta = 40 * np.sin(2 * np.pi * (0.5 + rng.random() * 2) * t + rng.random() * 6.3)
        out[c] = alpha + delta + rng.normal(0, 5, n)
    return out


def make_dataset(
    root: str | os.PathLike[str],
    *,
    n_recordings: int = 4,
    duration: TimeLike = 10 * 60 * NS_PER_S,
    seed: int = 0,
    eog_every: int = 2,
) -> SyntheticDataset:
    """Write a synthetic Onda dataset under ``root`` and return its tables.

    Recording ``i`` uses EEG layout ``i % 4`` (channels, rate, type, format, path
    style); every ``eog_every``-th recording also has an EOG signal (0: never). The EEG
    signal starts ``4 s * (i % 3)`` into the recording and lasts about ``duration``
    (a whole number of samples at every rate). Stage annotations start 10 s after the
    signal, are contiguous runs of 1..6 epochs of 30 s, and the last one runs 7 s past
    a whole epoch (so that :func:`~ondabatches.labels.sort_and_trim_spans` trims it).

    Writes ``root/signals.arrow``, ``root/annotations.arrow`` and the sample files
    ``root/<recording>/eeg.lpcm[.zst]`` (and ``eog.lpcm``).

    Examples
    --------
    >>> import tempfile
    >>> ds = make_dataset(tempfile.mkdtemp(), n_recordings=2, duration=120 * 10**9)
    >>> ds.signals.num_rows, sorted(set(ds.annotations.column("stage").to_pylist())) != []
    (3, True)
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Whole seconds, even: 143.5 Hz then gives whole numbers of samples.
    seconds = max(2 * ((nanoseconds(duration) // NS_PER_S) // 2), 2 * EPOCH // NS_PER_S)
    signal_rows: list[dict[str, Any]] = []
    annotation_rows: list[dict[str, Any]] = []
    for i in range(n_recordings):
        rng = np.random.default_rng([seed, i])
        recording = uuid.UUID(bytes=rng.bytes(16), version=4)
        start = 4 * (i % 3) * NS_PER_S
        span = TimeSpan(start, start + seconds * NS_PER_S)
        layouts = [("eeg", _EEG_LAYOUTS[i % len(_EEG_LAYOUTS)])]
        if eog_every and i % eog_every == 0:
            layouts.append(("eog", _EOG))
        for kind, (channels, rate, sample_type, res, offset, fmt, absolute) in layouts:
            info = SamplesInfo(kind, channels, "microvolt", res, offset, sample_type, rate)
            n = int(seconds * rate)
            relative = f"{recording}/{kind}.{fmt}"
            store(root / relative, Samples(_eeg(rng, len(channels), n, rate), info).encode())
            signal_rows.append(
                dict(
                    recording=recording,
                    file_path=str(root / relative) if absolute else relative,
                    file_format=fmt,
                    span=span,
                    sensor_label=kind,
                    **info.to_dict(),
                )
            )
        t = span.start + 10 * NS_PER_S
        last_stop = span.stop - 15 * NS_PER_S
        while t + EPOCH <= last_stop:
            n_epochs = int(min(rng.integers(1, 7), (last_stop - t) // EPOCH))
            stop = t + n_epochs * EPOCH
            if stop + EPOCH > last_stop:
                stop = min(stop + 7 * NS_PER_S, last_stop)
            annotation_rows.append(
                dict(
                    recording=recording,
                    id=uuid.UUID(bytes=rng.bytes(16), version=4),
                    span=TimeSpan(t, stop),
                    stage=STAGES[int(rng.integers(len(STAGES)))],
                )
            )
            t = stop
    signals_path, annotations_path = root / "signals.arrow", root / "annotations.arrow"
    write_signals(signals_path, signals_table(signal_rows))
    write_annotations(annotations_path, annotations_table(annotation_rows))
    # Read back: relative file paths come back resolved against the table's folder.
    return SyntheticDataset(
        root,
        signals_path,
        annotations_path,
        read_signals(signals_path),
        read_annotations(annotations_path),
    )


def labeled_table(
    n_recordings: int,
    *,
    duration: TimeLike = 8 * 3600 * NS_PER_S,
    seed: int = 0,
    channels: tuple[str, ...] = ("c3", "c4", "m1", "m2", "o1", "o2"),
    sample_rate: float = 128.0,
) -> pa.Table:
    """An in-memory labeled table of ``n_recordings`` EEG signals, without sample files.

    For batch-specification work only (tests, benchmarks): the ``file_path`` values
    (``<recording>/eeg.lpcm``) do not exist. Labels are random stage codes, one per
    30 s epoch of ``duration``; each signal starts 30 s before its labels.

    Examples
    --------
    >>> table = labeled_table(3, duration=300 * 10**9)
    >>> table.num_rows, table.column("label_span").to_pylist()[0]
    (3, TimeSpan(30 s, 330 s))
    """
    from .labels._labeled import _with_labels, label_info

    n_epochs = nanoseconds(duration) // EPOCH
    info = SamplesInfo("eeg", channels, "microvolt", 0.1, 0.0, "int16", sample_rate)
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, len(STAGES) + 1, size=(n_recordings, n_epochs), dtype=np.uint8)
    recordings = [uuid.UUID(int=(seed << 64) + i + 1) for i in range(n_recordings)]
    label_span = TimeSpan(EPOCH, EPOCH + n_epochs * EPOCH)
    signal_span = TimeSpan(0, label_span.stop + EPOCH)
    rows = [
        dict(
            recording=rec,
            file_path=f"{rec}/eeg.lpcm",
            file_format="lpcm",
            span=signal_span,
            sensor_label="eeg",
            **info.to_dict(),
        )
        for rec in recordings
    ]
    labels_info = label_info(EPOCH)
    return _with_labels(
        signals_table(rows),
        [label_span] * n_recordings,
        [Samples(codes[i : i + 1], labels_info, encoded=True) for i in range(n_recordings)],
    )
