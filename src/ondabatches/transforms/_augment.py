"""The built-in augmentations, each applied with a probability ``p``: gain, sign flip,
time reversal, channel dropout, Gaussian noise, time shift, and Mixup (a batch transform).

The gain, sign, reversal and dropout fold into the window's decode
([`Transform.fold`][ondabatches.abc.Transform.fold]), for all of a batch's items at
once where they lead a pipeline; their draws are keyed
([`KeyedDraws`][ondabatches.transforms.KeyedDraws]).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .._errors import BatchSpecError
from ._builtins import _number, _probability
from ._draws import BatchDraws, KeyedDraws
from ._folds import Fold, Folds
from ._transform import Transform, register_transform

__all__ = [
    "AmplitudeScale",
    "ChannelDropout",
    "GaussianNoise",
    "Mixup",
    "SignFlip",
    "TimeReverse",
    "TimeShift",
]


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
