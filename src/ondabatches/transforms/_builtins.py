"""The built-in transforms: zero-phase filters, normalization, spectrograms, augmentations.

Filters need scipy (the ``transforms`` extra, imported on first use).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import numpy as np

from .._errors import BatchSpecError, require
from ._draws import BatchDraws, KeyedDraws
from ._filtfilt import sosfiltfilt_rows
from ._folds import Fold, Folds
from ._transform import Transform, register_transform

__all__ = [
    "AmplitudeScale",
    "Bandpass",
    "ChannelDropout",
    "GaussianNoise",
    "Highpass",
    "Lowpass",
    "Mixup",
    "Normalize",
    "Notch",
    "SignFlip",
    "Spectrogram",
    "TimeReverse",
    "TimeShift",
]

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


# -- augmentations --------------------------------------------------------------------


class _Augmentation(Transform):
    """Applied with probability ``p``: the coin first, always, so that the draws that
    follow depend only on its outcome. In a pipeline ``rng`` is a
    [`KeyedDraws`][ondabatches.transforms.KeyedDraws] (the coin and the few numbers
    drawn after it hashed from the key, a generator made only for bulk draws); called
    directly with a generator, the coin is its first draw."""

    random = True
    keyed_draws = True

    def _apply(self, x, y, rng, sample_rate):
        raise NotImplementedError

    def apply(self, x, y, rng, sample_rate):
        if _coin(rng) >= self.p:
            return x, y
        return self._apply(x, y, rng, sample_rate)

    def fold(self, rng, fold):
        if type(self)._fold is _Augmentation._fold:
            return False
        if _coin(rng) >= self.p:  # the same coin as apply's
            return True
        return self._fold(rng, fold)

    def _fold(self, rng, fold: Fold) -> bool:
        return False

    def _fold_items(self, draws: BatchDraws, position: int, folds: Folds) -> bool:
        if not _folds_alike(type(self)):
            return False  # a subclass folds otherwise: item by item
        if type(self)._fold is _Augmentation._fold:
            folds.active[:] = False  # as fold: it does not fold, for any item
            return True
        n = len(folds.gain)
        applies = folds.active & (draws.uniforms(position, 1, n)[:, 0] < self.p)
        self._fold_many(draws, position, folds, applies)
        folds.done += folds.active
        return True

    def _fold_many(self, draws: BatchDraws, position: int, folds: Folds, applies) -> None:
        """``_fold`` of the windows of mask ``applies`` (their coins came up)."""
        raise NotImplementedError


@cache
def _folds_alike(cls: type) -> bool:
    """Whether ``cls`` folds item by item (``fold``, ``_fold``) and for many items
    (``_fold_many``) with the code of one class."""

    def owner(name: str) -> type:
        return next(c for c in cls.__mro__ if name in c.__dict__)

    return (
        owner("fold") is _Augmentation
        and owner("_fold_items") is _Augmentation
        and owner("_fold") is owner("_fold_many")
    ) or (owner("_fold") is _Augmentation and owner("fold") is _Augmentation)


def _coin(rng: np.random.Generator | KeyedDraws) -> float:
    return rng.coin() if isinstance(rng, KeyedDraws) else rng.random()


def _uniforms(rng: np.random.Generator | KeyedDraws, count: int) -> np.ndarray:
    """``count`` uniforms in [0, 1) after the coin: the key's own (see `KeyedDraws`)
    or the generator's next ones."""
    return rng.uniforms(count) if isinstance(rng, KeyedDraws) else rng.random(count)


def _generator(rng: np.random.Generator | KeyedDraws) -> np.random.Generator:
    return rng.generator if isinstance(rng, KeyedDraws) else rng


@register_transform
class AmplitudeScale(_Augmentation):
    """With probability ``p``, multiply the window by a factor drawn uniformly in
    ``[low, high)``."""

    name = "amplitude_scale"
    _rows_prefix = True

    def __init__(self, low: float = 0.5, high: float = 2.0, p: float = 0.5):
        self.low, self.high = _number(low, "low"), _number(high, "high")
        if self.low > self.high:
            raise BatchSpecError(f"low must not exceed high, got {low} and {high}")
        self.p = _probability(p)

    def params(self):
        return {"low": self.low, "high": self.high, "p": self.p}

    def _factor(self, rng: np.random.Generator | KeyedDraws) -> float:
        if isinstance(rng, KeyedDraws):
            return float(self._factors(rng.uniforms(1))[0])
        return rng.uniform(self.low, self.high)

    def _factors(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * u

    def _apply(self, x, y, rng, sample_rate):
        x *= x.dtype.type(self._factor(rng))
        return x, y

    def _fold(self, rng, fold):
        if fold.scaled:  # (x * a) * b is not x * (a * b): one factor per fold
            return False
        fold.gain *= type(fold.gain)(self._factor(rng))
        fold.scaled = True  # a zeroed row stays the same zero (the factor is > 0)
        return True

    def _fold_many(self, draws, position, folds, applies):
        clash = applies & folds.scaled  # these stop folding here, as _fold says
        folds.active &= ~clash
        ok = applies & ~clash
        factors = self._factors(draws.uniforms(position, 2, len(applies))[:, 1])
        folds.gain[ok] *= factors[ok].astype(folds.gain.dtype)
        folds.scaled |= ok


@register_transform
class SignFlip(_Augmentation):
    """With probability ``p``, negate the window."""

    name = "sign_flip"
    _rows_prefix = True

    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def params(self):
        return {"p": self.p}

    def _apply(self, x, y, rng, sample_rate):
        np.negative(x, out=x)
        return x, y

    def _fold(self, rng, fold):
        fold.negate()
        return True

    def _fold_many(self, draws, position, folds, applies):
        folds.negate(applies)


@register_transform
class TimeReverse(_Augmentation):
    """With probability ``p``, reverse the window in time, and its per-epoch labels
    with it (the label of the window's last epoch becomes the first)."""

    name = "time_reverse"
    _rows_prefix = True
    moves_time = True

    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def params(self):
        return {"p": self.p}

    def _apply(self, x, y, rng, sample_rate):
        return np.ascontiguousarray(x[..., ::-1]), np.ascontiguousarray(np.asarray(y)[..., ::-1])

    def _fold(self, rng, fold):
        fold.reverse = not fold.reverse
        return True

    def _fold_many(self, draws, position, folds, applies):
        folds.reverse ^= applies


@register_transform
class ChannelDropout(_Augmentation):
    """With probability ``p``, zero each channel with probability ``p_channel``."""

    name = "channel_dropout"
    _rows_prefix = True

    def __init__(self, p_channel: float = 0.2, p: float = 0.5):
        self.p_channel = _probability(p_channel, "p_channel")
        self.p = _probability(p)

    def params(self):
        return {"p_channel": self.p_channel, "p": self.p}

    def _apply(self, x, y, rng, sample_rate):
        drop = _uniforms(rng, x.shape[0]) < self.p_channel
        x[drop] = 0
        return x, y

    def _fold(self, rng, fold):
        fold.drop(_uniforms(rng, fold.rows) < self.p_channel)
        return True

    def _fold_many(self, draws, position, folds, applies):
        u = draws.uniforms(position, folds.rows + 1, len(applies))[:, 1:]
        folds.drop((u < self.p_channel) & applies[:, None])


@register_transform
class GaussianNoise(_Augmentation):
    """With probability ``p``, add white Gaussian noise of standard deviation ``std``
    (in the signal's unit)."""

    name = "gaussian_noise"
    _rows_prefix = True

    def __init__(self, std: float, p: float = 0.5):
        self.std = _number(std, "std")
        self.p = _probability(p)

    def params(self):
        return {"std": self.std, "p": self.p}

    def _apply(self, x, y, rng, sample_rate):
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        noise = _generator(rng).standard_normal(x.shape, dtype=dtype)
        noise *= dtype(self.std)
        x += noise
        return x, y


@register_transform
class Mixup(Transform):
    """Mixup (a batch transform): ``x = lam * x + (1 - lam) * x[perm]`` with ``lam`` drawn
    from Beta(``alpha``, ``alpha``) once per batch and ``perm`` a random permutation.

    The target becomes a dict ``{"y_a": y, "y_b": y[perm], "lam": lam per item}``:
    the loss is ``lam * loss(y_a) + (1 - lam) * loss(y_b)``.
    """

    name = "mixup"
    stage = "batch"
    random = True
    needs_array_y = True

    def __init__(self, alpha: float = 0.4):
        self.alpha = _number(alpha, "alpha")

    def params(self):
        return {"alpha": self.alpha}

    def apply(self, x, y, rng, sample_rate):
        lam = rng.beta(self.alpha, self.alpha)
        perm = rng.permutation(x.shape[0])
        mixed = (lam * x + (1.0 - lam) * x[perm]).astype(x.dtype, copy=False)
        y = np.asarray(y)
        return mixed, {"y_a": y, "y_b": y[perm], "lam": np.full(x.shape[0], lam, np.float32)}


@register_transform
class TimeShift(_Augmentation):
    """With probability ``p``, move the window by up to ``max_s`` seconds either way
    (uniformly, whole samples), reading the moved window from the recording: no
    wrap-around, no zero fill. Near a recording's edges the move is clipped to the
    samples there are.

    The per-epoch labels stay the unmoved window's: a move is at most ``max_s``, so keep
    it small against the label epoch (a 30 s epoch moved by 1 s keeps 97% of its
    samples). It reads ``max_s`` of context each side, like a filter, so it comes first
    in a pipeline with the filters.
    """

    name = "time_shift"
    _rows_prefix = True
    moves_window = True

    def __init__(self, max_s: float, p: float = 0.5):
        self.max_s = _number(max_s, "max_s")
        self.p = _probability(p)

    def params(self):
        return {"max_s": self.max_s, "p": self.p}

    def margin(self, sample_rate: float) -> int:
        return math.ceil(self.max_s * sample_rate)

    def shift(self, before, after, rng, sample_rate):
        if _coin(rng) >= self.p:
            return before, after
        reach = self.margin(sample_rate)
        moved = int(_generator(rng).integers(-reach, reach + 1))
        moved = max(-before, min(after, moved))
        return before + moved, after - moved
