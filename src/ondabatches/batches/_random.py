"""Endless pseudo-random batches (OndaBatches' ``RandomBatches``): batch k is f(seed, k).

[`RandomBatches`][ondabatches.batches.RandomBatches] is the composition of a
[`RandomSampler`][ondabatches.batches.RandomSampler] with a
[`SignalLayout`][ondabatches.batches.SignalLayout] or, given ``modalities=``, a
[`MontageLayout`][ondabatches.batches.MontageLayout].
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..onda._timespan import NS_PER_S, TimeLike
from ._compose import ComposedBatches
from ._item import BatchItem
from ._layout import Layout, MontageLayout, SignalLayout, Windows
from ._montage import RecordingArrays
from ._multi_item import MultiBatchItem
from ._sampler import Sampler
from ._selectors import selector_fingerprint
from ._shard import Sharding
from ._state import BatchState

__all__ = ["RandomBatches", "RandomSampler"]

# The four sampling steps draw from four independent streams, so that item j of a
# batch does not depend on the batch size (iterate_batch_item gives item 0).
_ROWS, _EPOCHS, _STARTS, _CHANNELS = range(4)


_WORD = (1 << 64) - 1
_EMPTY_BUFFER = (0, 0, 0, 0)
_local = threading.local()


def _generator(seed: int, index: int, step: int) -> np.random.Generator:
    """The generator of one sampling step of batch ``index`` of ``seed``'s stream.

    Philox is counter-based: the key is the seed, the two high counter words name the
    batch and the step; draws advance the low words. No stream ever overlaps another.
    Each thread reuses one generator whose state is set here (building a new Philox
    seeds it from the OS first, 7x slower): the generator returned is valid until the
    next call in the same thread.
    """
    cached = getattr(_local, "philox", None)
    if cached is None:
        bits = np.random.Philox(key=0)
        cached = _local.philox = (bits, np.random.Generator(bits))
    bits, generator = cached
    # Plain ints in tuples: the setter reads them word by word, which costs a third
    # of reading numpy arrays (the same state, so the same draws).
    bits.state = {
        "bit_generator": "Philox",
        "state": {"counter": (0, 0, step, index), "key": (seed & _WORD, seed >> 64)},
        "buffer": _EMPTY_BUFFER,
        "buffer_pos": 4,
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


def _cumulative(weights: Any, n: int, what: str) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) != n:
        raise BatchSpecError(f"{what} must be {n} weights, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise BatchSpecError(f"{what} must be finite and non-negative")
    cum = np.cumsum(w)
    if cum[-1] <= 0:
        raise BatchSpecError(f"{what} sum to zero: nothing can be drawn")
    return cum


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        also = " or None" if name == "n_channels" else ""
        raise BatchSpecError(f"{name} must be a positive integer{also}, got {value!r}")
    return int(value)


class RandomSampler(Sampler):
    """Endless pseudo-random windows: the sampling of
    [`RandomBatches`][ondabatches.batches.RandomBatches], over any layout.

    Each item is drawn independently: (1) a row by ``signal_weights`` (uniform if None);
    (2) a label epoch of that row by its ``label_weights`` (uniform if None); (3)
    uniformly, a window on epoch boundaries inside the row's label span containing that
    epoch; (4) ``n_channels`` of the row's channels without replacement (all, in their
    order, if None), or the fixed selector ``channels``. Batch ``k`` depends only on
    ``(seed, k)``: the four steps draw from four Philox streams keyed by the seed, with
    the batch index and the step in the counter.

    Parameters
    ----------
    batch_size:
        Items per batch.
    signal_weights, label_weights:
        Per row of the layout's table (per recording, in table order, for a montage),
        as for ``RandomBatches``.
    n_channels, channels:
        Drawn channels, or one fixed selector for every item (not with a layout that
        selects channels itself, such as a montage).

    Examples
    --------
    >>> from ondabatches.batches import SignalLayout, compose
    >>> from ondabatches.synthetic import labeled_table
    >>> layout = SignalLayout(labeled_table(2, duration=300 * 10**9), 60 * 10**9)
    >>> sampler = compose(RandomSampler(batch_size=2, n_channels=1), layout).sampler
    >>> sampler.windows(seed=1, index=0)
    Windows(rows=array([0, 0]), firsts=array([4, 2]), channels=[('c3',), ('m2',)], padding=None)
    """

    name = "RandomBatches"

    def __init__(
        self,
        *,
        batch_size: int,
        signal_weights: Sequence[float] | np.ndarray | None = None,
        label_weights: Sequence[Sequence[float] | np.ndarray] | None = None,
        n_channels: int | None = None,
        channels: Any = None,
    ) -> None:
        if channels is not None and n_channels is not None:
            raise BatchSpecError(
                f"give either n_channels ({n_channels}) or a channels selector "
                f"({channels!r}), not both"
            )
        self.batch_size = _count(batch_size, "batch_size")
        self.n_channels = None if n_channels is None else _count(n_channels, "n_channels")
        self.signal_weights, self.label_weights = signal_weights, label_weights
        self._selector = channels  # as given: the configuration's fingerprint of it
        self.channels = tuple(channels) if isinstance(channels, list) else channels
        self._signal_cum: np.ndarray | None = None
        self._label_cum: list[np.ndarray] | None = None
        self._weights: tuple[np.ndarray | None, ...] = ()
        self._row_channels: np.ndarray | None = None

    def user_weights(self, layout: Layout) -> tuple[Any, Any]:
        """``(signal_weights, label_weights)`` per row of ``layout`` (a subclass may
        compute them from the rows: see [`EventSampler`][ondabatches.batches.EventSampler])."""
        return layout.weights_of(self.signal_weights, self.label_weights)

    def bind(self, layout: Layout, sharding: Sharding) -> RandomSampler:
        """A copy over ``layout``, with the weights checked against its rows and their
        cumulative sums precomputed."""
        bound = super().bind(layout, sharding)
        assert isinstance(bound, RandomSampler)
        bound._prepare(layout)
        return bound

    def _prepare(self, layout: Layout) -> None:
        if (self.n_channels is not None or self.channels is not None) and any(
            c is None for c in layout.channels
        ):
            raise BatchSpecError(
                f"{layout!r} selects the channels itself (a montage: per modality): give "
                f"neither channels ({self.channels!r}) nor n_channels ({self.n_channels!r})"
            )
        signal_weights, label_weights = self.user_weights(layout)
        if self.n_channels is not None:
            self._row_channels = counts = np.array([len(c) for c in layout.channels])
            bad = np.flatnonzero(counts < self.n_channels)
            if len(bad):
                i = int(bad[0])
                raise BatchSpecError(
                    f"n_channels={self.n_channels} but row {i} (recording "
                    f"{layout.recordings[i]}) has only {int(counts[i])} channels "
                    f"{list(layout.channels[i])}"
                )
        n = layout.n_rows
        if signal_weights is not None:
            self._signal_cum = _cumulative(signal_weights, n, "signal_weights")
        if label_weights is not None:
            if len(label_weights) != n:
                raise BatchSpecError(f"label_weights has {len(label_weights)} entries for {n} rows")
            self._label_cum = [
                _cumulative(w, int(layout.n_labels[i]),
                            f"label_weights of row {i} (recording {layout.recordings[i]})")
                for i, w in enumerate(label_weights)
            ]  # fmt: skip
        self._weights = (
            None if signal_weights is None else np.asarray(signal_weights, dtype=np.float64),
            None if self._label_cum is None else np.concatenate(self._label_cum),
        )

    def config(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "batch_duration_ns": self.layout.duration,
            "n_channels": self.n_channels,
            "channels": selector_fingerprint(self._selector),
        }

    def weights(self) -> tuple[np.ndarray | None, ...]:
        return self._weights

    def windows(self, seed: int, index: int) -> Windows:
        return self.draw(seed, index, self.batch_size)

    def _windows_in_layout(self) -> bool:
        # Rows below n_rows, epochs below their n_labels and starts between the bounds
        # of `draw`, which a window of window_epochs fits: unless a subclass draws its own.
        cls = type(self)
        return (
            cls.windows is RandomSampler.windows
            and cls.draw is RandomSampler.draw
            and cls._channels_of is RandomSampler._channels_of
        )

    def draw(self, seed: int, index: int, size: int) -> Windows:
        """The first ``size`` windows of batch ``index`` of ``seed``'s stream."""
        rows = self.layout
        g = _generator(seed, index, _ROWS)
        if self._signal_cum is None:
            picked = g.integers(0, rows.n_rows, size=size)
        else:
            total = self._signal_cum[-1]
            picked = np.searchsorted(self._signal_cum, g.random(size) * total, side="right")
            np.minimum(picked, rows.n_rows - 1, out=picked)
        n_labels = rows.n_labels[picked]
        g = _generator(seed, index, _EPOCHS)
        if self._label_cum is None:
            epochs = g.integers(0, n_labels)
        else:
            u = g.random(size)
            epochs = np.empty(size, dtype=np.int64)
            for j, r in enumerate(picked):
                cum = self._label_cum[r]
                epochs[j] = min(np.searchsorted(cum, u[j] * cum[-1], side="right"), len(cum) - 1)
        segments = rows.window_epochs[picked]
        low = np.maximum(0, epochs - segments + 1)
        high = np.minimum(epochs, n_labels - segments)
        starts = _generator(seed, index, _STARTS).integers(low, high + 1)
        return Windows(picked, starts, self._channels_of(seed, index, picked))

    def _channels_of(self, seed: int, index: int, picked: np.ndarray) -> list[Any]:
        """Step (4): each item's channels."""
        rows, size = self.layout, len(picked)
        if self.channels is not None:
            return [self.channels] * size
        if self.n_channels is None:
            return [rows.channels[r] for r in picked.tolist()]
        n_ch = self._row_channels[picked]
        keys = _generator(seed, index, _CHANNELS).random((size, int(n_ch.max())))
        keys[np.arange(keys.shape[1]) >= n_ch[:, None]] = 2.0  # never among the first
        chosen = np.argsort(keys, axis=1, kind="stable")[:, : self.n_channels].tolist()
        return [
            tuple(rows.channels[r][c] for c in cs)
            for r, cs in zip(picked.tolist(), chosen, strict=True)
        ]

    def __repr__(self) -> str:
        return f"RandomSampler(batch_size={self.batch_size}, n_channels={self.n_channels})"


class RandomBatches(ComposedBatches):
    """Endless pseudo-random batches of labeled windows.

    Each item is drawn independently: (1) a row by ``signal_weights`` (uniform if
    None); (2) a label epoch of that row by its ``label_weights`` (uniform if None);
    (3) uniformly, a window of ``batch_duration`` on epoch boundaries, inside the label
    span, containing that epoch; (4) ``n_channels`` channels without replacement, in
    drawn order (all channels in their order if None).

    Batch ``k`` depends only on ``(state.seed, k)``: resuming, skipping ahead or
    computing a batch in another process costs the same as the next batch. Uniform
    weights keep no per-label arrays.

    Parameters
    ----------
    labeled:
        A labeled table ([`label_signals`][ondabatches.labels.label_signals]).
    signal_weights:
        One non-negative weight per row, or None.
    label_weights:
        Per row, one non-negative weight per label epoch, or None.
    n_channels:
        Channels per item, drawn without replacement; None for all (or ``channels``).
    channels:
        A fixed channel selector for every item instead of drawn channels: names,
        indices, or a selector object such as
        [`ZeroFillMontage`][ondabatches.materialize.ZeroFillMontage] (so that recordings
        with different montages stack). Not together with ``n_channels``.
    batch_size:
        Items per batch.
    batch_duration:
        Window duration: a positive whole number of label epochs, no longer than any
        row's label span.
    modalities:
        A montage: name -> ``(sensor, channels)`` (or a
        [`Modality`][ondabatches.batches.Modality]), e.g. ``{"eeg": ("eeg",
        Bipolar(["c3-m2"])), "eog": ("eog", ["eog-l", "eog-r"])}``. Items are then
        [`MultiBatchItem`][ondabatches.batches.MultiBatchItem] windows of *recordings*:
        a "row" above is a recording (in order of first appearance in the table), its
        labels those of its rows (one timeline from its annotations), and
        ``signal_weights`` and ``label_weights`` are per recording (see
        ``class_balanced_weights(..., by_recording=True)``). A batch materializes as a
        dict name -> array.
    missing:
        With ``modalities``: ``"exclude"`` (default) samples only recordings that have
        every modality and windows inside every signal's span; ``"zero-fill"`` samples
        every labeled window and zero-fills the modalities an item lacks (a signal
        absent, or not covering the whole window), with ``x["mask"][name]`` False.
        Excluded recordings are counted in one
        [`ExcludedRecordingsWarning`][ondabatches.batches.ExcludedRecordingsWarning].
    resample:
        With ``modalities``: ``{"rate": hz}`` (or ``{"rate": {name: hz}}``) brings
        modalities to a common rate with a polyphase filter
        (`ondabatches.materialize._multi` says which), and ``"concatenate": True``
        stacks them into one ``(batch, channels, time)`` array. A rate that cannot be
        reached exactly is a [`BatchSpecError`][ondabatches._errors.BatchSpecError]
        naming the recording and signal.

    Raises
    ------
    BatchSpecError
        (a ``ValueError``) when parameters disagree with each other or with the table,
        saying which numbers disagree.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from ondabatches.synthetic import labeled_table
    >>> labeled = labeled_table(2, duration=300 * 10**9)  # 10 epochs of 30 s per row
    >>> batches = RandomBatches(labeled, n_channels=1, batch_size=3,
    ...                         batch_duration=timedelta(seconds=60))
    >>> batch, state = batches.iterate_batch(batches.initial_state(seed=1))
    >>> len(batch), state.index
    (3, 1)
    >>> batch[0].window, batch[0].channels, batch[0].labels.tolist()
    (TimeSpan(150 s, 210 s), ('c3',), [5, 6])

    Several signals of each recording, time-aligned (a montage):

    >>> from ondabatches import label_signals, materialize_batch
    >>> from ondabatches.materialize import Bipolar
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("psg", n_recordings=2, duration=300 * 10**9, eog_every=1,
    ...                   emg_every=1, sample_rate=256.0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> psg = RandomBatches(labeled, batch_size=4, batch_duration=timedelta(seconds=30),
    ...                     modalities={"eeg": ("eeg", Bipolar(["c3-m2"])),
    ...                                 "eog": ("eog", ["eog-l", "eog-r"]), "emg": "emg"})
    >>> x, y = materialize_batch(psg.iterate_batch(psg.initial_state(seed=0))[0])
    >>> {name: a.shape for name, a in x.items()}, y.shape
    ({'eeg': (4, 1, 7680), 'eog': (4, 2, 1920), 'emg': (4, 1, 15360)}, (4, 1, 1))
    """

    def __init__(
        self,
        labeled: pa.Table,
        *,
        signal_weights: Sequence[float] | np.ndarray | None = None,
        label_weights: Sequence[Sequence[float] | np.ndarray] | None = None,
        n_channels: int | None = None,
        channels: Any = None,
        batch_size: int,
        batch_duration: TimeLike,
        modalities: Mapping[str, Any] | None = None,
        missing: str = "exclude",
        resample: Mapping[str, Any] | None = None,
    ) -> None:
        if channels is not None and n_channels is not None:
            raise BatchSpecError(
                f"give either n_channels ({n_channels}) or a channels selector "
                f"({channels!r}), not both"
            )
        layout = layout_of(
            labeled, modalities, missing, resample, batch_duration, channels, n_channels
        )
        sampler = RandomSampler(
            batch_size=batch_size,
            signal_weights=signal_weights,
            label_weights=label_weights,
            n_channels=n_channels,
            channels=channels,
        )
        super().__init__(sampler, layout)

    @property
    def batch_size(self) -> int:
        """Items per batch."""
        return self.sampler.batch_size

    @property
    def batch_duration(self) -> int:
        """The window duration in ns."""
        return self.layout.duration

    @property
    def n_channels(self) -> int | None:
        """Drawn channels per item (None: all, or ``channels``)."""
        return self.sampler.n_channels

    @property
    def channels(self) -> Any:
        """The fixed channel selector of every item (None: drawn or all)."""
        return self.sampler.channels

    @property
    def _rows(self) -> Layout:
        return self.layout

    @property
    def _signal_cum(self) -> np.ndarray | None:
        return self.sampler._signal_cum

    @property
    def _label_cum(self) -> list[np.ndarray] | None:
        return self.sampler._label_cum

    def iterate_batch_item(
        self, state: BatchState
    ) -> tuple[BatchItem | MultiBatchItem, BatchState]:
        """The first item of ``iterate_batch(state)``'s batch, and the next state."""
        state = state.bind(self._frozen_config)
        return self.draw(state.seed, state.index, 1)[0], state.advance()

    def draw(self, seed: int, index: int, size: int) -> list[Any]:
        """The first ``size`` items of batch ``index`` of ``seed``'s stream."""
        return self.layout.items(self.sampler.draw(seed, index, size))

    def __repr__(self) -> str:
        return (
            f"RandomBatches({self.layout.n_rows} "
            f"{'recordings' if isinstance(self.layout, RecordingArrays) else 'rows'}, "
            f"batch_size={self.batch_size}, "
            f"batch_duration={self.batch_duration / NS_PER_S:g} s, n_channels={self.n_channels})"
        )


def layout_of(
    labeled: pa.Table,
    modalities: Mapping[str, Any] | None,
    missing: str,
    resample: Mapping[str, Any] | None,
    duration: TimeLike,
    channels: Any,
    n_channels: Any,
) -> SignalLayout | MontageLayout:
    """The layout of a scheme built from a table: its signals, or its recordings through
    a montage."""
    if modalities is None:
        if missing != "exclude" or resample is not None:
            raise BatchSpecError(
                f"missing={missing!r} and resample={resample!r} apply to montages: "
                "give modalities= too"
            )
        return SignalLayout(labeled, duration)
    if channels is not None or n_channels is not None:
        raise BatchSpecError(
            "with modalities, each modality has its own channel selector: give neither "
            f"channels ({channels!r}) nor n_channels ({n_channels!r})"
        )
    # stacklevel: the warning points at the user's call of the scheme (4 frames up).
    return MontageLayout(
        labeled, modalities, batch_duration=duration, missing=missing, resample=resample,
        stacklevel=4,
    )  # fmt: skip
