"""Multi-signal items through a transform pipeline (see `materialize_multi_transformed`).

Where no transform of any modality needs context, the plain batch is read (each
modality in one pass) with the leading gains, signs, dropped channels and reversals
folded into its decode, and the rest of the item transforms run on each item's slots
(`_in_place`); otherwise each modality of each item is read with its transforms'
context, transformed and stacked (the general path). Both give the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._errors import BatchShapeError, require
from ..batches._item import BatchItem
from ..batches._multi_item import MissingModality, MultiBatchItem
from ..onda._timespan import n_samples, window_sample_range
from ._materialize import _channel_index, _n_total, _rows, _stack, _x_at
from ._multi import (
    _arrays,
    _check_alike,
    _describe,
    _filter,
    _part_shape,
    _rate,
    _reach,
    _read_extended,
    _span_in,
    _with_masks,
)

__all__: list[str] = []


def _resampled_with_margin(
    part: BatchItem, target: float, up: int, down: int, n_out: int, margin: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """The resampled part's window with ``margin`` output samples each side (fewer at
    the ends of the whole signal's resampled output), and the ``(before, after)`` cut."""
    total_in = n_samples(part.signal_span.duration, part.info.sample_rate)
    total_out = -(-total_in * up // down)
    rel = part.window.translate(-part.signal_span.start)
    j0 = window_sample_range(rel, target).start
    lo = max(j0 - margin, 0) if j0 >= 0 else j0
    hi = min(j0 + n_out + margin, total_out) if j0 + n_out <= total_out else j0 + n_out
    first_row = (((lo * down) // up - _reach(up, down)) // down) * down
    k0 = lo - (first_row // down) * up
    shape = _part_shape(part, part.window.duration, target)[0]
    ext = np.empty((*shape[:-1], _span_in(hi - lo, up, down)), dtype=np.float64)
    _read_extended(part, ext, first_row)
    signal = require("scipy.signal", "resample")
    out = signal.resample_poly(ext, up, down, axis=-1, window=_filter(up, down))
    return out[..., k0 : k0 + hi - lo], (j0 - lo, hi - j0 - n_out)


def _part_transformed(
    item: MultiBatchItem,
    i: int,
    k: int,
    target: float | None,
    dtype: np.dtype,
    exact: bool,
    pipeline: Any,
    key: tuple[int, int] | None,
    y: np.ndarray,
) -> tuple[np.ndarray, Any]:
    """Modality ``k`` of item ``i`` read with its transforms' context and transformed."""
    name, part = item.names[k], item.parts[k]
    shape, ratio = _part_shape(part, item.window.duration, target)
    if isinstance(part, MissingModality):
        # The transforms run on zeros for the shape (and the labels) they give; the
        # modality stays zeros, as its mask says it is absent.
        rate = part.sample_rate if target is None else target
        x, y = pipeline.apply_item(np.zeros(shape, dtype), y, rate, (0, 0), key, i, item, name)
        return np.zeros_like(x), y
    where = f"modality {name!r} of {_describe(item)} ({part.file_path})"
    if ratio is None:
        rate = part.info.sample_rate
        rows, n_total = _rows(part), _n_total(part)
        pipeline.check(rate, len(rows), n_total, where, name)
        margin = pipeline.margin(rate, name)
        first = max(rows.start - margin, 0) if rows.start >= 0 else rows.start
        stop = min(rows.stop + margin, n_total) if rows.stop <= n_total else rows.stop
        x = _x_at(part, range(first, stop), _channel_index(part), dtype, None, exact)
        cut = (rows.start - first, stop - rows.stop)
    else:
        rate = target
        up, down = ratio
        total = -(-n_samples(part.signal_span.duration, part.info.sample_rate) * up // down)
        pipeline.check(rate, shape[-1], total, where, name)
        x, cut = _resampled_with_margin(
            part, target, up, down, shape[-1], pipeline.margin(rate, name)
        )
        x = x.astype(dtype, copy=False)
    return pipeline.apply_item(x, y, rate, cut, key, i, item, name)


def materialize_multi_transformed(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Any,
    key: tuple[int, int] | None,
) -> tuple[Any, Any]:
    """Multi-signal items through ``pipeline``'s transforms of ``x``.

    Each modality's array of each item gets the item transforms that apply to it
    (``modalities=``, default all) at the rate of the array the batch holds: the
    modality's own rate, or the target rate where the montage resamples, *after*
    resampling, so that a filter's band and a spectrogram's frequencies are those of
    the array returned and every item of a batch is filtered at one rate. Context is
    read around each modality's window exactly as for a single-signal item (the
    resampled signal's margin comes from resampling a longer stretch, so a window
    equals the whole signal resampled, filtered and sliced). All modalities of an item
    draw from one generator per transform position (a TimeReverse reverses all of
    them and the labels together; GaussianNoise draws the same sequence for each).
    Missing modalities (mask False) stay zeros. Batch transforms run on each
    modality's stacked array (on the one array where modalities are concatenated),
    with the same generator for every modality.
    """
    first = _check_alike(items)
    pipeline.check_modalities(first.names, first.concatenate, _describe(first))
    direct = _in_place(items, dtype, allocate, exact, pipeline, key)
    if direct is not None:
        return direct
    targets = first.rates or (None,) * len(first.names)
    per_modality, ys = _transformed_parts(items, targets, dtype, exact, pipeline, key)
    shapes = _shapes_after(items, per_modality)
    y = _stack(items, ys)
    if first.concatenate:
        if len({s[1:] for s in shapes}) > 1:
            raise BatchShapeError(
                "the montage concatenates its modalities into one array, but after the "
                "transforms their shapes differ beyond the channel axis: "
                + ", ".join(f"{nm} {s}" for nm, s in zip(first.names, shapes, strict=True))
                + " (give shape-changing transforms all modalities, or do not concatenate)"
            )
        x: Any = np.concatenate([np.stack(a) for a in per_modality], axis=1)
    else:
        x = {name: np.stack(per_modality[k]) for k, name in enumerate(first.names)}
    x, y = _batch_stage(x, y, items, pipeline, key, allocate)
    return _with_masks(x, items, allocate), y


def _transformed_parts(
    items: Sequence[MultiBatchItem],
    targets: Sequence[float | None],
    dtype: np.dtype,
    exact: bool,
    pipeline: Any,
    key: tuple[int, int] | None,
) -> tuple[list[list[np.ndarray]], list[Any]]:
    """Each modality's transformed arrays of the items, and each item's labels (those
    the transforms of its first modality give: those that move labels apply to every
    modality alike)."""
    names = items[0].names
    codes = [np.asarray(it.label_codes()).reshape(1, -1) for it in items]
    if len({c.shape for c in codes}) > 1:
        raise BatchShapeError(
            "items of the batch have different y shapes:\n"
            + "\n".join(
                f"  item {i}: y {c.shape} ({_describe(it)})"
                for i, (it, c) in enumerate(zip(items, codes, strict=True))
            )
        )
    per_modality: list[list[np.ndarray]] = [[] for _ in names]
    ys = []
    for i, it in enumerate(items):
        y_item = None
        for k in range(len(names)):
            x_k, y_k = _part_transformed(
                it, i, k, targets[k], dtype, exact, pipeline, key, codes[i]
            )
            per_modality[k].append(x_k)
            if k == 0:
                y_item = y_k
        ys.append(y_item)
    return per_modality, ys


def _shapes_after(
    items: Sequence[MultiBatchItem], per_modality: list[list[np.ndarray]]
) -> list[tuple[int, ...]]:
    """The one shape of each modality's transformed arrays (an error naming every
    item's where they differ)."""
    shapes = []
    for k, name in enumerate(items[0].names):
        kinds = {a.shape for a in per_modality[k]}
        if len(kinds) > 1:
            raise BatchShapeError(
                f"items of the batch have different shapes of modality {name!r} after the "
                f"transforms:\n"
                + "\n".join(
                    f"  item {i}: {name} {a.shape} ({_describe(it)})"
                    for i, (it, a) in enumerate(zip(items, per_modality[k], strict=True))
                )
            )
        shapes.append(kinds.pop())
    return shapes


def _batch_stage(
    x: Any,
    y: Any,
    items: Sequence[MultiBatchItem],
    pipeline: Any,
    key: tuple[int, int] | None,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
) -> tuple[Any, Any]:
    """The batch transforms on ``x`` (the one concatenated array, or a dict of each
    modality's, each at its rate), the results copied into arrays from ``allocate``;
    ``y`` is the one the first modality's batch transforms give."""
    first = items[0]
    targets = first.rates or (None,) * len(first.names)
    if first.concatenate:
        x, y = pipeline.apply_batch(x, y, targets[0], key)
        out = allocate(x.shape, x.dtype)
        out[...] = x
        return out, y
    result, y_out = {}, y
    for k, name in enumerate(first.names):
        arr, y_k = pipeline.apply_batch(x[name], y, targets[k] or _rate(items, k), key, name)
        if k == 0:
            y_out = y_k
        out = allocate(arr.shape, arr.dtype)
        out[...] = arr
        result[name] = out
    return result, y_out


def _in_place(
    items: Sequence[MultiBatchItem],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Any,
    key: tuple[int, int] | None,
) -> tuple[Any, Any] | None:
    """`materialize_multi_transformed` where no transform of any modality needs context:
    the plain batch (each modality read, or resampled, in one pass), then the item
    transforms on each item's slots, the gains, signs, dropped channels and reversals
    leading the pipeline for all items of a modality at once
    ([`Pipeline.fold_batch`][ondabatches.transforms.Pipeline.fold_batch]: the values of
    applying them one by one). None where that does not apply (context, a transform
    that changes an item's shape): the general path."""
    if pipeline.checks_signals and _needs_context(items, pipeline):
        return None
    first = items[0]
    targets = first.rates or (None,) * len(first.names)
    # The leading gains, signs, dropped channels and reversals of each modality, for
    # all items at once, done as its windows are decoded.
    rows: list[int | None] = []
    for k in range(len(first.names)):
        shape = _part_shape(first.parts[k], first.window.duration, targets[k])[0]
        rows.append(shape[0] if len(shape) == 2 and dtype.kind == "f" else None)
    folds = pipeline.fold_montage(key, len(items), rows, dtype, first.names)
    alloc = np.empty if pipeline.batch else allocate
    decoded = [None if f is None or f.trivial else f for f in folds]
    x, outs, codes = _arrays(items, dtype, alloc, exact, decoded if any(decoded) else None)
    y = _item_stage(items, outs, folds, codes, pipeline, key)
    if y is None:
        return None  # a transform that changes the shape: the general path
    if pipeline.batch:
        x, y = _batch_stage(x, y, items, pipeline, key, allocate)
    return _with_masks(x, items, allocate), y


def _needs_context(items: Sequence[MultiBatchItem], pipeline: Any) -> bool:
    """Check each signal's transforms (once per layout); whether one reads context."""
    first = items[0]
    targets = first.rates or (None,) * len(first.names)
    checked: set[Any] = set()
    for it in items:
        for k, part in enumerate(it.parts):
            if isinstance(part, MissingModality):
                continue
            seen = (k, id(part.info), it.window.duration, part.signal_span.duration)
            if seen in checked:  # the checks depend on these only
                continue
            checked.add(seen)
            name = first.names[k]
            rate, window, total = _check_values(part, targets[k])
            where = f"modality {name!r} of {_describe(it)} ({part.file_path})"
            pipeline.check(rate, window, total, where, name)
            if pipeline.margin(rate, name):
                return True
    return False


def _item_stage(
    items: Sequence[MultiBatchItem],
    outs: list[np.ndarray],
    folds: list[Any],
    codes: np.ndarray,
    pipeline: Any,
    key: tuple[int, int] | None,
) -> Any:
    """The item transforms left after the folds on each item's slot of each modality's
    array ``outs[k]`` (in place), and the labels (``codes`` stacked, as the first
    modality's transforms leave them); None if a transform changes a slot's shape."""
    first = items[0]
    targets = first.rates or (None,) * len(first.names)
    n, steps = len(items), len(pipeline.item)
    y, ys = codes, None  # the labels (of modality 0), and a list of them where they change
    for k, name in enumerate(first.names):
        arr, fold = outs[k], folds[k]
        # The items whose pipeline goes on past the fold (all of them without one).
        rest = np.flatnonzero(fold.done < steps).tolist() if fold is not None else range(n)
        if not steps:
            rest = []
        starts = _reversed(codes, fold) if k == 0 or rest else codes
        if k == 0:  # transforms that move labels apply to every modality alike
            y = starts
        for i in rest:
            it, slot = items[i], arr[i]
            start = 0 if fold is None else int(fold.done[i])
            rate = targets[k] or _rate([it], k)
            out, y_i = pipeline.apply_item(
                slot, starts[i], rate, (0, 0), key, i, it, name, start=start
            )
            if out.shape != slot.shape:
                return None
            if out is not slot:
                slot[...] = out
            if k == 0:
                ys = list(starts) if ys is None else ys
                ys[i] = y_i
        for i, it in enumerate(items):
            if isinstance(it.parts[k], MissingModality):
                arr[i] = 0  # the modality stays zeros, as its mask says it is absent
    return y if ys is None else _stack(items, ys)


def _reversed(codes: np.ndarray, fold: Any) -> np.ndarray:
    """The stacked labels ``codes`` with those of the windows ``fold`` reverses reversed."""
    if fold is None or not fold.reverse.any():
        return codes
    out = codes.copy()
    out[fold.reverse] = codes[fold.reverse][..., ::-1]
    return out


def _check_values(part: BatchItem, target: float | None) -> tuple[float, int, int]:
    """The rate, window and recording length (samples) a part's transforms are checked
    at: its own, or the target rate's where it is resampled."""
    shape, ratio = _part_shape(part, part.window.duration, target)
    if ratio is None:
        return part.info.sample_rate, len(_rows(part)), _n_total(part)
    up, down = ratio
    total = -(-n_samples(part.signal_span.duration, part.info.sample_rate) * up // down)
    return target, shape[-1], total
