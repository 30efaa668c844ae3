"""Batch items to arrays: read only each window's bytes, decode, select channels, stack.

On local disk the items are read one after the other (a ``pread`` each: nothing to
overlap). When any file of a batch is remote (``s3://``, ...), the reads of all its
items, samples and stored labels alike, are issued at once from a small thread pool,
so that a batch costs about one round trip of latency rather than one per item:
fsspec's async filesystems run the requests concurrently on their event loop, and the
decoding that follows releases the GIL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import fsspec
import numpy as np

from .._errors import BatchShapeError, BatchSpecError
from ..batches._item import BatchItem
from ..labels._labeled import StoredLabels
from ..onda._decoding import decode_plan, post_decode
from ..onda._io import check_rows, load_rows, read_encoded
from ..onda._samples import Samples, SamplesInfo
from ..onda._settings import DEFAULT_MAX_CONCURRENT_READS, current_settings
from ..onda._timespan import NS_PER_S, _rate, window_sample_range
from ..transforms._base import Pipeline
from ..transforms._scheme import KeyedBatch
from ._local import decode_local

__all__ = ["materialize_batch", "materialize_batch_item"]

#: Materializers of item kinds other than [`BatchItem`][ondabatches.batches.BatchItem],
#: by the item's type: ``(item_function(item, dtype, exact), batch_function(items,
#: dtype, allocate, exact))``. The module that materializes a kind registers it here
#: (``_multi`` for multi-signal items), so that this module, which it builds on, never
#: imports it.
_ITEM_KINDS: dict[type, tuple[Callable[..., Any], Callable[..., Any]]] = {}

#: ``materialize(items, dtype, allocate, exact, pipeline, key)`` of a batch with a
#: transform pipeline; ``_transformed`` (which builds on this module) registers it.
_TRANSFORMED: list[Callable[..., Any]] = []

#: The default of the most reads of one batch in flight at once (per materializing
#: process or thread): the settings' ``max_concurrent_reads`` is the limit. s3://
#: filesystems get a connection pool at least this large (``max_pool_connections``, 64).
MAX_CONCURRENT_READS = DEFAULT_MAX_CONCURRENT_READS

#: A batch's x above this many bytes is allocated only once every item's file has been
#: checked to hold its window (see ``check_rows``): a table with a wrong sample_rate
#: must not reserve gigabytes first. Smaller batches are checked as they are read.
_CHECK_ABOVE = 64 << 20


def _rows(item: BatchItem) -> range:
    # The window is relative to the recording; the sample file starts at the signal's start.
    start = item.window.start - item.signal_span.start
    if start < 0 or not isinstance(start, int):
        return window_sample_range(
            item.window.translate(-item.signal_span.start), item.info.sample_rate
        )
    # window_sample_range's arithmetic on plain ints (the same floors, without the
    # conversions): this runs for every item.
    num, den = _rate_parts(item.info.sample_rate)
    first = start * num // den
    return range(first, first + item.window.duration * num // den)


@lru_cache(maxsize=256)
def _rate_parts(sample_rate: float) -> tuple[int, int]:
    """``floor(t_ns * rate) == t_ns * num // den`` for the exact rate index_from_time uses."""
    rate = _rate(sample_rate)
    return rate.numerator, NS_PER_S * rate.denominator


def _n_total(item: BatchItem) -> int:
    num, den = _rate_parts(item.info.sample_rate)
    return item.signal_span.duration * num // den


def _channel_index(item: BatchItem) -> list[int] | slice | None:
    """Row indices for a names/indices selector (a slice for all); None for selector objects."""
    sel = item.channels
    if sel is None:
        return slice(None)
    if isinstance(sel, (list, tuple)):
        return _indices(item.info, tuple(sel))
    return None


@lru_cache(maxsize=1024)
def _indices(info: SamplesInfo, sel: tuple) -> list[int] | slice:
    # Cached: the same few selectors come back for every item (never mutate the list).
    if sel == info.channels:
        return slice(None)
    return info.channel_indices(list(sel))


def _read(item: BatchItem, rows: range) -> np.ndarray:
    n_total = _n_total(item)
    if not 0 <= rows.start <= rows.stop <= n_total:
        # load_rows raises the error that names the signal and its samples.
        return load_rows(item.signal(), rows, encoded=True).data
    return read_encoded(item.file_path, item.file_format, item.info, rows, n_total, item.recording)


def _x(
    item: BatchItem, dtype: np.dtype, out: np.ndarray | None = None, *, exact: bool = True
) -> np.ndarray:
    return _x_at(item, _rows(item), _channel_index(item), np.dtype(dtype), out, exact)


def _x_at(
    item: BatchItem,
    rows: range,
    index: list[int] | slice | None,
    dtype: np.dtype,
    out: np.ndarray | None,
    exact: bool = True,
    gain: np.floating | None = None,
    reverse: bool = False,
    fill: np.ndarray | None = None,
) -> np.ndarray:
    """`_x` with the item's rows and channel index already worked out; ``gain``,
    ``reverse`` and ``fill`` as for `DecodePlan.select` (index None: applied after the
    selector)."""
    encoded = _read(item, rows)
    decode = decode_plan(item.info, dtype, not exact)
    if index is None:
        decoded = decode(encoded, np.empty(encoded.shape, dtype=dtype))
        x = np.asarray(item.channels.select(Samples(decoded, item.info)))
        if out is None:
            if gain is None and not reverse and fill is None:
                return x
            out = np.empty(x.shape, dtype)
        if x.shape != out.shape:
            raise _shape_error([item], [x.shape], "x")
        out[...] = x
        return post_decode(out, gain, reverse, fill)
    if out is None:
        out = np.empty(_shape_of(item, rows, index), dtype=dtype)
    return decode.select(encoded, index, out, gain, reverse, fill)


def _y(item: BatchItem) -> np.ndarray:
    # A copy: in-memory codes are read-only views of the labeled table's buffer.
    return np.array(item.label_codes()).reshape(1, -1)


def materialize_batch_item(
    item: BatchItem, dtype: Any = np.float32, *, exact: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one item: ``x`` (channels x time, or the selector's shape) and ``y`` (1 x labels).

    Only the bytes of the item's window are read. ``x`` is decoded to ``dtype``: Onda's
    decode, ``sample * resolution + offset`` in float64, rounded once to ``dtype``
    (``exact=False`` computes float32 in float32 instead when that is faster; see
    [`materialize_batch`][ondabatches.materialize.materialize_batch]). ``y`` keeps the
    labels' integer type.

    Examples
    --------
    >>> from ondabatches import RandomBatches, label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, n_channels=2, batch_size=1, batch_duration=60 * 10**9)
    >>> (item,), _ = batches.iterate_batch(batches.initial_state(seed=0))
    >>> x, y = materialize_batch_item(item)  # 60 s at 128 Hz, 2 labels of 30 s
    >>> x.shape, x.dtype, y.shape
    ((2, 7680), dtype('float32'), (1, 2))
    """
    kind = _ITEM_KINDS.get(type(item))
    if kind is not None:
        return kind[0](item, np.dtype(dtype), exact)
    return _x(item, np.dtype(dtype), exact=exact), _y(item)


def _describe(item: BatchItem) -> str:
    return f"recording {item.recording} window {item.window} of {item.file_path}"


def _shape_error(
    items: Sequence[BatchItem], shapes: Sequence[tuple[int, ...]], what: str
) -> BatchShapeError:
    lines = [
        f"  item {i}: {what} {tuple(s)} ({_describe(it)})"
        for i, (it, s) in enumerate(zip(items, shapes, strict=True))
    ]
    return BatchShapeError(f"items of the batch have different {what} shapes:\n" + "\n".join(lines))


def _expected_shape(item: BatchItem) -> tuple[int, ...] | None:
    return _shape_of(item, _rows(item), _channel_index(item))


def _shape_of(item: BatchItem, rows: range, index: list[int] | slice | None) -> tuple | None:
    if index is None:
        return None
    if isinstance(index, slice):
        n = len(range(item.info.n_channels)[index])
    else:
        n = len(index)
    return (n, len(rows))


def materialize_batch(
    batch: Sequence[BatchItem],
    dtype: Any = np.float32,
    *,
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None,
    exact: bool = True,
    transforms: Pipeline | Sequence[Any] | None = None,
    key: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a batch: ``x`` of shape ``(batch, *item_x)`` and ``y`` of ``(batch, 1, labels)``.

    Equal to stacking
    [`materialize_batch_item`][ondabatches.materialize.materialize_batch_item] of each
    item, without the extra copy: each item is decoded straight into its slot of ``x``.
    ``allocate(shape, dtype)``, if given, provides the (uninitialized) array ``x`` is
    written into; the process backend passes one that allocates in shared memory, so
    that the batch is never copied on its way to the trainer.

    The values are Onda's decode, ``sample * resolution + offset`` computed in float64
    and rounded once to ``dtype``, whatever path computes them. ``exact=False`` lets
    float32 values be computed in float32 arithmetic (one multiply, as fast as a plain
    cast) where the exact values would need float64: each value then
    differs from the exact one by at most ``2**-21 * (|resolution * sample| + |offset|)``
    (a few float32 ulps). Resolutions for which float32 arithmetic is exact
    for every possible 8- or 16-bit sample (powers of two, say) take that fast path
    either way. A Batcher takes the option as
    ``materialize=BatchMaterializer(exact=False)`` (see
    [`BatchMaterializer`][ondabatches.materialize.BatchMaterializer]).

    ``transforms`` (a list of `ondabatches.transforms` or a
    [`Pipeline`][ondabatches.transforms.Pipeline]) runs each item's transforms on its window
    (read with the context its filters need) before stacking and the batch transforms
    after; random ones draw from ``key = (seed, batch index)``. A batch of
    [`TransformedBatches`][ondabatches.transforms.TransformedBatches] carries both.

    Raises
    ------
    BatchShapeError
        (a ``ValueError``) if the items' arrays differ in shape; it lists every item's
        shape.
    BatchSpecError
        If a random transform has no key, or a batch's own pipeline differs from
        ``transforms``.

    Examples
    --------
    >>> from ondabatches import RandomBatches, label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)  # only EEG at 128 Hz: windows stack
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, n_channels=1, batch_size=3, batch_duration=60 * 10**9)
    >>> batch, _ = batches.iterate_batch(batches.initial_state(seed=1))
    >>> x, y = materialize_batch(batch)
    >>> x.shape, y.shape
    ((3, 1, 7680), (3, 1, 2))
    """
    items = list(batch)
    if not items:
        raise BatchShapeError("cannot materialize an empty batch")
    dtype = np.dtype(dtype)
    allocate = allocate or np.empty
    pipeline, key = _pipeline_of(batch, transforms, key)
    if pipeline is not None:
        x, y = _TRANSFORMED[0](items, dtype, allocate, exact, pipeline, key)
        return x, pipeline.apply_targets(y, items)
    kind = _ITEM_KINDS.get(type(items[0]))
    if kind is not None:
        return kind[1](items, dtype, allocate, exact)
    if any(map(_is_remote, items)):
        return _materialize_concurrently(items, dtype, allocate, exact)
    codes = [it.label_codes() for it in items]
    if len({c.shape for c in codes}) > 1:
        raise _shape_error(items, [(1, *c.shape) for c in codes], "y")
    # Each item's rows and channel index, worked out once (they give the shapes too).
    plans, expected, n_totals = _plan(items)
    known = {s for s in expected if s is not None}
    if len(known) > 1:
        raise _shape_error(items, [s if s is not None else ("?",) for s in expected], "x")
    if known:
        shape = known.pop()
        _check_before_allocating(items, shape, dtype)
        x = allocate((len(items), *shape), dtype)
        # The local lpcm windows at once; the rest (if any) by the general path below.
        left = decode_local(items, plans, n_totals, dtype, x, exact)
    else:
        x0 = _x_at(items[0], *plans[0], dtype, None, exact)
        x = allocate((len(items), *x0.shape), dtype)
        x[0] = x0
        left = range(1, len(items))
    for i in left:
        try:
            _x_at(items[i], *plans[i], dtype, x[i], exact)
        except BatchShapeError:
            shapes = [_x(it, dtype).shape for it in items]
            raise _shape_error(items, shapes, "x") from None
    # A copy (in-memory codes are read-only views of the labeled table's buffer): the
    # codes of equal shapes, end to end, are np.stack's array in one call.
    return x, np.concatenate(codes).reshape(len(codes), 1, *codes[0].shape)


def _plan(
    items: Sequence[BatchItem],
) -> tuple[list[tuple[range, Any]], list[tuple | None], list[int]]:
    """Each item's ``(rows, channel index)``, x shape and signal samples: `_rows`,
    `_channel_index`, `_shape_of` and `_n_total`, with what the items of one signal and
    selector share worked out once per batch (by identity: the items hold the objects,
    and a batch's items of one row share them)."""
    plans, shapes, totals = [], [], []
    # Per signal and selector: the channel index, its row count, the signal's start,
    # the rate's parts (see `_rows`) and the signal's samples.
    shared: dict[tuple[int, int, int], tuple[Any, int | None, Any, int, int, int]] = {}
    for it in items:
        key = (id(it.info), id(it.signal_span), id(it.channels))
        found = shared.get(key)
        if found is None:
            index = _channel_index(it)
            n = None if index is None else _shape_of(it, range(0), index)[0]
            num, den = _rate_parts(it.info.sample_rate)
            found = shared[key] = (index, n, it.signal_span.start, num, den, _n_total(it))
        index, n, origin, num, den, total = found
        # `_rows`, its everyday case inline: whole nanoseconds from the signal's start.
        window = it.window
        start = window.start - origin
        if start >= 0 and type(start) is int:
            first = start * num // den
            rows = range(first, first + (window.stop - window.start) * num // den)
        else:
            rows = _rows(it)
        plans.append((rows, index))
        shapes.append(None if n is None else (n, len(rows)))
        totals.append(total)
    return plans, shapes, totals


def _pipeline_of(
    batch: Any, transforms: Any, key: tuple[int, int] | None
) -> tuple[Pipeline | None, tuple[int, int] | None]:
    pipeline = Pipeline.of(transforms)
    if isinstance(batch, KeyedBatch):
        if pipeline is not None and pipeline != batch.pipeline:
            raise BatchSpecError(
                f"the batch carries the pipeline {batch.pipeline.config}, and "
                f"transforms={pipeline.config} differs: pass one of them"
            )
        return batch.pipeline or None, batch.key if key is None else key
    return pipeline, key


def _check_before_allocating(
    items: Sequence[BatchItem], shape: tuple[int, ...], dtype: np.dtype
) -> None:
    if len(items) * math.prod(shape) * dtype.itemsize > _CHECK_ABOVE:
        checked = set()  # items of one signal share its file: one check each
        for item in items:
            key = (item.file_path, item.file_format, item.signal_span, item.info)
            if key not in checked:
                checked.add(key)
                check_rows(item.signal(), _rows(item))


@lru_cache(maxsize=4096)
def _is_remote_path(path: str) -> bool:
    return fsspec.core.split_protocol(path)[0] not in (None, "file", "local")


def _is_remote(item: BatchItem) -> bool:
    labels = item.labels
    return _is_remote_path(item.file_path) or (
        isinstance(labels, StoredLabels) and _is_remote_path(labels.file_path)
    )


def _materialize_concurrently(
    items: list[BatchItem],
    dtype: np.dtype,
    allocate: Callable[..., np.ndarray],
    exact: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """[`materialize_batch`][ondabatches.materialize.materialize_batch] with every
    item's reads in flight at once.

    Gives the same arrays, and raises the same error (the first in item order, labels
    before samples), as the sequential path.
    """
    expected = [_expected_shape(it) for it in items]
    known = {s for s in expected if s is not None}
    if len(known) > 1:
        raise _shape_error(items, [s if s is not None else ("?",) for s in expected], "x")
    shape = known.pop() if known else None
    if shape is not None:
        _check_before_allocating(items, shape, dtype)
    x = allocate((len(items), *shape), dtype) if shape is not None else None
    threads = min(current_settings().max_concurrent_reads, 2 * len(items))
    # Leaving the block waits for every read: no thread may write into x afterwards.
    with ThreadPoolExecutor(threads, thread_name_prefix="ondabatches-read") as pool:
        y_jobs = [pool.submit(_y, it) for it in items]
        x_jobs: list[Future] = [
            pool.submit(_x, it, dtype, None if x is None else x[i], exact=exact)
            for i, it in enumerate(items)
        ]
    ys = _results(y_jobs)
    if len({y.shape for y in ys}) > 1:
        raise _shape_error(items, [y.shape for y in ys], "y")
    # A selector object's x that does not fit its slot: name every item's shape.
    xs = _results(
        x_jobs,
        on_shape_error=lambda: _shape_error(items, [_x(it, dtype).shape for it in items], "x"),
    )
    if x is None:
        if len({a.shape for a in xs}) > 1:
            raise _shape_error(items, [a.shape for a in xs], "x")
        x = allocate((len(xs), *xs[0].shape), dtype)
        np.stack(xs, out=x)
    return x, np.stack(ys)


def _results(
    jobs: Sequence[Future], on_shape_error: Callable[[], BatchShapeError] | None = None
) -> list[Any]:
    """The jobs' results in order; the first failure in order is raised."""
    out = []
    for job in jobs:
        try:
            out.append(job.result())
        except BatchShapeError:
            if on_shape_error is None:
                raise
            raise on_shape_error() from None
    return out


def _stack(items: Sequence[Any], ys: list[Any], what: str = "y") -> Any:
    """The items' ``y`` stacked: arrays, or dicts of them (event targets), leaf by leaf."""
    if isinstance(ys[0], dict):
        return {k: _stack(items, [y[k] for y in ys], f"{what}[{k!r}]") for k in ys[0]}
    arrays = [np.asarray(y) for y in ys]
    if len({a.shape for a in arrays}) > 1:
        raise _shape_error(items, [a.shape for a in arrays], what)
    return np.stack(arrays)
