"""EDF, EDF+ and BDF files read through pyedflib, channel block by channel block.

An EDF file stores each channel as integers (16-bit for EDF, 24-bit for BDF) with a
linear map from a digital range ``[dmin, dmax]`` to a physical range ``[pmin, pmax]``.
That map *is* an Onda encoding, so the import stores the digital values unchanged and
writes the map as ``sample_resolution_in_unit`` / ``sample_offset_in_unit``::

    resolution = (pmax - pmin) / (dmax - dmin)
    offset     = pmin - dmin * resolution

Nothing is re-quantized: decoding the Onda samples gives the EDF's physical values.
Discontinuous files (EDF+D, BDF+D) are refused: their records have gaps, and laying
them end to end would silently shift every later sample.

Needs the optional extra ``edf`` (pyedflib), imported on first use.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import SampleFileNotFoundError, SourceFileError, require
from ._channels import ChannelMap, SourceChannel, name_channel, onda_unit
from ._tal import ANNOTATION_LABELS, edf_start_offset, parse_tals

__all__ = ["EdfSource", "read_edf_channels"]

EDF_SUFFIXES = (".edf", ".bdf", ".rec")


def read_edf_channels(reader: Any, channel_map: ChannelMap | None = None) -> list[SourceChannel]:
    """Describe every signal channel of an open ``pyedflib.EdfReader``.

    Examples
    --------
    >>> import pyedflib.data
    >>> reader = pyedflib.data.test_generator()
    >>> ch = read_edf_channels(reader)[4]
    >>> ch.label, ch.sensor_type, ch.channel, ch.sample_type
    ('sine 1 Hz', 'misc', 'sine_1_hz', 'int16')
    >>> reader.close()
    """
    is_bdf = reader.filetype in (2, 3)  # pyedflib.FILETYPE_BDF / FILETYPE_BDFPLUS
    sample_type = "int32" if is_bdf else "int16"
    counts = reader.getNSamples()
    out = []
    for i in range(reader.signals_in_file):
        label = reader.getLabel(i)
        if label.strip() in ANNOTATION_LABELS:
            # A legacy (no "+") header with an annotation channel: pyedflib lists it as
            # a signal; it holds annotations (EdfSource reads them).
            continue
        dmin, dmax = reader.getDigitalMinimum(i), reader.getDigitalMaximum(i)
        pmin, pmax = reader.getPhysicalMinimum(i), reader.getPhysicalMaximum(i)
        if dmax == dmin:
            raise SourceFileError(
                f"{reader.file_name}: channel {label!r} has an empty digital range "
                f"[{dmin}, {dmax}]; its physical values are undefined"
            )
        resolution = (pmax - pmin) / (dmax - dmin)
        sensor_type, channel, guessed = name_channel(label, reader.getTransducer(i), channel_map)
        out.append(
            SourceChannel(
                index=i,
                label=label,
                sensor_type=sensor_type,
                channel=channel,
                unit=onda_unit(reader.getPhysicalDimension(i)),
                sample_rate=float(reader.getSampleFrequency(i)),
                resolution=resolution,
                offset=pmin - dmin * resolution,
                sample_type=sample_type,
                n_samples=int(counts[i]),
                guessed=guessed,
            )
        )
    return out


def _quiet_open(open_reader: Callable[[], Any]) -> Any:
    """``open_reader()`` with the process's stdout (fd 1) captured while it runs.

    pyedflib's C code prints what it finds wrong with a file ("filesize 93540 !=
    1518*60+2560") to the C stdout, into the output of whatever imports (the CLI's
    report, a pipe). Captured, that text is dropped when the open succeeds and appended
    to the OSError when it fails. fd 1 is the process's: a thread printing meanwhile
    would be captured too.
    """
    failed: OSError
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            return open_reader()
        except OSError as exc:
            failed = exc
        finally:
            try:  # C stdio buffers what it prints to a file or pipe: out before fd 1 goes back
                ctypes.CDLL(None).fflush(None)
            except (OSError, TypeError, AttributeError):  # no C library to ask (Windows)
                pass
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        printed = " ".join(sink.read().decode(errors="replace").split())
    raise OSError(f"{failed} (pyedflib printed: {printed})" if printed else str(failed)) from failed


class EdfSource:
    """An open EDF/EDF+/BDF file: its channels, samples by blocks, annotations, start time.

    ``name`` is what error messages call the file (its URL where it was downloaded).
    """

    def __init__(
        self, path: str | os.PathLike[str], channel_map: ChannelMap | None = None, name: str = ""
    ) -> None:
        pyedflib = require("pyedflib", "edf")
        path = os.fspath(path)
        self.name = name or path
        if not os.path.isfile(path):
            raise SampleFileNotFoundError(f"EDF file not found: {self.name}")
        with open(path, "rb") as f:
            header = f.read(256)
        if len(header) < 256:
            raise SourceFileError(
                f"{self.name} is not a readable EDF/EDF+/BDF file: {len(header)} bytes, "
                "shorter than the 256-byte header"
            )
        reserved = header[192:236]
        if reserved.startswith((b"EDF+D", b"BDF+D")):
            raise SourceFileError(
                f"{self.name} is a discontinuous {reserved[:5].decode()} file; only continuous "
                "EDF/EDF+C/BDF/BDF+C files can be imported"
            )
        try:
            self._reader = _quiet_open(lambda: pyedflib.EdfReader(path))
        except OSError as exc:
            # pyedflib reports unreadable or truncated files as OSError with the reason.
            raise SourceFileError(
                f"{self.name} is not a readable EDF/EDF+/BDF file: {exc}"
            ) from None
        self._legacy_tal = None
        labels = [self._reader.getLabel(i).strip() for i in range(self._reader.signals_in_file)]
        for i, label in enumerate(labels):
            if label in ANNOTATION_LABELS:
                self._legacy_tal = i
        try:
            self._header_seconds, self._tal = self._read_tals(path, header)
            self.channels = read_edf_channels(self._reader, channel_map)
        except SourceFileError as exc:
            self.close()
            raise SourceFileError(str(exc).replace(path, self.name)) from None
        except BaseException:
            self.close()
            raise

    def in_place(self, path: str, channels: list[SourceChannel]) -> tuple[str, list[int]]:
        """``(file_format, header signal numbers)`` of ``channels`` served in place
        ([`EdfFormat`][ondabatches.onda.EdfFormat]) from the file at local ``path``.

        pyedflib numbers an EDF+/BDF+ file's signals without its annotation channels,
        the header with them: each channel's number in the header, its label checked.
        """
        from ..onda._edf import parse_edf_header

        with open(path, "rb") as f:
            first = f.read(256)
            layout = parse_edf_header(first + f.read(256 * int(first[252:256] or 0)), self.name)
        plus = self._reader.signals_in_file < len(layout.labels)
        numbers = layout.data_signals if plus else tuple(range(len(layout.labels)))
        out = []
        for ch in channels:
            i = numbers[ch.index] if ch.index < len(numbers) else -1
            header_label = layout.labels[i] if i >= 0 else ""
            utf8 = header_label.encode("latin-1").decode("utf-8", errors="replace")
            if i < 0 or ch.label.strip() not in (header_label, utf8.strip()):
                raise SourceFileError(
                    f"{self.name}: channel {ch.label!r} (pyedflib's signal {ch.index}) is not "
                    "found in the file's header; it cannot be served in place"
                )
            out.append(i)
        return layout.kind, out

    def read(self, channels: list[SourceChannel], start: int, n: int) -> np.ndarray:
        """The stored (digital) values of ``channels``, samples ``start:start + n``."""
        out = np.empty((len(channels), n), dtype=channels[0].sample_type)
        for row, ch in enumerate(channels):
            block = self._reader.readSignal(ch.index, start=start, n=n, digital=True)
            if len(block) != n:
                raise SourceFileError(
                    f"{self.name}: channel {ch.label!r} gave {len(block)} samples at "
                    f"{start}, expected {n} (truncated file?)"
                )
            out[row] = block
        return out

    def _read_tals(self, path: str, header: bytes) -> tuple[Any, Any]:
        """The first record's time-keeping onset (seconds after the header's start, the
        file's sub-second start) and, for a legacy header with an annotation channel,
        that channel's annotations (None where pyedflib reads them itself)."""
        reader = self._reader
        if self._legacy_tal is None:
            # pyedflib reads the annotations itself; its sub-second start is rounded to
            # 100 ns, the first record's TAL has it exactly.
            try:
                return edf_start_offset(path, self.name), None
            except ValueError as exc:
                raise SourceFileError(str(exc)) from None
        i = self._legacy_tal
        digital = reader.readSignal(i, digital=True)
        is_bdf = header[:1] == b"\xff"
        if is_bdf:
            raw = digital.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        else:
            raw = digital.astype("<i2").tobytes()
        n_records = int(reader.datarecords_in_file)
        per_record = len(raw) // max(n_records, 1)
        records = [raw[k * per_record : (k + 1) * per_record] for k in range(n_records)]
        try:
            return parse_tals(records, self.name)
        except ValueError as exc:
            raise SourceFileError(f"its annotation channel: {exc}") from None

    def annotations(self) -> list[tuple[float, float, str]]:
        """``(onset s, duration s, text)`` of each annotation (duration <= 0: none), the
        onsets counted from the first sample; read from the annotation channel whatever
        the header's reserved field says."""
        if self._tal is not None:
            return [(float(o), -1.0 if d is None else float(d), t) for o, d, t in self._tal]
        onsets, durations, texts = self._reader.readAnnotations()
        return [
            (float(o), float(d), str(t)) for o, d, t in zip(onsets, durations, texts, strict=True)
        ]

    @property
    def start_datetime(self) -> np.datetime64 | None:
        """The first sample's date and time, to the nanosecond (the header's whole
        seconds plus the first record's sub-second start)."""
        try:
            base = self._reader.getStartdatetime().replace(microsecond=0)
        except (ValueError, OSError):
            return None
        return np.datetime64(base, "ns") + np.timedelta64(int(self._header_seconds * 10**9), "ns")

    def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
            self._reader = None
