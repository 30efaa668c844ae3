"""Materialization with a transform pipeline: each window read with the context its
filters need, the item transforms run before stacking, the batch transforms after.

A window's context is read from the recording (``margin`` samples each side, fewer at
the recording's edges), so that a filtered window at any start equals the filter run
over the whole recording and sliced to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._errors import BatchShapeError, BatchSpecError
from ..batches._item import BatchItem
from ..onda._decoding import decode_plan
from ..onda._settings import current_settings
from ..transforms._base import Pipeline
from ..transforms._builtins import _Filter
from ..transforms._folds import Folds
from ..transforms._transform import Transform
from ._local import decode_local
from ._materialize import (
    _ITEM_KINDS,
    _TRANSFORMED,
    _channel_index,
    _describe,
    _is_remote,
    _n_total,
    _plan,
    _read,
    _rows,
    _shape_error,
    _shape_of,
    _stack,
    _x_at,
    _y,
    materialize_batch,
)

__all__: list[str] = []


def _item(
    item: Any, i: int, dtype: np.dtype, exact: bool, pipeline: Pipeline, key: Any
) -> tuple[np.ndarray, np.ndarray]:
    rate = item.info.sample_rate
    rows = _rows(item)
    n_total = _n_total(item)
    pipeline.check(rate, len(rows), n_total, _describe(item))
    margin = pipeline.margin(rate)
    first = max(rows.start - margin, 0) if rows.start >= 0 else rows.start
    stop = min(rows.stop + margin, n_total) if rows.stop <= n_total else rows.stop
    x = _x_at(item, range(first, stop), _channel_index(item), dtype, None, exact)
    cut = (rows.start - first, stop - rows.stop)
    return pipeline.apply_item(x, _y(item), rate, cut, key, i, item)


def materialize_transformed(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Pipeline,
    key: tuple[int, int] | None,
) -> tuple[Any, Any]:
    """[`materialize_batch`][ondabatches.materialize.materialize_batch] of ``items``
    through ``pipeline``'s transforms of ``x`` (its targets are made from the result's
    ``y``)."""
    if not (pipeline.item or pipeline.batch):
        return _plain(items, dtype, allocate, exact, pipeline)
    if type(items[0]) in _ITEM_KINDS:
        from ._multi_transformed import materialize_multi_transformed

        return materialize_multi_transformed(items, dtype, allocate, exact, pipeline, key)
    bad = [i for i, it in enumerate(items) if not isinstance(it, BatchItem)]
    if bad:
        raise BatchSpecError(
            f"item {bad[0]} is a {type(items[bad[0]]).__name__}: a batch mixes item kinds"
        )
    if not any(isinstance(it, BatchItem) and _is_remote(it) for it in items):
        paired = _filtered_in_pairs(items, dtype, allocate, exact, pipeline)
        if paired is not None:
            return paired
        direct = _in_place(items, dtype, allocate, exact, pipeline, key)
        if direct is not None:
            return direct
    if any(isinstance(it, BatchItem) and _is_remote(it) for it in items):
        threads = min(current_settings().max_concurrent_reads, len(items))
        with ThreadPoolExecutor(threads, thread_name_prefix="ondabatches-read") as pool:
            jobs = [
                pool.submit(_item, it, i, dtype, exact, pipeline, key) for i, it in enumerate(items)
            ]
        pairs = [job.result() for job in jobs]
    else:
        pairs = [_item(it, i, dtype, exact, pipeline, key) for i, it in enumerate(items)]
    xs = [p[0] for p in pairs]
    ys = [p[1] for p in pairs]
    if len({a.shape for a in xs}) > 1:
        raise _shape_error(items, [a.shape for a in xs], "x")
    direct = not pipeline.batch
    x = (allocate if direct else np.empty)((len(xs), *xs[0].shape), xs[0].dtype)
    np.stack(xs, out=x)
    y = _stack(items, ys)
    if direct:
        return x, y
    x, y = pipeline.apply_batch(x, y, _rate_of(items), key)
    if allocate is not np.empty:
        out = allocate(x.shape, x.dtype)
        out[...] = x
        x = out
    return x, y


def _plain(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Pipeline,
) -> tuple[Any, Any]:
    """A pipeline of targets only: the plain batch (any item kind), its targets checked
    once per sample rate of single-signal items."""
    kinds = {type(it) for it in items}
    if len(kinds) > 1:
        bad = next(i for i, it in enumerate(items) if type(it) is not type(items[0]))
        raise BatchSpecError(
            f"item {bad} is a {type(items[bad]).__name__}, item 0 a "
            f"{type(items[0]).__name__}: a batch mixes item kinds"
        )
    checked = set()
    for item in items:
        if isinstance(item, BatchItem) and item.info.sample_rate not in checked:
            checked.add(item.info.sample_rate)
            pipeline.check(item.info.sample_rate, len(_rows(item)), _n_total(item), _describe(item))
    return materialize_batch(items, dtype, allocate=allocate, exact=exact)


def _in_place(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Pipeline,
    key: tuple[int, int] | None,
) -> tuple[Any, Any] | None:
    """Item transforms that need no context run on each item's slot of the batch, which
    its window is decoded straight into (no per-item array, no stacking copy); None
    where that does not apply (context, a selector object, shapes that differ)."""
    if not all(isinstance(it, BatchItem) for it in items) or pipeline.batch:
        return None
    # Each item's rows and channel index, shape and signal samples, what the items of a
    # signal share worked out once (as for the plain batch).
    plans, expected, n_totals = _plan(items)
    shapes = set(expected)
    if len(shapes) != 1 or None in shapes:
        return None
    # Checked first: a filter's margin at a rate its band does not fit is a design error.
    checked = set()
    for item, (rows, _), n_total in zip(items, plans, n_totals, strict=True):
        checks = (item.info.sample_rate, len(rows), n_total)
        if checks not in checked:  # the checks depend on these only: once per batch each
            pipeline.check(*checks, _describe(item))
            checked.add(checks)
    if any(pipeline.margin(rate) for rate in {c[0] for c in checked}):
        return None
    x = allocate((len(items), *shapes.pop()), dtype)
    # Gains, signs and time reversal leading the pipeline are done by the decode: drawn
    # for every item at once, or item by item for a transform that folds only so.
    folds = pipeline.fold_batch(key, len(items), x.shape[1], x.dtype) if x.ndim == 3 else None
    if folds is not None:
        return _folded_in_place(items, plans, n_totals, x, dtype, exact, pipeline, key, folds)
    ys = []
    for i, (item, (rows, index)) in enumerate(zip(items, plans, strict=True)):
        gain, reverse, fill, done = None, False, None, 0
        if x.ndim == 3 and item.info.dtype.kind in "iu":
            fold, done = pipeline.fold_item(key, i, x.shape[1], x.dtype)
            if fold is not None:
                gain = None if fold.gain == 1 else fold.gain
                reverse, fill = fold.reverse, fold.fill
        slot = _x_at(item, rows, index, dtype, x[i], exact, gain, reverse, fill)
        y = _y(item)
        if reverse:
            y = np.ascontiguousarray(y[..., ::-1])
        out, y = pipeline.apply_item(
            slot, y, item.info.sample_rate, (0, 0), key, i, item, start=done
        )
        if out is not slot:
            if out.shape != slot.shape:
                return None  # a transform that changes the shape: the general path
            slot[...] = out
        ys.append(y)
    return x, _stack(items, ys)


def _folded_in_place(
    items: Sequence[BatchItem],
    plans: list[tuple[range, Any]],
    n_totals: list[int],
    x: np.ndarray,
    dtype: np.dtype,
    exact: bool,
    pipeline: Pipeline,
    key: tuple[int, int] | None,
    folds: Folds,
) -> tuple[Any, Any] | None:
    """`_in_place` with the batch's folds: the windows of local ``lpcm`` files decoded
    with their folds by the plain batch's local path (`decode_local`), the others by
    the general path, item by item, in order (its errors, raised where it raised them);
    then the item transforms left after the folds, on the items that have some."""
    n, steps = len(items), len(pipeline.item)
    per_item = folds.items()
    kinds = {id(it.info): it.info for it in items}  # a batch's items share a few infos
    if any(info.dtype.kind not in "iu" for info in kinds.values()):
        per_item = [f if it.info.dtype.kind in "iu" else _UNFOLDED
                    for f, it in zip(per_item, items, strict=True)]  # fmt: skip
    decoded = [None if g is None and not r and f is None else (g, r, f) for g, r, f, _ in per_item]
    left = decode_local(items, plans, n_totals, dtype, x, exact, decoded)
    if not left and all(done >= steps for *_, done in per_item):
        codes = [it.label_codes() for it in items]  # the usual case: every window folded
        rest: dict[int, Any] = {}
    else:
        codes, rest = _rest(items, plans, x, dtype, exact, pipeline, key, per_item, set(left))
        if rest is None:
            return None  # a transform that changes the shape: the general path
    sizes = [c.size for c in codes]
    if len(set(sizes)) > 1:
        raise _shape_error(items, [(1, s) for s in sizes], "y")
    # A copy (in-memory codes are read-only views of the labeled table's buffer).
    y = np.concatenate([c if c.ndim == 1 else np.ravel(c) for c in codes])
    y = y.reshape(n, 1, sizes[0])
    flipped = [i for i, (_, r, _, _) in enumerate(per_item) if r]
    if flipped:
        y[flipped] = y[flipped][..., ::-1]
    if not rest:
        return x, y
    ys = list(y)
    for i, y_i in rest.items():
        ys[i] = y_i
    return x, _stack(items, ys)


def _rest(
    items: Sequence[BatchItem],
    plans: list[tuple[range, Any]],
    x: np.ndarray,
    dtype: np.dtype,
    exact: bool,
    pipeline: Pipeline,
    key: tuple[int, int] | None,
    per_item: list[tuple],
    left: set[int],
) -> tuple[list[np.ndarray], dict[int, Any] | None]:
    """The items ``left`` by the local path read by the general path, and the item
    transforms left after the folds, item by item in order (the general path's errors
    where it raised them); each item's label codes, and the labels of the items that
    had transforms left (None if one changed a window's shape)."""
    steps = len(pipeline.item)
    codes, rest = [], {}
    for i, (item, (rows, index)) in enumerate(zip(items, plans, strict=True)):
        gain, reverse, fill, done = per_item[i]
        slot = x[i]
        if i in left:
            _x_at(item, rows, index, dtype, slot, exact, gain, reverse, fill)
        code = item.label_codes()
        codes.append(code)
        if done < steps:
            y = np.array(code).reshape(1, -1)
            if reverse:
                y = np.ascontiguousarray(y[..., ::-1])
            out, rest[i] = pipeline.apply_item(
                slot, y, item.info.sample_rate, (0, 0), key, i, item, start=done
            )
            if out is not slot:
                if out.shape != slot.shape:
                    return codes, None
                slot[...] = out
    return codes, rest


#: `Folds.item` of a window that is not folded (its samples are not integers).
_UNFOLDED = (None, False, None, 0)


#: Items filtered per call of the compiled sosfiltfilt: its loop over the rows of a time
#: step runs twice as many of them (more independent recursions in flight), which was
#: 1.45x faster per item for 19 channels; four items' scratch no longer fits the cache.
_GROUP = 2


def _filtered_in_pairs(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    pipeline: Pipeline,
) -> tuple[Any, Any] | None:
    """A pipeline of one built-in filter: the windows of items read with the same
    margins decoded into one array, two at a time, and filtered in one call (the same
    values: each row's recursion is its own), written into the batch; with the compiled
    kernel the reads are decoded straight into its time-major scratch (no decoded
    array, no transposes), and windows with whole margins filter only their own rows,
    from the states the margins leave (scipy's values to rounding, see
    `decode_filtfilt_into`). None where that does not apply."""
    if pipeline.batch or len(pipeline.item) != 1 or not all(type(it) is BatchItem for it in items):
        return None
    f = pipeline.item[0][1]
    if (
        not isinstance(f, _Filter)
        or type(f).apply is not _Filter.apply
        or type(f).apply_to is not Transform.apply_to
    ):
        return None  # the built-in filters' rows, filtered independently, only
    plans = _plans(items, pipeline)
    if plans is None:
        return None
    channels, window = plans[0][2][0], len(_rows(items[0]))
    x = allocate((len(items), channels, window), dtype)
    i, read = 0, None
    while i < len(items):
        j = i + 1  # a group: the next items whose reads have the same shape and cut
        while j < min(i + _GROUP, len(items)) and plans[j][2:] == plans[i][2:]:
            j += 1
        rate, cut = items[i].info.sample_rate, plans[i][3]
        # The group's slots of the batch as rows, filtered into with no copy (a reshape
        # of a batch that is not C-ordered would be a copy: filtered, then assigned).
        slots = x[i:j].reshape((j - i) * channels, window) if x.flags.c_contiguous else None
        reads = [(_read(items[k], plans[k][0]), plans[k][1]) for k in range(i, j)]
        if slots is None or not f._decode_filter_into(
            [_decoding(items[k], e, index, dtype, exact)
             for k, (e, index) in zip(range(i, j), reads, strict=True)],
            rate, cut, slots,
        ):  # fmt: skip
            shape = ((j - i) * channels, plans[i][2][1])
            if read is None or read.shape != shape:  # one buffer for the groups of a shape
                read = np.empty(shape, dtype)
            for k, (encoded, index) in zip(range(i, j), reads, strict=True):
                part = read[(k - i) * channels : (k - i + 1) * channels]
                decode_plan(items[k].info, dtype, not exact).select(encoded, index, part)
            _filter_group(f, read, rate, cut, slots, x, i, j)
        i = j
    return x, _stack(items, [_y(it) for it in items])


def _decoding(
    item: BatchItem, encoded: np.ndarray, index: list[int] | slice, dtype: np.dtype, exact: bool
) -> tuple[np.ndarray, np.ndarray | None, float, float, bool]:
    """A read's decode as `decode_filtfilt_into` takes it: what `DecodePlan.select`
    does with it (the same resolution, offset and arithmetic)."""
    plan = decode_plan(item.info, dtype, not exact)
    res, off = (1.0, 0.0) if plan.how == "cast" else (plan.resolution, plan.offset)
    channels = None if isinstance(index, slice) else np.asarray(index, dtype=np.intp)
    return encoded.T, channels, res, off, plan.how == "native"


def _filter_group(f, read, rate, cut, slots, x, i, j) -> None:
    """The group's decoded rows filtered into its slots of the batch (``slots``, or
    ``x[i:j]`` where there are none)."""
    if slots is not None and f._filter_into(read, rate, cut, slots):
        return
    got = f._apply_window(read, None, None, rate, cut)
    if got is None:  # scipy's (no compiled kernel), then cut, as apply_item does
        full, _ = f.apply_to(read, None, None, rate, None)
        got = (full[:, cut[0] : full.shape[1] - cut[1]], None)
    x[i:j] = got[0].reshape(x[i:j].shape)


def _plans(items: Sequence[BatchItem], pipeline: Pipeline) -> list[tuple] | None:
    """Each item's rows read with its margins, channel index, read shape and cut; None
    unless all of them are inside their signals and their windows stack."""
    plans = []
    for item in items:
        rate, rows, n_total = item.info.sample_rate, _rows(item), _n_total(item)
        pipeline.check(rate, len(rows), n_total, _describe(item))
        margin, index = pipeline.margin(rate), _channel_index(item)
        if rows.start < 0 or rows.stop > n_total or not margin:
            return None
        first, stop = max(rows.start - margin, 0), min(rows.stop + margin, n_total)
        shape = _shape_of(item, range(first, stop), index)
        if shape is None:
            return None
        plans.append((range(first, stop), index, shape, (rows.start - first, stop - rows.stop)))
    stacking = {
        (it.info.sample_rate, p[2][0], len(_rows(it))) for it, p in zip(items, plans, strict=True)
    }
    return plans if len(stacking) == 1 else None


def _rate_of(items: Sequence[BatchItem]) -> float:
    rates = {it.info.sample_rate for it in items}
    if len(rates) > 1:
        raise BatchShapeError(f"batch transforms need one sample rate per batch, got {rates}")
    return rates.pop()


_TRANSFORMED.append(materialize_transformed)
