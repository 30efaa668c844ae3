"""EDF, EDF+ and BDF files to Onda: signals grouped by sensor, samples kept bit for bit.

An EDF file stores each channel as integers (16-bit for EDF, 24-bit for BDF) with a
linear map from a digital range ``[dmin, dmax]`` to a physical range ``[pmin, pmax]``.
That map *is* an Onda encoding, so the import stores the digital values unchanged and
writes the map as ``sample_resolution_in_unit`` / ``sample_offset_in_unit``::

    resolution = (pmax - pmin) / (dmax - dmin)
    offset     = pmin - dmin * resolution

Nothing is re-quantized: decoding the Onda samples gives the EDF's physical values.
Channels are grouped into one Onda signal per (sensor type, sample rate, unit,
encoding); channels whose encodings differ land in separate signals. EDF+ annotations
become an ``onda.annotation@1`` table with the annotation text in a ``value`` column.

Needs the optional extra ``edf`` (pyedflib), imported on first use.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import SampleFileError, SampleFileNotFoundError, require
from .onda import (
    Samples,
    SamplesInfo,
    TimeSpan,
    annotations_table,
    signals_table,
    store,
    time_from_index,
    write_annotations,
    write_signals,
)

__all__ = ["EdfChannel", "import_edf", "read_edf_channels", "sensor_type_and_channel"]

NS_PER_S = 1_000_000_000

# The sensor-type words that open EDF labels in practice ("EEG Fpz-Cz", "EMG submental").
_SENSOR_WORDS = {
    "eeg": "eeg",
    "eog": "eog",
    "emg": "emg",
    "ecg": "ecg",
    "ekg": "ecg",
    "resp": "resp",
    "spo2": "spo2",
    "sao2": "spo2",
    "temp": "temp",
    "pos": "position",
    "position": "position",
    "event": "event",
    "marker": "event",
    "pleth": "pleth",
    "snore": "snore",
}

# EDF physical dimensions (8 ASCII characters) to Onda's spelled-out units.
_UNITS = {
    "uv": "microvolt",
    "µv": "microvolt",
    "mv": "millivolt",
    "v": "volt",
    "nv": "nanovolt",
    "%": "percent",
    "degc": "degrees_celsius",
    "°c": "degrees_celsius",
    "bpm": "beats_per_minute",
    "hz": "hertz",
    "mmhg": "millimeter_of_mercury",
    "s": "second",
    "ms": "millisecond",
}


def _snake(text: str) -> str:
    """Lowercase, with every run of characters outside ``[a-z0-9]`` made one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _channel_name(text: str) -> str:
    """An Onda channel name: lowercase; ``-`` and ``.`` kept (``fpz-cz``), other runs ``_``."""
    return re.sub(r"[^a-z0-9.\-]+", "_", text.strip().lower()).strip("_")


def sensor_type_and_channel(label: str, transducer: str = "") -> tuple[str, str]:
    """The Onda sensor type and channel name of an EDF channel label.

    A label opening with a sensor word (``EEG``, ``EOG``, ``EMG``, ``ECG``/``EKG``,
    ``Resp``, ``SpO2``, ...) gives that type and the rest as the channel; a label that
    is only such a word names both; otherwise the transducer is tried (``"EEG
    electrode"``), and last the sanitized label is both type and channel.

    Examples
    --------
    >>> sensor_type_and_channel("EEG Fpz-Cz")
    ('eeg', 'fpz-cz')
    >>> sensor_type_and_channel("EKG")
    ('ecg', 'ecg')
    >>> sensor_type_and_channel("C3-M2", "EEG electrode")
    ('eeg', 'c3-m2')
    >>> sensor_type_and_channel("sine 8.5 Hz")
    ('sine_8_5_hz', 'sine_8.5_hz')
    """
    words = label.strip().split(maxsplit=1)
    channel = _channel_name(label) or "channel"
    if words:
        head = _snake(words[0])
        if head in _SENSOR_WORDS:
            rest = _channel_name(words[1]) if len(words) > 1 else ""
            return _SENSOR_WORDS[head], rest or _SENSOR_WORDS[head]
    for word in re.split(r"[^A-Za-z0-9]+", transducer):
        if word.lower() in _SENSOR_WORDS:
            return _SENSOR_WORDS[word.lower()], channel
    return _snake(label) or "unknown", channel


def _unit(dimension: str) -> str:
    key = dimension.strip().lower()
    return _UNITS.get(key) or _snake(key) or "unknown"


@dataclass(frozen=True, slots=True)
class EdfChannel:
    """One channel of an EDF file as it will be stored in Onda.

    ``index`` is pyedflib's channel number; ``resolution`` and ``offset`` are the
    exact encoding of its digital values; ``n_samples`` counts its samples.
    """

    index: int
    label: str
    sensor_type: str
    channel: str
    unit: str
    sample_rate: float
    resolution: float
    offset: float
    sample_type: str
    n_samples: int

    @property
    def group_key(self) -> tuple[Any, ...]:
        """Channels with equal keys can share one Onda signal."""
        return (
            self.sensor_type,
            self.sample_rate,
            self.unit,
            self.resolution,
            self.offset,
            self.sample_type,
            self.n_samples,
        )


def _open(path: str | os.PathLike[str]) -> Any:
    pyedflib = require("pyedflib", "edf")
    path = Path(path)
    if not path.is_file():
        raise SampleFileNotFoundError(f"EDF file not found: {path}")
    with open(path, "rb") as f:
        reserved = f.read(256)[192:236]
    if reserved.startswith((b"EDF+D", b"BDF+D")):
        # Records of a discontinuous file have gaps; laying them end to end (as reading
        # them channel by channel does) would silently shift every later sample.
        raise SampleFileError(
            f"{path} is a discontinuous {reserved[:5].decode()} file; only continuous "
            "EDF/EDF+C/BDF/BDF+C files can be imported"
        )
    try:
        return pyedflib.EdfReader(str(path))
    except OSError as exc:
        # pyedflib reports unreadable headers as OSError with the reason in the text.
        raise SampleFileError(f"{path} is not a readable EDF/EDF+/BDF file: {exc}") from None


def read_edf_channels(reader: Any) -> list[EdfChannel]:
    """Describe every signal channel of an open ``pyedflib.EdfReader``.

    Examples
    --------
    >>> import pyedflib.data
    >>> reader = pyedflib.data.test_generator()
    >>> read_edf_channels(reader)[0].sensor_type, read_edf_channels(reader)[0].sample_type
    ('squarewave', 'int16')
    >>> reader.close()
    """
    is_bdf = reader.filetype in (2, 3)  # pyedflib.FILETYPE_BDF / FILETYPE_BDFPLUS
    sample_type = "int32" if is_bdf else "int16"
    counts = reader.getNSamples()
    out = []
    for i in range(reader.signals_in_file):
        label = reader.getLabel(i)
        dmin, dmax = reader.getDigitalMinimum(i), reader.getDigitalMaximum(i)
        pmin, pmax = reader.getPhysicalMinimum(i), reader.getPhysicalMaximum(i)
        if dmax == dmin:
            raise SampleFileError(
                f"{reader.file_name}: channel {label!r} has an empty digital range "
                f"[{dmin}, {dmax}]; its physical values are undefined"
            )
        resolution = (pmax - pmin) / (dmax - dmin)
        sensor_type, channel = sensor_type_and_channel(label, reader.getTransducer(i))
        out.append(
            EdfChannel(
                index=i,
                label=label,
                sensor_type=sensor_type,
                channel=channel,
                unit=_unit(reader.getPhysicalDimension(i)),
                sample_rate=float(reader.getSampleFrequency(i)),
                resolution=resolution,
                offset=pmin - dmin * resolution,
                sample_type=sample_type,
                n_samples=int(counts[i]),
            )
        )
    return out


def _unique(names: Sequence[str]) -> list[str]:
    """``names`` with repeats suffixed ``_2``, ``_3``, ... (Onda names must be unique)."""
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name}_{n}"
        out.append(candidate)
    return out


def _group(channels: list[EdfChannel]) -> list[list[EdfChannel]]:
    """Channels grouped by :attr:`EdfChannel.group_key`, in the order of first appearance."""
    groups: dict[tuple[Any, ...], list[EdfChannel]] = {}
    for ch in channels:
        groups.setdefault(ch.group_key, []).append(ch)
    return list(groups.values())


# Rows cannot carry the column types of an empty table: an EDF without annotations
# still gets a table with its ``value`` column.
_NO_ANNOTATIONS = pa.table(
    {
        "recording": pa.array([], pa.string()),
        "id": pa.array([], pa.string()),
        "span": pa.array([], pa.struct([("start", pa.int64()), ("stop", pa.int64())])),
        "value": pa.array([], pa.string()),
    }
)


def _annotation_rows(reader: Any, recording: uuid.UUID) -> list[dict[str, Any]]:
    onsets, durations, texts = reader.readAnnotations()
    rows = []
    for onset, duration, text in zip(onsets, durations, texts, strict=True):
        start = round(float(onset) * NS_PER_S)
        # EDF+ marks "no duration" with -1 (pyedflib) or 0; such an instant gets the
        # smallest span, 1 ns, as TimeSpans.jl does for an instant.
        length = round(float(duration) * NS_PER_S) if duration > 0 else 1
        rows.append(
            {
                "recording": recording,
                "id": uuid.uuid4(),
                "span": TimeSpan(max(start, 0), max(start, 0) + length),
                "value": str(text),
            }
        )
    return rows


def import_edf(
    edf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    recording: uuid.UUID | str | None = None,
    file_format: str = "lpcm",
    name: str | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Convert an EDF/EDF+/BDF file to Onda sample files and tables under ``out_dir``.

    Writes one sample file per signal (``<name>_<sensor_label>.<file_format>``) and
    the tables ``<name>.onda.signal.arrow`` and ``<name>.onda.annotation.arrow``,
    whose ``file_path`` values are relative to ``out_dir``.

    Parameters
    ----------
    edf_path:
        The EDF, EDF+ or BDF file.
    out_dir:
        Folder for the sample files and tables; created if missing.
    recording:
        The recording UUID; a fresh random one by default.
    file_format:
        ``"lpcm"`` or ``"lpcm.zst"`` (or any registered format).
    name:
        Stem of the output files; the EDF file's stem by default.

    Returns
    -------
    (signals, annotations):
        The two tables as written (with relative ``file_path``).

    Examples
    --------
    >>> import tempfile, pyedflib.data
    >>> signals, annotations = import_edf(
    ...     pyedflib.data.get_generator_filename(), tempfile.mkdtemp())
    >>> signals.num_rows, annotations.column("value").to_pylist()
    (11, ['Recording starts', 'Recording ends'])
    """
    edf_path = Path(edf_path)
    out = Path(out_dir)
    recording = uuid.UUID(str(recording)) if recording is not None else uuid.uuid4()
    name = name or edf_path.stem
    reader = _open(edf_path)
    try:
        groups = _group(read_edf_channels(reader))
        sensor_labels = _unique([g[0].sensor_type for g in groups])
        out.mkdir(parents=True, exist_ok=True)
        signals = []
        for group, sensor_label in zip(groups, sensor_labels, strict=True):
            first = group[0]
            info = SamplesInfo(
                sensor_type=first.sensor_type,
                channels=tuple(_unique([ch.channel for ch in group])),
                sample_unit=first.unit,
                sample_resolution_in_unit=first.resolution,
                sample_offset_in_unit=first.offset,
                sample_type=first.sample_type,
                sample_rate=first.sample_rate,
            )
            data = np.empty((len(group), first.n_samples), dtype=info.dtype)
            for row, ch in enumerate(group):
                data[row] = reader.readSignal(ch.index, digital=True)
            file_name = f"{name}_{sensor_label}.{file_format}"
            store(out / file_name, Samples(data, info, encoded=True), file_format=file_format)
            signals.append(
                {
                    "recording": recording,
                    "file_path": file_name,
                    "file_format": file_format,
                    "span": TimeSpan(0, time_from_index(first.n_samples, first.sample_rate)),
                    "sensor_label": sensor_label,
                    **info.to_dict(),
                }
            )
        annotation_rows = _annotation_rows(reader, recording)
    finally:
        reader.close()
    signal_table = signals_table(signals)
    annotation_table = annotations_table(annotation_rows or _NO_ANNOTATIONS)
    write_signals(out / f"{name}.onda.signal.arrow", signal_table)
    write_annotations(out / f"{name}.onda.annotation.arrow", annotation_table)
    return signal_table, annotation_table
