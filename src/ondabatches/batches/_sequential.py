"""A finite scheme for evaluation: every labeled window once, in order, sharded across ranks.

[`SequentialBatches`][ondabatches.batches.SequentialBatches] is the composition of a
[`SequentialSampler`][ondabatches.batches.SequentialSampler] with a layout and a
round-robin [`Sharding`][ondabatches.batches.Sharding].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..onda._timespan import NS_PER_S, TimeLike, nanoseconds
from ._compose import _SizedComposedBatches
from ._layout import Layout, Windows
from ._random import layout_of
from ._sampler import Sampler, positive_int
from ._shard import Sharding

__all__ = ["SequentialBatches", "SequentialSampler"]


class SequentialSampler(Sampler):
    """Every window of every row of a layout exactly once, in order: the sampling of
    [`SequentialBatches`][ondabatches.batches.SequentialBatches]; finite.

    Windows start at each row's label span start and every ``stride`` (the window
    duration by default: back to back) while they fit; rows in order. It gives
    round-robin shares ([`Sharding`][ondabatches.batches.Sharding]): global window
    ``g`` to rank ``g % world_size``, padded or with the remainder dropped.

    Parameters
    ----------
    batch_size:
        Items per batch (a rank's last batch may hold fewer).
    stride:
        The step between window starts, a whole number of label epochs (None: the
        window duration).
    channels:
        The channel selector of every item (None: all channels, in order).

    Examples
    --------
    >>> from ondabatches.batches import SignalLayout, Sharding, compose
    >>> from ondabatches.synthetic import labeled_table
    >>> layout = SignalLayout(labeled_table(2, duration=300 * 10**9), 60 * 10**9)
    >>> share = Sharding(world_size=2, rank=1, mode="round-robin")
    >>> scheme = compose(SequentialSampler(batch_size=4), layout, share)
    >>> len(scheme), scheme.sampler.n_windows, scheme.sampler.windows(0, 1).rows.tolist()
    (2, 10, [1])
    """

    name = "SequentialBatches"
    finite = True
    round_robin = True

    def __init__(
        self, *, batch_size: int, stride: TimeLike | None = None, channels: Any = None
    ) -> None:
        self.batch_size = positive_int(batch_size, "batch_size")
        self._stride = stride
        self.channels = tuple(channels) if isinstance(channels, (list, tuple)) else channels

    def bind(self, layout: Layout, sharding: Sharding) -> SequentialSampler:
        """A copy over ``layout``'s windows, giving ``sharding``'s share of them."""
        bound = super().bind(layout, sharding)
        assert isinstance(bound, SequentialSampler)
        bound._prepare(layout, sharding)
        return bound

    def _prepare(self, layout: Layout, sharding: Sharding) -> None:
        self.stride = layout.duration if self._stride is None else nanoseconds(self._stride)
        if self.stride <= 0:
            raise BatchSpecError(f"stride must be positive, got {self.stride} ns")
        bad = np.flatnonzero(self.stride % layout.epoch)
        if len(bad):
            i = int(bad[0])
            raise BatchSpecError(
                f"stride of {self.stride} ns is not a whole number of the "
                f"{int(layout.epoch[i])} ns label epochs of row {i} (recording "
                f"{layout.recordings[i]})"
            )
        self._stride_epochs = self.stride // layout.epoch
        if isinstance(self.channels, tuple):
            for i, available in enumerate(layout.channels):
                if available is None:
                    raise BatchSpecError(
                        f"{layout!r} selects the channels itself (a montage: per modality): "
                        f"give no channels ({self.channels!r})"
                    )
                missing = [c for c in self.channels if isinstance(c, str) and c not in available]
                if missing:
                    raise BatchSpecError(
                        f"channels {missing} are not in row {i} (recording "
                        f"{layout.recordings[i]}), which has {list(available)}"
                    )
        self._windows = (layout.n_labels - layout.window_epochs) // self._stride_epochs + 1
        self._cum = np.cumsum(self._windows)
        self.n_windows = int(self._cum[-1])
        self.windows_per_rank = sharding.windows_per_rank(self.n_windows)
        self._n_batches = -(-self.windows_per_rank // self.batch_size)

    def n_batches(self) -> int:
        return self._n_batches

    def config(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "batch_duration_ns": self.layout.duration,
            "stride_ns": self.stride,
            "world_size": self.sharding.world_size,
            "drop_last": self.sharding.drop_last,
            "channels": repr(self.channels),
        }

    def windows(self, seed: int, index: int) -> Windows:
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, self.windows_per_rank)
        g, padding = self.sharding.global_windows(lo, hi, self.n_windows)
        row = np.searchsorted(self._cum, g, side="right")
        local = g - (self._cum[row] - self._windows[row])
        first = local * self._stride_epochs[row]
        return Windows(row, first, [self.channels] * len(row), padding.tolist())

    def __repr__(self) -> str:
        return f"SequentialSampler(batch_size={self.batch_size})"


class SequentialBatches(_SizedComposedBatches):
    """Every labeled window of every row exactly once, in order; finite.

    Windows of ``batch_duration`` start at each row's label span start and every
    ``stride`` (``batch_duration`` by default: back to back) while they fit in the
    label span; rows are taken in table order. ``iterate_batch`` returns ``None`` after
    the last batch.

    Sharding across ``world_size`` data-parallel ranks is round-robin: global window
    ``g`` goes to rank ``g % world_size``, so each window is on exactly one rank and
    every rank gets the same number of batches, with batches of the same sizes:

    - ``drop_last=False`` (default): ranks that are one window short are padded with
      repeats of the first windows of the sequence; those items have
      ``padding=True`` so that evaluation can ignore them.
    - ``drop_last=True``: the last ``n_windows % world_size`` windows are dropped.

    Within a rank the last batch may hold fewer than ``batch_size`` items.

    Parameters
    ----------
    labeled:
        A labeled table.
    batch_size:
        Items per batch.
    batch_duration, stride:
        Window duration and step, whole numbers of label epochs.
    channels:
        The channel selector for every item (None: all channels in order).
    world_size, rank:
        Number of data-parallel ranks and this one's 0-based rank.
    drop_last:
        Drop, rather than pad, the windows that do not divide evenly among ranks.
    modalities, missing, resample:
        A montage, as for [`RandomBatches`][ondabatches.batches.RandomBatches]: windows
        of recordings (a "row" is a recording), each a
        [`MultiBatchItem`][ondabatches.batches.MultiBatchItem]; with
        ``missing="exclude"`` only the windows inside every signal's span.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from ondabatches.synthetic import labeled_table
    >>> labeled = labeled_table(2, duration=300 * 10**9)  # 10 epochs of 30 s per row
    >>> seq = SequentialBatches(labeled, batch_size=4, batch_duration=timedelta(seconds=30),
    ...                         world_size=2, rank=1)
    >>> state, sizes = seq.initial_state(), []
    >>> while (out := seq.iterate_batch(state)) is not None:
    ...     batch, state = out
    ...     sizes.append(len(batch))
    >>> seq.n_windows, sizes  # rank 1 gets the odd windows: 10 of 20
    (20, [4, 4, 2])
    """

    def __init__(
        self,
        labeled: pa.Table,
        *,
        batch_size: int,
        batch_duration: TimeLike,
        stride: TimeLike | None = None,
        channels: Sequence[str | int] | Any = None,
        world_size: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        modalities: Mapping[str, Any] | None = None,
        missing: str = "exclude",
        resample: Mapping[str, Any] | None = None,
    ) -> None:
        layout = layout_of(labeled, modalities, missing, resample, batch_duration, channels, None)
        sampler = SequentialSampler(batch_size=batch_size, stride=stride, channels=channels)
        world_size = positive_int(world_size, "world_size")
        rank = positive_int(rank, "rank", minimum=0)
        if rank >= world_size:
            raise BatchSpecError(f"rank {rank} is not below world_size {world_size}")
        sharding = Sharding(world_size, rank, mode="round-robin", drop_last=bool(drop_last))
        super().__init__(sampler, layout, sharding)

    batch_size = property(lambda self: self.sampler.batch_size, doc="Items per batch.")
    batch_duration = property(lambda self: self.layout.duration, doc="Window duration, ns.")
    stride = property(lambda self: self.sampler.stride, doc="Step between windows, ns.")
    channels = property(lambda self: self.sampler.channels, doc="Every item's selector.")
    drop_last = property(lambda self: self.sampler.sharding.drop_last, doc="Drop, not pad.")
    n_windows = property(lambda self: self.sampler.n_windows, doc="Windows of all ranks.")
    windows_per_rank = property(
        lambda self: self.sampler.windows_per_rank, doc="Windows of each rank, padding included."
    )
    n_batches = property(lambda self: self.sampler.n_batches(), doc="Batches of each rank.")
    _rows = property(lambda self: self.layout)

    def __repr__(self) -> str:
        return (
            f"SequentialBatches({self.n_windows} windows, batch_size={self.batch_size}, "
            f"batch_duration={self.batch_duration / NS_PER_S:g} s, "
            f"stride={self.stride / NS_PER_S:g} s, "
            f"rank {self.rank} of {self.world_size}, {self.n_batches} batches)"
        )
