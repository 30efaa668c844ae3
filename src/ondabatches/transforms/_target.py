"""The interface of event targets and their registry by name.

A target says what [`EventTargets`][ondabatches.transforms.EventTargets] makes of the
events of a label set in each window of a batch (a mask, a multi-hot, a padded list),
and declares the shape and dtype it makes for a window of a given duration. It is a
small JSON value (``{"kind": name, **params}``) in a state's config, rebuilt by
[`target_from_dict`][ondabatches.transforms.target_from_dict] from the registry in any
process that imported the module defining it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .._errors import BatchSpecError
from ._transform import register_in

__all__ = ["Target", "register_target", "registered_targets", "target_from_dict"]

_REGISTRY: dict[str, type[Target]] = {}


class Target(ABC):
    """The interface of event targets (subclass it and register it by name).

    Subclasses set [`name`][ondabatches.abc.Target.name] (the registry key, the
    ``"kind"`` of its dict), keep their parameters as constructor keyword arguments
    (returned by [`params`][ondabatches.abc.Target.params]: a dataclass's fields by
    default), and implement [`compute`][ondabatches.abc.Target.compute] and
    [`output`][ondabatches.abc.Target.output]. Check one with
    [`ondabatches.testing.check_target`][ondabatches.testing.check_target].
    """

    #: The name it is registered under (the ``"kind"`` a config holds).
    name: ClassVar[str] = ""

    @abstractmethod
    def compute(
        self, found: Any, starts: np.ndarray, stops: np.ndarray, n_classes: int
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The targets of all the windows ``[starts[i], stops[i])`` (ns, one duration)
        at once: an array ``(windows, *shape)`` or a dict of them, from ``found =
        (window, onset, offset, class)`` arrays of the events overlapping each window
        (what [`EventLabels.windows`][ondabatches.labels.EventLabels.windows] returns)."""

    @abstractmethod
    def output(
        self, duration: int, n_classes: int
    ) -> tuple[tuple[int, ...], np.dtype] | dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The ``(shape, dtype)`` of one window's target for windows of ``duration`` ns
        and ``n_classes`` classes (a dict of them where ``compute`` returns a dict)."""

    def check(self, sample_rate: float, where: str) -> None:
        """Refuse a signal it cannot serve (a rate above the signal's): raise
        [`BatchSpecError`][ondabatches._errors.BatchSpecError] naming ``where``."""
        return None

    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments, as JSON values."""
        if dataclasses.is_dataclass(self):
            return dataclasses.asdict(self)
        raise NotImplementedError(f"{type(self).__name__} must implement params()")

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": name, **params}``."""
        return {"kind": self.name, **self.params()}


def register_target(cls: type[Target]) -> type[Target]:
    """Register a [`Target`][ondabatches.abc.Target] subclass under its
    [`name`][ondabatches.abc.Target.name] (a decorator)."""
    return register_in(_REGISTRY, cls, Target, "target")


def registered_targets() -> list[str]:
    """The names of the registered targets."""
    return sorted(_REGISTRY)


def target_from_dict(value: Any) -> Target:
    """The target a [`Target.to_dict`][ondabatches.abc.Target.to_dict] describes (or
    the target itself); a typed error for an unknown kind or bad parameters."""
    if isinstance(value, Target):
        return value
    kind = value.get("kind") if isinstance(value, Mapping) else None
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BatchSpecError(
            f"a target is a Target or its dict with a registered 'kind' "
            f"({registered_targets()}; register one with "
            f"ondabatches.transforms.register_target), got {value!r}"
        )
    params = {k: v for k, v in value.items() if k != "kind"}
    try:
        return cls(**params)
    except TypeError as exc:
        raise BatchSpecError(f"target {kind!r} cannot take {params}: {exc}") from None
