"""PyTorch adapter: a checkpointable ``IterableDataset`` of tensors served by a Batcher.

Needs the ``torch`` extra (``pip install 'ondabatches[torch]'``; the CPU build is
enough). ``import ondabatches`` never imports torch; ``import ondabatches.torch`` does.

Design choices, all for exact resumption:

- **Parallelism lives in the Batcher, not in the DataLoader.** Use
  ``DataLoader(dataset, batch_size=None, num_workers=0)``: the Batcher's worker pool
  (processes, Ray...) does the expensive work, while the dataset in the training
  process knows exactly which batch it yielded last. Iterating inside DataLoader worker
  processes is refused with a :class:`~ondabatches.BatcherError`, because a worker's
  copy of the dataset would advance while the one you checkpoint would not; the
  sequence therefore never depends on a DataLoader worker count.
- **Checkpoints hold the next batch's state.** :meth:`BatchDataset.state_dict` is a
  JSON-able dict with the state of the *next* batch to yield (torchdata's
  ``Stateful`` protocol), so a new dataset given :meth:`~BatchDataset.load_state_dict`
  continues with exactly the batch the old one would have yielded next.
- **Ranks interleave one global stream.** For DistributedDataParallel, rank ``r`` of
  ``w`` gets the batches with global index ``r, r + w, r + 2w, ...`` of the scheme
  (:class:`InterleavedBatches`): the ranks' streams are disjoint by construction,
  each is a pure function of ``(seed, rank, world_size)``, and together they are
  exactly the single-process stream. Schemes that shard themselves (they have
  ``world_size`` and ``rank`` attributes, like
  :class:`~ondabatches.SequentialBatches`) are used as they are, after checking that
  their ``world_size`` and ``rank`` are the ones asked for.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._errors import BatcherError, BatchSpecError, StateError, require
from .batches._state import BatchState
from .serve._batcher import Batcher
from .serve._tree import map_leaves

torch = require("torch", "torch")

__all__ = ["BatchDataset", "InterleavedBatches", "shard_batches"]

#: Version of :meth:`BatchDataset.state_dict`'s layout.
STATE_DICT_VERSION = 1


class InterleavedBatches:
    """One rank's share of a scheme: global batches ``rank + k * world_size``, k = 0, 1...

    States stay the wrapped scheme's global states (:class:`~ondabatches.BatchState`,
    bound to its configuration): the batch of a state whose index is not on this
    rank's lattice is the next one that is, so every rank can start from the same
    initial state.

    Parameters
    ----------
    batches:
        A scheme whose states are :class:`~ondabatches.BatchState` and whose batch
        depends only on the state (any :class:`~ondabatches.BatchScheme`), e.g.
        :class:`~ondabatches.RandomBatches`.
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
        self.batches = batches
        self.world_size = world_size
        self.rank = rank

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

    A scheme that shards itself (has ``world_size`` and ``rank`` attributes, like
    :class:`~ondabatches.SequentialBatches`) is returned as it is if they match, and
    refused otherwise; with one rank the scheme is returned as it is; otherwise it is
    wrapped in :class:`InterleavedBatches`.

    Use it to build a Batcher (or :class:`~ondabatches.RayBatcher`) for one rank by hand;
    :class:`BatchDataset` calls it for you when given a scheme.

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
    own = (getattr(batches, "world_size", None), getattr(batches, "rank", None))
    if own != (None, None):
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


class BatchDataset(torch.utils.data.IterableDataset):
    """An iterable dataset of ``(x, y)`` tensors from a Batcher, checkpointable and rank-aware.

    Where a batch's ``x`` is a dict of arrays (one per modality, with a nested ``mask``
    dict), ``x`` is the same dict of tensors (the mask's are bool tensors).

    Parameters
    ----------
    source:
        A batch scheme (the dataset builds a :class:`~ondabatches.Batcher` over this
        rank's share of it, with ``batcher_options``, on first iteration), or a
        Batcher-like object with ``start``/``take``/``status`` (a
        :class:`~ondabatches.Batcher` or :class:`~ondabatches.RayBatcher`) that you
        built over :func:`shard_batches` yourself and that you stop yourself.
    state:
        The state of the first batch, the same on every rank (e.g.
        ``batches.initial_state(seed)``).
    world_size, rank:
        Data-parallel ranks; default: from ``torch.distributed`` when it is
        initialized, else one rank.
    **batcher_options:
        Passed to :class:`~ondabatches.Batcher` (``backend``, ``workers``, ``buffer``,
        ``dtype``...) when ``source`` is a scheme.

    Notes
    -----
    Use it with ``DataLoader(dataset, batch_size=None, num_workers=0)``; see the module
    docstring for why. One iteration at a time: each continues where the last stopped
    (after a finite scheme has ended, load a state to go again). Call :meth:`close`
    (or use ``with``) to stop a Batcher the dataset built.

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
    ...     for x, y in loader:
    ...         checkpoint = {"data": dataset.state_dict()}
    ...         break  # training stops after the first batch
    >>> x.shape, y.shape, x.dtype
    (torch.Size([2, 6, 3840]), torch.Size([2, 1, 1]), torch.float32)
    >>> with BatchDataset(batches, batches.initial_state(), backend="threads") as resumed:
    ...     resumed.load_state_dict(checkpoint["data"])
    ...     [tuple(x.shape) for x, y in resumed]  # the 2 batches of the 3 not yet yielded
    [(2, 6, 3840), (2, 6, 3840)]
    """

    def __init__(
        self,
        source: Any,
        state: Any,
        *,
        world_size: int | None = None,
        rank: int | None = None,
        **batcher_options: Any,
    ):
        super().__init__()
        if (world_size is None) != (rank is None):
            raise BatchSpecError("give both world_size and rank, or neither")
        if world_size is None:
            world_size, rank = _distributed_rank()
        _check_rank(world_size, rank)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self._options = batcher_options
        self._batcher: Any = None
        if callable(getattr(source, "take", None)):
            if batcher_options:
                raise TypeError(
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
            self._owned = True
        else:
            raise TypeError(
                "source must be a batch scheme (iterate_batch) or a Batcher (take), "
                f"got {type(source).__name__}"
            )
        self._state = self._checked(state)

    def _checked(self, state: Any) -> Any:
        # Refuse a state of another configuration now rather than at the first batch.
        config = getattr(self._scheme, "config", None)
        inner = getattr(self._scheme, "batches", None)
        config = config if config is not None else getattr(inner, "config", None)
        if isinstance(state, BatchState) and isinstance(config, Mapping):
            return state.bind(config)
        return state

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
                "Batcher's workers instead"
            )
        batcher = self._running_batcher()
        while True:
            state = self._state
            result = batcher.take(state)
            if result is None:
                return
            (x, y), self._state = result
            yield _tensors(x), _tensors(y)

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

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able checkpoint: the state of the next batch to yield, and the rank.

        Examples
        --------
        >>> import json
        >>> from ondabatches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> dataset = BatchDataset(batches, batches.initial_state(seed=0).advance(5))
        >>> json.dumps(dataset.state_dict())
        '{"version": 1, "world_size": 1, "rank": 0, "kind": "BatchState", "state": {...}}'
        >>> dataset.state_dict()["state"]["index"]
        5
        """
        is_batch_state = isinstance(self._state, BatchState)
        return {
            "version": STATE_DICT_VERSION,
            "world_size": self.world_size,
            "rank": self.rank,
            "kind": "BatchState" if is_batch_state else "json",
            "state": self._state.to_dict() if is_batch_state else self._state,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is the one it names.

        Raises
        ------
        StateError
            If the checkpoint is of another layout version, another rank or world
            size, or another scheme configuration; the message shows both sides.

        Examples
        --------
        >>> from ondabatches import RandomBatches
        >>> from ondabatches.synthetic import labeled_table
        >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
        ...                         batch_duration=30 * 10**9)
        >>> old = BatchDataset(batches, batches.initial_state(seed=0).advance(5))
        >>> new = BatchDataset(batches, batches.initial_state(seed=0))
        >>> new.load_state_dict(old.state_dict())
        >>> new.state_dict()["state"]["index"]  # new continues with batch 5
        5
        >>> other_rank = BatchDataset(batches, batches.initial_state(seed=0), world_size=2, rank=1)
        >>> other_rank.load_state_dict(old.state_dict())
        Traceback (most recent call last):
        ...
        ondabatches._errors.StateError: the checkpoint is of rank 0 of 1 but ...
        """
        try:
            version = state_dict["version"]
            where = (state_dict["world_size"], state_dict["rank"])
            kind, raw = state_dict["kind"], state_dict["state"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a BatchDataset state dict: {state_dict!r}") from exc
        if version != STATE_DICT_VERSION:
            raise StateError(
                f"BatchDataset state dict version {version} is not supported; "
                f"this ondabatches reads version {STATE_DICT_VERSION}"
            )
        if where != (self.world_size, self.rank):
            raise StateError(
                f"the checkpoint is of rank {where[1]} of {where[0]} but this dataset is "
                f"rank {self.rank} of {self.world_size}; each rank must load its own "
                "checkpoint, with the same world size"
            )
        self._state = self._checked(BatchState.from_dict(raw) if kind == "BatchState" else raw)
