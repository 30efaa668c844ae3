"""PyTorch adapter: datasets of tensors, a GPU feed, and checkpoints that resume exactly.

Needs the ``torch`` extra (``pip install 'ondabatches[torch]'``; the CPU build is
enough). ``import ondabatches`` never imports torch; ``import ondabatches.torch`` does.
See ``docs/pytorch.md`` for DataLoader, torchdata and Lightning recipes.

Two datasets, both giving the very batches a [`Batcher`][ondabatches.serve.Batcher] gives for
the same states:

- [`BatchMapDataset`][ondabatches.torch.BatchMapDataset] (map-style): item ``k`` is
  batch ``k`` of the scheme from a start state, materialized where it is asked for.
  Parallelism is the DataLoader's own: ``DataLoader(ds, batch_size=None, num_workers=N,
  pin_memory=True, persistent_workers=True)``; torchdata's ``StatefulDataLoader``
  checkpoints and resumes it exactly (its sampler position is the batch index). Finite
  schemes give its length; endless ones
  ([`RandomBatches`][ondabatches.batches.RandomBatches]) take ``length``.
- [`BatchDataset`][ondabatches.torch.BatchDataset] (iterable): **parallelism lives in a
  Batcher** inside the training process (worker processes, Ray...), and the dataset
  knows exactly which batch it yielded last. Use ``DataLoader(dataset, batch_size=None,
  num_workers=0)``: iterating inside DataLoader worker processes is refused with a
  [`BatcherError`][ondabatches._errors.BatcherError], because a worker's copy of the dataset would
  advance while the one you checkpoint would not.

Shared by both:

- **Labels as models want them**: ``labels="codes"`` (default) gives ``y`` as
  materialized, ``(batch, 1, label_samples)`` codes (``uint8`` for the usual
  encodings; ``label_dtype`` converts them); ``labels="classes"`` gives ``int64``
  class indices ``code - 1``, shaped ``(batch, label_samples)``: the target
  ``torch.nn.functional.cross_entropy`` wants for ``(batch, classes, label_samples)``
  logits. Encodings are 1-based (OndaBatches' convention); a code 0 is refused.
- **Checkpoints hold the next batch's state.**
  [`BatchDataset.state_dict`][ondabatches.torch.BatchDataset.state_dict] is a JSON-able
  dict (torchdata's ``Stateful`` protocol).
- **Ranks interleave one global stream.** For DistributedDataParallel, rank ``r`` of
  ``w`` gets the batches with global index ``r, r + w, r + 2w, ...`` of the scheme
  ([`InterleavedBatches`][ondabatches.torch.InterleavedBatches]): disjoint by
  construction, each a pure function of ``(seed, rank, world_size)``, together exactly
  the single-process stream. A [`BatchMapDataset`][ondabatches.torch.BatchMapDataset]
  over the whole scheme with ``DistributedSampler(ds, shuffle=False)`` splits it the
  same way. Schemes built as one rank's share (``SequentialBatches(..., world_size=w,
  rank=r)``: windows round-robin, padded to equal batch counts) are used as they are,
  after checking that their ``world_size`` and ``rank`` are the ones asked for; an
  unsharded ``SequentialBatches`` is interleaved like any scheme.
- **Elastic resume.** A [`BatchDataset`][ondabatches.torch.BatchDataset] checkpoint of
  an interleaved scheme records the *global frontier*: when every rank has taken the
  same number ``k`` of batches since a common start state ``s`` (as in synchronous
  data-parallel training), the global batches ``s .. s + k*w - 1`` have all been taken,
  by exactly one rank each, and no later one has. Any rank's checkpoint, loaded at any
  world size ``w'``, resumes at that frontier: step ``j`` after the resume takes global
  batches ``F + j*w' .. F + (j+1)*w' - 1`` (``F = s + k*w``), so no global batch is
  repeated or skipped. This holds for finite schemes too (an unsharded
  ``SequentialBatches``: the ranks' batch counts then differ by at most one at the end).
  Schemes built sharded resume at their own world size only.

[`DeviceFeed`][ondabatches.torch.DeviceFeed] copies batches to a CUDA device ahead of
the training step, on a side stream from pinned memory, and measures how long training
waited for data.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ._errors import (
    ArgumentError,
    ArgumentTypeError,
    BatcherError,
    BatchSpecError,
    LabelError,
    OutOfRangeError,
    StateError,
    require,
)
from .batches._state import BatchScheme, BatchState, as_batch_scheme
from .onda._settings import adopt_settings, current_settings
from .serve._batcher import Batcher, _default_materialize
from .serve._stats import DataPathMeter, IntervalLogger
from .serve._tree import map_leaves

torch = require("torch", "torch")

__all__ = ["BatchDataset", "BatchMapDataset", "DeviceFeed", "InterleavedBatches", "shard_batches"]

logger = logging.getLogger("ondabatches")

#: Version of [`BatchDataset.state_dict`][ondabatches.torch.BatchDataset.state_dict]'s
#: layout (version 1, without the global frontier, is still read).
STATE_DICT_VERSION = 2

#: How many of the last yielded batches ``state_dict(unconsumed=...)`` can step back over.
_RECENT = 64

_LABEL_MODES = ("codes", "classes")


class InterleavedBatches(BatchScheme):
    """One rank's share of a scheme: global batches ``rank + k * world_size``, k = 0, 1...

    States stay the wrapped scheme's global states ([`BatchState`][ondabatches.batches.BatchState],
    bound to its configuration): the batch of a state whose index is not on this
    rank's lattice is the next one that is, so every rank can start from the same
    initial state.

    Parameters
    ----------
    batches:
        A scheme whose states are [`BatchState`][ondabatches.batches.BatchState] and whose batch
        depends only on the state (any [`BatchScheme`][ondabatches.batches.BatchScheme]), e.g.
        [`RandomBatches`][ondabatches.batches.RandomBatches].
    world_size, rank:
        The number of ranks and this one's 0-based rank.

    Examples
    --------
    >>> from ondabatches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(2, duration=600 * 10**9), batch_size=2,
    ...                         batch_duration=30 * 10**9)
    >>> scheme = InterleavedBatches(batches, world_size=2, rank=1)
    >>> batch, state = scheme.iterate_batch(batches.initial_state(seed=0))
    >>> state.index  # it served global batch 1; its next is global batch 3
    3
    """

    def __init__(self, batches: Any, world_size: int, rank: int):
        _check_rank(world_size, rank)
        self.batches = as_batch_scheme(batches, "InterleavedBatches")
        self.world_size = world_size
        self.rank = rank

    @property
    def config(self) -> Mapping[str, Any] | None:
        return self.batches.config

    def initial_state(self, seed: int = 0) -> Any:
        return self.batches.initial_state(seed)

    def remaining(self, state: Any) -> int | None:
        inner = self.batches.remaining(state)
        if inner is None or not isinstance(state, BatchState):
            return None
        first = self.state_of(state, 0).index - state.index  # skipped to this rank's lattice
        return max(0, -(-(inner - first) // self.world_size))

    def iterate_batch(self, state: BatchState) -> tuple[Any, BatchState] | None:
        if not isinstance(state, BatchState):
            raise StateError(
                f"interleaving batches across ranks needs BatchState states, "
                f"got {type(state).__name__}"
            )
        skip = (self.rank - state.index) % self.world_size
        step = self.batches.iterate_batch(state.advance(skip))
        if step is None:
            return None
        batch, next_state = step
        return batch, next_state.advance(self.world_size - 1)

    def state_of(self, start: BatchState, k: int) -> BatchState:
        """The global state of this rank's ``k``-th batch from ``start`` (O(1))."""
        skip = (self.rank - start.index) % self.world_size
        return start.advance(skip + k * self.world_size)

    def __repr__(self) -> str:
        return f"InterleavedBatches({self.batches!r}, rank {self.rank} of {self.world_size})"


def _check_rank(world_size: int, rank: int) -> None:
    for name, value in (("world_size", world_size), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BatchSpecError(f"{name} must be an int, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise BatchSpecError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")


def shard_batches(batches: Any, world_size: int, rank: int) -> Any:
    """The scheme that rank ``rank`` of ``world_size`` should serve.

    A scheme built sharded (``world_size`` > 1 and ``rank`` attributes, like
    ``SequentialBatches(..., world_size=4, rank=2)``) is returned as it is if they match,
    and refused otherwise; with one rank the scheme is returned as it is; otherwise it
    is wrapped in [`InterleavedBatches`][ondabatches.torch.InterleavedBatches] (global
    batch ``g`` to rank ``g % world_size``), unsharded sequential schemes included.

    The two ways to shard a finite scheme differ in what checkpoints survive:

    - interleaved (an unsharded scheme given here): states count global batches, so a
      checkpoint resumes at any world size, neither repeating nor skipping a global
      batch (see [`BatchDataset`][ondabatches.torch.BatchDataset]); the ranks' batch
      counts differ by at most one at the end;
    - built sharded (``SequentialBatches(world_size=w, rank=r)``, windows round-robin,
      padded so that every rank has the same number of batches, as DDP evaluation with
      collective operations needs): its checkpoints resume at world size ``w`` only.

    Use it to build a Batcher (or [`RayBatcher`][ondabatches.serve.RayBatcher]) for one
    rank by hand; [`BatchDataset`][ondabatches.torch.BatchDataset] calls it for you when
    given a scheme.

    Raises
    ------
    BatchSpecError
        If a self-sharding scheme was built for another rank or world size.

    Examples
    --------
    >>> from ondabatches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
    ...                         batch_duration=30 * 10**9)
    >>> shard_batches(batches, world_size=4, rank=2)  # then Batcher(...) or RayBatcher(...)
    InterleavedBatches(RandomBatches(2 rows, ...), rank 2 of 4)
    >>> shard_batches(batches, world_size=1, rank=0) is batches
    True
    """
    _check_rank(world_size, rank)
    batches = as_batch_scheme(batches, "shard_batches")
    if _built_sharded(batches):
        own = (batches.world_size, batches.rank)
        if own != (world_size, rank):
            raise BatchSpecError(
                f"{type(batches).__name__} shards itself and was built for rank {own[1]} of "
                f"{own[0]}, but rank {rank} of {world_size} was asked for: build it with "
                f"world_size={world_size}, rank={rank}"
            )
        return batches
    if world_size == 1:
        return batches
    return InterleavedBatches(batches, world_size, rank)


def _built_sharded(batches: BatchScheme) -> bool:
    """Whether ``batches`` was built as one rank's share (``world_size`` > 1 and a rank)."""
    return (batches.world_size, batches.rank) != (1, 0)


def _distributed_rank() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _tensor(array: np.ndarray):
    # torch.from_numpy shares memory; read-only arrays (Ray's zero-copy reads through
    # a RayBatcher) must be copied, since torch tensors are always writable.
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def _tensors(value: Any):
    """A tensor for an array; for a dict (one array per modality, a nested ``mask``
    dict of bools), tuple or list of them, the same structure of tensors."""
    if isinstance(value, np.ndarray):
        return _tensor(value)
    return map_leaves(_tensor, value)


def _check_labels(labels: str, label_dtype: Any) -> None:
    if labels not in _LABEL_MODES:
        raise ArgumentError(f"labels must be one of {list(_LABEL_MODES)}, got {labels!r}")
    if label_dtype is not None:
        if not isinstance(label_dtype, torch.dtype):
            raise ArgumentTypeError(f"label_dtype must be a torch.dtype, got {label_dtype!r}")
        if labels == "classes":
            raise ArgumentError('label_dtype applies to labels="codes"; classes are always int64')


def _labels_as(y, labels: str, label_dtype: Any, where: Any):
    """``y`` (a tensor of codes, ``(batch, 1, label_samples)``) as the model wants it."""
    if labels == "classes":
        if y.ndim != 3 or y.shape[1] != 1:
            raise LabelError(
                f"labels='classes' needs codes shaped (batch, 1, label_samples), got "
                f"{tuple(y.shape)} for {where}"
            )
        classes = y[:, 0, :].to(torch.int64) - 1
        if classes.numel() and int(classes.min()) < 0:
            raise LabelError(
                f"labels='classes' turns codes 1, 2, ... into classes 0, 1, ..., but the batch "
                f"of {where} holds code 0; use labels='codes' for encodings that use 0"
            )
        return classes
    return y if label_dtype is None else y.to(label_dtype)


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
    >>> from ondabatches import SequentialBatches, label_signals
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
            world_size, rank = _distributed_rank()
        _check_rank(world_size, rank)
        _check_labels(labels, label_dtype)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.labels = labels
        self.label_dtype = label_dtype
        self._options = batcher_options
        self._batcher: Any = None
        if callable(getattr(source, "take", None)):
            if batcher_options:
                raise ArgumentTypeError(
                    f"Batcher options {sorted(batcher_options)} apply only when source is a "
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
            self._scheme = scheme
        elif callable(getattr(source, "iterate_batch", None)):
            self._scheme = shard_batches(source, self.world_size, self.rank)
            transforms = self._options.pop("transforms", None)
            if transforms:
                # The rank's scheme with the pipeline: its states name it (checked below).
                from .transforms import TransformedBatches

                self._scheme = TransformedBatches(self._scheme, transforms)
            self._owned = True
        else:
            raise ArgumentTypeError(
                "source must be a batch scheme (iterate_batch) or a Batcher (take), "
                f"got {type(source).__name__}"
            )
        self._meter = DataPathMeter()
        self._log = IntervalLogger(logger, log_interval, "BatchDataset")
        self._restart(self._checked(state))

    def _restart(self, state: Any) -> None:
        # The origin is where every rank started together; with the batches taken since
        # it gives the global frontier (see the module docstring).
        self._state = state
        self._origin = state
        self._taken = 0
        self._recent: deque[Any] = deque(maxlen=_RECENT)  # states of the last batches yielded
        self._iteration_start: Any = None

    def _checked(self, state: Any) -> Any:
        # Refuse a state of another configuration now rather than at the first batch.
        config = self._scheme.config
        if isinstance(state, BatchState) and isinstance(config, Mapping):
            return state.bind(config)
        return state

    def __len__(self) -> int:
        scheme = self._scheme
        start = self._state if self._iteration_start is None else self._iteration_start
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
            self._batcher.start(self._state)
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
        self._iteration_start = self._state
        try:
            while True:
                state = self._state
                began = time.perf_counter()
                result = batcher.take(state)
                if result is None:
                    return
                (x, y), self._state = result
                x, y = _tensors(x), _labels_as(_tensor(y), self.labels, self.label_dtype, state)
                self._recent.append(state)
                self._taken += 1
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

    def _interleaved(self) -> bool:
        """Whether ranks interleave one global stream of BatchStates (elastic resume)."""
        scheme = self._scheme
        return isinstance(scheme, InterleavedBatches) or not _built_sharded(scheme)

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
        >>> from ondabatches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> dataset = BatchDataset(batches, batches.initial_state(seed=0).advance(5))
        >>> json.dumps(dataset.state_dict())
        '{"version": 2, "world_size": 1, "rank": 0, "kind": "BatchState", "state": {...}, ...}'
        >>> dataset.state_dict()["state"]["index"]
        5
        """
        if isinstance(unconsumed, bool) or not isinstance(unconsumed, int) or unconsumed < 0:
            raise ArgumentError(f"unconsumed must be a non-negative int, got {unconsumed!r}")
        if unconsumed > len(self._recent):
            raise ArgumentError(
                f"cannot step back over {unconsumed} batches: this dataset remembers the last "
                f"{len(self._recent)} it yielded since it started or loaded a state"
            )
        state = self._recent[-unconsumed] if unconsumed else self._state
        is_batch_state = isinstance(state, BatchState)
        out: dict[str, Any] = {
            "version": STATE_DICT_VERSION,
            "world_size": self.world_size,
            "rank": self.rank,
            "kind": "BatchState" if is_batch_state else "json",
            "state": state.to_dict() if is_batch_state else state,
        }
        if is_batch_state and isinstance(self._origin, BatchState) and self._interleaved():
            taken = self._taken - unconsumed
            out["frontier"] = self._origin.advance(taken * self.world_size).to_dict()
        return out

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
        >>> from ondabatches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> old = BatchDataset(batches, batches.initial_state(seed=0).advance(6),
        ...                    world_size=2, rank=1)
        >>> new = BatchDataset(batches, batches.initial_state(seed=0), world_size=3, rank=2)
        >>> new.load_state_dict(old.state_dict())  # elastic: 2 ranks -> 3
        >>> new.state_dict()["frontier"]["index"]  # global batches 0..5 were taken
        6
        >>> from ondabatches import SequentialBatches
        >>> seq = SequentialBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9, world_size=2, rank=0)
        >>> other_rank = BatchDataset(seq, seq.initial_state(), world_size=2, rank=0)
        >>> other_rank.load_state_dict({**other_rank.state_dict(), "rank": 1})
        Traceback (most recent call last):
        ...
        ondabatches._errors.StateError: the checkpoint is of rank 1 of 2 but ...
        """
        try:
            version = state_dict["version"]
            where = (state_dict["world_size"], state_dict["rank"])
            kind, raw = state_dict["kind"], state_dict["state"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a BatchDataset state dict: {state_dict!r}") from exc
        if version not in (1, STATE_DICT_VERSION):
            raise StateError(
                f"BatchDataset state dict version {version} is not supported; "
                f"this ondabatches reads versions 1 and {STATE_DICT_VERSION}"
            )
        frontier = state_dict.get("frontier")
        if frontier is not None and self._interleaved():
            state = self._checked(BatchState.from_dict(frontier))
            if where != (self.world_size, self.rank):
                logger.info(
                    "resuming rank %d of %d from rank %d of %d's checkpoint at global batch %d",
                    self.rank, self.world_size, where[1], where[0], state.index,
                )  # fmt: skip
            self._restart(state)
            return
        if where != (self.world_size, self.rank):
            why = (
                "the checkpoint holds no global frontier (it is of version 1, or its states "
                "are not BatchStates)"
                if self._interleaved()
                else f"{self._scheme!r} shards itself"
            )
            raise StateError(
                f"the checkpoint is of rank {where[1]} of {where[0]} but this dataset is "
                f"rank {self.rank} of {self.world_size}; {why}, so each rank must load its "
                "own checkpoint, with the same world size"
            )
        self._restart(self._checked(BatchState.from_dict(raw) if kind == "BatchState" else raw))


class BatchMapDataset(torch.utils.data.Dataset):
    """A map-style dataset: item ``k`` is the ``(x, y)`` tensors of batch ``k`` from ``state``.

    Batch ``k`` is a pure function of its state, so any process can make any item:
    ``DataLoader(ds, batch_size=None, num_workers=N, pin_memory=True,
    persistent_workers=True)`` parallelizes it, and torchdata's ``StatefulDataLoader``
    resumes exactly (its sampler position is the batch index). The items equal the
    batches a [`Batcher`][ondabatches.serve.Batcher] takes from the same state.

    Parameters
    ----------
    batches:
        A batch scheme with [`BatchState`][ondabatches.batches.BatchState] states. For data-parallel
        training give the whole scheme and split it with
        ``DistributedSampler(ds, shuffle=False)`` (rank ``r`` then gets batches
        ``r, r + w, ...``, as
        [`InterleavedBatches`][ondabatches.torch.InterleavedBatches]), or a scheme that
        shards itself (``SequentialBatches(..., world_size=w, rank=r)``) without one.
    state:
        The state of item 0.
    length:
        The number of items: required for endless schemes (an "epoch" of
        ``length`` batches; the next epoch is ``BatchMapDataset(batches,
        state.advance(length), length=length)``), at most the batches left for finite
        ones (default: all of them).
    dtype, materialize:
        As for [`Batcher`][ondabatches.serve.Batcher]; ``materialize`` must be picklable to reach
        DataLoader workers.
    labels, label_dtype:
        As for [`BatchDataset`][ondabatches.torch.BatchDataset].
    transforms:
        `ondabatches.transforms` run on each batch: ``batches`` is wrapped in
        [`TransformedBatches`][ondabatches.transforms.TransformedBatches], whose states name the
        pipeline (make ``state`` with ``TransformedBatches(...).initial_state``).
        [`BatchDataset`][ondabatches.torch.BatchDataset] takes ``transforms=`` as a Batcher option.

    Examples
    --------
    >>> from ondabatches import RandomBatches, label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, n_channels=2, batch_size=3, batch_duration=60 * 10**9)
    >>> dataset = BatchMapDataset(batches, batches.initial_state(seed=1), length=100,
    ...                           labels="classes")
    >>> loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    >>> x, y = next(iter(loader))
    >>> len(loader), x.shape, y.shape, y.dtype
    (100, torch.Size([3, 2, 7680]), torch.Size([3, 2]), torch.int64)
    """

    def __init__(
        self,
        batches: Any,
        state: BatchState,
        *,
        length: int | None = None,
        dtype: Any = np.float32,
        materialize: Callable[[Any, Any], Any] | None = None,
        labels: str = "codes",
        label_dtype: Any = None,
        transforms: Any = None,
    ):
        if transforms:
            from .transforms import TransformedBatches

            if materialize is not None:
                raise BatchSpecError("give transforms or materialize, not both")
            batches = TransformedBatches(batches, transforms)
        batches = as_batch_scheme(batches, "BatchMapDataset")
        if not isinstance(state, BatchState):
            raise StateError(
                f"BatchMapDataset needs a BatchState (batch k is state.advance(k)), got "
                f"{type(state).__name__}"
            )
        _check_labels(labels, label_dtype)
        self.batches = batches
        config = batches.config
        self.state = state.bind(config) if isinstance(config, Mapping) else state
        left = batches.remaining(self.state)
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0
        ):
            raise BatchSpecError(f"length must be a non-negative int, got {length!r}")
        if left is None and length is None:
            raise BatchSpecError(
                f"{batches!r} is endless: give length=, the number of batches of an epoch"
            )
        if left is not None and length is not None and length > left:
            raise BatchSpecError(
                f"length={length} but {batches!r} has only {left} batches from state index "
                f"{self.state.index}"
            )
        self.length = int(left if length is None else length)
        self.dtype = dtype
        self.materialize = materialize or _default_materialize
        self.labels = labels
        self.label_dtype = label_dtype
        self._meter = DataPathMeter()
        # DataLoader workers get these (a spawned worker would read its environment).
        self._settings = (current_settings(), os.getpid())

    def __len__(self) -> int:
        return self.length

    def state_of(self, k: int) -> BatchState:
        """The state of item ``k``."""
        if isinstance(self.batches, InterleavedBatches):
            return self.batches.state_of(self.state, k)
        return self.state.advance(k)

    def __getitem__(self, k: int) -> tuple[Any, Any]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ArgumentTypeError(f"BatchMapDataset items are batch indices, got {k!r}")
        if not 0 <= k < self.length:
            raise OutOfRangeError(f"batch {k} is out of range for {self.length} batches")
        adopt_settings(*self._settings)
        began = time.perf_counter()
        state = self.state_of(int(k))
        step = self.batches.iterate_batch(state)
        if step is None:
            raise BatchSpecError(f"{self.batches!r} has no batch at {state!r}")
        x, y = self.materialize(step[0], self.dtype)
        x, y = _tensors(x), _labels_as(_tensor(y), self.labels, self.label_dtype, state)
        # In this process only: in DataLoader workers each worker counts its own.
        self._meter.took((x, y), time.perf_counter() - began)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("BatchMapDataset item %d (state %r) made", k, state)
        return x, y

    def stats(self) -> dict[str, Any]:
        """Items made *in this process* (``wait_s``: time making them); with DataLoader
        workers each worker has its own copy: measure the consumer with
        [`DeviceFeed`][ondabatches.torch.DeviceFeed]."""
        return self._meter.snapshot()

    # torchdata's StatefulDataLoader saves this with its sampler position; loading it
    # refuses a loader over other data or another start, whose positions would differ.
    def state_dict(self) -> dict[str, Any]:
        """The start state and length: what the loader's positions are relative to."""
        return {"version": STATE_DICT_VERSION, "state": self.state.to_dict(), "length": self.length}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Check that a checkpoint was made over the same data, start and length.

        Raises
        ------
        StateError
            If the data or configuration changed (naming what changed), or the start
            state or length differ.
        """
        try:
            state = BatchState.from_dict(state_dict["state"])
            length = state_dict["length"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a BatchMapDataset state dict: {state_dict!r}") from exc
        config = self.batches.config
        if isinstance(config, Mapping):
            state = state.bind(config)
        if (state.seed, state.index, length) != (self.state.seed, self.state.index, self.length):
            raise StateError(
                f"the checkpoint's dataset starts at seed {state.seed}, index {state.index} "
                f"with {length} batches, but this one at seed {self.state.seed}, index "
                f"{self.state.index} with {self.length}: the loader's positions would differ"
            )

    def __repr__(self) -> str:
        return f"BatchMapDataset({self.batches!r}, {self.length} batches from {self.state!r})"


def _map_tensors(batch: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_map_tensors(v, fn) for v in batch)
    return batch


def _pinned(t):
    return t if t.is_pinned() else t.pin_memory()


class DeviceFeed:
    """Batches of ``source`` moved to ``device``, copied ``ahead`` batches before they are needed.

    On a CUDA device each batch is copied into pinned host memory (unless already
    pinned, e.g. by ``DataLoader(pin_memory=True)``) and on to the device on a side
    stream with ``non_blocking=True``; the training stream waits for that copy only when
    it uses the batch, so the copies overlap the training steps. On a CPU device
    batches are passed through unchanged (no copy). Either way
    [`stats`][ondabatches.torch.DeviceFeed.stats] says how much of the wall time the
    training loop spent waiting for data.

    Parameters
    ----------
    source:
        Any iterable of tensors, tuples/lists/dicts of tensors (a DataLoader, a
        dataset).
    device:
        Where batches go; default: the current CUDA device if CUDA is available, else CPU.
    ahead:
        How many batches are fetched and copied beyond the one being trained on.
    log_interval:
        Seconds between INFO lines of [`stats`][ondabatches.torch.DeviceFeed.stats] (None: none).

    Notes
    -----
    The batches fetched ahead are not yet trained on: a checkpoint taken in the loop
    should name the first of them, ``dataset.state_dict(unconsumed=feed.pending)``.

    Examples
    --------
    >>> source = [(torch.ones(2, 3), torch.zeros(2, dtype=torch.int64)) for _ in range(4)]
    >>> feed = DeviceFeed(source, device="cpu", ahead=2)
    >>> [x.device.type for x, y in feed]
    ['cpu', 'cpu', 'cpu', 'cpu']
    >>> feed.stats()["batches"], 0.0 <= feed.stats()["wait_fraction"] <= 1.0
    (4, True)
    """

    def __init__(
        self,
        source: Iterable[Any],
        device: Any = None,
        *,
        ahead: int = 2,
        log_interval: float | None = None,
    ):
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
            raise ArgumentError(f"ahead must be a non-negative int, got {ahead!r}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BatcherError(
                f"DeviceFeed to {self.device} but CUDA is not available in this torch "
                f"({torch.__version__}); use device='cpu'"
            )
        self.source = source
        self.ahead = ahead
        self.pending = 0
        self._meter = DataPathMeter()
        self._log = IntervalLogger(logger, log_interval, "DeviceFeed")

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        iterator = iter(self.source)
        queue: deque[tuple[Any, Any]] = deque()
        self._meter.reset()

        def fetch() -> bool:
            try:
                batch = next(iterator)
            except StopIteration:
                return False
            if cuda:
                with torch.cuda.stream(stream):
                    moved = _map_tensors(
                        batch, lambda t: _pinned(t).to(self.device, non_blocking=True)
                    )
                    event = torch.cuda.Event()
                    event.record(stream)
                queue.append((moved, event))
            else:
                queue.append((_map_tensors(batch, lambda t: t.to(self.device)), None))
            return True

        try:
            while True:
                began = time.perf_counter()
                while len(queue) <= self.ahead and fetch():
                    pass
                if not queue:
                    return
                batch, event = queue.popleft()
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    # The batch was allocated on the side stream: tell the caching
                    # allocator it is used on this one, so its memory is not reused early.
                    _map_tensors(batch, lambda t, s=current: t.record_stream(s))
                self.pending = len(queue)
                now = time.perf_counter()
                self._meter.took(batch, now - began)
                self._log.maybe(now, self.stats)
                yield batch
        finally:
            queue.clear()
            self.pending = 0

    def stats(self) -> dict[str, Any]:
        """Figures since the last iteration began: ``wait_fraction`` is the share of wall
        time the training loop spent waiting for the next batch (fetching from the
        source, pinning and queuing the copy), as in
        [`Batcher.stats`][ondabatches.serve.Batcher.stats]."""
        return self._meter.snapshot()
