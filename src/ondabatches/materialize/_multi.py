"""Multi-signal items (montages) to arrays: one array per modality, masks, resampling.

A batch of [`MultiBatchItem`][ondabatches.batches.MultiBatchItem] becomes ``(x, y)``:

- ``x`` is a dict name -> array ``(batch, channels, samples at that signal's rate)`` in
  montage order; each modality's rows are exactly those of a single-signal item of the
  same window (its part is materialized by the single-signal code);
- with ``missing="zero-fill"``, ``x["mask"]`` is a dict name -> bool array ``(batch,)``,
  True where the item has the modality (zeros where it does not);
- with ``resample={"rate": r, "concatenate": True}``, ``x`` is one array
  ``(batch, sum of channels, time)`` (and, with a mask, ``{"x": array, "mask": ...}``);
- ``y`` is ``(batch, 1, labels)`` as for single-signal batches.

Resampling is `scipy.signal.resample_poly` (``pip install 'ondabatches[resample]'``)
with ``up/down`` the reduced ratio of the rates and scipy's default filter: a
``firwin`` low-pass FIR of ``2 * 10 * max(up, down) + 1`` taps, cutoff at the lower
Nyquist frequency, Kaiser window with beta 5.0, zero padding beyond the data.

The rule, for every window start: output sample ``i`` of a window ``[a, b)`` at the
target rate ``R`` is sample ``floor((a - signal start) * R) + i`` of ``resample_poly``
applied to the whole signal, that is the resampled signal at the window's start
(rounded down to the target grid, as the index rules round a window's start) plus
``i / R``. Each window is read with a margin of input samples on each side (at least
the filter's reach), from an input row that is a multiple of ``down``, where the
whole signal's output grid has a sample; the margin is clipped at the signal's span
and replaced by zeros there, exactly as resampling the whole signal would pad it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from .._errors import BatchShapeError, require
from ..batches._item import BatchItem
from ..batches._montage import channel_shape, resample_ratio
from ..batches._multi_item import MissingModality, MultiBatchItem
from ..onda._decoding import post_decode
from ..onda._settings import current_settings
from ..onda._timespan import TimeSpan, n_samples, time_from_index, window_sample_range
from ._materialize import (
    _ITEM_KINDS,
    _channel_index,
    _is_remote,
    _is_remote_path,
    _n_total,
    _rows,
    _stack,
    _x,
    _x_at,
)


def _part_shape(part: BatchItem | MissingModality, duration: int, target: float | None):
    """``(channels..., time)`` of a part, and ``(up, down)`` if it is resampled."""
    if isinstance(part, MissingModality):
        return _missing_shape(part.shape, part.sample_rate, duration, target)
    try:
        return _signal_shape(part.channels, part.info, duration, target)
    except TypeError:  # an unhashable selector object
        return _signal_shape.__wrapped__(part.channels, part.info, duration, target)


@lru_cache(maxsize=4096)
def _missing_shape(shape: tuple[int, ...], rate: float, duration: int, target: float | None):
    return (*shape, n_samples(duration, rate if target is None else target)), None


# Items of a batch share a few layouts: their shapes are worked out once per layout.
@lru_cache(maxsize=4096)
def _signal_shape(channels: Any, info: Any, duration: int, target: float | None):
    rate = info.sample_rate
    if target is None:
        return (*channel_shape(channels, info), n_samples(duration, rate)), None
    up, down = resample_ratio(rate, target)
    ratio = None if up == down else (up, down)
    return (*channel_shape(channels, info), n_samples(duration, target)), ratio


def _plans(items: Sequence[MultiBatchItem], targets: Sequence[float | None]) -> list[list[Any]]:
    """Per item and part, `_part_shape`.

    The parts of a batch share a few ``info`` and selector objects (those of the
    scheme's table, or one pickle's shared copies in a worker): they are looked up by
    identity first, as hashing a ``SamplesInfo`` for each of a batch's hundreds of parts
    cost more than the rest of this layer's bookkeeping.
    """
    seen: dict[tuple[int, int, int, float | None], Any] = {}
    plans = []
    for it in items:
        duration, plan = it.window.duration, []
        for p, t in zip(it.parts, targets, strict=True):
            # Ids are unique among objects alive together, and the items keep all of
            # theirs alive for the whole call.
            key = (id(getattr(p, "info", p)), id(getattr(p, "channels", p)), duration, t)
            found = seen.get(key)
            if found is None:
                found = seen[key] = _part_shape(p, duration, t)
            plan.append(found)
        plans.append(plan)
    return plans


def _describe(item: MultiBatchItem) -> str:
    return f"recording {item.recording} window {item.window}"


def _check_alike(items: Sequence[Any]) -> MultiBatchItem:
    first = items[0]
    for i, it in enumerate(items):
        if not isinstance(it, MultiBatchItem):
            raise BatchShapeError(
                f"a batch mixes multi-signal and other items: item {i} is "
                f"{type(it).__name__}, item 0 is a MultiBatchItem ({_describe(first)})"
            )
        if (it.names, it.rates, it.concatenate, it.mask) != (
            first.names, first.rates, first.concatenate, first.mask,
        ):  # fmt: skip
            raise BatchShapeError(
                f"items of the batch come from different montages: item {i} "
                f"({_describe(it)}) has modalities {list(it.names)}, rates {it.rates}, "
                f"concatenate={it.concatenate}, mask={it.mask}; item 0 ({_describe(first)}) "
                f"has {list(first.names)}, {first.rates}, {first.concatenate}, {first.mask}"
            )
    return first


@lru_cache(maxsize=64)
def _filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own default filter, designed once per ratio rather than per call."""
    signal = require("scipy.signal", "resample")
    h = signal.firwin(2 * 10 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0))
    h.flags.writeable = False  # resample_poly copies it before scaling
    return h


def _reach(up: int, down: int) -> int:
    """Input samples that the filter of a resampling by ``up/down`` reaches on each side.

    resample_poly's filter has ``10 * max(up, down)`` taps on each side at the
    upsampled rate, ``10 * max(up, down) / up`` input samples (one more for rounding).
    """
    return math.ceil(10 * max(up, down) / up) + 1


def _span_in(n_out: int, up: int, down: int) -> int:
    """Input rows read per window of ``n_out`` output samples: the window's own rows
    at any start, the filter's reach on both sides, and up to ``down - 1`` rows more
    on the left to start on a multiple of ``down`` (see `_plan_resampled`)."""
    return -(-n_out * down // up) + 2 * _reach(up, down) + down + 2


def _plan_resampled(part: BatchItem, target: float, up: int, down: int) -> tuple[int, int]:
    """``(first input row read, first output sample kept)`` for a resampled part.

    The whole signal's output sample ``j`` sits on upsampled index ``j * down``. A
    segment of the input that starts at row ``L``, a multiple of ``down``, gives from
    resample_poly the whole signal's outputs from ``L * up / down`` on (where the
    segment holds every input row its filter reaches, and zeros where the signal
    does: beyond its ends). The window's first output is ``j0 = floor(start * R)``;
    ``L`` is the multiple of ``down`` at or before its filter's first input row.
    """
    rel = part.window.translate(-part.signal_span.start)
    j0 = window_sample_range(rel, target).start
    # The input row at or before output j0's time (j0 * down / up), less the reach.
    lowest = (j0 * down) // up - _reach(up, down)
    first_row = (lowest // down) * down
    return first_row, j0 - (first_row // down) * up


def _read_extended(part: BatchItem, ext: np.ndarray, first_row: int) -> None:
    """Input rows ``first_row ..`` (as many as ``ext`` holds) into ``ext``, zeros
    beyond the signal, as resample_poly pads a whole signal."""
    rate = part.info.sample_rate
    total = n_samples(part.signal_span.duration, rate)
    lo, hi = max(0, first_row), min(total, first_row + ext.shape[-1])
    ext[...] = 0
    if hi > lo:
        start = part.signal_span.start + time_from_index(lo, rate)
        sub = replace(part, window=TimeSpan(start, start + time_from_index(hi - lo, rate)))
        ext[..., lo - first_row : hi - first_row] = _x(sub, np.dtype(np.float64))


def _fill(
    part: BatchItem | MissingModality, dtype: np.dtype, out: np.ndarray, exact: bool = True
) -> None:
    if isinstance(part, MissingModality):
        out[...] = 0
    else:
        _x(part, dtype, out=out, exact=exact)


def _fill_folded(
    part: BatchItem, dtype: np.dtype, out: np.ndarray, exact: bool, folded: tuple
) -> None:
    """``_fill`` of a part given its fold's ``(gain, reverse, fill, done)``: in the
    decode's own pass where it takes them, else just after it."""
    gain, reverse, fill, _ = folded
    if gain is None and not reverse and fill is None:
        _x(part, dtype, out=out, exact=exact)
    elif part.info.dtype.kind in "iu":
        _x_at(part, _rows(part), _channel_index(part), dtype, out, exact, gain, reverse, fill)
    else:
        post_decode(_x(part, dtype, out=out, exact=exact), gain, reverse, fill)


def materialize_multi_batch(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool = True,
) -> tuple[Any, np.ndarray]:
    """[`materialize_batch`][ondabatches.materialize.materialize_batch] for multi-signal
    items (see the module).

    ``exact`` is as for single-signal items; resampled modalities are always computed
    in float64 before the filter."""
    x, _, y = _arrays(items, dtype, allocate, exact)
    return _with_masks(x, items, allocate), y


def _arrays(
    items: Sequence[Any],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
    exact: bool,
    folds: Sequence[Any] | None = None,
) -> tuple[Any, list[np.ndarray], np.ndarray]:
    """The plain batch's ``x`` (without masks), each modality's array in it (views of
    the one array where they are concatenated) and ``y``; with ``folds`` (per modality,
    [`Folds`][ondabatches.transforms.Folds] or None), each present part's window gets
    its fold as it is decoded (or resampled)."""
    first = _check_alike(items)
    n = len(items)
    targets = first.rates or (None,) * len(first.names)
    plans = _plans(items, targets)
    shapes = []
    for k, name in enumerate(first.names):
        kinds = {plan[k][0] for plan in plans}
        if len(kinds) > 1:
            lines = [
                f"  item {i}: {name} {plan[k][0]} ({_describe(it)})"
                for i, (it, plan) in enumerate(zip(items, plans, strict=True))
            ]
            raise BatchShapeError(
                f"items of the batch have different shapes of modality {name!r}:\n"
                + "\n".join(lines)
            )
        shapes.append(kinds.pop())
    outs: list[np.ndarray]
    if first.concatenate:
        channels = [s[0] for s in shapes]
        x: Any = allocate((n, sum(channels), shapes[0][-1]), dtype)
        bounds = np.cumsum([0, *channels]).tolist()
        outs = [x[:, bounds[k] : bounds[k + 1]] for k in range(len(shapes))]
    else:
        x = {
            name: allocate((n, *shape), dtype)
            for name, shape in zip(first.names, shapes, strict=True)
        }
        outs = list(x.values())
    # Parts at their own rate (or missing) go straight into their slot. Resampled
    # parts are read with margins into one float64 buffer per modality and ratio, which
    # is filtered in one resample_poly call (one call per item costs far more).
    jobs: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    groups: dict[tuple[int, int, int], list[tuple[int, BatchItem]]] = {}
    for i, it in enumerate(items):
        for k, part in enumerate(it.parts):
            ratio = plans[i][k][1]
            fold = None if folds is None or isinstance(part, MissingModality) else folds[k]
            if fold is not None and ratio is None:
                jobs.append((_fill_folded, (part, dtype, outs[k][i], exact, fold.item(i))))
            elif ratio is None or isinstance(part, MissingModality):
                jobs.append((_fill, (part, dtype, outs[k][i], exact)))
            else:
                groups.setdefault((k, *ratio), []).append((i, part))
    buffers = []
    for (k, up, down), members in groups.items():
        n_out = shapes[k][-1]
        ext = np.empty((len(members), *shapes[k][:-1], _span_in(n_out, up, down)), dtype=np.float64)
        starts = []
        for j, (_, part) in enumerate(members):
            first_row, k0 = _plan_resampled(part, targets[k], up, down)
            starts.append(k0)
            jobs.append((_read_extended, (part, ext[j], first_row)))
        buffers.append((k, up, down, starts, [i for i, _ in members], ext))
    remote = any(
        isinstance(p, BatchItem) and _is_remote(p) for it in items for p in it.parts
    ) or any(_is_remote_path(getattr(it.labels, "file_path", "")) for it in items)
    if remote:
        # Every read of the batch in flight at once; leaving the block waits for all.
        threads = min(current_settings().max_concurrent_reads, len(jobs) + n)
        with ThreadPoolExecutor(threads, thread_name_prefix="ondabatches-read") as pool:
            y_jobs = [pool.submit(it.label_codes) for it in items]
            x_jobs = [pool.submit(f, *args) for f, args in jobs]
        codes = [j.result() for j in y_jobs]
        for j in x_jobs:
            j.result()
    else:
        codes = [it.label_codes() for it in items]
        for f, args in jobs:
            f(*args)
    if buffers:
        signal = require("scipy.signal", "resample")
        for k, up, down, starts, rows, ext in buffers:
            resampled = signal.resample_poly(ext, up, down, axis=-1, window=_filter(up, down))
            n_out = shapes[k][-1]
            fold = None if folds is None else folds[k]
            for j, (i, k0) in enumerate(zip(rows, starts, strict=True)):
                outs[k][i] = resampled[j, ..., k0 : k0 + n_out]
                if fold is not None:
                    post_decode(outs[k][i], *fold.item(i)[:3])
    if len({len(c) for c in codes}) > 1:
        raise BatchShapeError(
            "items of the batch have different y shapes:\n"
            + "\n".join(
                f"  item {i}: y (1, {len(c)}) ({_describe(it)})"
                for i, (it, c) in enumerate(zip(items, codes, strict=True))
            )
        )
    y = np.stack([np.asarray(c).reshape(1, -1) for c in codes])
    return x, outs, y


def materialize_multi_item(
    item: MultiBatchItem, dtype: np.dtype, exact: bool = True
) -> tuple[Any, np.ndarray]:
    """[`materialize_batch_item`][ondabatches.materialize.materialize_batch_item] for a
    multi-signal item."""
    x, y = materialize_multi_batch([item], dtype, np.empty, exact)
    return _first(x), y[0]


def _first(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _first(v) for k, v in x.items()}
    return x[0]


_ITEM_KINDS[MultiBatchItem] = (materialize_multi_item, materialize_multi_batch)


# -- transforms -----------------------------------------------------------------------


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
    codes = [np.asarray(it.label_codes()).reshape(1, -1) for it in items]
    if len({c.shape for c in codes}) > 1:
        raise BatchShapeError(
            "items of the batch have different y shapes:\n"
            + "\n".join(
                f"  item {i}: y {c.shape} ({_describe(it)})"
                for i, (it, c) in enumerate(zip(items, codes, strict=True))
            )
        )
    per_modality: list[list[np.ndarray]] = [[] for _ in first.names]
    ys = []
    for i, it in enumerate(items):
        y_item = None
        for k in range(len(first.names)):
            x_k, y_k = _part_transformed(
                it, i, k, targets[k], dtype, exact, pipeline, key, codes[i]
            )
            per_modality[k].append(x_k)
            if k == 0:  # transforms that move labels apply to every modality alike
                y_item = y_k
        ys.append(y_item)
    shapes = []
    for k, name in enumerate(first.names):
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
        x, y = pipeline.apply_batch(x, y, targets[0], key)
        out = allocate(x.shape, x.dtype)
        out[...] = x
        x = out
    else:
        x = {}
        y_out = y
        for k, name in enumerate(first.names):
            arr = np.stack(per_modality[k])
            rate = targets[k] or _rate(items, k)
            arr, y_k = pipeline.apply_batch(arr, y, rate, key, name)
            if k == 0:
                y_out = y_k
            out = allocate(arr.shape, arr.dtype)
            out[...] = arr
            x[name] = out
        y = y_out
    return _with_masks(x, items, allocate), y


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
                return None
    # The leading gains, signs, dropped channels and reversals of each modality, for
    # all items at once, done as its windows are decoded.
    n, steps = len(items), len(pipeline.item)
    folds = []
    for k, name in enumerate(first.names):
        shape = _part_shape(first.parts[k], first.window.duration, targets[k])[0]
        fold = None
        if len(shape) == 2 and dtype.kind == "f":
            fold = pipeline.fold_batch(key, n, shape[0], dtype, name)
        folds.append(fold)
    alloc = np.empty if pipeline.batch else allocate
    decoded = [None if f is None or f.trivial else f for f in folds]
    x, outs, y = _arrays(items, dtype, alloc, exact, decoded if any(decoded) else None)
    codes = list(y)
    ys: list[Any] = codes
    for k, name in enumerate(first.names):
        arr, fold, starts = outs[k], folds[k], codes
        if fold is not None:
            starts = [np.ascontiguousarray(c[..., ::-1]) if r else c
                      for c, r in zip(codes, fold.reverse.tolist(), strict=True)]  # fmt: skip
        if k == 0:  # transforms that move labels apply to every modality alike
            ys = list(starts)
        # The items whose pipeline goes on past the fold (all of them without one).
        rest = np.flatnonzero(fold.done < steps).tolist() if fold is not None else range(n)
        if not steps:
            rest = []
        for i in rest:
            it, slot = items[i], arr[i]
            start = 0 if fold is None else int(fold.done[i])
            rate = targets[k] or _rate([it], k)
            out, y_i = pipeline.apply_item(
                slot, starts[i], rate, (0, 0), key, i, it, name, start=start
            )
            if out.shape != slot.shape:
                return None  # a transform that changes the shape: the general path
            if out is not slot:
                slot[...] = out
            if k == 0:
                ys[i] = y_i
        for i, it in enumerate(items):
            if isinstance(it.parts[k], MissingModality):
                arr[i] = 0  # the modality stays zeros, as its mask says it is absent
    y = _stack(items, ys)
    if pipeline.batch:
        if first.concatenate:
            x, y = pipeline.apply_batch(x, y, targets[0], key)
            out = allocate(x.shape, x.dtype)
            out[...] = x
            x = out
        else:
            y_out = y
            for k, name in enumerate(first.names):
                arr, y_k = pipeline.apply_batch(
                    x[name], y, targets[k] or _rate(items, k), key, name
                )
                if k == 0:
                    y_out = y_k
                out = allocate(arr.shape, arr.dtype)
                out[...] = arr
                x[name] = out
            y = y_out
    return _with_masks(x, items, allocate), y


def _check_values(part: BatchItem, target: float | None) -> tuple[float, int, int]:
    """The rate, window and recording length (samples) a part's transforms are checked
    at: its own, or the target rate's where it is resampled."""
    shape, ratio = _part_shape(part, part.window.duration, target)
    if ratio is None:
        return part.info.sample_rate, len(_rows(part)), _n_total(part)
    up, down = ratio
    total = -(-n_samples(part.signal_span.duration, part.info.sample_rate) * up // down)
    return target, shape[-1], total


def _with_masks(
    x: Any, items: Sequence[MultiBatchItem], allocate: Callable[..., np.ndarray]
) -> Any:
    """``x`` with the per-modality masks (True where the item has the modality), for
    montages that ask for them."""
    first = items[0]
    if not first.mask:
        return x
    mask = {}
    for k, name in enumerate(first.names):
        m = allocate((len(items),), np.dtype(np.bool_))
        m[...] = [not isinstance(it.parts[k], MissingModality) for it in items]
        mask[name] = m
    return {"x": x, "mask": mask} if first.concatenate else {**x, "mask": mask}


def _rate(items: Sequence[MultiBatchItem], k: int) -> float:
    part = items[0].parts[k]
    return part.sample_rate if isinstance(part, MissingModality) else part.info.sample_rate
