"""Data-parallel ranks: one rank's share of a scheme, and checkpoints that resume at any world size.

Rank ``r`` of ``w`` serves the batches with global index ``r, r + w, r + 2w, ...`` of a
scheme ([`InterleavedBatches`][ondabatches.batches.InterleavedBatches]): disjoint by
construction, each a pure function of ``(seed, rank, world_size)``, together exactly the
single-process stream. Schemes built as one rank's share (``SequentialBatches(...,
world_size=w, rank=r)``) are used as they are
([`shard_batches`][ondabatches.batches.shard_batches]).

The *global frontier* makes interleaved checkpoints elastic: when every rank has taken
the same number ``k`` of batches since a common start state ``s``, the global batches
``s .. s + k*w - 1`` have all been taken, by exactly one rank each, and no later one has.
A [`RankCursor`][ondabatches.batches._shard.RankCursor] records it in each rank's
checkpoint, so any rank's checkpoint resumes every rank, at any world size, there.

Nothing here needs torch: [`ondabatches.torch`][ondabatches.torch] builds its datasets
on it, and a training loop in any framework shards with ``shard_batches`` and a
[`Batcher`][ondabatches.serve.Batcher]. ``RankCursor`` is not public yet (its checkpoint
layout is ``BatchDataset``'s); a framework adapter beside ``ondabatches.torch`` may use it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ArgumentError, BatchSpecError, StateError
from ._state import BatchScheme, BatchState, as_batch_scheme

__all__ = ["InterleavedBatches", "Sharding", "shard_batches"]

logger = logging.getLogger("ondabatches")

#: Version of a rank checkpoint's layout (version 1, without the global frontier, is
#: still read); [`BatchDataset.state_dict`][ondabatches.torch.BatchDataset.state_dict]'s.
STATE_DICT_VERSION = 2

#: How many of the last batches taken a checkpoint can step back over (``unconsumed``).
RECENT = 64

#: The ways a composed scheme is split among ranks ([`Sharding`][ondabatches.batches.Sharding]).
SHARDING_MODES = ("interleave", "round-robin")


@dataclass(frozen=True, slots=True)
class Sharding:
    """How [`compose`][ondabatches.batches.compose] splits a scheme among ``world_size``
    data-parallel ranks, and which share is this ``rank``'s.

    - ``mode="interleave"`` (any sampler): global batch ``g`` goes to rank
      ``g % world_size`` ([`InterleavedBatches`][ondabatches.batches.InterleavedBatches]);
      states count global batches, so checkpoints resume at any world size;
    - ``mode="round-robin"`` (samplers that declare
      [`round_robin`][ondabatches.abc.Sampler.round_robin], such as
      [`SequentialSampler`][ondabatches.batches.SequentialSampler]): global *window*
      ``g`` goes to rank ``g % world_size``, and every rank gets the same number of
      batches of the same sizes, padded with repeats of the first windows (items with
      ``padding=True``), or with the last ``n_windows % world_size`` windows dropped
      (``drop_last=True``); checkpoints resume at this world size only.

    Examples
    --------
    >>> share = Sharding(world_size=2, rank=1, mode="round-robin")
    >>> share.windows_per_rank(5), share.global_windows(0, 3, 5)
    (3, (array([1, 3, 0]), array([False, False,  True])))
    """

    world_size: int = 1
    rank: int = 0
    mode: str = "interleave"
    drop_last: bool = False

    def __post_init__(self) -> None:
        check_rank(self.world_size, self.rank)
        if self.mode not in SHARDING_MODES:
            raise BatchSpecError(
                f"Sharding mode must be one of {SHARDING_MODES}, got {self.mode!r}"
            )
        if not isinstance(self.drop_last, bool):
            raise BatchSpecError(f"Sharding drop_last must be a bool, got {self.drop_last!r}")
        if self.drop_last and self.mode != "round-robin":
            raise BatchSpecError(
                "drop_last applies to round-robin sharding of windows; interleaved ranks "
                "take whole batches and drop nothing"
            )

    def windows_per_rank(self, n_windows: int) -> int:
        """How many of ``n_windows`` global windows each rank serves (round-robin).

        Raises
        ------
        BatchSpecError
            If ``drop_last`` leaves no window.
        """
        if not self.drop_last:
            return -(-n_windows // self.world_size)
        per_rank = n_windows // self.world_size
        if per_rank == 0:
            raise BatchSpecError(
                f"drop_last leaves no window: {n_windows} windows for {self.world_size} ranks"
            )
        return per_rank

    def global_windows(self, lo: int, hi: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
        """The global windows of this rank's windows ``lo`` to ``hi - 1`` (round-robin), and
        which of them only pad the share (wrapped around to the first windows)."""
        g = self.rank + self.world_size * np.arange(lo, hi, dtype=np.int64)
        padding = g >= n_windows
        return g % n_windows, padding


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
    >>> from ondabatches.batches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(2, duration=600 * 10**9), batch_size=2,
    ...                         batch_duration=30 * 10**9)
    >>> scheme = InterleavedBatches(batches, world_size=2, rank=1)
    >>> batch, state = scheme.iterate_batch(batches.initial_state(seed=0))
    >>> state.index  # it served global batch 1; its next is global batch 3
    3
    """

    def __init__(self, batches: Any, world_size: int, rank: int):
        check_rank(world_size, rank)
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

    @property
    def steps_without_drawing(self) -> bool:  # type: ignore[override]
        """As the wrapped scheme's: ``next_state`` steps through its states."""
        return self.batches.steps_without_drawing

    def iterate_batch(self, state: BatchState) -> tuple[Any, BatchState] | None:
        step = self.batches.iterate_batch(self._own(state))
        if step is None:
            return None
        batch, next_state = step
        return batch, next_state.advance(self.world_size - 1)

    def next_state(self, state: BatchState) -> BatchState | None:
        after = self.batches.next_state(self._own(state))
        return None if after is None else after.advance(self.world_size - 1)

    def _own(self, state: BatchState) -> BatchState:
        """The first state at or after ``state`` on this rank's lattice."""
        if not isinstance(state, BatchState):
            raise StateError(
                f"interleaving batches across ranks needs BatchState states, "
                f"got {type(state).__name__}"
            )
        return state.advance((self.rank - state.index) % self.world_size)

    def state_of(self, start: BatchState, k: int) -> BatchState:
        """The global state of this rank's ``k``-th batch from ``start`` (O(1))."""
        skip = (self.rank - start.index) % self.world_size
        return start.advance(skip + k * self.world_size)

    def __repr__(self) -> str:
        return f"InterleavedBatches({self.batches!r}, rank {self.rank} of {self.world_size})"


def check_rank(world_size: int, rank: int) -> None:
    """Refuse a ``world_size`` or ``rank`` that is not an int, or a rank out of range."""
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
    is wrapped in [`InterleavedBatches`][ondabatches.batches.InterleavedBatches] (global
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
    >>> from ondabatches.batches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
    ...                         batch_duration=30 * 10**9)
    >>> shard_batches(batches, world_size=4, rank=2)  # then Batcher(...) or RayBatcher(...)
    InterleavedBatches(RandomBatches(2 rows, ...), rank 2 of 4)
    >>> shard_batches(batches, world_size=1, rank=0) is batches
    True
    """
    check_rank(world_size, rank)
    batches = as_batch_scheme(batches, "shard_batches")
    if built_sharded(batches):
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


def built_sharded(batches: BatchScheme) -> bool:
    """Whether ``batches`` was built as one rank's share (``world_size`` > 1 and a rank)."""
    return (batches.world_size, batches.rank) != (1, 0)


def interleaves(scheme: BatchScheme) -> bool:
    """Whether ranks interleave one global stream of ``scheme``'s states (elastic resume):
    any scheme but those built as one rank's share."""
    return isinstance(scheme, InterleavedBatches) or not built_sharded(scheme)


class RankCursor:
    """Where one rank is in its scheme, and its checkpoints (with the global frontier).

    The cursor holds the state of the next batch, the *origin* where every rank
    started together, how many batches were taken since, and the states of the last
    [`RECENT`][ondabatches.batches._shard.RECENT] (for checkpoints of a consumer that
    fetches ahead). [`state_dict`][ondabatches.batches._shard.RankCursor.state_dict]
    and [`load_state_dict`][ondabatches.batches._shard.RankCursor.load_state_dict] are
    [`BatchDataset`][ondabatches.torch.BatchDataset]'s checkpoints, version
    [`STATE_DICT_VERSION`][ondabatches.batches._shard.STATE_DICT_VERSION].

    Parameters
    ----------
    scheme:
        The scheme this rank serves (``shard_batches(batches, world_size, rank)``).
    world_size, rank:
        The data-parallel ranks (checked by the caller).
    state:
        The state of the next batch, the same on every rank; bound to ``scheme``'s
        configuration.
    owner:
        What the checkpoints are called in error messages.

    Examples
    --------
    >>> from ondabatches.batches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(2, duration=300 * 10**9), batch_size=2,
    ...                         batch_duration=30 * 10**9)
    >>> start = batches.initial_state(seed=0)
    >>> old = RankCursor(shard_batches(batches, 2, 1), 2, 1, start)
    >>> for _ in range(3):  # rank 1 of 2 takes global batches 1, 3, 5
    ...     taken = old.state
    ...     batch, old.state = old.scheme.iterate_batch(taken)
    ...     old.took(taken)
    >>> new = RankCursor(shard_batches(batches, 3, 0), 3, 0, start)
    >>> new.load_state_dict(old.state_dict())  # elastic: 2 ranks -> 3
    >>> new.state.index  # global batches 0..5 were taken
    6
    """

    def __init__(
        self, scheme: Any, world_size: int, rank: int, state: Any, *, owner: str = "BatchDataset"
    ):
        self.scheme = scheme
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.owner = owner
        self.restart(self.bound(state))

    def restart(self, state: Any) -> None:
        """Start over at ``state``, the new origin: nothing taken, nothing recent."""
        self.state = state
        self.origin = state
        self.taken = 0
        self.recent: deque[Any] = deque(maxlen=RECENT)  # states of the last batches taken

    def bound(self, state: Any) -> Any:
        """``state`` bound to the scheme's configuration: a state of another
        configuration is refused now rather than at the first batch."""
        config = self.scheme.config
        if isinstance(state, BatchState) and isinstance(config, Mapping):
            return state.bind(config)
        return state

    def took(self, state: Any) -> None:
        """Record that the batch of ``state`` was taken (``self.state`` is the next's)."""
        self.recent.append(state)
        self.taken += 1

    @property
    def interleaved(self) -> bool:
        """Whether ranks interleave one global stream (the checkpoints are elastic)."""
        return interleaves(self.scheme)

    def state_dict(self, unconsumed: int = 0) -> dict[str, Any]:
        """A JSON-able checkpoint: the next state (or the first of the last ``unconsumed``
        taken), this rank, and, for interleaved schemes, the global frontier."""
        if isinstance(unconsumed, bool) or not isinstance(unconsumed, int) or unconsumed < 0:
            raise ArgumentError(f"unconsumed must be a non-negative int, got {unconsumed!r}")
        if unconsumed > len(self.recent):
            raise ArgumentError(
                f"cannot step back over {unconsumed} batches: this dataset remembers the last "
                f"{len(self.recent)} it yielded since it started or loaded a state"
            )
        state = self.recent[-unconsumed] if unconsumed else self.state
        is_batch_state = isinstance(state, BatchState)
        out: dict[str, Any] = {
            "version": STATE_DICT_VERSION,
            "world_size": self.world_size,
            "rank": self.rank,
            "kind": "BatchState" if is_batch_state else "json",
            "state": state.to_dict() if is_batch_state else state,
        }
        if is_batch_state and isinstance(self.origin, BatchState) and self.interleaved:
            taken = self.taken - unconsumed
            out["frontier"] = self.origin.advance(taken * self.world_size).to_dict()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restart at a checkpoint: at its global frontier where it has one and the
        scheme is interleaved (any rank's, any world size), else at its own state (this
        rank's, at this world size only).

        Raises
        ------
        StateError
            If the checkpoint is of another layout version, another configuration, or
            (without a frontier) another rank or world size; the message shows both sides.
        """
        try:
            version = state_dict["version"]
            where = (state_dict["world_size"], state_dict["rank"])
            kind, raw = state_dict["kind"], state_dict["state"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a {self.owner} state dict: {state_dict!r}") from exc
        if version not in (1, STATE_DICT_VERSION):
            raise StateError(
                f"{self.owner} state dict version {version} is not supported; "
                f"this ondabatches reads versions 1 and {STATE_DICT_VERSION}"
            )
        frontier = state_dict.get("frontier")
        if frontier is not None and self.interleaved:
            state = self.bound(BatchState.from_dict(frontier))
            if where != (self.world_size, self.rank):
                logger.info(
                    "resuming rank %d of %d from rank %d of %d's checkpoint at global batch %d",
                    self.rank, self.world_size, where[1], where[0], state.index,
                )  # fmt: skip
            self.restart(state)
            return
        if where != (self.world_size, self.rank):
            why = (
                "the checkpoint holds no global frontier (it is of version 1, or its states "
                "are not BatchStates)"
                if self.interleaved
                else f"{self.scheme!r} shards itself"
            )
            raise StateError(
                f"the checkpoint is of rank {where[1]} of {where[0]} but this dataset is "
                f"rank {self.rank} of {self.world_size}; {why}, so each rank must load its "
                "own checkpoint, with the same world size"
            )
        self.restart(self.bound(BatchState.from_dict(raw) if kind == "BatchState" else raw))
