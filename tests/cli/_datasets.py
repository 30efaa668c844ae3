"""A small sleep dataset on disk for the CLI tests: known recordings, signals and stages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ondabatches.onda import (
    Annotation,
    Samples,
    SamplesInfo,
    Signal,
    TimeSpan,
    store,
    write_annotations,
    write_signals,
)

NS = 1_000_000_000
EPOCH = 30 * NS
STAGES = ("wake", "nrem1", "nrem2", "nrem3", "rem")


@dataclass
class Dataset:
    root: Path
    signals: list[Signal]  # with file paths relative to root
    annotations: list[Annotation]

    @property
    def signals_path(self) -> Path:
        return self.root / "sleep.onda.signal.arrow"

    @property
    def annotations_path(self) -> Path:
        return self.root / "sleep.onda.annotation.arrow"

    def file(self, sensor: str, recording: int = 0) -> Path:
        rec = sorted({s.recording for s in self.signals})[recording]
        (sig,) = [s for s in self.signals if s.recording == rec and s.sensor_label == sensor]
        return self.root / sig.file_path


def make_sleep_dataset(
    root: Path, *, n_recordings: int = 2, minutes: int = 10, seed: int = 0
) -> Dataset:
    """Each recording: eeg (c3, c4; int16 at 128 Hz; lpcm) and ecg (int16 at 256 Hz;
    lpcm.zst) over ``minutes``, with contiguous 30 s-multiple stage annotations."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    signals, annotations = [], []
    for r in range(n_recordings):
        rec = uuid.UUID(int=r + 1)
        span = TimeSpan(0, minutes * 60 * NS)
        for sensor, channels, rate, fmt in (
            ("eeg", ("c3", "c4"), 128.0, "lpcm"),
            ("ecg", ("ecg",), 256.0, "lpcm.zst"),
        ):
            info = SamplesInfo(sensor, channels, "microvolt", 0.25, 0.0, "int16", rate)
            n = int(minutes * 60 * rate)
            t = np.arange(n) / rate
            data = (
                np.stack(
                    [
                        400 * np.sin(2 * np.pi * (3 + i) * t) + rng.normal(0, 50, n)
                        for i in range(len(channels))
                    ]
                )
                .round()
                .astype(np.int16)
            )
            name = f"rec{r}_{sensor}.{fmt}"
            store(root / name, Samples(data, info, encoded=True), file_format=fmt)
            signals.append(Signal(rec, name, fmt, span, sensor, info))
        start = 0
        while start < span.stop:
            length = min(int(rng.integers(1, 5)) * EPOCH, span.stop - start)
            annotations.append(
                Annotation(rec, uuid.UUID(int=1000 * (r + 1) + len(annotations)),
                           TimeSpan(start, start + length), {"stage": str(rng.choice(STAGES))})
            )  # fmt: skip
            start += length
    dataset = Dataset(root, signals, annotations)
    write_signals(dataset.signals_path, signals)
    write_annotations(dataset.annotations_path, annotations)
    return dataset
