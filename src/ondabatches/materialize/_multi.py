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
    _rows,
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
    targets = first.rates or (None,) * len(first.names)
    plans = _plans(items, targets)
    shapes = _shapes(items, plans)
    x, outs = _allocated(first, len(items), shapes, dtype, allocate)
    jobs, groups = _jobs(items, plans, outs, dtype, exact, folds)
    buffers = _resampling_buffers(groups, shapes, targets, jobs)
    codes = _run(items, jobs)
    _resample(buffers, shapes, outs, folds)
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


def _shapes(items: Sequence[MultiBatchItem], plans: list[list[Any]]) -> list[tuple[int, ...]]:
    """Each modality's one shape of an item's array (an error naming every item's where
    they differ)."""
    shapes = []
    for k, name in enumerate(items[0].names):
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
    return shapes


def _allocated(
    first: MultiBatchItem,
    n: int,
    shapes: list[tuple[int, ...]],
    dtype: np.dtype,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray],
) -> tuple[Any, list[np.ndarray]]:
    """The batch's ``x`` (one array, or a dict of each modality's) and each modality's
    array in it."""
    if first.concatenate:
        channels = [s[0] for s in shapes]
        x = allocate((n, sum(channels), shapes[0][-1]), dtype)
        bounds = np.cumsum([0, *channels]).tolist()
        return x, [x[:, bounds[k] : bounds[k + 1]] for k in range(len(shapes))]
    arrays = {
        name: allocate((n, *shape), dtype) for name, shape in zip(first.names, shapes, strict=True)
    }
    return arrays, list(arrays.values())


_Job = tuple[Callable[..., None], tuple[Any, ...]]


def _jobs(
    items: Sequence[MultiBatchItem],
    plans: list[list[Any]],
    outs: list[np.ndarray],
    dtype: np.dtype,
    exact: bool,
    folds: Sequence[Any] | None,
) -> tuple[list[_Job], dict[tuple[int, int, int], list[tuple[int, BatchItem]]]]:
    """The reads of the parts at their own rate (or missing), straight into their slot,
    and the resampled parts grouped by modality and ratio."""
    jobs: list[_Job] = []
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
    return jobs, groups


def _resampling_buffers(
    groups: dict[tuple[int, int, int], list[tuple[int, BatchItem]]],
    shapes: list[tuple[int, ...]],
    targets: Sequence[float | None],
    jobs: list[_Job],
) -> list[tuple[Any, ...]]:
    """Resampled parts are read with margins into one float64 buffer per modality and
    ratio (their reads added to ``jobs``), which is filtered in one resample_poly call
    (one call per item costs far more): ``(modality, up, down, first output sample
    kept of each, their items, buffer)``."""
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
    return buffers


def _run(items: Sequence[MultiBatchItem], jobs: list[_Job]) -> list[Any]:
    """Run the reads (all at once from a thread pool where a file is remote) and read
    each item's label codes."""
    remote = any(
        isinstance(p, BatchItem) and _is_remote(p) for it in items for p in it.parts
    ) or any(_is_remote_path(getattr(it.labels, "file_path", "")) for it in items)
    if not remote:
        codes = [it.label_codes() for it in items]
        for f, args in jobs:
            f(*args)
        return codes
    # Every read of the batch in flight at once; leaving the block waits for all.
    threads = min(current_settings().max_concurrent_reads, len(jobs) + len(items))
    with ThreadPoolExecutor(threads, thread_name_prefix="ondabatches-read") as pool:
        y_jobs = [pool.submit(it.label_codes) for it in items]
        x_jobs = [pool.submit(f, *args) for f, args in jobs]
    codes = [j.result() for j in y_jobs]
    for j in x_jobs:
        j.result()
    return codes


def _resample(
    buffers: list[tuple[Any, ...]],
    shapes: list[tuple[int, ...]],
    outs: list[np.ndarray],
    folds: Sequence[Any] | None,
) -> None:
    """Each buffer resampled in one call, each item's window cut into its slot (and its
    fold applied)."""
    if not buffers:
        return
    signal = require("scipy.signal", "resample")
    for k, up, down, starts, rows, ext in buffers:
        resampled = signal.resample_poly(ext, up, down, axis=-1, window=_filter(up, down))
        n_out = shapes[k][-1]
        fold = None if folds is None else folds[k]
        for j, (i, k0) in enumerate(zip(rows, starts, strict=True)):
            outs[k][i] = resampled[j, ..., k0 : k0 + n_out]
            if fold is not None:
                post_decode(outs[k][i], *fold.item(i)[:3])


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
