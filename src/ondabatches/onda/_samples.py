"""Sample metadata (``onda.samples-info@2``), sample matrices, and Onda's encode/decode rules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._errors import (
    ArgumentError,
    OutOfRangeError,
    SchemaError,
    SpanError,
    UnknownFormatError,
    UnknownNameError,
)
from ._timespan import TimeSpan, n_samples, sample_range, time_from_index, window_sample_range

__all__ = [
    "SAMPLE_TYPES",
    "ChannelSelection",
    "Samples",
    "SamplesInfo",
    "decode",
    "encode",
    "sample_dtype",
]

#: The ``sample_type`` strings of Onda and the little-endian numpy dtype of each.
SAMPLE_TYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64",
        "float32", "float64",
    )
}  # fmt: skip

ChannelSelection = None | str | int | slice | Sequence[str | int]


def sample_dtype(sample_type: str, *, where: str = "") -> np.dtype:
    """The little-endian numpy dtype of an Onda ``sample_type`` string."""
    try:
        return SAMPLE_TYPES[sample_type]
    except (KeyError, TypeError):
        location = f" in {where}" if where else ""
        raise UnknownFormatError(
            f"unknown sample_type {sample_type!r}{location}; expected one of {sorted(SAMPLE_TYPES)}"
        ) from None


@dataclass(frozen=True, slots=True)
class SamplesInfo:
    """What is needed to interpret a sample matrix (Onda's ``onda.samples-info@2``).

    Examples
    --------
    >>> info = SamplesInfo(sensor_type="eeg", channels=("c3", "c4"), sample_unit="microvolt",
    ...                    sample_resolution_in_unit=0.25, sample_offset_in_unit=0.0,
    ...                    sample_type="int16", sample_rate=128.0)
    >>> info.dtype.str, info.bytes_per_sample
    ('<i2', 4)
    """

    sensor_type: str
    channels: tuple[str, ...]
    sample_unit: str
    sample_resolution_in_unit: float
    sample_offset_in_unit: float
    sample_type: str
    sample_rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        object.__setattr__(self, "sample_resolution_in_unit", float(self.sample_resolution_in_unit))
        object.__setattr__(self, "sample_offset_in_unit", float(self.sample_offset_in_unit))
        object.__setattr__(self, "sample_rate", float(self.sample_rate))
        sample_dtype(self.sample_type, where="SamplesInfo")
        if not self.channels:
            raise SchemaError("SamplesInfo needs at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise SchemaError(f"SamplesInfo channels must be unique, got {list(self.channels)}")
        if not (math.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise SchemaError(f"sample_rate must be positive and finite, got {self.sample_rate}")
        if not (
            math.isfinite(self.sample_resolution_in_unit) and self.sample_resolution_in_unit != 0
        ):
            raise SchemaError(
                f"sample_resolution_in_unit must be finite and non-zero, "
                f"got {self.sample_resolution_in_unit}"
            )
        if not math.isfinite(self.sample_offset_in_unit):
            raise SchemaError(
                f"sample_offset_in_unit must be finite, got {self.sample_offset_in_unit}"
            )

    @property
    def dtype(self) -> np.dtype:
        """The little-endian numpy dtype of the encoded samples."""
        return SAMPLE_TYPES[self.sample_type]

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one multichannel sample (all channels at one time)."""
        return self.dtype.itemsize * len(self.channels)

    @property
    def is_identity_encoding(self) -> bool:
        return self.sample_resolution_in_unit == 1.0 and self.sample_offset_in_unit == 0.0

    def channel_indices(self, channels: ChannelSelection) -> list[int] | slice:
        """0-based indices of ``channels`` (names or indices); ``None`` means all."""
        if channels is None:
            return slice(None)
        if isinstance(channels, slice):
            return channels
        if isinstance(channels, (str, int, np.integer)):
            channels = [channels]
        out = []
        for ch in channels:
            if isinstance(ch, str):
                try:
                    out.append(self.channels.index(ch))
                except ValueError:
                    raise UnknownNameError(
                        f"channel {ch!r} not found; the signal has channels {list(self.channels)}"
                    ) from None
            else:
                i = int(ch)
                if not -len(self.channels) <= i < len(self.channels):
                    raise OutOfRangeError(
                        f"channel index {i} out of range for {len(self.channels)} channels"
                    )
                out.append(i % len(self.channels))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensor_type": self.sensor_type,
            "channels": list(self.channels),
            "sample_unit": self.sample_unit,
            "sample_resolution_in_unit": self.sample_resolution_in_unit,
            "sample_offset_in_unit": self.sample_offset_in_unit,
            "sample_type": self.sample_type,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplesInfo:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _int_bounds(dtype: np.dtype) -> tuple[int, int]:
    ii = np.iinfo(dtype)
    return int(ii.min), int(ii.max)


def encode(data: np.ndarray, info: SamplesInfo) -> np.ndarray:
    """Encode values in ``info.sample_unit`` to ``info.sample_type``.

    ``(x - offset) / resolution``, clamped to the type's range, then rounded to the
    nearest integer (ties to even) for integer types. NaN is refused for integer types.

    >>> info = SamplesInfo("x", ("a",), "u", 0.5, 1.0, "int8", 1.0)
    >>> encode(np.array([[1.0, 2.25, 1000.0]]), info)
    array([[  0,   2, 127]], dtype=int8)
    """
    dtype = info.dtype
    data = np.asarray(data)
    if info.is_identity_encoding and data.dtype == dtype:
        return data.copy()
    x = data.astype(np.float64, copy=True)
    if not info.is_identity_encoding:
        x -= info.sample_offset_in_unit
        x /= info.sample_resolution_in_unit
    if dtype.kind == "f":
        return x.astype(dtype)
    if np.isnan(x).any():
        raise ArgumentError(f"cannot encode NaN to {info.sample_type}")
    lo, hi = _int_bounds(dtype)
    np.rint(x, out=x)
    # float64 cannot hold 2**63-1 exactly; clamp via a comparison so int64/uint64 stay exact.
    out = np.empty(x.shape, dtype=dtype)
    too_low, too_high = x <= lo, x >= hi
    np.copyto(out, x, casting="unsafe", where=~(too_low | too_high))
    out[too_low] = lo
    out[too_high] = hi
    return out


def decode(data: np.ndarray, info: SamplesInfo, dtype: Any = np.float64) -> np.ndarray:
    """Decode ``data`` (encoded as ``info.sample_type``) to ``dtype``: ``x * resolution + offset``.

    Even when the encoding is the identity, the result has the dtype asked for.
    """
    dtype = np.dtype(dtype)
    if info.is_identity_encoding:
        return np.asarray(data).astype(dtype, copy=True)
    out = np.asarray(data).astype(dtype, copy=True)
    out *= dtype.type(info.sample_resolution_in_unit)
    if info.sample_offset_in_unit != 0.0:
        out += dtype.type(info.sample_offset_in_unit)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Samples:
    """A channels x time matrix of samples with its [`SamplesInfo`][ondabatches.onda.SamplesInfo].

    ``data`` is encoded (``info.sample_type``) when ``encoded`` is true, else decoded
    values in ``info.sample_unit``.

    Examples
    --------
    >>> info = SamplesInfo("eeg", ("a", "b"), "uV", 1.0, 0.0, "int16", 10.0)
    >>> s = Samples(np.arange(40, dtype=np.int16).reshape(2, 20), info, encoded=True)
    >>> s.select(channels="b", span=TimeSpan(0, 500_000_000)).data
    array([[20, 21, 22, 23, 24]], dtype=int16)
    """

    data: np.ndarray
    info: SamplesInfo
    encoded: bool = False

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ArgumentError(
                f"Samples data must be channels x time (2-D), got shape {self.data.shape}"
            )
        if self.data.shape[0] != self.info.n_channels:
            raise ArgumentError(
                f"Samples data has {self.data.shape[0]} rows but info names "
                f"{self.info.n_channels} channels {list(self.info.channels)}"
            )
        if self.encoded and self.data.dtype != self.info.dtype:
            raise ArgumentError(
                f"encoded Samples must have dtype {self.info.sample_type}, got {self.data.dtype}"
            )

    @property
    def n_samples(self) -> int:
        return self.data.shape[1]

    @property
    def duration(self) -> int:
        """Duration in nanoseconds covered by the samples."""
        return time_from_index(self.n_samples, self.info.sample_rate)

    def encode(self) -> Samples:
        if self.encoded:
            return self
        return Samples(encode(self.data, self.info), self.info, encoded=True)

    def decode(self, dtype: Any = np.float64) -> Samples:
        if not self.encoded:
            return Samples(self.data.astype(dtype, copy=False), self.info, encoded=False)
        return Samples(decode(self.data, self.info, dtype), self.info, encoded=False)

    def select(self, channels: ChannelSelection = None, span: TimeSpan | None = None) -> Samples:
        """Samples of some channels (names or indices) and/or of a time span.

        ``span`` is relative to the first sample and uses the exact sample range of the
        span (``sample_range``); it must lie inside the samples.
        """
        idx = self.info.channel_indices(channels)
        info = self.info
        if not isinstance(idx, slice):
            info = replace(info, channels=tuple(info.channels[i] for i in idx))
        data = self.data[idx]
        if span is not None:
            rows = sample_range(span, self.info.sample_rate)
            if rows.stop > self.n_samples:
                raise SpanError(
                    f"span {span} needs samples {rows.start}..{rows.stop - 1} but only "
                    f"{self.n_samples} samples are present"
                )
            data = data[:, rows.start : rows.stop]
        return Samples(data, info, self.encoded)

    def window(self, span: TimeSpan) -> Samples:
        """Exactly ``floor(duration * rate)`` samples starting at ``floor(start * rate)``."""
        rows = window_sample_range(span, self.info.sample_rate)
        if rows.stop > self.n_samples:
            raise SpanError(
                f"window {span} needs samples {rows.start}..{rows.stop - 1} but only "
                f"{self.n_samples} samples are present"
            )
        return Samples(self.data[:, rows.start : rows.stop], self.info, self.encoded)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return (
            self.info == other.info
            and self.encoded == other.encoded
            and self.data.dtype == other.data.dtype
            and np.array_equal(self.data, other.data, equal_nan=self.data.dtype.kind == "f")
        )

    __hash__ = None  # type: ignore[assignment]


def expected_samples(span: TimeSpan, sample_rate: float) -> int:
    """Number of samples a signal of ``span`` holds (``n_samples`` of its duration)."""
    return n_samples(span.duration, sample_rate)
