"""One row of an ``onda.signal@2`` table as a small frozen value."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._samples import SamplesInfo
from ._timespan import TimeSpan, n_samples

__all__ = ["Signal"]

_INFO_FIELDS = tuple(SamplesInfo.__dataclass_fields__)
_SIGNAL_FIELDS = ("recording", "file_path", "file_format", "span", "sensor_label")


def _as_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return uuid.UUID(bytes=bytes(value))
    return uuid.UUID(str(value))


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal: where its samples are stored, their span and how to interpret them.

    ``file_path`` is a local path or any fsspec URL (``s3://bucket/key``); tables read
    with [`read_signals`][ondabatches.onda.read_signals] hold resolved paths. ``span``
    is relative to the start of the recording. Columns beyond ``onda.signal@2`` live in
    ``extra``.

    Examples
    --------
    >>> import uuid
    >>> info = SamplesInfo("eeg", ("c3", "c4"), "microvolt", 0.5, 0.0, "int16", 128.0)
    >>> sig = Signal(uuid.UUID(int=1), "/data/a.lpcm", "lpcm", TimeSpan(0, 10**10), "eeg", info)
    >>> sig.n_samples
    1280
    """

    recording: uuid.UUID
    file_path: str
    file_format: str
    span: TimeSpan
    sensor_label: str
    info: SamplesInfo
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recording", _as_uuid(self.recording))
        object.__setattr__(self, "span", TimeSpan.from_value(self.span))
        object.__setattr__(self, "file_path", str(self.file_path))

    @property
    def n_samples(self) -> int:
        """How many samples the sample file holds per channel."""
        return n_samples(self.span.duration, self.info.sample_rate)

    @property
    def channels(self) -> tuple[str, ...]:
        return self.info.channels

    @property
    def sample_rate(self) -> float:
        return self.info.sample_rate

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Signal:
        """Build from a mapping with the ``onda.signal@2`` column names (extras kept)."""
        info = SamplesInfo(**{k: row[k] for k in _INFO_FIELDS})
        extra = {k: v for k, v in row.items() if k not in _INFO_FIELDS and k not in _SIGNAL_FIELDS}
        return cls(
            recording=row["recording"],
            file_path=row["file_path"],
            file_format=row["file_format"],
            span=row["span"],
            sensor_label=row["sensor_label"],
            info=info,
            extra=extra,
        )

    def to_row(self) -> dict[str, Any]:
        """The ``onda.signal@2`` columns (plus extras) as a flat dict."""
        row: dict[str, Any] = {
            "recording": self.recording,
            "file_path": self.file_path,
            "file_format": self.file_format,
            "span": self.span,
            "sensor_label": self.sensor_label,
        }
        row.update(self.info.to_dict())
        row.update(self.extra)
        return row
