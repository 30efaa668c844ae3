"""One EDF/EDF+/BDF file to its own pair of Onda tables (the original ``import_edf``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa

from ..onda import write_annotations, write_signals
from ._channels import ChannelMap
from ._convert import convert_source, recording_id
from ._edf import EdfSource
from ._sources import _sha256_of

__all__ = ["import_edf"]


def import_edf(
    edf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    recording: uuid.UUID | str | None = None,
    file_format: str = "lpcm",
    name: str | None = None,
    channel_map: ChannelMap | dict | str | os.PathLike[str] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Convert one EDF/EDF+/BDF file to Onda sample files and tables under ``out_dir``.

    Writes one sample file per signal (``<name>_<sensor_label>.<file_format>``) and
    the tables ``<name>.onda.signal.arrow`` and ``<name>.onda.annotation.arrow``,
    whose ``file_path`` values are relative to ``out_dir``. For many files into one
    dataset, see [`import_dataset`][ondabatches.importing.import_dataset].

    Parameters
    ----------
    edf_path:
        The EDF, EDF+ or BDF file.
    out_dir:
        Folder for the sample files and tables; created if missing.
    recording:
        The recording UUID; by default a UUIDv5 of the file's SHA-256 (the same file
        always gets the same one).
    file_format:
        ``"lpcm"`` or ``"lpcm.zst"`` (or any registered format).
    name:
        Stem of the output files; the EDF file's stem by default.
    channel_map:
        Sensor types and channel names for labels (see
        [`ChannelMap`][ondabatches.importing.ChannelMap]).

    Returns
    -------
    (signals, annotations):
        The two tables as written (with relative ``file_path``).

    Examples
    --------
    >>> import tempfile, pyedflib.data
    >>> signals, annotations = import_edf(
    ...     pyedflib.data.get_generator_filename(), tempfile.mkdtemp())
    >>> signals.column("sensor_label").to_pylist(), annotations.column("value").to_pylist()
    (['misc'], ['Recording starts', 'Recording ends'])
    """
    edf_path = Path(edf_path)
    out = Path(out_dir)
    name = name or edf_path.stem
    source = EdfSource(edf_path, ChannelMap.from_value(channel_map))
    try:
        digest = _sha256_of(str(edf_path))
        rec = uuid.UUID(str(recording)) if recording is not None else recording_id(digest)
        signals, annotations, _ = convert_source(
            source,
            os.path.abspath(out),
            name,
            rec,
            file_format=file_format,
            annotation_seed=digest,
            source_file=str(edf_path),
        )
    finally:
        source.close()
    write_signals(out / f"{name}.onda.signal.arrow", signals)
    write_annotations(out / f"{name}.onda.annotation.arrow", annotations)
    return signals, annotations
