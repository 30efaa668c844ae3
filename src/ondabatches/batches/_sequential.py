"""A finite scheme for evaluation: every labeled window once, in order, sharded across ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..onda._timespan import NS_PER_S, TimeLike, nanoseconds
from ._item import BatchItem
from ._montage import RecordingArrays
from ._random import _rows_of
from ._state import BatchScheme, BatchState, _frozen_config
from ._table import LabeledArrays

__all__ = ["SequentialBatches"]


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BatchSpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SequentialBatches(BatchScheme):
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
        rows: LabeledArrays | RecordingArrays
        self._rows = rows = _rows_of(
            labeled, modalities, missing, resample, batch_duration, channels, None
        )
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.world_size = _positive_int(world_size, "world_size")
        self.rank = _positive_int(rank, "rank", minimum=0)
        if self.rank >= self.world_size:
            raise BatchSpecError(f"rank {rank} is not below world_size {world_size}")
        self.drop_last = bool(drop_last)
        self.batch_duration, self._segments = rows.segments(batch_duration)
        self.stride = self.batch_duration if stride is None else nanoseconds(stride)
        if self.stride <= 0:
            raise BatchSpecError(f"stride must be positive, got {self.stride} ns")
        bad = np.flatnonzero(self.stride % rows.epoch)
        if len(bad):
            i = int(bad[0])
            raise BatchSpecError(
                f"stride of {self.stride} ns is not a whole number of the {int(rows.epoch[i])} ns "
                f"label epochs of row {i} (recording {rows.recordings[i]})"
            )
        self._stride_epochs = self.stride // rows.epoch
        self.channels = _checked_channels(rows, channels)
        self._windows = (rows.n_labels - self._segments) // self._stride_epochs + 1
        self._cum = np.cumsum(self._windows)
        self.n_windows = int(self._cum[-1])
        if self.drop_last:
            self.windows_per_rank = self.n_windows // self.world_size
            if self.windows_per_rank == 0:
                raise BatchSpecError(
                    f"drop_last leaves no window: {self.n_windows} windows for "
                    f"{self.world_size} ranks"
                )
        else:
            self.windows_per_rank = -(-self.n_windows // self.world_size)
        self.n_batches = -(-self.windows_per_rank // self.batch_size)
        self._config = {
            "scheme": "SequentialBatches",
            "batch_size": self.batch_size,
            "batch_duration_ns": self.batch_duration,
            "stride_ns": self.stride,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
            "channels": repr(self.channels),
            "n_rows": rows.n_rows,
            **rows.fingerprint(),
        }
        if isinstance(rows, RecordingArrays):
            self._config.update(rows.config())
        self._frozen_config = _frozen_config(self._config)

    steps_without_drawing = True

    def __len__(self) -> int:
        """The number of batches of this rank (the same on every rank)."""
        return self.n_batches

    def remaining(self, state: BatchState) -> int | None:
        """The batches of this rank from ``state`` on."""
        return max(0, self.n_batches - state.index) if isinstance(state, BatchState) else None

    @property
    def config(self) -> dict[str, Any]:
        """The configuration fingerprint that states are bound to (rank excluded)."""
        return dict(self._config)

    def initial_state(self, seed: int = 0) -> BatchState:
        """The state of the first batch (the seed is carried along but unused)."""
        return BatchState(seed=seed, index=0, config=self._config)

    def next_state(self, state: BatchState) -> BatchState | None:
        """The state after ``state``, or None past the end, without making its batch."""
        state = state.bind(self._frozen_config)
        return None if state.index >= self.n_batches else state.advance()

    def iterate_batch(self, state: BatchState) -> tuple[list[BatchItem], BatchState] | None:
        """Batch ``state.index`` of this rank and the next state, or None past the end."""
        state = state.bind(self._frozen_config)
        if state.index >= self.n_batches:
            return None
        lo = state.index * self.batch_size
        hi = min(lo + self.batch_size, self.windows_per_rank)
        g = self.rank + self.world_size * np.arange(lo, hi, dtype=np.int64)
        padding = g >= self.n_windows
        g %= self.n_windows
        row = np.searchsorted(self._cum, g, side="right")
        local = g - (self._cum[row] - self._windows[row])
        first = local * self._stride_epochs[row]
        segments = self._segments[row]
        item = self._rows.item
        batch = [
            item(r, f, n, self.batch_duration, self.channels, p)
            for r, f, n, p in zip(
                row.tolist(), first.tolist(), segments.tolist(), padding.tolist(), strict=True
            )
        ]
        return batch, state.advance()

    def __repr__(self) -> str:
        return (
            f"SequentialBatches({self.n_windows} windows, batch_size={self.batch_size}, "
            f"batch_duration={self.batch_duration / NS_PER_S:g} s, "
            f"stride={self.stride / NS_PER_S:g} s, "
            f"rank {self.rank} of {self.world_size}, {self.n_batches} batches)"
        )


def _checked_channels(rows: Any, channels: Any) -> Any:
    """``channels`` (a list or tuple of names or indices as a tuple, or a selector as it
    is), a name missing from a row being a ``BatchSpecError``."""
    if not isinstance(channels, (list, tuple)):
        return channels
    channels = tuple(channels)
    for i, available in enumerate(rows.channels):
        missing = [c for c in channels if isinstance(c, str) and c not in available]
        if missing:
            raise BatchSpecError(
                f"channels {missing} are not in row {i} (recording {rows.recordings[i]}), "
                f"which has {list(available)}"
            )
    return channels
