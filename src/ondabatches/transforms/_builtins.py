"""The built-in transforms: zero-phase filters, normalization, spectrograms (the
augmentations are in `._augment`).

Filters need scipy (the ``transforms`` extra, imported on first use).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from .._errors import BatchSpecError, require
from ._filtfilt import decode_filtfilt_into, sosfiltfilt_rows
from ._transform import Transform, register_transform

__all__ = ["Bandpass", "Highpass", "Lowpass", "Normalize", "Notch", "Spectrogram"]

#: A filter's margin: the samples after which its impulse response's remaining
#: absolute sum is below this fraction of the whole (the window's error from the
#: context left out is then below it, relative to the signal's amplitude).
MARGIN_TAIL = 1e-5


@lru_cache(maxsize=1)
def _scipy_signal() -> Any:
    return require("scipy.signal", "transforms")


def _number(value: Any, what: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BatchSpecError(f"{what} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise BatchSpecError(f"{what} must be > 0, got {value!r}")
    return float(value)


def _probability(p: Any, what: str = "p") -> float:
    p = _number(p, what, positive=False)
    if not 0.0 <= p <= 1.0:
        raise BatchSpecError(f"{what} must be a probability in [0, 1], got {p!r}")
    return p


# -- zero-phase filters ---------------------------------------------------------------


class _Filter(Transform):
    """A zero-phase IIR filter (``sosfiltfilt``) read with enough context that a window
    at any start equals the same filter over the whole recording, sliced."""

    def _design(self, sample_rate: float) -> np.ndarray:
        raise NotImplementedError

    def _edges(self) -> tuple[float, ...]:
        raise NotImplementedError

    def check(self, sample_rate: float, window: int, recording: int, where: str) -> None:
        nyquist = sample_rate / 2
        for edge in self._edges():
            if edge >= nyquist:
                raise BatchSpecError(
                    f"{self!r}: {edge} Hz is at or above the Nyquist frequency of {where} "
                    f"({nyquist} Hz at {sample_rate} Hz); edges must lie in (0, {nyquist})"
                )
        need = _padlen(_sos(self, sample_rate)) + 1
        if recording < need:
            raise BatchSpecError(
                f"{self!r} needs at least {need} samples of a recording; {where} has {recording}"
            )

    def margin(self, sample_rate: float) -> int:
        return _margin(self, sample_rate)

    def _apply_window(self, x, y, rng, sample_rate, cut):
        if type(self).apply is not _Filter.apply or type(self).apply_to is not Transform.apply_to:
            return None  # a subclass that filters otherwise
        out = sosfiltfilt_rows(_sos(self, sample_rate), x, _pad(self, sample_rate), cut)
        return None if out is None else (out, y)

    def _filter_into(
        self, x: np.ndarray, sample_rate: float, cut: tuple[int, int], out: np.ndarray
    ) -> bool:
        """`_apply_window`'s values written into ``out`` (C-ordered rows: a view into
        the batch, no copy); False where the compiled kernel does not run (or ``out``
        is not such rows): nothing was written."""
        sos, pad = _sos(self, sample_rate), _pad(self, sample_rate)
        return sosfiltfilt_rows(sos, x, pad, cut, out) is not None

    def _decode_filter_into(
        self, reads: list, sample_rate: float, cut: tuple[int, int], out: np.ndarray
    ) -> bool:
        """`_filter_into` of windows decoded from their reads, decoded straight into the
        filter's scratch (see `decode_filtfilt_into`: the same bits, or to rounding for
        windows with whole margins); False where the compiled kernel does not run:
        nothing was written."""
        sos, pad = _sos(self, sample_rate), _pad(self, sample_rate)
        return decode_filtfilt_into(sos, pad, reads, cut, out)

    def apply(self, x, y, rng, sample_rate):
        # scipy's sosfiltfilt in float64, its result in x's dtype: compiled where numba
        # runs (the same bits, see `._filtfilt`), else scipy's own.
        sos = _sos(self, sample_rate)
        out = sosfiltfilt_rows(sos, x, _pad(self, sample_rate))
        if out is None:
            out = _scipy_signal().sosfiltfilt(sos, x.astype(np.float64, copy=False), axis=-1)
        return out.astype(x.dtype, copy=False), y


@lru_cache(maxsize=256)
def _sos(f: _Filter, sample_rate: float) -> np.ndarray:
    return f._design(sample_rate)


@lru_cache(maxsize=256)
def _pad(f: _Filter, sample_rate: float) -> int:
    return _padlen(_sos(f, sample_rate))


def _padlen(sos: np.ndarray) -> int:
    # sosfiltfilt's default odd-extension length.
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - zeros)


@lru_cache(maxsize=256)
def _margin(f: _Filter, sample_rate: float) -> int:
    sig = _scipy_signal()
    sos = _sos(f, sample_rate)
    n = max(int(sample_rate * 10), 64)
    while True:
        impulse = np.zeros(n)
        impulse[0] = 1.0
        h = np.abs(sig.sosfilt(sos, impulse))
        tail = np.cumsum(h[::-1])[::-1]
        below = np.flatnonzero(tail <= MARGIN_TAIL * tail[0])
        # The tail is measured within n samples only: it is trusted where the response
        # computed goes on for as long again past it (it decays geometrically, so what
        # lies beyond n is then far below what is measured), else n is doubled.
        if (below.size and below[0] <= n // 2) or n > sample_rate * 3600:
            return int(below[0] if below.size else n) + _padlen(sos)
        n *= 2


def _butter(order: int, edges: Any, btype: str, sample_rate: float) -> np.ndarray:
    return _scipy_signal().butter(order, edges, btype, fs=sample_rate, output="sos")


def _order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 16:
        raise BatchSpecError(f"order must be an integer in [1, 16], got {order!r}")
    return order


@register_transform
class Bandpass(_Filter):
    """Zero-phase Butterworth band-pass between ``low_hz`` and ``high_hz`` (``order``
    of each pass; ``sosfiltfilt`` doubles it)."""

    name = "bandpass"

    def __init__(self, low_hz: float, high_hz: float, order: int = 4):
        self.low_hz = _number(low_hz, "low_hz")
        self.high_hz = _number(high_hz, "high_hz")
        if self.low_hz >= self.high_hz:
            raise BatchSpecError(f"low_hz must be below high_hz, got {low_hz} and {high_hz}")
        self.order = _order(order)

    def params(self):
        return {"low_hz": self.low_hz, "high_hz": self.high_hz, "order": self.order}

    def _edges(self):
        return (self.low_hz, self.high_hz)

    def _design(self, sample_rate):
        return _butter(self.order, (self.low_hz, self.high_hz), "bandpass", sample_rate)


class _Cutoff(_Filter):
    """A Butterworth filter of one cutoff (``btype`` names scipy's filter type)."""

    btype = ""

    def __init__(self, cutoff_hz: float, order: int = 4):
        self.cutoff_hz = _number(cutoff_hz, "cutoff_hz")
        self.order = _order(order)

    def params(self):
        return {"cutoff_hz": self.cutoff_hz, "order": self.order}

    def _edges(self):
        return (self.cutoff_hz,)

    def _design(self, sample_rate):
        return _butter(self.order, self.cutoff_hz, self.btype, sample_rate)


@register_transform
class Highpass(_Cutoff):
    """Zero-phase Butterworth high-pass above ``cutoff_hz``."""

    name = "highpass"
    btype = "highpass"


@register_transform
class Lowpass(_Cutoff):
    """Zero-phase Butterworth low-pass below ``cutoff_hz``."""

    name = "lowpass"
    btype = "lowpass"


@register_transform
class Notch(_Filter):
    """Zero-phase notch (scipy's ``iirnotch``) at ``freq_hz`` with quality ``quality``."""

    name = "notch"

    def __init__(self, freq_hz: float, quality: float = 30.0):
        self.freq_hz = _number(freq_hz, "freq_hz")
        self.quality = _number(quality, "quality")

    def params(self):
        return {"freq_hz": self.freq_hz, "quality": self.quality}

    def _edges(self):
        return (self.freq_hz,)

    def _design(self, sample_rate):
        sig = _scipy_signal()
        b, a = sig.iirnotch(self.freq_hz, self.quality, fs=sample_rate)
        return sig.tf2sos(b, a)


# -- normalization and spectrograms ---------------------------------------------------


@register_transform
class Normalize(Transform):
    """Per-channel standardization: ``method="zscore"``, ``(x - mean) / std``, or
    ``"robust"``, ``(x - median) / IQR``.

    ``scope="window"`` uses the window's own statistics; ``scope="recording"`` those of
    the whole recording, computed once out of core by
    [`recording_statistics`][ondabatches.transforms.recording_statistics] and given as
    ``statistics`` (named in the state's config by their digest). A spread of 0 only
    centres.
    """

    name = "normalize"

    def __init__(self, scope: str = "window", method: str = "robust", statistics: Any = None):
        from ._stats import RecordingStatistics

        if scope not in ("window", "recording"):
            raise BatchSpecError(f"Normalize scope must be 'window' or 'recording', got {scope!r}")
        if method not in ("robust", "zscore"):
            raise BatchSpecError(f"Normalize method must be 'robust' or 'zscore', got {method!r}")
        if scope == "recording":
            if isinstance(statistics, Mapping):
                statistics = RecordingStatistics.from_dict(statistics)
            if not isinstance(statistics, RecordingStatistics):
                raise BatchSpecError(
                    "Normalize(scope='recording') needs statistics=recording_statistics(...)"
                )
        elif statistics is not None:
            raise BatchSpecError("statistics are for scope='recording'")
        self.scope, self.method, self.statistics = scope, method, statistics

    def params(self):
        out = {"scope": self.scope, "method": self.method}
        if self.statistics is not None:
            out["statistics"] = self.statistics.to_dict()
        return out

    def apply(self, x, y, rng, sample_rate):
        if self.scope != "window":
            raise BatchSpecError(
                "Normalize(scope='recording') needs the item: use materialize_batch"
            )
        if self.method == "zscore":
            centre = x.mean(axis=-1, keepdims=True, dtype=np.float64)
            spread = x.std(axis=-1, keepdims=True, dtype=np.float64)
        else:
            q1, centre, q3 = np.percentile(x, (25, 50, 75), axis=-1, keepdims=True)
            spread = q3 - q1
        return _standardized(x, centre, spread), y

    def apply_to(self, x, y, rng, sample_rate, item):
        if self.scope == "window":
            return self.apply(x, y, rng, sample_rate)
        stats = self.statistics.of(item.file_path, f"recording {item.recording}")
        rows = _rows_of(item)
        if self.method == "zscore":
            centre, spread = stats["mean"][rows], stats["std"][rows]
        else:
            centre, spread = stats["median"][rows], stats["q3"][rows] - stats["q1"][rows]
        return _standardized(x, centre, spread), y


def _standardized(x: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    spread = np.where(spread > 0, spread, 1.0)
    return ((x - centre) / spread).astype(x.dtype, copy=False)


def _rows_of(item: Any) -> Any:
    """The rows of the signal's channels that an item's channel selector picks."""
    sel = item.channels
    if sel is None:
        return slice(None)
    if isinstance(sel, (list, tuple)):
        return item.info.channel_indices(list(sel))
    raise BatchSpecError(
        f"Normalize(scope='recording') needs channels by name or index, not {sel!r}"
    )


@register_transform
class Spectrogram(Transform):
    """Per-channel STFT magnitude of each window (a batch transform): ``x`` of shape
    ``(batch, channel, frequency, time)``.

    scipy's ``stft`` with a Hann window of ``window_s`` seconds every ``hop_s`` seconds,
    no boundary extension or padding; ``log=True`` gives ``log(magnitude + 1e-12)``.
    """

    name = "spectrogram"
    stage = "batch"

    def __init__(self, window_s: float, hop_s: float, log: bool = True):
        self.window_s = _number(window_s, "window_s")
        self.hop_s = _number(hop_s, "hop_s")
        if self.hop_s > self.window_s:
            raise BatchSpecError(f"hop_s ({hop_s}) must not exceed window_s ({window_s})")
        if not isinstance(log, bool):
            raise BatchSpecError(f"log must be True or False, got {log!r}")
        self.log = log

    def params(self):
        return {"window_s": self.window_s, "hop_s": self.hop_s, "log": self.log}

    def _lengths(self, sample_rate: float) -> tuple[int, int]:
        return round(self.window_s * sample_rate), max(round(self.hop_s * sample_rate), 1)

    def check(self, sample_rate, window, recording, where):
        n, hop = self._lengths(sample_rate)
        if n < 2 or n > window:
            raise BatchSpecError(
                f"{self!r}: {n} samples per STFT window at {sample_rate} Hz; {where}'s "
                f"windows hold {window} (need 2 to {window})"
            )

    def apply(self, x, y, rng, sample_rate):
        n, hop = self._lengths(sample_rate)
        _, _, z = _scipy_signal().stft(
            x, fs=sample_rate, window="hann", nperseg=n, noverlap=n - hop,
            boundary=None, padded=False, axis=-1,
        )  # fmt: skip
        mag = np.abs(z)
        if self.log:
            mag = np.log(mag + 1e-12)
        return mag.astype(x.dtype, copy=False), y
