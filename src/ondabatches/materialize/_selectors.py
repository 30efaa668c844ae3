"""Channel selectors: the extension point that turns a window's samples into an item's x.

A batch item's ``channels`` is one of:

- ``None``: all channels, in the signal's order;
- a tuple of channel names or indices: those channels, in that order;
- an object with ``select(samples: Samples) -> numpy.ndarray``
  ([`ChannelSelector`][ondabatches.batches.ChannelSelector]), which receives the decoded
  window (all channels) and returns any array, e.g. a montage with missing channels
  filled with zeros, or a 3-D item.

To send selector objects through JSON (batch items in states or logs), give them
``to_dict()`` / ``from_dict()`` and register them with
[`register_selector`][ondabatches.batches.register_selector] (defined with the batch
specification, `ondabatches.batches`, and re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ArgumentError, BatchSpecError
from ..batches._selectors import (
    ChannelSelector,
    register_selector,
    selector_from_dict,
    selector_to_dict,
)
from ..onda._samples import Samples

__all__ = [
    "Bipolar",
    "ChannelSelector",
    "EvenOddCompartments",
    "ZeroFillMontage",
    "register_selector",
    "selector_from_dict",
    "selector_to_dict",
]


def _names(channels: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(c) for c in channels)
    if not out:
        raise ArgumentError("a selector needs at least one channel")
    return out


@register_selector("zero-fill-montage")
@dataclass(frozen=True, slots=True)
class ZeroFillMontage:
    """The montage's channels in its order; channels the signal lacks are zeros.

    Examples
    --------
    >>> from ondabatches.onda import SamplesInfo
    >>> info = SamplesInfo("eeg", ("c3", "o1"), "uV", 1.0, 0.0, "float32", 1.0)
    >>> s = Samples(np.ones((2, 3), dtype=np.float32), info)
    >>> ZeroFillMontage(("c3", "c4", "o1")).select(s)
    array([[1., 1., 1.],
           [0., 0., 0.],
           [1., 1., 1.]], dtype=float32)
    """

    channels: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _names(self.channels))

    def select(self, samples: Samples) -> np.ndarray:
        out = np.zeros((len(self.channels), samples.n_samples), dtype=samples.data.dtype)
        have = {c: i for i, c in enumerate(samples.info.channels)}
        for i, c in enumerate(self.channels):
            if c in have:
                out[i] = samples.data[have[c]]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZeroFillMontage:
        return cls(tuple(d["channels"]))


@register_selector("even-odd-compartments")
@dataclass(frozen=True, slots=True)
class EvenOddCompartments:
    """Two compartments: even-indexed and odd-indexed channels, giving a 3-D item.

    With ``channels`` given, those channels (zeros where missing) are split; otherwise
    all the signal's channels, whose number must then be even. ``x`` has shape
    ``(2, n_channels // 2, time)``.

    Examples
    --------
    >>> from ondabatches.onda import SamplesInfo
    >>> info = SamplesInfo("eeg", ("a", "b", "c", "d"), "uV", 1.0, 0.0, "float32", 1.0)
    >>> s = Samples(np.arange(8, dtype=np.float32).reshape(4, 2), info)
    >>> EvenOddCompartments().select(s)[1]
    array([[2., 3.],
           [6., 7.]], dtype=float32)
    """

    channels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels is not None:
            object.__setattr__(self, "channels", _names(self.channels))

    def select(self, samples: Samples) -> np.ndarray:
        data = (
            samples.data
            if self.channels is None
            else ZeroFillMontage(self.channels).select(samples)
        )
        if data.shape[0] % 2:
            raise BatchSpecError(
                f"EvenOddCompartments needs an even number of channels, got {data.shape[0]} "
                f"({list(self.channels or samples.info.channels)})"
            )
        return np.stack([data[0::2], data[1::2]])

    def to_dict(self) -> dict[str, Any]:
        return {"channels": None if self.channels is None else list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvenOddCompartments:
        return cls(None if d["channels"] is None else tuple(d["channels"]))


@register_selector("bipolar")
@dataclass(frozen=True, slots=True)
class Bipolar:
    """Derivations such as ``"c3-m2"``: the difference of two referential channels.

    A name the signal has as a channel (``"c3"``, or even ``"c3-m2"``) is taken as is;
    otherwise ``"a-b"`` is channel ``a`` minus channel ``b``.

    Examples
    --------
    >>> from ondabatches.onda import SamplesInfo
    >>> info = SamplesInfo("eeg", ("c3", "m2"), "uV", 1.0, 0.0, "float32", 1.0)
    >>> s = Samples(np.array([[5.0, 7.0], [1.0, 2.0]], dtype=np.float32), info)
    >>> Bipolar(("c3-m2", "c3")).select(s)
    array([[4., 5.],
           [5., 7.]], dtype=float32)
    """

    derivations: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivations", _names(self.derivations))

    def _pair(self, name: str, have: dict[str, int]) -> tuple[int, int | None]:
        if name in have:
            return have[name], None
        a, sep, b = name.partition("-")
        if sep and a in have and b in have:
            return have[a], have[b]
        raise BatchSpecError(f"derivation {name!r} needs channels missing from {list(have)}")

    def select(self, samples: Samples) -> np.ndarray:
        have = {c: i for i, c in enumerate(samples.info.channels)}
        out = np.empty((len(self.derivations), samples.n_samples), dtype=samples.data.dtype)
        for i, name in enumerate(self.derivations):
            a, b = self._pair(name, have)
            if b is None:
                out[i] = samples.data[a]
            else:
                np.subtract(samples.data[a], samples.data[b], out=out[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"derivations": list(self.derivations)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bipolar:
        return cls(tuple(d["derivations"]))
