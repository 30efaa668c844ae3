"""Small EDF+/BDF+ files written with pyedflib for the import tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyedflib

# label, rate (Hz), physical min/max, digital min/max, unit, transducer
PSG_CHANNELS = [
    ("EEG Fpz-Cz", 100, -200.0, 200.0, -32768, 32767, "uV", "AgAgCl electrode"),
    ("EEG Pz-Oz", 100, -200.0, 200.0, -32768, 32767, "uV", "AgAgCl electrode"),
    ("EOG horizontal", 100, -1000.0, 1000.0, -32768, 32767, "uV", ""),
    ("Resp oro-nasal", 1, -2048.0, 2047.0, -2048, 2047, "", ""),
]


def generic_channels(n: int, rate: int = 50) -> list[tuple]:
    """``ch0`` ... ``ch<n-1>``: labels nobody recognises, recorded alike."""
    return [(f"ch{i}", rate, -500.0, 500.0, -32768, 32767, "uV", "") for i in range(n)]


def write_edf(
    path: Path,
    channels: Sequence[tuple] = PSG_CHANNELS,
    *,
    seconds: int = 60,
    annotations: Sequence[tuple[float, float, str]] = ((0.0, 30.0, "Sleep stage W"),),
    bdf: bool = False,
    seed: int = 0,
) -> Path:
    """An EDF+ (or BDF+) file of random digital samples spanning each channel's range."""
    rng = np.random.default_rng(seed)
    file_type = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    writer = pyedflib.EdfWriter(str(path), len(channels), file_type=file_type)
    try:
        headers, data = [], []
        for label, rate, pmin, pmax, dmin, dmax, unit, transducer in channels:
            headers.append(
                dict(label=label, dimension=unit, sample_frequency=rate, physical_min=pmin,
                     physical_max=pmax, digital_min=dmin, digital_max=dmax,
                     transducer=transducer, prefilter="")
            )  # fmt: skip
            data.append(
                rng.integers(dmin, dmax, size=rate * seconds, endpoint=True, dtype=np.int32)
            )
        if channels:
            writer.setSignalHeaders(headers)
        for onset, duration, text in annotations:
            writer.writeAnnotation(onset, duration, text)
        if channels:
            writer.writeSamples(data, digital=True)
    finally:
        writer.close()
    return path


def write_hypnogram(path: Path, stages: Sequence[tuple[float, float, str]]) -> Path:
    """An EDF+ file of annotations only, as Sleep-EDF's ``*-Hypnogram.edf``."""
    return write_edf(path, [], annotations=stages)
