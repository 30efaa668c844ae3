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
``TimeReverse`` reverses all of them, or none); see `ondabatches.materialize._multi_transformed`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import BatchSpecError
from ._draws import KeyedDraws, _batch_draws, generator_for
from ._folds import Fold, Folds
from ._transform import Transform, transform_from_dict

__all__ = ["Pipeline"]


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
            last = j + 1 == self._contextual and (before or after)
            if t.moves_window:
                before, after = t.shift(before, after, rng, sample_rate)
            elif last and (cut := t._apply_window(x, y, rng, sample_rate, (before, after))):
                (x, y), before, after = cut, 0, 0  # transformed and cut at once
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
        heads: dict[tuple[Any, int], Folds] = {}  # one per group and rows: modalities share it
        for r, name in zip(rows, modalities, strict=True):
            if r is None:
                out.append(None)
                continue
            group = tuple(t.applies_to(name) for t in leading) if shared else name
            folds = made[group]
            if folds is not None and folds.rows != r:
                if (group, r) not in heads:
                    heads[group, r] = folds.head(r)
                folds = heads[group, r]
            out.append(folds)
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
