"""Every raw format MNE reads (BrainVision, EEGLAB ``.set``, FIF, ...), block by block.

Folder recordings too: EGI ``.mff``, CTF ``.ds``, MEF3 ``.mefd`` (MNE reads it with
``pymef``) through ``mne.io.read_raw``, and NIRx folders through ``read_raw_nirx``.

MNE gives samples in SI units (volts) as float64. The import stores what the file
stored, exactly: formats of integers (``raw.orig_format`` ``"short"``/``"int"``, as
BrainVision int16 or Neuroscan) keep their integers with MNE's per-channel
calibration as the Onda resolution; float formats (``"single"``, as FIF or
BrainVision float32) are stored as float32, checked to lose nothing, and ``"double"``
as float64. MEF3, NEDF and Persyst (reported ``"double"``) keep their integers, Curry
(reported ``"int"``) its float32 values. Voltages are stored in microvolts; fNIRS light
intensities and trigger codes (volts to MNE) in the file's own units.

Needs the optional extra ``mne``, imported on first use.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._errors import MissingDependencyError, SampleFileNotFoundError, SourceFileError, require
from ._channels import (
    GENERIC_SENSOR_TYPE,
    ChannelMap,
    SourceChannel,
    _channel_name,
    _label_sensor_type,
    sensor_type_and_channel,
)
from ._tal import edf_start_offset

__all__ = ["MneSource"]

_SAMPLE_TYPES = {"short": "int16", "int": "int32", "single": "float32", "double": "float64"}
_FIFF_UNIT_V = 107  # mne.io.constants.FIFF.FIFF_UNIT_V
# MNE gives the unit V to fNIRS continuous-wave amplitudes (SNIRF and NIRx store light
# intensities in the device's arbitrary units) and to trigger channels (codes): kept as
# the file holds them, not as volts. mne.io.constants.FIFF.FIFFV_FNIRS_CH, FIFFV_STIM_CH
_NOT_VOLTS = (1100, 3)


class MneSource:
    """An open MNE raw file (``mne.io.read_raw(path, preload=False)``) as an import source.

    Examples
    --------
    >>> import mne, numpy as np, tempfile, os
    >>> info = mne.create_info(["Fp1", "Fp2", "x"], 100.0, ["eeg", "eeg", "misc"])
    >>> raw = mne.io.RawArray(np.zeros((3, 200)), info, verbose=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "a_raw.fif")
    >>> _ = raw.save(path, verbose=False)
    >>> src = MneSource(path)
    >>> [(c.sensor_type, c.channel) for c in src.channels]
    [('eeg', 'fp1'), ('eeg', 'fp2'), ('misc', 'x')]
    >>> src.channels[0].sample_type, src.channels[0].unit, src.channels[0].resolution
    ('float32', 'microvolt', 1000000.0)
    >>> src.close()
    """

    def __init__(
        self, path: str | os.PathLike[str], channel_map: ChannelMap | None = None, name: str = ""
    ) -> None:
        mne = require("mne", "mne")
        path = os.fspath(path)
        self.name = name or path
        self._path = path
        if not os.path.exists(path):
            raise SampleFileNotFoundError(f"file to import not found: {self.name}")
        self._raw = _read_raw(mne, path, self.name)
        raw = self._raw
        fmt = getattr(raw, "orig_format", "double")
        self._sample_type = _stored_type(raw) or _SAMPLE_TYPES.get(fmt, "float64")
        calibration = _edf_family_calibration(raw)
        self._edf_family = calibration is not None
        if calibration is not None:
            _refuse_mixed_rates(raw, self.name)
        if calibration is not None:
            self._sample_type = calibration[2]
        types = raw.get_channel_types()
        self.channels = []
        self._scale = []  # stored value = (data (SI) - shift) / scale
        self._shift = []
        for i, ch in enumerate(raw.info["chs"]):
            volts = ch["unit"] == _FIFF_UNIT_V and ch["kind"] not in _NOT_VOLTS
            to_unit = 1e6 if volts else 1.0
            if calibration is not None:
                cal, shift = float(calibration[0][i]), float(calibration[1][i])
            else:
                # MNE's data = stored value * its calibration (cal * range, or what the
                # reader set in its place: Curry's units): dividing gives back what the
                # file holds (integers, or float32 values exactly), whatever its format.
                cal, shift = float(raw._cals[i]) or 1.0, 0.0
            mapped = channel_map.lookup(ch["ch_name"]) if channel_map is not None else None
            if mapped is not None:
                sensor, channel, guessed = mapped[0], mapped[1], False
            else:
                sensor, channel = types[i], _channel_name(ch["ch_name"]) or f"ch{i}"
                if sensor == GENERIC_SENSOR_TYPE:
                    # MNE gives no type: the label may name one ("ECG", "EEG Fpz-Cz").
                    sensor, channel = sensor_type_and_channel(ch["ch_name"])
                elif sensor == "eeg":
                    # EEGLAB and Persyst call every channel EEG: "ECG", "EOG1" say better.
                    sensor = _label_sensor_type(ch["ch_name"]) or sensor
                guessed = sensor == GENERIC_SENSOR_TYPE
            self._scale.append(cal)
            self._shift.append(shift)
            self.channels.append(
                SourceChannel(
                    index=i,
                    label=ch["ch_name"],
                    sensor_type=sensor,
                    channel=channel,
                    unit="microvolt" if volts else "unknown",
                    sample_rate=float(raw.info["sfreq"]),
                    resolution=cal * to_unit,
                    offset=shift * to_unit,
                    sample_type=self._sample_type,
                    n_samples=int(raw.n_times),
                    guessed=guessed,
                    kind=types[i],
                )
            )

    def read(self, channels: list[SourceChannel], start: int, n: int) -> np.ndarray:
        picks = [ch.index for ch in channels]
        # MNE's NEDF reader (1.13) reads too few of the file's 5-sample blocks for a
        # window that starts inside one block and ends past the next one (an
        # AssertionError): the window is read from its first block's start.
        lo = start - start % 5 if type(self._raw).__name__ == "RawNedf" else start
        with _kept_quiet(io.StringIO()):  # as in _read_raw
            data = self._raw.get_data(picks=picks, start=lo, stop=start + n)[:, start - lo :]
        shift = np.array([self._shift[i] for i in picks])[:, None]
        scaled = (data - shift) / np.array([self._scale[i] for i in picks])[:, None]
        dtype = np.dtype(self._sample_type)
        if dtype.kind == "i":
            out = np.rint(scaled)
            off = np.abs(scaled - out) > 1e-6 * np.maximum(1.0, np.abs(scaled))
            bad = off | ~np.isfinite(scaled)  # NaN (a gap) is no integer either
        else:
            out = scaled.astype(dtype)
            bad = np.abs(out - scaled) > np.finfo(dtype).eps * np.abs(scaled)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise SourceFileError(
                f"{self.name}: channel {channels[row].label!r} sample {start + col} is "
                f"{float(scaled[row, col])!r} in stored units, not exactly a {self._sample_type} "
                f"({getattr(self._raw, 'orig_format', '?')} file): storing it would lose precision"
            )
        return out.astype(dtype)

    def annotations(self) -> list[tuple[float, float, str]]:
        ann = self._raw.annotations
        # Onsets count from orig_time (the measurement date) when it is set, from the
        # first sample otherwise; ours count from the first sample.
        shift = self._raw.first_time if ann.orig_time is not None else 0.0
        return [
            (float(o) - shift, float(d), str(t))
            for o, d, t in zip(ann.onset, ann.duration, ann.description, strict=True)
        ]

    @property
    def start_datetime(self) -> np.datetime64 | None:
        date: Any = self._raw.info.get("meas_date")
        if date is None:
            return None
        if type(self._raw).__name__ == "RawNSX":
            # MNE (1.13) puts an NSx header's milliseconds in the microseconds.
            date = date.replace(microsecond=1000 * _nsx_milliseconds(self._path, self.name))
        start = date + dt.timedelta(seconds=self._raw.first_time)
        if start.tzinfo:
            start = start.astimezone(dt.timezone.utc).replace(tzinfo=None)
        out = np.datetime64(start, "ns")
        if self._edf_family and self._path.lower().endswith((".edf", ".bdf")):
            # MNE keeps the header's whole seconds: the sub-second start is the first
            # record's time-keeping TAL (EDF+/BDF+).
            try:
                offset = edf_start_offset(self._path, self.name)
            except (OSError, ValueError) as exc:
                raise SourceFileError(f"cannot read the start time of {self.name}: {exc}") from None
            out = np.datetime64(start.replace(microsecond=0), "ns") + np.timedelta64(
                int(offset * 10**9), "ns"
            )
        return out

    def close(self) -> None:
        raw = getattr(self, "_raw", None)
        if raw is not None:
            raw.close()
            self._raw = None


@contextlib.contextmanager
def _kept_quiet(printed: io.StringIO) -> Iterator[None]:
    """Readers' prints go to ``printed``, and the root logger is left as it was: Curry's
    reader (curryreader) calls ``logging.basicConfig`` on every read, which would give
    the importing program a root handler and level it never asked for."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def _read_raw(mne: Any, path: str, name: str) -> Any:
    """``mne.io.read_raw`` (which picks the reader by suffix, folders included: EGI
    ``.mff``, CTF ``.ds``, MEF3 ``.mefd``); ``read_raw_nirx`` for a NIRx folder."""
    folder = os.path.isdir(path)
    if folder and path.rstrip("/\\").lower().endswith(".mefd"):
        try:
            import pymef  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{name} is a MEF3 recording: MNE reads it with pymef, which is not "
                "installed; install it with: pip install pymef"
            ) from None
    # Readers print what they notice (mffpy: "categories.xml not found ..."): not into the
    # output of whatever imports (the CLI's report, a pipe); into the error if it fails.
    printed = io.StringIO()
    try:
        with _kept_quiet(printed):
            if folder and not path.rstrip("/\\").lower().endswith((".mff", ".ds", ".mefd")):
                return mne.io.read_raw_nirx(path, preload=False, verbose="error")
            return mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many kinds for a file it cannot read
        what = "folder" if folder else "file"
        said = " ".join(printed.getvalue().split())
        said = f" (the reader printed: {said})" if said else ""
        raise SourceFileError(f"{name} is not a {what} MNE can read: {exc}{said}") from None


# NSx 2.2+ basic header: file id (8 bytes), version (2), header bytes (4), label (16),
# comment (256), period (4), clock (4), then the time origin as 8 uint16 (year, month,
# weekday, day, hour, minute, second, millisecond).
_NSX_MILLISECOND_AT = 8 + 2 + 4 + 16 + 256 + 4 + 4 + 7 * 2


def _nsx_milliseconds(path: str, name: str) -> int:
    """The milliseconds of an NSx file's time origin, from its header."""
    try:
        with open(path, "rb") as f:
            f.seek(_NSX_MILLISECOND_AT)
            field = f.read(2)
    except OSError as exc:
        raise SourceFileError(f"cannot read the start time of {name}: {exc}") from None
    if len(field) != 2:
        raise SourceFileError(f"{name}: the NSx header ends before its start time")
    return int.from_bytes(field, "little")


def _stored_type(raw: Any) -> str | None:
    """What the file holds, for the readers whose ``orig_format`` says otherwise: MEF3
    (int32, through pymef), NEDF (24-bit) and Persyst (int16 or int32, its ``.lay``'s
    DataType) say "double"; Curry says "int" for its float32 samples (float64 for its
    ASCII ones)."""
    kind = type(raw).__name__
    if kind in ("RawMEF", "RawNedf"):  # NEDF: 24-bit samples, 32-bit trigger codes
        return "int32"
    if kind == "RawPersyst":
        dtype = np.dtype(raw._raw_extras[0]["dtype"])
        return f"int{8 * dtype.itemsize}" if dtype.kind == "i" else None
    if kind == "RawCurry":
        return "float64" if raw._raw_extras[0].get("is_ascii") else "float32"
    return None


def _edf_family_calibration(raw: Any) -> tuple[np.ndarray, np.ndarray, str] | None:
    """``(scale, shift, sample type)`` per channel of an EDF, BDF or GDF raw, in SI units.

    MNE's readers of these formats keep ``cal`` 1 in ``raw.info["chs"]`` and apply the
    file's gains and offsets themselves: data = (digital * cal + offset) * unit gain,
    with those three in the reader's extras. That is the calibration MNE actually
    applies, so the stored integers come back as ``(data - shift) / scale`` with
    ``scale = cal * gain`` and ``shift = offset * gain`` (and are checked to be
    integers when read). None for other readers, whose ``cal`` is the real one.
    """
    extras = getattr(raw, "_raw_extras", None)
    if not extras or not all(k in extras[0] for k in ("cal", "offsets", "units", "dtype_np")):
        return None
    e = extras[0]
    gains = np.asarray(e["units"], dtype=np.float64)
    scale = np.asarray(e["cal"], dtype=np.float64) * gains
    shift = np.asarray(e["offsets"], dtype=np.float64) * gains
    if len(scale) != len(raw.ch_names):
        return None
    dtype = np.dtype(e["dtype_np"])
    if dtype.kind == "f":
        sample_type = "float64" if dtype.itemsize == 8 else "float32"
    elif dtype.kind == "i" and dtype.itemsize == 2:
        sample_type = "int16"  # EDF
    else:
        sample_type = "int32"  # BDF's 24-bit samples, GDF's other integers: room for any
    return scale, shift, sample_type


def _refuse_mixed_rates(raw: Any, name: str) -> None:
    """MNE reads an EDF/BDF/GDF whose signals have different rates at the highest one,
    interpolating the others: their stored values would be lost."""
    extras = raw._raw_extras[0]
    n_samps = extras.get("n_samps")
    record = extras.get("record_length")
    if n_samps is None or record is None:
        return
    sel = extras.get("sel", range(len(n_samps)))
    tal = set(np.atleast_1d(extras.get("tal_idx") or []).tolist())
    counts = {int(n_samps[i]) for i in sel if i not in tal}
    if len(counts) > 1:
        seconds = float(np.atleast_1d(record)[0])
        rates = sorted(c / seconds for c in counts)
        hint = (
            "import it with the native reader (reader='edf', --reader edf), which keeps each rate"
            if name.lower().endswith((".edf", ".bdf"))
            else "no reader here keeps mixed rates of this format"
        )
        raise SourceFileError(
            f"{name}: its signals are sampled at {len(rates)} rates ({rates} Hz) and MNE "
            f"would read them all at {float(raw.info['sfreq'])} Hz, interpolating the "
            f"others (their stored values lost): {hint}"
        )
