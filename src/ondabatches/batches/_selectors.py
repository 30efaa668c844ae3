"""Channel selectors as a batch specification names them: the protocol, and their JSON form.

A batch item's ``channels`` is one of:

- ``None``: all channels, in the signal's order;
- a tuple of channel names or indices: those channels, in that order;
- an object with ``select(samples: Samples) -> numpy.ndarray``
  ([`ChannelSelector`][ondabatches.batches.ChannelSelector]), which receives the decoded
  window (all channels) and returns any array.

What a selector computes belongs to materialization (the built-in selector classes live
in `ondabatches.materialize`); what it is called, and how it travels through JSON in
states and batch items, belongs here, so that the specification never imports the
stage that materializes it. To send selector objects through JSON, give them
``to_dict()`` / ``from_dict()`` and register them with
[`register_selector`][ondabatches.batches.register_selector].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from .._errors import ArgumentError, BatchSpecError
from ..onda._samples import Samples

__all__ = ["ChannelSelector", "register_selector", "selector_from_dict", "selector_to_dict"]


@runtime_checkable
class ChannelSelector(Protocol):
    """Turns a decoded window ([`Samples`][ondabatches.onda.Samples], channels x time)
    into an item's ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> class FirstChannelTwice:
    ...     def select(self, samples):
    ...         return np.concatenate([samples.data[:1], samples.data[:1]])
    >>> isinstance(FirstChannelTwice(), ChannelSelector)
    True
    """

    def select(self, samples: Samples) -> np.ndarray: ...


_REGISTRY: dict[str, type] = {}
_S = TypeVar("_S", bound=type)


def register_selector(name: str) -> Callable[[_S], _S]:
    """Class decorator: make a selector JSON-convertible under ``name``.

    The class needs ``to_dict() -> dict`` and a ``from_dict(dict)`` classmethod.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @register_selector("first-n")
    ... @dataclass(frozen=True)
    ... class FirstN:
    ...     n: int
    ...     def select(self, samples): return samples.data[: self.n]
    ...     def to_dict(self): return {"n": self.n}
    ...     @classmethod
    ...     def from_dict(cls, d): return cls(d["n"])
    >>> selector_from_dict(selector_to_dict(FirstN(2)))
    FirstN(n=2)
    """

    def decorate(cls: _S) -> _S:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ArgumentError(f"selector name {name!r} is already registered for {existing!r}")
        _REGISTRY[name] = cls
        cls._selector_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def selector_to_dict(selector: Any) -> Any:
    """A JSON-compatible form of a channel selector."""
    if selector is None:
        return None
    if isinstance(selector, (list, tuple)):
        return [c if isinstance(c, str) else int(c) for c in selector]
    name = getattr(type(selector), "_selector_name", None)
    if name is None or _REGISTRY.get(name) is not type(selector):
        raise BatchSpecError(
            f"channel selector {selector!r} cannot be converted to JSON: register its class "
            "with @register_selector(name) and give it to_dict/from_dict"
        )
    return {"selector": name, "params": selector.to_dict()}


def selector_from_dict(d: Any) -> Any:
    """The channel selector of
    [`selector_to_dict`][ondabatches.batches.selector_to_dict]'s output."""
    if d is None:
        return None
    if isinstance(d, list):
        return tuple(d)
    try:
        cls = _REGISTRY[d["selector"]]
    except KeyError:
        raise BatchSpecError(
            f"unknown channel selector {d.get('selector')!r}; registered: {sorted(_REGISTRY)}"
        ) from None
    return cls.from_dict(d["params"])


def selector_fingerprint(channels: Any) -> Any:
    """A JSON-able stand-in for a selector in the configuration that states are bound to."""
    if channels is None:
        return None
    try:
        return selector_to_dict(channels)
    except (TypeError, ValueError):
        return repr(channels)  # an unregistered selector: its repr should say what it does
