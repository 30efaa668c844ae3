"""Layouts: what a composed scheme's windows are windows *of*, and how one becomes an item.

A layout holds the rows a [`Sampler`][ondabatches.abc.Sampler] draws from, each with one
label timeline (``n_labels`` epochs of ``epoch`` ns from ``label_start``) and windows of
one duration, ``window_epochs`` epochs long. Two are built in:

- [`SignalLayout`][ondabatches.batches.SignalLayout]: one row per signal of a labeled
  table; items are [`BatchItem`][ondabatches.batches.BatchItem]s;
- [`MontageLayout`][ondabatches.batches.MontageLayout]: one row per recording seen
  through a montage of modalities; items are
  [`MultiBatchItem`][ondabatches.batches.MultiBatchItem]s.

The window duration belongs to the layout, not to the sampler: a montage decides which
recordings can be sampled at all from the duration (a recording whose signals overlap
for less than one window has none), so it is built with it, and every sampler then sees
rows it can draw from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..onda._timespan import TimeLike
from ._montage import RecordingArrays
from ._table import LabeledArrays

__all__ = ["MontageLayout", "SignalLayout", "Windows"]


@dataclass(frozen=True, slots=True)
class Windows:
    """The windows of one batch, as a [`Sampler`][ondabatches.abc.Sampler] gives them.

    Parameters
    ----------
    rows:
        Per item, the layout row it is a window of.
    firsts:
        Per item, the label epoch the window starts at, counted from the row's
        ``label_start`` (between 0 and ``n_labels - window_epochs`` of that row).
    channels:
        Per item, its channel selector (names, indices or a selector object); None for
        every item's selector None (all channels, in their order).
    padding:
        Per item, whether it only pads a rank's share (evaluation ignores it); None for
        all False.

    Examples
    --------
    >>> Windows(rows=[0, 1], firsts=[3, 0]).rows
    [0, 1]
    """

    rows: Sequence[int]
    firsts: Sequence[int]
    channels: Sequence[Any] | None = None
    padding: Sequence[bool] | None = None

    def __post_init__(self) -> None:
        n = len(self.rows)
        for name in ("firsts", "channels", "padding"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise BatchSpecError(f"Windows has {n} rows but {len(value)} {name}")


class Layout(ABC):
    """The interface of layouts: the rows a sampler draws windows from, and their items.

    A layout declares, per row: ``recordings`` (the recording's UUID), ``epoch`` (label
    epoch in ns), ``label_start`` and ``label_stop`` (ns from the recording's start),
    ``n_labels`` (epochs) and ``window_epochs`` (epochs per window), all numpy int64
    arrays but ``recordings``; ``channels`` (the signal's channel names, or None where
    the layout selects channels itself, as a montage does per modality); ``n_rows`` and
    ``duration`` (the window duration in ns). Samplers read these and nothing else.

    [`SignalLayout`][ondabatches.batches.SignalLayout] and
    [`MontageLayout`][ondabatches.batches.MontageLayout] are the built-in ones; compose
    either with any sampler ([`compose`][ondabatches.batches.compose]).
    """

    n_rows: int
    duration: int
    recordings: list[Any]
    channels: list[Any]
    epoch: np.ndarray
    label_start: np.ndarray
    label_stop: np.ndarray
    n_labels: np.ndarray
    window_epochs: np.ndarray

    @abstractmethod
    def item(
        self, row: int, first: int, count: int, duration: int, channels: Any, padding: bool = False
    ) -> Any:
        """The item of ``count`` epochs from epoch ``first`` of ``row``."""

    @abstractmethod
    def fingerprint(self, *extra: np.ndarray | None) -> dict[str, str]:
        """The digests of the rows' data by content; ``extra`` (a sampler's weights) go
        into ``digest.weights``."""

    def config(self) -> dict[str, Any]:
        """What the layout adds to a scheme's configuration (JSON; none by default)."""
        return {}

    def weights_of(self, signal_weights: Any, label_weights: Any) -> tuple[Any, Any]:
        """A user's per-row and per-epoch weights as weights of these rows (as given,
        by default)."""
        return signal_weights, label_weights

    def items(self, windows: Windows) -> list[Any]:
        """The items of ``windows``, each ``window_epochs`` of its row long."""
        rows, firsts, counts, channels, padding = self.item_columns(windows)
        item, duration = self.item, self.duration
        return [
            item(r, f, c, duration, ch, p)
            for r, f, c, ch, p in zip(rows, firsts, counts, channels, padding, strict=True)
        ]

    def item_columns(self, windows: Windows) -> tuple[list[int], list[int], list[int], Any, Any]:
        """Per item of ``windows``: its row, first epoch and epochs (plain ints), its
        channel selector and padding flag."""
        rows = np.asarray(windows.rows, dtype=np.int64)
        n = len(rows)
        return (
            rows.tolist(),
            np.asarray(windows.firsts, dtype=np.int64).tolist(),
            self.window_epochs[rows].tolist(),
            [None] * n if windows.channels is None else windows.channels,
            [False] * n if windows.padding is None else windows.padding,
        )

    def check(self, windows: Windows, where: str) -> None:
        """Refuse windows of rows that do not exist or that do not fit in their row."""
        rows = np.asarray(windows.rows)
        if rows.size == 0:
            return
        firsts = np.asarray(windows.firsts)
        if rows.dtype.kind not in "iu" or firsts.dtype.kind not in "iu":
            raise BatchSpecError(f"{where}: window rows and firsts must be integers")
        bad = np.flatnonzero((rows < 0) | (rows >= self.n_rows))
        if len(bad):
            raise BatchSpecError(
                f"{where}: item {int(bad[0])} is of row {int(rows[bad[0]])}, but the layout "
                f"has rows 0 to {self.n_rows - 1}"
            )
        last = self.n_labels[rows] - self.window_epochs[rows]
        bad = np.flatnonzero((firsts < 0) | (firsts > last))
        if len(bad):
            j, r = int(bad[0]), int(rows[bad[0]])
            raise BatchSpecError(
                f"{where}: item {j} starts at epoch {int(firsts[j])} of row {r} (recording "
                f"{self.recordings[r]}), but its windows start at epochs 0 to {int(last[j])}"
            )


class SignalLayout(LabeledArrays, Layout):
    """One row per signal of a labeled table: windows of ``batch_duration`` inside each
    row's label span (which must lie inside its signal's span), as
    [`BatchItem`][ondabatches.batches.BatchItem]s.

    Parameters
    ----------
    labeled:
        A labeled table ([`label_signals`][ondabatches.labels.label_signals]).
    batch_duration:
        The window duration: a positive whole number of every row's label epochs, no
        longer than any row's label span.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> layout = SignalLayout(labeled_table(2, duration=300 * 10**9), 60 * 10**9)
    >>> layout.n_rows, layout.window_epochs.tolist(), layout.n_labels.tolist()
    (2, [2, 2], [10, 10])
    """

    def __init__(self, labeled: pa.Table, batch_duration: TimeLike) -> None:
        super().__init__(labeled)
        self.check_signal_spans()
        self.duration, self.window_epochs = self.segments(batch_duration)

    def items(self, windows: Windows) -> list[Any]:
        """The items of ``windows``, each ``window_epochs`` of its row long (in one loop,
        unless a subclass makes its own `item`)."""
        if type(self).item is not LabeledArrays.item:
            return super().items(windows)
        rows, firsts, counts, channels, padding = self.item_columns(windows)
        return self.items_of(rows, firsts, counts, self.duration, channels, padding)

    def __repr__(self) -> str:
        return f"SignalLayout({self.n_rows} rows, {self.duration} ns windows)"


class MontageLayout(RecordingArrays, Layout):
    """One row per recording of a labeled table seen through a montage: windows of
    ``batch_duration`` of every modality at once, as
    [`MultiBatchItem`][ondabatches.batches.MultiBatchItem]s.

    ``modalities``, ``missing`` and ``resample`` are those of
    [`RandomBatches`][ondabatches.batches.RandomBatches]. Recordings without a window
    (a modality absent with ``missing="exclude"``, signals that overlap for less than
    ``batch_duration``) are left out, counted in one
    [`ExcludedRecordingsWarning`][ondabatches.batches.ExcludedRecordingsWarning]; the
    rows are the recordings kept, in order of first appearance in the table.

    Examples
    --------
    >>> from ondabatches.labels import label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("psg", n_recordings=2, duration=300 * 10**9, eog_every=1)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> layout = MontageLayout(labeled, {"eeg": "eeg", "eog": "eog"}, batch_duration=EPOCH)
    >>> layout.n_rows, layout.channels
    (2, [None, None])
    """

    def __init__(
        self,
        labeled: pa.Table,
        modalities: Mapping[str, Any],
        *,
        batch_duration: TimeLike,
        missing: str = "exclude",
        resample: Mapping[str, Any] | None = None,
        stacklevel: int = 2,
    ) -> None:
        # stacklevel, as warnings.warn's: the ExcludedRecordingsWarning points at the
        # caller (2), or further up for a scheme that builds its layout.
        super().__init__(
            labeled,
            modalities,
            missing=missing,
            duration=batch_duration,
            resample=resample,
            stacklevel=stacklevel + 1,
        )
        self.window_epochs = self._segments

    def weights_of(self, signal_weights: Any, label_weights: Any) -> tuple[Any, Any]:
        """Per-recording weights (table order) cut down to the kept recordings and their
        windows' epochs."""
        return self.restrict_weights(signal_weights, label_weights)

    def check(self, windows: Windows, where: str) -> None:
        """As [`Layout.check`][ondabatches.abc.Layout.check], and refuse channel
        selectors: each modality has its own."""
        super().check(windows, where)
        if windows.channels is not None and any(c is not None for c in windows.channels):
            raise BatchSpecError(
                f"{where}: a montage selects the channels of each modality itself; its "
                "windows take no channels (give None)"
            )

    def __repr__(self) -> str:
        return f"MontageLayout({self.n_rows} recordings, modalities {list(self.names)})"
