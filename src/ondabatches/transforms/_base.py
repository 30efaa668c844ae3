"""Transforms: small JSON-serializable steps applied where the windows are read.

A transform runs in the worker that materializes the batch, either on each item after
its window is read (``stage = "item"``: ``x`` of shape (channels, time), ``y`` of
shape (1, labels)) or on the stacked batch (``stage = "batch"``). A
[`Pipeline`][ondabatches.transforms.Pipeline] is an ordered list of them; its
[`config`][ondabatches.transforms.Pipeline.config] (each transform's name and
parameters) is part of the state's configuration, so that a checkpoint resumed with
another pipeline is refused naming the difference.

Randomness. A random transform draws from the generator
[`generator_for`][ondabatches.transforms.generator_for] gives for ``(seed, batch index,
item position, transform position)``: the same batch is bit-identical on every backend,
worker count and resume, two items of a batch draw differently, and so does one window
drawn in two batches. The built-in augmentations draw their coin and the few numbers
that follow it (a scale factor, the channels dropped) from
[`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] of that key and a counter, a
pure function of those numbers computed for all of a batch's items at once
([`BatchDraws`][ondabatches.transforms.BatchDraws]); bulk draws (noise) come from the
generator.

Context. An item transform that needs samples around the window (a zero-phase filter)
declares it with [`Transform.margin`][ondabatches.abc.Transform.margin]: the window is
read with that many extra samples on each side (fewer at a recording's edges, where the
transform pads as it would over the whole recording), and cut back to the window after
the last such transform. Such transforms come first in a pipeline.

Modalities. Every transform takes a ``modalities=`` keyword (handled here, whatever its
constructor's own arguments): the names of a montage's modalities it applies to on
multi-signal items, None (the default) for all of them (a single-signal item has no
modalities: the transform runs on its window whatever it names). It is part of the
transform's [`to_dict`][ondabatches.abc.Transform.to_dict] (so of the state's config)
when given. A multi-signal item gets each transform on each modality's array at that
modality's rate, and every modality of an item draws from the same generator (a
``TimeReverse`` reverses all of them, or none); see `ondabatches.materialize._multi`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .._errors import ArgumentTypeError, BatchSpecError, StateError

__all__ = [
    "BatchDraws",
    "Fold",
    "Folds",
    "KeyedDraws",
    "Pipeline",
    "coins_for",
    "Transform",
    "generator_for",
    "keyed_uniforms",
    "register_transform",
    "registered_transforms",
    "transform_from_dict",
]

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
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise ArgumentTypeError(f"register_transform takes a Transform subclass, got {cls!r}")
    if not cls.name or not isinstance(cls.name, str):
        raise BatchSpecError(f"{cls.__name__} must set a non-empty string name to be registered")
    if cls.stage not in ("item", "batch"):
        raise BatchSpecError(f"{cls.__name__}.stage must be 'item' or 'batch', got {cls.stage!r}")
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise BatchSpecError(
            f"a transform named {cls.name!r} is already registered ({known.__qualname__})"
        )
    _REGISTRY[cls.name] = cls
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


def generator_for(seed: int, index: int, item: int | None, position: int) -> np.random.Generator:
    """The generator of transform ``position`` for item ``item`` of batch ``index`` of
    ``seed``'s stream (``item`` None: a batch transform).

    A PCG64 whose 128-bit state and increment are a BLAKE2b hash of the four numbers:
    distinct streams for distinct keys. It is this thread's one generator, set to that
    state (3 us; a fresh ``SeedSequence`` takes 17 us, a sizeable share of a batch for
    4 augmentations of 32 items): use it before asking for the next.
    """
    text = f"ondabatches-transform:{int(seed)}:{int(index)}:{item}:{int(position)}"
    digest = hashlib.blake2b(text.encode(), digest_size=32).digest()
    generator = getattr(_LOCAL, "generator", None)
    if generator is None:
        generator = _LOCAL.generator = np.random.Generator(np.random.PCG64(0))
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {
            "state": int.from_bytes(digest[:16], "little"),
            "inc": int.from_bytes(digest[16:], "little") | 1,
        },
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


_LOCAL = threading.local()


class Fold:
    """What a run of leading item transforms does to a window of ``rows`` channels,
    applied as the window is decoded: a gain (in the output dtype: a sign and at most
    one scale factor, so that the product is exact), rows set to a signed zero, and a
    time reversal. Its values are those of the transforms applied one by one."""

    __slots__ = ("gain", "reverse", "rows", "scaled", "zero", "zero_negative")

    def __init__(self, rows: int, dtype: np.dtype):
        self.rows = rows
        self.gain = np.dtype(dtype).type(1)
        self.zero: np.ndarray | None = None  # rows set to zero (a channel dropout)
        self.zero_negative: np.ndarray | None = None  # ... whose zero is -0.0 (a flip)
        self.reverse = False
        self.scaled = False

    def negate(self) -> None:
        self.gain = -self.gain
        if self.zero_negative is not None:
            np.logical_not(self.zero_negative, out=self.zero_negative)

    def drop(self, rows: np.ndarray) -> None:
        """Set ``rows`` (a mask) to +0.0."""
        if self.zero is None:
            self.zero, self.zero_negative = rows.copy(), np.zeros(self.rows, bool)
        else:
            self.zero |= rows
            self.zero_negative[rows] = False

    @property
    def fill(self) -> np.ndarray | None:
        """The decode's ``fill``: per row, the signed zero it is set to, NaN for a row
        kept (None: none set)."""
        if self.zero is None or not self.zero.any():
            return None
        fill = np.full(self.rows, np.nan, self.gain.dtype)
        fill[self.zero] = 0.0
        fill[self.zero & self.zero_negative] = -0.0
        return fill

    def finish(self, y: Any) -> Any:
        """``y`` reversed with the window, if it is."""
        return np.ascontiguousarray(np.asarray(y)[..., ::-1]) if self.reverse else y

    @property
    def trivial(self) -> bool:
        dropped = self.zero is not None and bool(self.zero.any())
        return not (self.reverse or dropped) and self.gain == 1


class KeyedDraws:
    """The randomness of a built-in augmentation at one key (seed, batch index, item,
    position): [`coin`][ondabatches.transforms.KeyedDraws.coin], whether it applies,
    and [`uniforms`][ondabatches.transforms.KeyedDraws.uniforms], the few numbers it
    draws when it does, are [`keyed_uniforms`][ondabatches.transforms.keyed_uniforms]
    of the key (counter 0 for the coin, then 1, 2, ...), read from the batch's
    [`BatchDraws`][ondabatches.transforms.BatchDraws] when given one (every item of the
    batch hashed at once); [`generator`][ondabatches.transforms.KeyedDraws.generator],
    for bulk draws (noise), is made only when asked
    ([`generator_for`][ondabatches.transforms.generator_for])."""

    __slots__ = ("_batch", "_coin", "_generator", "key")

    def __init__(
        self,
        seed: int,
        index: int,
        item: int | None,
        position: int,
        coin: float | None = None,
        batch: BatchDraws | None = None,
    ):
        self.key = (int(seed), int(index), item, int(position))
        self._coin = coin
        self._batch = batch if batch is not None and batch.key == self.key[:2] else None
        self._generator: np.random.Generator | None = None

    def coin(self) -> float:
        """A uniform in [0, 1) of the key (its counter 0)."""
        if self._coin is None:
            self._coin = float(self._counters(1)[0])
        return self._coin

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` uniforms in [0, 1) of the key that follow its coin (counters 1 to
        ``count``): the first ones are the same whatever ``count`` is."""
        return self._counters(count + 1)[1:]

    def _counters(self, count: int) -> np.ndarray:
        seed, index, item, position = self.key
        if self._batch is not None and item is not None:
            return self._batch.uniforms(position, count, item + 1)[item]
        return keyed_uniforms(seed, index, item, position, np.arange(count))

    @property
    def generator(self) -> np.random.Generator:
        if self._generator is None:
            self._generator = generator_for(*self.key)
        return self._generator


def keyed_uniforms(seed: int, index: int, item: Any, position: Any, counter: Any) -> np.ndarray:
    """Uniforms in [0, 1) hashed from ``(seed, batch index, item, position, counter)``.

    ``item`` (None: a batch transform), ``position`` and ``counter`` are non-negative
    integers or arrays of them, broadcast together: the result has their shape (at
    least one dimension), each value a pure function of its own five numbers, so that
    a batch's items are drawn in a few array operations and any one of them alone
    gives the same value. The hash: a 64-bit BLAKE2b word of ``(seed, index)``, then
    ``position``, ``item`` and ``counter`` in turn each added (times the golden-ratio
    constant) and mixed by SplitMix64's finalizer; the top 53 bits make the uniform.
    """
    if isinstance(position, (int, np.integer)):
        z = _position_word(int(seed), int(index), int(position))  # the usual case
    else:
        z = _mix(_stir(np.asarray(position, np.int64), _seed_word(seed, index)))
    z = _mix(_stir(np.asarray(-1 if item is None else item, np.int64), z))
    z = _mix(_stir(np.asarray(counter, np.int64), z))
    return (z >> _S11) * _ULP


def _stir(values: np.ndarray, z: Any) -> np.ndarray:
    """``z + (values + 1) * golden`` in uint64 (one dimension at least: numpy warns of a
    0-d array's wrap-around, not of an array's)."""
    return (np.atleast_1d(values) + 1).astype(np.uint64) * _GOLDEN + z


@functools.lru_cache(maxsize=1024)
def _seed_word(seed: int, index: int) -> np.uint64:
    text = f"ondabatches-draws:{int(seed)}:{int(index)}"
    return np.uint64(
        int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    )


@functools.lru_cache(maxsize=1024)
def _position_word(seed: int, index: int, position: int) -> np.uint64:
    return _mix(_stir(np.asarray(position, np.int64), _seed_word(seed, index)))[0]


def _mix(z: np.ndarray) -> np.ndarray:
    # SplitMix64's finalizer (a bijection of 64-bit words); uint64 arrays wrap silently.
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = (np.uint64(k) for k in (11, 27, 30, 31))
_ULP = 2.0**-53


def coins_for(seed: int, index: int, item: int | None, n: int) -> list[float]:
    """The coins of positions ``0 .. n - 1`` of item ``item`` of batch ``index``: their
    [`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] at counter 0."""
    return keyed_uniforms(seed, index, item, np.arange(n), 0).tolist()


class BatchDraws:
    """[`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] of the items of batch
    ``index`` of ``seed``'s stream, hashed for a block of items at once and kept: a
    batch's augmentations cost a few array operations per transform instead of a hash
    per item and transform. The values are those of each key alone."""

    __slots__ = ("_blocks", "key")

    def __init__(self, seed: int, index: int):
        self.key = (int(seed), int(index))
        # Per position, an (items, counters) block: the largest asked so far.
        self._blocks: dict[int, np.ndarray] = {}

    def uniforms(self, position: int, count: int, n: int) -> np.ndarray:
        """An ``(n, count)`` array: row ``i`` holds counters ``0 .. count - 1`` of item
        ``i`` at transform ``position`` (column 0: the coins)."""
        block = self._blocks.get(position)
        if block is None or block.shape[0] < n or block.shape[1] < count:
            self.prefetch([position], count, n)
            block = self._blocks[position]
        return block[:n, :count]

    def prefetch(self, positions: Sequence[int], count: int, n: int) -> None:
        """Hash counters ``0 .. count - 1`` of items ``0 .. n - 1`` at each of
        ``positions`` in one go (at least as many as already kept)."""
        size = max(_BLOCK, 1 << (n - 1).bit_length())
        kept_all = [self._blocks.get(p) for p in positions]
        positions = [
            p
            for p, kept in zip(positions, kept_all, strict=True)
            if kept is None or kept.shape[0] < n or kept.shape[1] < count
        ]  # those kept large enough already are left as they are
        if not positions:
            return
        for p in positions:
            kept = self._blocks.get(p)
            if kept is not None:
                size, count = max(size, kept.shape[0]), max(count, kept.shape[1])
        blocks = keyed_uniforms(
            *self.key,
            np.arange(size)[None, :, None],
            np.asarray(positions)[:, None, None],
            np.arange(count)[None, None, :],
        )
        blocks.flags.writeable = False
        for p, block in zip(positions, blocks, strict=True):
            self._blocks[p] = block  # a race computes it twice, to the same values


#: Items hashed at once by a `BatchDraws` (more as a batch needs them).
_BLOCK = 64


def _batch_draws(key: tuple[int, int]) -> BatchDraws:
    """The [`BatchDraws`][ondabatches.transforms.BatchDraws] of ``key = (seed, index)``:
    this thread's last one if it has that key (the items of a batch ask it in turn)."""
    key = (int(key[0]), int(key[1]))
    draws = getattr(_LOCAL, "draws", None)
    if draws is None or draws.key != key:
        draws = _LOCAL.draws = BatchDraws(*key)
    return draws


class Folds:
    """[`Fold`][ondabatches.transforms.Fold] of each of ``n`` windows of ``rows``
    channels at once (arrays of one row per window), built by the transforms'
    vectorized folds; ``active`` is False for windows whose folding stopped, ``done``
    how many transforms each took."""

    __slots__ = ("_items", "active", "done", "gain", "reverse", "rows", "scaled", "zero",
                 "zero_negative")  # fmt: skip

    def __init__(self, n: int, rows: int, dtype: np.dtype):
        self.rows = rows
        self.gain = np.ones(n, np.dtype(dtype))
        self.scaled = np.zeros(n, bool)
        self.reverse = np.zeros(n, bool)
        self.zero: np.ndarray | None = None
        self.zero_negative: np.ndarray | None = None
        self.active = np.ones(n, bool)
        self.done = np.zeros(n, np.intp)
        self._items: list[tuple[Any, bool, Any, int]] | None = None

    def head(self, rows: int) -> Folds:
        """These folds for windows of the first ``rows`` of these rows (a fold that
        draws row by row gives its first rows the same whatever the number of rows):
        the per-window arrays shared, the rows' sliced."""
        out = Folds.__new__(Folds)
        out.rows, out._items = rows, None
        out.gain, out.scaled, out.reverse = self.gain, self.scaled, self.reverse
        out.active, out.done = self.active, self.done
        out.zero = None if self.zero is None else self.zero[:, :rows]
        out.zero_negative = None if self.zero_negative is None else self.zero_negative[:, :rows]
        return out

    def negate(self, which: np.ndarray) -> None:
        """Negate the windows of mask ``which``."""
        self.gain[which] = -self.gain[which]
        if self.zero_negative is not None:
            self.zero_negative[which] = ~self.zero_negative[which]

    def drop(self, rows: np.ndarray) -> None:
        """Set the rows of mask ``rows`` (windows x rows) to +0.0."""
        if self.zero is None:
            self.zero, self.zero_negative = rows.copy(), np.zeros_like(rows)
        else:
            self.zero |= rows
            self.zero_negative[rows] = False

    @property
    def trivial(self) -> bool:
        """Whether no window has a gain, a reversal or a row set."""
        dropped = self.zero is not None and bool(self.zero.any())
        return not (dropped or self.reverse.any() or (self.gain != 1).any())

    def item(self, i: int) -> tuple[np.floating | None, bool, np.ndarray | None, int]:
        """Window ``i``'s ``(gain, reverse, fill, done)`` for the decode (gain None for
        1, fill None for no row set), as [`Fold`][ondabatches.transforms.Fold] gives."""
        if self._items is None:  # every window's, worked out once (asked once each)
            fills: list[Any] = [None] * len(self.gain)
            if self.zero is not None:
                signed = np.where(self.zero_negative, -0.0, 0.0)
                values = np.where(self.zero, signed, np.nan).astype(self.gain.dtype)
                for j in np.flatnonzero(self.zero.any(axis=1)).tolist():
                    fills[j] = values[j]
            ones = (self.gain == 1).tolist()
            gains = [None if one else g for one, g in zip(ones, self.gain, strict=True)]
            self._items = list(
                zip(gains, self.reverse.tolist(), fills, self.done.tolist(), strict=True)
            )
        return self._items[i]


class Pipeline:
    """An ordered list of transforms (built from transforms or their dicts).

    Raises
    ------
    BatchSpecError
        If an item transform that needs context
        ([`Transform.margin`][ondabatches.abc.Transform.margin]) follows one that needs
        none, or a batch transform precedes an item transform.
    """

    def __init__(self, transforms: Iterable[Transform | Mapping[str, Any]] = ()):
        steps = []
        for t in transforms:
            if isinstance(t, Mapping):
                t = transform_from_dict(t)
            if not isinstance(t, Transform):
                raise BatchSpecError(
                    f"transforms must be Transform objects or their dicts, got {t!r}"
                )
            steps.append(t)
        self.transforms: tuple[Transform, ...] = tuple(steps)
        stages = [t.stage for t in steps]
        if "batch" in stages and "item" in stages[stages.index("batch") :]:
            raise BatchSpecError(
                f"item transforms must come before batch transforms, got {[str(t) for t in steps]}"
            )
        targets = [t for t in steps if t.makes_targets]
        if len(targets) > 1:
            raise BatchSpecError(
                f"a pipeline takes one targets transform (give it every label set), got "
                f"{[str(t) for t in targets]}"
            )
        clash = [t for t in steps if t.moves_time or t.moves_window or t.needs_array_y]
        if targets and clash:
            raise BatchSpecError(
                f"{clash[0]!r} cannot go with {targets[0]!r}: event targets are computed "
                f"from the window as read (reversing or mixing them is not built)"
            )
        # Targets need no x and commute with every transform they may go with: they run
        # once per batch, on all its items, after the item transforms.
        self.targets = tuple(targets)
        self.item = tuple(
            (i, t) for i, t in enumerate(steps) if t.stage == "item" and not t.makes_targets
        )
        self.batch = tuple((i, t) for i, t in enumerate(steps) if t.stage == "batch")
        self._contextual = _contextual_prefix(self.item)
        #: Whether a transform checks the signals or reads context (else `check` and
        #: `margin` need not be asked of each signal of a batch).
        self.checks_signals = any(
            type(t).check is not Transform.check or type(t).margin is not Transform.margin
            for t in steps
        )

    @classmethod
    def of(cls, transforms: Pipeline | Sequence[Any] | None) -> Pipeline | None:
        """``transforms`` as a Pipeline; None for None or an empty list."""
        if transforms is None or isinstance(transforms, Pipeline):
            return transforms or None
        pipeline = cls(transforms)
        return pipeline or None

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and other.config == self.config

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Pipeline({list(self.transforms)!r})"

    @property
    def config(self) -> list[dict[str, Any]]:
        """Each transform's [`to_dict`][ondabatches.abc.Transform.to_dict], in order (JSON)."""
        return [t.to_dict() for t in self.transforms]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def random(self) -> bool:
        return any(t.random for t in self.transforms)

    def margin(self, sample_rate: float, modality: str | None = None) -> int:
        """Samples read on each side of a window for the context transforms (of
        ``modality``'s array, on a multi-signal item)."""
        return sum(
            t.margin(sample_rate)
            for _, t in self.item[: self._contextual]
            if t.applies_to(modality)
        )

    @property
    def modalities(self) -> set[str]:
        """The modality names its transforms are restricted to."""
        return {m for t in self.transforms for m in (t.modalities or ())}

    def check_modalities(self, names: Sequence[str], concatenate: bool, where: str) -> None:
        """Refuse, for multi-signal items of modalities ``names`` (``where`` names
        them), a transform naming a modality not among them, one that moves time (or
        the window) on some modalities only (they would fall out of step with each
        other and with the labels), a random batch transform on some only (Mixup's
        pairs would differ), and a batch transform on some only where the modalities
        are concatenated into one array. A [`BatchSpecError`][ondabatches._errors.BatchSpecError]
        naming the allowed values."""
        for t in self.transforms:
            if t.modalities is None or t.makes_targets:
                continue
            unknown = [m for m in t.modalities if m not in names]
            if unknown:
                raise BatchSpecError(
                    f"{t!r} names modalities {unknown} that {where} does not have; "
                    f"allowed: {list(names)} (or modalities=None for all)"
                )
            if (t.moves_time or t.moves_window) and set(t.modalities) != set(names):
                raise BatchSpecError(
                    f"{t!r} moves time on some modalities only: the modalities of an "
                    f"item would fall out of step with each other and with the labels; "
                    f"give it all of {list(names)} (modalities=None)"
                )
            if t.stage == "batch" and concatenate:
                raise BatchSpecError(
                    f"{t!r} is a batch transform and {where} concatenates its modalities "
                    f"into one array: it applies to all of {list(names)} (modalities=None)"
                )
            if t.stage == "batch" and t.random and set(t.modalities) != set(names):
                raise BatchSpecError(
                    f"{t!r} draws across the items of a batch: on some modalities only, "
                    f"they would no longer match each other or the labels; give it all "
                    f"of {list(names)} (modalities=None)"
                )

    def check(
        self,
        sample_rate: float,
        window: int,
        recording: int,
        where: str,
        modality: str | None = None,
    ) -> None:
        """Every transform's [`Transform.check`][ondabatches.abc.Transform.check] (those
        of ``modality``, on a multi-signal item)."""
        for t in self.transforms:
            if t.applies_to(modality):
                t.check(sample_rate, window, recording, where)

    def apply_item(
        self,
        x: np.ndarray,
        y: Any,
        sample_rate: float,
        cut: tuple[int, int],
        key: tuple[int, int] | None,
        position: int,
        item: Any = None,
        modality: str | None = None,
        start: int = 0,
    ) -> tuple[np.ndarray, Any]:
        """The item transforms on ``x`` read with ``cut = (before, after)`` samples of
        context, cut back to the window after the last context transform; the first
        ``start`` of them are skipped (folded into the decode:
        [`fold_item`][ondabatches.transforms.Pipeline.fold_item]); on a multi-signal
        item, those of ``modality`` (each with the generator of its position in the
        whole pipeline: all modalities of an item draw alike)."""
        before, after = cut
        if start >= len(self.item) and not (before or after):
            return x, y  # all folded into the decode
        if self._contextual == 0 and (before or after):
            x = x[..., before : x.shape[-1] - after]
        for j, (i, t) in enumerate(self.item):
            if j < start:
                continue
            if not t.applies_to(modality):
                if j + 1 == self._contextual and (before or after):
                    x = x[..., before : x.shape[-1] - after]
                continue
            rng = self._rng(t, key, position, i)
            if t.moves_window:
                before, after = t.shift(before, after, rng, sample_rate)
            else:
                x, y = t.apply_to(x, y, rng, sample_rate, item)
            if j + 1 == self._contextual and (before or after):
                x = x[..., before : x.shape[-1] - after]
        return x, y

    def fold_item(
        self, key: tuple[int, int] | None, position: int, rows: int, dtype: np.dtype
    ) -> tuple[Fold | None, int]:
        """The leading item transforms that fold into the decode of item ``position``'s
        window of ``rows`` channels
        ([`Transform.fold`][ondabatches.abc.Transform.fold]), and how many they are
        ([`apply_item`][ondabatches.transforms.Pipeline.apply_item] with ``start`` set
        to it does the rest); (None, 0) if none."""
        first = self.item[0][1] if self.item else None
        if first is None or type(first).fold is Transform.fold:
            return None, 0
        fold, done = Fold(rows, dtype), 0
        for i, t in self.item:
            if type(t).fold is Transform.fold:
                break
            if not t.fold(self._rng(t, key, position, i), fold):
                break
            done += 1
        return (fold, done) if done else (None, 0)

    def fold_batch(
        self,
        key: tuple[int, int] | None,
        n: int,
        rows: int,
        dtype: np.dtype,
        modality: str | None = None,
    ) -> Folds | None:
        """[`fold_item`][ondabatches.transforms.Pipeline.fold_item] of items ``0 .. n -
        1`` at once, as [`Folds`][ondabatches.transforms.Folds] (the same values: each
        transform's draws for all items in a few array operations); on multi-signal
        items, of the transforms of ``modality`` (the others are passed over, counted
        in ``done`` as [`apply_item`][ondabatches.transforms.Pipeline.apply_item]'s
        ``start`` counts them). None if a leading transform folds only item by item (a
        custom ``fold``), or none folds."""
        first = self.item[0][1] if self.item else None
        if first is None or key is None or type(first).fold is Transform.fold:
            return None
        draws, folds = _batch_draws(key), Folds(n, rows, dtype)
        # The leading augmentations' coins and what follows them, hashed in one go.
        draws.prefetch([i for i, t in self.item if t.keyed_draws], rows + 1, n)
        for i, t in self.item:
            if not t.applies_to(modality):
                folds.done += folds.active
                continue
            if type(t).fold is Transform.fold or not folds.active.any():
                break
            if not t._fold_items(draws, i, folds):
                return None
        return folds

    def fold_montage(
        self,
        key: tuple[int, int] | None,
        n: int,
        rows: Sequence[int | None],
        dtype: np.dtype,
        modalities: Sequence[str],
    ) -> list[Folds | None]:
        """[`fold_batch`][ondabatches.transforms.Pipeline.fold_batch] of each of a
        montage's ``modalities`` (of ``rows`` channels each; None: not folded), the same
        values, computed once for the modalities that the same transforms apply to
        when those draw row by row (`Transform._rows_prefix`): at the most rows among
        them, the others' folds being its first rows."""
        leading = [t for _, t in self.item]
        shared = all(
            type(t).__dict__.get("_rows_prefix", False)  # not a subclass's
            for t in leading
            if type(t).fold is not Transform.fold
        )
        groups: dict[Any, tuple[int, str]] = {}
        for r, name in zip(rows, modalities, strict=True):
            if r is None:
                continue
            group = tuple(t.applies_to(name) for t in leading) if shared else name
            if group not in groups or groups[group][0] < r:
                groups[group] = (r, name)
        made = {g: self.fold_batch(key, n, r, dtype, name) for g, (r, name) in groups.items()}
        out: list[Folds | None] = []
        for r, name in zip(rows, modalities, strict=True):
            if r is None:
                out.append(None)
                continue
            group = tuple(t.applies_to(name) for t in leading) if shared else name
            folds = made[group]
            out.append(folds if folds is None or folds.rows == r else folds.head(r))
        return out

    def apply_targets(self, y: Any, items: Sequence[Any]) -> Any:
        """The targets transforms' ``y`` of the batch's ``items`` (``y`` the stacked
        dense labels)."""
        for t in self.targets:
            y = t.make_targets(y, items)
        return y

    def apply_batch(
        self,
        x: np.ndarray,
        y: Any,
        sample_rate: float,
        key: tuple[int, int] | None,
        modality: str | None = None,
    ) -> tuple[np.ndarray, Any]:
        for i, t in self.batch:
            if not t.applies_to(modality):
                continue
            x, y = t.apply(x, y, self._rng(t, key, None, i), sample_rate)
        return x, y

    @staticmethod
    def _rng(
        t: Transform, key: tuple[int, int] | None, item: int | None, position: int
    ) -> np.random.Generator | KeyedDraws | None:
        if not t.random:
            return None
        if key is None:
            raise BatchSpecError(
                f"{t!r} is random: it needs the batch's key, (seed, batch index); pass "
                f"key=(state.seed, state.index) to materialize_batch, or serve a scheme "
                f"wrapped in TransformedBatches (Batcher(..., transforms=...) does)"
            )
        if t.keyed_draws:
            return KeyedDraws(key[0], key[1], item, position, batch=_batch_draws(key))
        return generator_for(key[0], key[1], item, position)


def _contextual_prefix(item: Sequence[tuple[int, Transform]]) -> int:
    """How many leading item transforms need context (all of them must lead)."""
    # Whether it overrides margin, not its value at some rate: a filter's margin at a
    # rate below twice its band edge is a design error, which its check reports later.
    needs = [type(t).margin is not Transform.margin for _, t in item]
    n = 0
    while n < len(needs) and needs[n]:
        n += 1
    if any(needs[n:]):
        late = [str(t) for (_, t), need in zip(item, needs, strict=True) if need][-1]
        raise BatchSpecError(
            f"transforms that read context around the window (filters) come first in a "
            f"pipeline; {late} follows one that does not"
        )
    return n
