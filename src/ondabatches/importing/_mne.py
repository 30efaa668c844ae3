"""Every raw format MNE reads (BrainVision, EEGLAB ``.set``, FIF, ...), block by block.

MNE gives samples in SI units (volts) as float64. The import stores what the file
stored, exactly: formats of integers (``raw.orig_format`` ``"short"``/``"int"``, as
BrainVision int16 or Neuroscan) keep their integers with MNE's per-channel
calibration as the Onda resolution; float formats (``"single"``, as FIF or
BrainVision float32) are stored as float32, checked to lose nothing, and ``"double"``
as float64. Voltages are stored in microvolts.

Needs the optional extra ``mne``, imported on first use.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import numpy as np

from .._errors import SampleFileNotFoundError, SourceFileError, require
from ._channels import GENERIC_SENSOR_TYPE, ChannelMap, SourceChannel, _channel_name

__all__ = ["MneSource"]

_SAMPLE_TYPES = {"short": "int16", "int": "int32", "single": "float32", "double": "float64"}
_FIFF_UNIT_V = 107  # mne.io.constants.FIFF.FIFF_UNIT_V


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
        if not os.path.isfile(path):
            raise SampleFileNotFoundError(f"file to import not found: {self.name}")
        try:
            self._raw = mne.io.read_raw(path, preload=False, verbose="error")
        except Exception as exc:  # MNE raises many kinds for a file it cannot read
            raise SourceFileError(f"{self.name} is not a file MNE can read: {exc}") from None
        raw = self._raw
        fmt = getattr(raw, "orig_format", "double")
        self._sample_type = _SAMPLE_TYPES.get(fmt, "float64")
        types = raw.get_channel_types()
        self.channels = []
        self._scale = []  # stored value = data (SI) / scale
        for i, ch in enumerate(raw.info["chs"]):
            volts = ch["unit"] == _FIFF_UNIT_V
            to_unit = 1e6 if volts else 1.0
            # MNE's data = stored value * cal * range: dividing gives back what the file
            # holds (integers, or float32 values exactly), whatever its format.
            cal = float(ch["cal"]) * float(ch["range"]) or 1.0
            mapped = channel_map.lookup(ch["ch_name"]) if channel_map is not None else None
            if mapped is not None:
                sensor, channel, guessed = mapped[0], mapped[1], False
            else:
                sensor, channel = types[i], _channel_name(ch["ch_name"]) or f"ch{i}"
                guessed = sensor == GENERIC_SENSOR_TYPE
            self._scale.append(cal)
            self.channels.append(
                SourceChannel(
                    index=i,
                    label=ch["ch_name"],
                    sensor_type=sensor,
                    channel=channel,
                    unit="microvolt" if volts else "unknown",
                    sample_rate=float(raw.info["sfreq"]),
                    resolution=cal * to_unit,
                    offset=0.0,
                    sample_type=self._sample_type,
                    n_samples=int(raw.n_times),
                    guessed=guessed,
                )
            )

    def read(self, channels: list[SourceChannel], start: int, n: int) -> np.ndarray:
        picks = [ch.index for ch in channels]
        data = self._raw.get_data(picks=picks, start=start, stop=start + n)
        scaled = data / np.array([self._scale[i] for i in picks])[:, None]
        dtype = np.dtype(self._sample_type)
        if dtype.kind == "i":
            out = np.rint(scaled)
            bad = np.abs(scaled - out) > 1e-6 * np.maximum(1.0, np.abs(scaled))
        else:
            out = scaled.astype(dtype)
            bad = np.abs(out - scaled) > np.finfo(dtype).eps * np.abs(scaled)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise SourceFileError(
                f"{self.name}: channel {channels[row].label!r} sample {start + col} is "
                f"{scaled[row, col]!r} in stored units, not exactly a {self._sample_type} "
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
    def start_datetime(self) -> dt.datetime | None:
        date: Any = self._raw.info.get("meas_date")
        if date is None:
            return None
        start = date + dt.timedelta(seconds=self._raw.first_time)
        return start.astimezone(dt.timezone.utc).replace(tzinfo=None) if start.tzinfo else start

    def close(self) -> None:
        raw = getattr(self, "_raw", None)
        if raw is not None:
            raw.close()
            self._raw = None
