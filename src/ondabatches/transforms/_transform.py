"""The interface of a transform and the registry of transforms by name.

A transform is a small JSON-serializable step (its name and its constructor's keyword
arguments, [`to_dict`][ondabatches.abc.Transform.to_dict]); a config or a state names
it, and [`transform_from_dict`][ondabatches.transforms.transform_from_dict] rebuilds it
from the registry in any process that imported the module that defines it. See
`ondabatches.transforms._base` for how a pipeline runs them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._errors import ArgumentTypeError, BatchSpecError, StateError

if TYPE_CHECKING:
    from ._draws import BatchDraws
    from ._folds import Fold, Folds

__all__ = ["Transform", "register_transform", "registered_transforms", "transform_from_dict"]

_REGISTRY: dict[str, type[Transform]] = {}


class Transform:
    """The interface of a transform (subclass it and register it by name).

    Subclasses set [`name`][ondabatches.abc.Transform.name] (the registry key),
    [`stage`][ondabatches.abc.Transform.stage] (``"item"`` or ``"batch"``) and
    [`random`][ondabatches.abc.Transform.random], keep their parameters as the
    constructor's keyword arguments (returned by
    [`params`][ondabatches.abc.Transform.params], JSON values), check them in the
    constructor (raising [`BatchSpecError`][ondabatches._errors.BatchSpecError]), and
    implement [`apply`][ondabatches.abc.Transform.apply].
    """

    #: The name it is registered under (what a state's config holds).
    name: ClassVar[str] = ""
    #: ``"item"`` (each item's window, before stacking) or ``"batch"`` (the stacked batch).
    stage: ClassVar[str] = "item"
    #: Whether [`apply`][ondabatches.abc.Transform.apply] uses its generator.
    random: ClassVar[bool] = False
    #: Whether it moves samples in time (and then moves the per-epoch labels with them).
    moves_time: ClassVar[bool] = False
    #: Whether it moves the window within the context read around it (a time shift):
    #: [`shift`][ondabatches.abc.Transform.shift] then gives the new ``(before, after)``
    #: context and ``apply`` is not called.
    moves_window: ClassVar[bool] = False
    #: Whether it makes ``y`` a dict of targets (event targets): it then implements
    #: ``make_targets(y, items)``, run once per batch on the stacked ``y`` and the
    #: batch's items, in place of [`apply`][ondabatches.abc.Transform.apply].
    #: ``needs_array_y``: it needs ``y`` an array (it cannot go with such targets).
    makes_targets: ClassVar[bool] = False
    needs_array_y: ClassVar[bool] = False
    #: Built-in augmentations: the pipeline gives them a
    #: [`KeyedDraws`][ondabatches.transforms.KeyedDraws] in place of a generator (a coin
    #: without one; most items draw nothing else).
    keyed_draws: ClassVar[bool] = False
    #: Whether its folds for all of a batch's windows (``_fold_items``) draw row by row:
    #: row ``j``'s the same whatever the number of rows (the built-in augmentations),
    #: so that a montage's modalities with fewer rows share the folds of the one with
    #: most (see [`Pipeline.fold_montage`][ondabatches.transforms.Pipeline.fold_montage]);
    #: read from the class itself, so that a subclass that folds otherwise does not
    #: inherit it.
    _rows_prefix: ClassVar[bool] = False
    #: The modalities of a multi-signal item it applies to (None: all); set by the
    #: ``modalities=`` keyword every transform's constructor takes.
    modalities: tuple[str, ...] | None = None

    def __init__(self, *, modalities: Any = None) -> None:
        self.modalities = _modalities(modalities, self)

    __init__._takes_modalities = True  # type: ignore[attr-defined]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_takes_modalities", False):
            return

        # Each constructor takes ``modalities=`` without declaring it: the keyword is
        # taken off here, and set after the constructor (and any it chains to) ran.
        @functools.wraps(init)
        def __init__(self: Transform, *args: Any, modalities: Any = None, **kw: Any) -> None:
            init(self, *args, **kw)
            if modalities is not None or "modalities" not in self.__dict__:
                self.modalities = _modalities(modalities, self)

        __init__._takes_modalities = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    def applies_to(self, modality: str | None) -> bool:
        """Whether it runs on ``modality`` (None: a single-signal item's window)."""
        return self.modalities is None or modality is None or modality in self.modalities

    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments, as JSON values."""
        raise NotImplementedError

    def margin(self, sample_rate: float) -> int:
        """Samples of context needed on each side of the window (item transforms)."""
        return 0

    def check(self, sample_rate: float, window: int, recording: int, where: str) -> None:
        """Refuse a signal it cannot work on (a band edge at or above Nyquist, a window
        or recording too short: ``window`` and ``recording`` samples): raise
        [`BatchSpecError`][ondabatches._errors.BatchSpecError] naming ``where``."""

    def apply(
        self, x: np.ndarray, y: Any, rng: np.random.Generator | None, sample_rate: float
    ) -> tuple[np.ndarray, Any]:
        """The transformed ``(x, y)``; ``rng`` is None unless
        [`random`][ondabatches.abc.Transform.random]."""
        raise NotImplementedError

    def shift(
        self, before: int, after: int, rng: np.random.Generator | None, sample_rate: float
    ) -> tuple[int, int]:
        """For [`moves_window`][ondabatches.abc.Transform.moves_window] transforms: the
        context left before and after the moved window, from the ``before`` and
        ``after`` samples read around it."""
        return before, after

    def apply_to(
        self,
        x: np.ndarray,
        y: Any,
        rng: np.random.Generator | None,
        sample_rate: float,
        item: Any,
    ) -> tuple[np.ndarray, Any]:
        """[`apply`][ondabatches.abc.Transform.apply], given the batch item too
        (transforms that read more of the item's recording, such as event targets,
        override this one)."""
        return self.apply(x, y, rng, sample_rate)

    def _apply_window(
        self, x: np.ndarray, y: Any, rng: Any, sample_rate: float, cut: tuple[int, int]
    ) -> tuple[np.ndarray, Any] | None:
        """[`apply`][ondabatches.abc.Transform.apply] with the result cut to the window,
        ``cut = (before, after)`` samples off its ends, where doing both at once is
        faster (the last transform of a pipeline that reads context: a filter need not
        compute what is cut off); None where it is not done so (the default)."""
        return None

    def fold(self, rng: np.random.Generator | None, fold: Fold) -> bool:
        """Fold this transform into ``fold`` (what the window's decode will do to it)
        instead of applying it afterwards, drawing from ``rng`` exactly what
        [`apply`][ondabatches.abc.Transform.apply] would: True if folded, False if it
        cannot be (the default). The gain, sign and time-reversal augmentations fold, so
        that a batch pays for them in the pass that decodes it."""
        return False

    def _fold_items(self, draws: BatchDraws, position: int, folds: Folds) -> bool:
        """[`fold`][ondabatches.abc.Transform.fold] for every window of ``folds`` at
        once (those still ``active``), this transform at ``position`` of the pipeline
        drawing from ``draws``: True if done, False if only item by item (the default:
        then ``fold`` runs for each item)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, **self.params()}
        if self.modalities is not None:
            d["modalities"] = list(self.modalities)
        return d

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        params = self.params()
        if self.modalities is not None:
            params = {**params, "modalities": list(self.modalities)}
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"


def _modalities(modalities: Any, t: Transform) -> tuple[str, ...] | None:
    if modalities is None:
        return None
    if isinstance(modalities, str):
        modalities = [modalities]
    try:
        names = tuple(modalities)
    except TypeError:
        names = (modalities,)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise BatchSpecError(
            f"{type(t).__name__}: modalities must be None (all) or a non-empty list of "
            f"modality names, got {modalities!r}"
        )
    if len(set(names)) != len(names):
        raise BatchSpecError(f"{type(t).__name__}: modalities repeat a name: {list(names)}")
    return names


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Register a [`Transform`][ondabatches.abc.Transform] subclass under its
    [`name`][ondabatches.abc.Transform.name] (a decorator); a config or state naming it
    then rebuilds it in any process that has imported the module defining it."""
    if isinstance(cls, type) and issubclass(cls, Transform) and cls.stage not in ("item", "batch"):
        raise BatchSpecError(f"{cls.__name__}.stage must be 'item' or 'batch', got {cls.stage!r}")
    return register_in(_REGISTRY, cls, Transform, "transform")


def register_in(registry: dict[str, Any], cls: Any, base: type, what: str) -> Any:
    """Register ``cls``, a subclass of ``base``, in ``registry`` under its ``name``
    (shared by the registries of transforms and targets)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ArgumentTypeError(f"register_{what} takes a {base.__name__} subclass, got {cls!r}")
    if not cls.name or not isinstance(cls.name, str):
        raise BatchSpecError(f"{cls.__name__} must set a non-empty string name to be registered")
    known = registry.get(cls.name)
    if known is not None and known is not cls:
        raise BatchSpecError(
            f"a {what} named {cls.name!r} is already registered ({known.__qualname__})"
        )
    registry[cls.name] = cls
    return cls


def registered_transforms() -> list[str]:
    """The names of the registered transforms."""
    return sorted(_REGISTRY)


def transform_from_dict(d: Mapping[str, Any]) -> Transform:
    """The transform a [`Transform.to_dict`][ondabatches.abc.Transform.to_dict]
    describes; a typed error for an unknown name or bad parameters."""
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        raise StateError(f"a transform is a mapping with a 'name', got {d!r}")
    cls = _REGISTRY.get(d["name"])
    if cls is None:
        raise StateError(
            f"unknown transform {d['name']!r}; registered: {registered_transforms()} "
            f"(register a custom one with ondabatches.transforms.register_transform)"
        )
    params = {k: v for k, v in d.items() if k != "name"}
    try:
        return cls(**params)
    except TypeError as exc:
        raise StateError(f"transform {d['name']!r} cannot take {params}: {exc}") from None
