"""An iterable dataset over a Batcher: checkpointable, rank-aware, elastic."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import ArgumentTypeError, BatcherError, BatchSpecError, require
from ..batches._shard import RankCursor, check_rank, shard_batches
from ..serve._batcher import Batcher
from ..serve._stats import DataPathMeter, IntervalLogger
from ._tensors import check_labels, distributed_rank, labels_as, tensor, tensors

torch = require("torch", "torch")

__all__ = ["BatchDataset"]

logger = logging.getLogger("ondabatches")


class BatchDataset(torch.utils.data.IterableDataset):
    """An iterable dataset of ``(x, y)`` tensors from a Batcher, checkpointable and rank-aware.

    Where a batch's ``x`` is a dict of arrays (one per modality, with a nested ``mask``
    dict), ``x`` is the same dict of tensors (the mask's are bool tensors).

    Parameters
    ----------
    source:
        A batch scheme (the dataset builds a [`Batcher`][ondabatches.serve.Batcher] over this
        rank's share of it, with ``batcher_options``, on first iteration), or a
        Batcher-like object with ``start``/``take``/``status`` (a
        [`Batcher`][ondabatches.serve.Batcher] or
        [`RayBatcher`][ondabatches.serve.RayBatcher]) that you built over
        [`shard_batches`][ondabatches.torch.shard_batches] yourself and that you stop
        yourself.
    state:
        The state of the first batch, the same on every rank (e.g.
        ``batches.initial_state(seed)``).
    world_size, rank:
        Data-parallel ranks; default: from ``torch.distributed`` when it is
        initialized, else one rank.
    labels, label_dtype:
        ``"codes"`` (default: ``(batch, 1, label_samples)`` codes, converted to
        ``label_dtype`` if given) or ``"classes"`` (``int64`` ``code - 1``, shaped
        ``(batch, label_samples)``, for ``cross_entropy``); see the module docstring.
    log_interval:
        Seconds between INFO lines of [`stats`][ondabatches.torch.BatchDataset.stats] (None: none).
    **batcher_options:
        Passed to [`Batcher`][ondabatches.serve.Batcher] (``backend``, ``workers``, ``buffer``,
        ``dtype``...) when ``source`` is a scheme.

    Notes
    -----
    Use it with ``DataLoader(dataset, batch_size=None, num_workers=0)``; see the module
    docstring for why. One iteration at a time: each continues where the last stopped
    (after a finite scheme has ended, load a state to go again). ``len(dataset)`` is
    the number of batches that iteration yields, for finite schemes (a
    ``TypeError`` for endless ones, as for any unsized dataset). Call
    [`close`][ondabatches.torch.BatchDataset.close] (or use ``with``) to stop a Batcher
    the dataset built.

    Examples
    --------
    >>> from ondabatches.batches import SequentialBatches
    >>> from ondabatches.labels import label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = SequentialBatches(labeled, batch_size=2, batch_duration=30 * 10**9)
    >>> with BatchDataset(batches, batches.initial_state(), backend="threads") as dataset:
    ...     loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    ...     print(len(loader))
    ...     for x, y in loader:
    ...         checkpoint = {"data": dataset.state_dict()}
    ...         break  # training stops after the first batch
    3
    >>> x.shape, y.shape, x.dtype
    (torch.Size([2, 6, 3840]), torch.Size([2, 1, 1]), torch.float32)
    >>> with BatchDataset(batches, batches.initial_state(), backend="threads",
    ...                   labels="classes") as resumed:
    ...     resumed.load_state_dict(checkpoint["data"])
    ...     [(tuple(x.shape), tuple(y.shape), y.dtype) for x, y in resumed]  # the 2 left
    [((2, 6, 3840), (2, 1), torch.int64), ((2, 6, 3840), (2, 1), torch.int64)]
    """

    def __init__(
        self,
        source: Any,
        state: Any,
        *,
        world_size: int | None = None,
        rank: int | None = None,
        labels: str = "codes",
        label_dtype: Any = None,
        log_interval: float | None = None,
        **batcher_options: Any,
    ):
        super().__init__()
        if (world_size is None) != (rank is None):
            raise BatchSpecError("give both world_size and rank, or neither")
        if world_size is None:
            world_size, rank = distributed_rank()
        check_rank(world_size, rank)
        check_labels(labels, label_dtype)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.labels = labels
        self.label_dtype = label_dtype
        self._options = batcher_options
        self._batcher: Any = None
        self._scheme = self._rank_scheme(source)
        self._meter = DataPathMeter()
        self._log = IntervalLogger(logger, log_interval, "BatchDataset")
        # Where this rank is, and since when: the global frontier (module docstring).
        self._cursor = RankCursor(self._scheme, self.world_size, self.rank, state)
        self._iteration_start: Any = None

    def _rank_scheme(self, source: Any) -> Any:
        """The scheme this rank serves: ``source``'s share, or a given Batcher's own."""
        if callable(getattr(source, "take", None)):
            if self._options:
                raise ArgumentTypeError(
                    f"Batcher options {sorted(self._options)} apply only when source is a "
                    f"batch scheme, not a {type(source).__name__}"
                )
            scheme = getattr(source, "batches", None)
            if (
                scheme is not None
                and self.world_size > 1
                and shard_batches(scheme, self.world_size, self.rank) is not scheme
            ):
                raise BatchSpecError(
                    f"the Batcher serves the whole scheme, not rank {self.rank} of "
                    f"{self.world_size}'s share: build it over "
                    f"shard_batches(batches, {self.world_size}, {self.rank})"
                )
            self._batcher = source
            self._owned = False
            return scheme
        if callable(getattr(source, "iterate_batch", None)):
            scheme = shard_batches(source, self.world_size, self.rank)
            transforms = self._options.pop("transforms", None)
            if transforms:
                # The rank's scheme with the pipeline: its states name it (checked below).
                from ..transforms import TransformedBatches

                scheme = TransformedBatches(scheme, transforms)
            self._owned = True
            return scheme
        raise ArgumentTypeError(
            "source must be a batch scheme (iterate_batch) or a Batcher (take), "
            f"got {type(source).__name__}"
        )

    def __len__(self) -> int:
        scheme = self._scheme
        start = self._cursor.state if self._iteration_start is None else self._iteration_start
        n = scheme.remaining(start)
        if n is None:
            raise ArgumentTypeError(
                f"{type(self).__name__} over {scheme!r} has no length: the scheme is endless "
                "(or its states are not BatchStates); stop by steps, or use BatchMapDataset "
                "with length="
            )
        return n

    # -- iteration ---------------------------------------------------------------------

    def _running_batcher(self) -> Any:
        if self._batcher is None:
            self._batcher = Batcher(self._scheme, **self._options)
            self._finalizer = weakref.finalize(self, self._batcher.stop)
        status = self._batcher.status
        if status not in ("running", "done"):
            self._batcher.start(self._cursor.state)
        return self._batcher

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        if torch.utils.data.get_worker_info() is not None:
            raise BatcherError(
                "BatchDataset cannot run in DataLoader worker processes: its Batcher "
                "already materializes batches in parallel, and a worker's copy would "
                "advance while the dataset you checkpoint would not. Use "
                "DataLoader(dataset, batch_size=None, num_workers=0) and set the "
                "Batcher's workers instead, or use BatchMapDataset with DataLoader workers"
            )
        batcher = self._running_batcher()
        cursor = self._cursor
        self._iteration_start = cursor.state
        try:
            while True:
                state = cursor.state
                began = time.perf_counter()
                result = batcher.take(state)
                if result is None:
                    return
                (x, y), cursor.state = result
                x, y = tensors(x), labels_as(tensor(y), self.labels, self.label_dtype, state)
                cursor.took(state)
                now = time.perf_counter()
                self._meter.took((x, y), now - began)
                self._log.maybe(now, self.stats)
                yield x, y
        finally:
            self._iteration_start = None

    def stats(self) -> dict[str, Any]:
        """Running figures since the dataset was made: see
        [`Batcher.stats`][ondabatches.serve.Batcher.stats]; ``wait_s``/``wait_fraction``
        here are the time the training loop spent in ``next()`` (taking the batch and
        making tensors), and ``worker_busy``, ``retries``... are the Batcher's."""
        out = self._meter.snapshot()
        inner = getattr(self._batcher, "stats", None)
        if callable(inner):
            theirs = inner()
            for key in ("worker_busy", "workers", "in_flight", "retries", "repositions"):
                if key in theirs:
                    out[key] = theirs[key]
        return out

    def close(self) -> None:
        """Stop the Batcher this dataset built (a passed-in one is left to its owner)."""
        if self._owned and self._batcher is not None:
            self._batcher.stop()

    def __enter__(self) -> BatchDataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A live pool cannot travel; a copy builds its own (e.g. in a DataLoader
        # worker, where iterating is then refused with a clear message).
        state = dict(self.__dict__)
        if self._owned:
            state["_batcher"] = None
            state.pop("_finalizer", None)
        return state

    # -- checkpointing -----------------------------------------------------------------

    def state_dict(self, unconsumed: int = 0) -> dict[str, Any]:
        """A JSON-able checkpoint: the state of the next batch to train on, and the rank.

        Parameters
        ----------
        unconsumed:
            How many of the batches yielded last were fetched but not trained on (a
            consumer that fetches ahead: Lightning fetches 1 batch ahead, a
            [`DeviceFeed`][ondabatches.torch.DeviceFeed] has
            [`DeviceFeed.pending`][ondabatches.torch.DeviceFeed.pending]); the
            checkpoint then names the first of those, so that resuming trains on it.

        Examples
        --------
        >>> import json
        >>> from ondabatches.batches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> dataset = BatchDataset(batches, batches.initial_state(seed=0).advance(5))
        >>> json.dumps(dataset.state_dict())
        '{"version": 2, "world_size": 1, "rank": 0, "kind": "BatchState", "state": {...}, ...}'
        >>> dataset.state_dict()["state"]["index"]
        5
        """
        return self._cursor.state_dict(unconsumed)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from a [`state_dict`][ondabatches.torch.BatchDataset.state_dict]:
        the next batch is the one it names.

        For a scheme that ranks interleave (any scheme but those that shard
        themselves), any rank's checkpoint resumes every rank at the global frontier,
        at any world size (see the module docstring for the guarantee); otherwise
        each rank must load its own checkpoint, at the same world size.

        Raises
        ------
        StateError
            If the checkpoint is of another layout version, another scheme
            configuration (the message names what changed), or, for a self-sharding
            scheme, another rank or world size; the message shows both sides.

        Examples
        --------
        >>> from ondabatches.batches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> old = BatchDataset(batches, batches.initial_state(seed=0).advance(6),
        ...                    world_size=2, rank=1)
        >>> new = BatchDataset(batches, batches.initial_state(seed=0), world_size=3, rank=2)
        >>> new.load_state_dict(old.state_dict())  # elastic: 2 ranks -> 3
        >>> new.state_dict()["frontier"]["index"]  # global batches 0..5 were taken
        6
        >>> from ondabatches.batches import SequentialBatches
        >>> seq = SequentialBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9, world_size=2, rank=0)
        >>> other_rank = BatchDataset(seq, seq.initial_state(), world_size=2, rank=0)
        >>> other_rank.load_state_dict({**other_rank.state_dict(), "rank": 1})
        Traceback (most recent call last):
        ...
        ondabatches._errors.StateError: the checkpoint is of rank 1 of 2 but ...
        """
        self._cursor.load_state_dict(state_dict)
        self._iteration_start = None
