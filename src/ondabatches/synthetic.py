"""A small synthetic Onda dataset: EEG-like recordings with 30 s sleep-stage annotations.

Used by the tests, the demo and the benchmarks. Recordings differ in channel sets,
sample rates (128, 256, 143.5, 200 Hz), sample types, file formats (``lpcm`` and
``lpcm.zst``), and in whether ``file_path`` is relative to the table or absolute; some
have a second (EOG) signal. Everything is a pure function of the arguments.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .onda._io import store
from .onda._samples import Samples, SamplesInfo
from .onda._table_files import read_annotations, read_signals, write_annotations, write_signals
from .onda._tables import (
    annotations_table,
    signals_table,
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
_ECG = (("ecg",), 256.0, "int16", 0.5, 0.0, "lpcm.zst", False)
_EMG = (("chin",), 512.0, "int16", 0.25, 0.0, "lpcm", False)
# Chin EMG tone per stage (microvolts rms): high awake, lowest in REM (atonia).
_EMG_RMS = np.array([30.0, 18.0, 12.0, 10.0, 3.0, 25.0])


@dataclass(frozen=True)
class SyntheticDataset:
    """What [`make_dataset`][ondabatches.synthetic.make_dataset] wrote: the folder, the
    two table files and the tables read back."""

    root: Path
    signals_path: Path
    annotations_path: Path
    signals: pa.Table
    annotations: pa.Table


# Textbook EEG rhythms per stage: (low Hz, high Hz, microvolts rms) of band-limited noise
# over a 1/f background, so that a model can actually learn stages from the signals.
_STAGE_BANDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "wake": ((8.0, 12.0, 20.0), (15.0, 30.0, 6.0)),
    "nrem1": ((4.0, 7.0, 16.0), (8.0, 12.0, 5.0)),
    "nrem2": ((11.0, 15.0, 14.0), (4.0, 7.0, 10.0), (0.5, 2.0, 15.0)),
    "nrem3": ((0.5, 2.0, 60.0), (2.0, 4.0, 15.0)),
    "rem": ((4.0, 7.0, 12.0), (2.0, 4.0, 8.0), (15.0, 30.0, 4.0)),
    "no_stage": ((0.1, 1.0, 40.0), (30.0, 60.0, 8.0)),
}
# A plausible night: stage -> probabilities of the next run's stage (order of STAGES).
_TRANSITIONS = np.array(
    [
        [0.00, 0.70, 0.10, 0.00, 0.05, 0.15],  # wake
        [0.25, 0.00, 0.65, 0.00, 0.10, 0.00],  # nrem1
        [0.05, 0.10, 0.00, 0.55, 0.30, 0.00],  # nrem2
        [0.05, 0.00, 0.95, 0.00, 0.00, 0.00],  # nrem3
        [0.30, 0.30, 0.40, 0.00, 0.00, 0.00],  # rem
        [0.90, 0.10, 0.00, 0.00, 0.00, 0.00],  # no_stage
    ]
)
_REFERENCE_GAIN = {"m1": 0.3, "m2": 0.3}  # mastoids sit far from the sources


def _band_filter(freqs: np.ndarray, bands: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    gain = np.zeros(freqs.shape)
    for lo, hi, rms in bands:
        inside = (freqs >= lo) & (freqs < hi)
        if inside.any():
            # Spread the band's power so that it comes out at ``rms`` microvolts.
            gain[inside] += rms * np.sqrt(len(freqs) / inside.sum())
    return gain


def _eeg(
    rng: np.random.Generator,
    channels: tuple[str, ...],
    n: int,
    rate: float,
    stage_of_sample: np.ndarray,
    kind: str,
) -> np.ndarray:
    """Channels x time of stage-dependent EEG (or EOG) in microvolts."""
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    scale = np.sqrt(n / 2.0)  # irfft of unit-variance coefficients -> unit-variance samples
    pink = 1.0 / np.sqrt(np.maximum(freqs, 0.5))
    pink *= 8.0 / np.sqrt(np.sum(pink**2) / len(pink))
    present = [i for i in range(len(STAGES)) if (stage_of_sample == i).any()]
    out = np.empty((len(channels), n))
    for c, name in enumerate(channels):
        spectrum = rng.normal(size=len(freqs)) + 1j * rng.normal(size=len(freqs))
        x = np.fft.irfft(spectrum * pink, n) * scale
        for i in present:
            bands = _STAGE_BANDS[STAGES[i]]
            if kind == "eog" and STAGES[i] in ("wake", "rem"):
                bands = ((0.3, 2.0, 50.0),)  # slow and rapid eye movements
            gain = _band_filter(freqs, bands)
            mask = stage_of_sample == i
            x[mask] += (np.fft.irfft(spectrum * gain, n) * scale)[mask]
        out[c] = x * _REFERENCE_GAIN.get(name, 1.0) + rng.normal(0, 1.0, n)
    return out


def _ecg(rng: np.random.Generator, n: int, rate: float, stage_of_sample: np.ndarray) -> np.ndarray:
    """One ECG lead in microvolts: R peaks and T waves at a stage-dependent heart rate."""
    bpm = np.array([68.0, 62.0, 58.0, 55.0, 66.0, 72.0])[stage_of_sample]
    bpm = bpm + rng.normal(0, 0.5, n).cumsum() / np.sqrt(n)  # slow drift
    phase = np.cumsum(bpm / 60.0 / rate) + rng.random()
    frac = phase % 1.0
    period = 60.0 / bpm
    r = np.minimum(frac, 1.0 - frac) * period
    ecg = 1000.0 * np.exp(-0.5 * (r / 0.012) ** 2)
    ecg += 250.0 * np.exp(-0.5 * ((frac - 0.3) * period / 0.04) ** 2)
    return (ecg + rng.normal(0, 10.0, n))[np.newaxis, :]


def _stage_runs(rng: np.random.Generator, n_runs: int) -> list[str]:
    stages, current = [], 0
    for _ in range(n_runs):
        stages.append(STAGES[current])
        current = int(rng.choice(len(STAGES), p=_TRANSITIONS[current]))
    return stages


def _stage_of_sample(
    annotations: list[dict[str, Any]], span: TimeSpan, n: int, rate: float
) -> np.ndarray:
    """Index into STAGES of the annotation at each sample (wake outside annotations)."""
    stage = np.zeros(n, dtype=np.int64)
    for row in annotations:
        first = int((row["span"].start - span.start) * rate // NS_PER_S)
        last = int((row["span"].stop - span.start) * rate // NS_PER_S)
        stage[max(first, 0) : max(min(last, n), 0)] = STAGES.index(row["stage"])
    return stage


def _annotations(
    rng: np.random.Generator, recording: uuid.UUID, span: TimeSpan
) -> list[dict[str, Any]]:
    """Contiguous stage runs of 1..6 epochs from 10 s after the signal's start."""
    t = span.start + 10 * NS_PER_S
    last_stop = span.stop - 15 * NS_PER_S
    bounds = []
    while t + EPOCH <= last_stop:
        n_epochs = int(min(rng.integers(1, 7), (last_stop - t) // EPOCH))
        stop = t + n_epochs * EPOCH
        if stop + EPOCH > last_stop:
            stop = min(stop + 7 * NS_PER_S, last_stop)
        bounds.append((t, stop))
        t = stop
    stages = _stage_runs(rng, len(bounds))
    return [
        dict(
            recording=recording,
            id=uuid.UUID(bytes=rng.bytes(16), version=4),
            span=TimeSpan(start, stop),
            stage=stage,
        )
        for (start, stop), stage in zip(bounds, stages, strict=True)
    ]


def make_dataset(
    root: str | os.PathLike[str],
    *,
    n_recordings: int = 4,
    duration: TimeLike = 10 * 60 * NS_PER_S,
    seed: int = 0,
    eog_every: int = 2,
    ecg_every: int = 0,
    sample_rate: float | None = None,
    emg_every: int = 0,
    rates: Mapping[str, float] | None = None,
    offsets: Mapping[str, TimeLike] | None = None,
    eeg_layout: int | None = None,
    formats: Mapping[str, str] | None = None,
) -> SyntheticDataset:
    """Write a synthetic Onda dataset under ``root`` and return its tables.

    Recording ``i`` uses EEG layout ``i % 4`` (channels, rate, type, format, path
    style); every ``eog_every``-th recording also has an EOG signal and every
    ``ecg_every``-th an ECG (0: never). ``sample_rate``, if given, replaces the EEG
    layouts' rates so that every EEG window of a duration has as many samples. The EEG
    signal starts ``4 s * (i % 3)`` into the recording and lasts about ``duration``
    (a whole number of samples at every rate). Stage annotations start 10 s after the
    signal, are contiguous runs of 1..6 epochs of 30 s, and the last one runs 7 s past
    a whole epoch (so that
    [`sort_and_trim_spans`][ondabatches.labels.sort_and_trim_spans] trims it). Stages
    follow a plausible night (a Markov chain over runs) and the signals carry each
    stage's textbook rhythms (alpha in wake, spindles in N2, delta in N3, ...).

    Polysomnography-like recordings: every ``emg_every``-th recording also has a chin
    EMG (``"emg"``, 512 Hz; 0: never); ``rates`` replaces the rate of a kind
    (``{"eog": 128.0}``; ``sample_rate`` is the EEG's); ``offsets`` starts a kind's
    signal that much later than the EEG (it still ends with it), so that signals of
    a recording start at different times; ``eeg_layout`` gives every recording EEG
    layout ``eeg_layout`` (0: 6 channels of int16 ``lpcm``) instead of ``i % 4``;
    ``formats`` replaces a kind's file format (``{"ecg": "lpcm"}``). The defaults write
    exactly what they always have.

    Writes ``root/signals.arrow``, ``root/annotations.arrow`` and the sample files
    ``root/<recording>/eeg.lpcm[.zst]`` (and ``eog.lpcm``, ``ecg.lpcm``, ``emg.lpcm``).

    Examples
    --------
    >>> import tempfile
    >>> ds = make_dataset(tempfile.mkdtemp(), n_recordings=2, duration=120 * 10**9)
    >>> ds.signals.num_rows, sorted(set(ds.annotations.column("stage").to_pylist())) != []
    (3, True)
    """
    root = Path(root).absolute()
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
        annotations = _annotations(rng, recording, span)
        annotation_rows.extend(annotations)
        layouts = _recording_layouts(i, eeg_layout, sample_rate, eog_every, ecg_every, emg_every)
        for kind, layout in layouts:
            later = nanoseconds((offsets or {}).get(kind, 0))
            signal_span = TimeSpan(span.start + later, span.stop)
            signal_rows.append(
                _write_signal(
                    root, rng, recording, annotations, signal_span, kind, layout, rates, formats
                )
            )
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


def _recording_layouts(
    i: int,
    eeg_layout: int | None,
    sample_rate: float | None,
    eog_every: int,
    ecg_every: int,
    emg_every: int,
) -> list[tuple[str, tuple[Any, ...]]]:
    """The (kind, layout) of each signal of recording ``i``, EEG first."""
    eeg = _EEG_LAYOUTS[(i if eeg_layout is None else eeg_layout) % len(_EEG_LAYOUTS)]
    if sample_rate is not None:
        eeg = (eeg[0], float(sample_rate), *eeg[2:])
    layouts: list[tuple[str, tuple[Any, ...]]] = [("eeg", eeg)]
    if eog_every and i % eog_every == 0:
        layouts.append(("eog", _EOG))
    if ecg_every and i % ecg_every == 0:
        layouts.append(("ecg", _ECG))
    if emg_every and i % emg_every == 0:
        layouts.append(("emg", _EMG))
    return layouts


def _write_signal(
    root: Path,
    rng: np.random.Generator,
    recording: uuid.UUID,
    annotations: list[dict[str, Any]],
    signal_span: TimeSpan,
    kind: str,
    layout: tuple[Any, ...],
    rates: Mapping[str, float] | None,
    formats: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Draw one signal's samples (shaped by the stage of each sample), store them under
    ``root`` and return its signals-table row; ``rates`` and ``formats`` override the
    layout's per kind."""
    channels, rate, sample_type, res, offset, fmt, absolute = layout
    if rates and kind in rates:
        rate = float(rates[kind])
    if formats and kind in formats:
        fmt = formats[kind]
    info = SamplesInfo(kind, channels, "microvolt", res, offset, sample_type, rate)
    n = int(signal_span.duration * rate // NS_PER_S)
    stage = _stage_of_sample(annotations, signal_span, n, rate)
    if kind == "ecg":
        values = _ecg(rng, n, rate, stage)
    elif kind == "emg":
        values = (rng.normal(0.0, 1.0, n) * _EMG_RMS[stage])[np.newaxis, :]
    else:
        values = _eeg(rng, channels, n, rate, stage, kind)
    relative = f"{recording}/{kind}.{fmt}"
    store(root / relative, Samples(values, info).encode())
    return dict(
        recording=recording,
        file_path=str(root / relative) if absolute else relative,
        file_format=fmt,
        span=signal_span,
        sensor_label=kind,
        **info.to_dict(),
    )


def _eeg_rows(
    recordings: Sequence[uuid.UUID], span: TimeSpan, info: SamplesInfo
) -> list[dict[str, Any]]:
    """Signals-table rows of one ``<recording>/eeg.lpcm`` per recording over ``span``."""
    return [
        dict(
            recording=rec,
            file_path=f"{rec}/eeg.lpcm",
            file_format="lpcm",
            span=span,
            sensor_label="eeg",
            **info.to_dict(),
        )
        for rec in recordings
    ]


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
    rows = _eeg_rows(recordings, signal_span, info)
    labels_info = label_info(EPOCH)
    return _with_labels(
        signals_table(rows),
        [label_span] * n_recordings,
        [Samples(codes[i : i + 1], labels_info, encoded=True) for i in range(n_recordings)],
    )
