"""Endless pseudo-random batches (OndaBatches' ``RandomBatches``): batch k is f(seed, k)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..labels._events import EventLabels
from ..labels._labeled import StoredLabels
from ..onda._timespan import NS_PER_S, TimeLike, TimeSpan
from ._item import BatchItem
from ._montage import RecordingArrays
from ._multi_item import MultiBatchItem
from ._selectors import selector_fingerprint
from ._state import BatchScheme, BatchState, _frozen_config
from ._table import LabeledArrays

__all__ = [
    "RandomBatches",
    "class_balanced_weights",
    "duration_weights",
    "event_weights",
    "inverse_frequency_label_weights",
]

# The four sampling steps draw from four independent streams, so that item j of a
# batch does not depend on the batch size (iterate_batch_item gives item 0).
_ROWS, _EPOCHS, _STARTS, _CHANNELS = range(4)


_WORD = (1 << 64) - 1
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
    bits.state = {
        "bit_generator": "Philox",
        "state": {
            "counter": np.array([0, 0, step, index], dtype=np.uint64),
            "key": np.array([seed & _WORD, seed >> 64], dtype=np.uint64),
        },
        "buffer": np.zeros(4, dtype=np.uint64),
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


class RandomBatches(BatchScheme):
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
        self.channels = tuple(channels) if isinstance(channels, list) else channels
        rows: LabeledArrays | RecordingArrays
        self._rows = rows = _rows_of(
            labeled, modalities, missing, resample, batch_duration, channels, n_channels
        )
        if isinstance(rows, RecordingArrays):
            signal_weights, label_weights = rows.restrict_weights(signal_weights, label_weights)
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise BatchSpecError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.batch_duration, self._segments = rows.segments(batch_duration)
        self.n_channels = _checked_n_channels(rows, n_channels)
        self._signal_cum = (
            None
            if signal_weights is None
            else _cumulative(signal_weights, rows.n_rows, "signal_weights")
        )
        self._label_cum = _label_cumulative(rows, label_weights)
        fingerprint = rows.fingerprint(
            None if signal_weights is None else np.asarray(signal_weights, dtype=np.float64),
            None if self._label_cum is None else np.concatenate(self._label_cum),
        )
        self._config = {
            "scheme": "RandomBatches",
            "batch_size": self.batch_size,
            "batch_duration_ns": self.batch_duration,
            "n_channels": self.n_channels,
            "channels": selector_fingerprint(channels),
            "n_rows": rows.n_rows,
            **fingerprint,
        }
        if isinstance(rows, RecordingArrays):
            # Only montage schemes carry these keys: single-signal fingerprints are unchanged.
            self._config.update(rows.config())
        self._frozen_config = _frozen_config(self._config)

    steps_without_drawing = True

    @property
    def config(self) -> dict[str, Any]:
        """The configuration fingerprint that states are bound to."""
        return dict(self._config)

    def initial_state(self, seed: int = 0) -> BatchState:
        """The state of the first batch of the stream seeded by ``seed``."""
        return BatchState(seed=seed, index=0, config=self._config)

    def iterate_batch(
        self, state: BatchState
    ) -> tuple[list[BatchItem] | list[MultiBatchItem], BatchState]:
        """Batch ``state.index`` of ``state.seed``'s stream, and the next state.

        Raises
        ------
        StateError
            If ``state`` is bound to another configuration.
        """
        state = state.bind(self._frozen_config)
        return self.draw(state.seed, state.index, self.batch_size), state.advance()

    def next_state(self, state: BatchState) -> BatchState:
        """The state after ``state``, without drawing its batch (the stream is endless).

        Raises
        ------
        StateError
            If ``state`` is bound to another configuration.
        """
        return state.bind(self._frozen_config).advance()

    def iterate_batch_item(
        self, state: BatchState
    ) -> tuple[BatchItem | MultiBatchItem, BatchState]:
        """The first item of ``iterate_batch(state)``'s batch, and the next state."""
        state = state.bind(self._frozen_config)
        return self.draw(state.seed, state.index, 1)[0], state.advance()

    def draw(self, seed: int, index: int, size: int) -> list[Any]:
        """The first ``size`` items of batch ``index`` of ``seed``'s stream."""
        rows = self._rows
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
        segments = self._segments[picked]
        low = np.maximum(0, epochs - segments + 1)
        high = np.minimum(epochs, n_labels - segments)
        starts = _generator(seed, index, _STARTS).integers(low, high + 1)
        if self.channels is not None:
            channels = [self.channels] * size
        elif self.n_channels is None:
            channels = [rows.channels[r] for r in picked.tolist()]
        else:
            n_ch = rows.n_channels[picked]
            keys = _generator(seed, index, _CHANNELS).random((size, int(n_ch.max())))
            keys[np.arange(keys.shape[1]) >= n_ch[:, None]] = 2.0  # never among the first
            chosen = np.argsort(keys, axis=1, kind="stable")[:, : self.n_channels].tolist()
            channels = [
                tuple(rows.channels[r][c] for c in cs)
                for r, cs in zip(picked.tolist(), chosen, strict=True)
            ]
        item = rows.item
        duration = self.batch_duration
        return [
            item(r, s, n, duration, ch)
            for r, s, n, ch in zip(
                picked.tolist(), starts.tolist(), segments.tolist(), channels, strict=True
            )
        ]

    def __repr__(self) -> str:
        return (
            f"RandomBatches({self._rows.n_rows} "
            f"{'recordings' if isinstance(self._rows, RecordingArrays) else 'rows'}, "
            f"batch_size={self.batch_size}, "
            f"batch_duration={self.batch_duration / NS_PER_S:g} s, n_channels={self.n_channels})"
        )


def _checked_n_channels(rows: Any, n_channels: Any) -> int | None:
    """``n_channels`` as an int, checked against every row's channels (None: all)."""
    if n_channels is None:
        return None
    if (
        isinstance(n_channels, bool)
        or not isinstance(n_channels, (int, np.integer))
        or n_channels < 1
    ):
        raise BatchSpecError(f"n_channels must be a positive integer or None, got {n_channels!r}")
    bad = np.flatnonzero(rows.n_channels < n_channels)
    if len(bad):
        i = int(bad[0])
        raise BatchSpecError(
            f"n_channels={n_channels} but row {i} (recording {rows.recordings[i]}) has "
            f"only {int(rows.n_channels[i])} channels {list(rows.channels[i])}"
        )
    return int(n_channels)


def _label_cumulative(
    rows: Any, label_weights: Sequence[Sequence[float] | np.ndarray] | None
) -> list[np.ndarray] | None:
    """Each row's cumulative label weights (None: uniform over its labels)."""
    if label_weights is None:
        return None
    if len(label_weights) != rows.n_rows:
        raise BatchSpecError(
            f"label_weights has {len(label_weights)} entries for {rows.n_rows} rows"
        )
    return [
        _cumulative(
            w,
            int(rows.n_labels[i]),
            f"label_weights of row {i} (recording {rows.recordings[i]})",
        )
        for i, w in enumerate(label_weights)
    ]


def _rows_of(
    labeled: pa.Table,
    modalities: Mapping[str, Any] | None,
    missing: str,
    resample: Mapping[str, Any] | None,
    duration: TimeLike,
    channels: Any,
    n_channels: Any,
) -> LabeledArrays | RecordingArrays:
    """The rows a scheme draws from: the table's signals, or its recordings via a montage."""
    if modalities is None:
        if missing != "exclude" or resample is not None:
            raise BatchSpecError(
                f"missing={missing!r} and resample={resample!r} apply to montages: "
                "give modalities= too"
            )
        rows = LabeledArrays(labeled)
        rows.check_signal_spans()
        return rows
    if channels is not None or n_channels is not None:
        raise BatchSpecError(
            "with modalities, each modality has its own channel selector: give neither "
            f"channels ({channels!r}) nor n_channels ({n_channels!r})"
        )
    # stacklevel: the warning points at the user's call of the scheme.
    return RecordingArrays(
        labeled, modalities, missing=missing, duration=duration, resample=resample, stacklevel=4
    )


def _all_codes(labeled: pa.Table, by_recording: bool = False) -> list[np.ndarray]:
    rows = LabeledArrays(labeled)
    out = []
    # A recording's rows share its labels: by recording, each is counted once.
    firsts = _first_rows(rows.recordings) if by_recording else range(rows.n_rows)
    for i in firsts:
        labels = rows.labels[i]
        if isinstance(labels, StoredLabels):
            labels = labels.load(TimeSpan(int(rows.label_start[i]), int(rows.label_stop[i])))
        out.append(np.asarray(labels))
    return out


def _first_rows(recordings: list) -> list[int]:
    first: dict = {}
    for i, rec in enumerate(recordings):
        first.setdefault(rec, i)
    return list(first.values())


def inverse_frequency_label_weights(
    labeled: pa.Table, *, by_recording: bool = False
) -> list[np.ndarray]:
    """Per row, a weight per label epoch of ``1 / (count of its code in the whole table)``.

    With these as ``label_weights``, every code is equally likely *within* a row's
    draw; use [`class_balanced_weights`][ondabatches.batches.class_balanced_weights] to
    balance over the whole table. With ``by_recording``, one entry per recording (in
    table order) for a scheme with ``modalities=``, each recording's labels counted
    once.

    Examples
    --------
    >>> from ondabatches.labels import iter_labeled_signals
    >>> from ondabatches.synthetic import labeled_table
    >>> labeled = labeled_table(1, duration=150 * 10**9)
    >>> next(iter_labeled_signals(labeled)).label_codes().tolist()
    [3, 4, 5, 6, 5]
    >>> [w.tolist() for w in inverse_frequency_label_weights(labeled)]
    [[1.0, 1.0, 0.5, 1.0, 0.5]]
    """
    codes = _all_codes(labeled, by_recording)
    values, counts = np.unique(np.concatenate(codes), return_counts=True)
    lookup = dict(zip(values.tolist(), (1.0 / counts).tolist(), strict=True))
    return [np.array([lookup[c] for c in row.tolist()], dtype=np.float64) for row in codes]


def class_balanced_weights(
    labeled: pa.Table, *, by_recording: bool = False
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(signal_weights, label_weights)`` under which every label code is equally likely.

    The label weights are
    [`inverse_frequency_label_weights`][ondabatches.batches.inverse_frequency_label_weights];
    each row's signal weight is the sum of its label weights, so the chosen epoch's code
    is uniform over the codes present in the table. With ``by_recording``, the weights are per
    recording (table order), for a scheme with ``modalities=``; there only the epochs
    of windows the montage can sample are drawn, so the balance holds over those.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> labeled = labeled_table(2, duration=150 * 10**9)
    >>> sw, lw = class_balanced_weights(labeled)
    >>> sw.round(2).tolist()
    [2.83, 2.17]
    >>> batches = RandomBatches(labeled, signal_weights=sw, label_weights=lw, batch_size=8,
    ...                         batch_duration=30 * 10**9)
    """
    label_weights = inverse_frequency_label_weights(labeled, by_recording=by_recording)
    return np.array([w.sum() for w in label_weights]), label_weights


def duration_weights(labeled: pa.Table, *, by_recording: bool = False) -> np.ndarray:
    """Per row, its labeled duration in seconds: every labeled second equally likely.

    With ``by_recording``, per recording (table order), for a scheme with ``modalities=``.

    Examples
    --------
    >>> from ondabatches.synthetic import labeled_table
    >>> duration_weights(labeled_table(2, duration=300 * 10**9)).tolist()
    [300.0, 300.0]
    """
    from ..onda._arrow import span_bounds

    starts, stops = span_bounds(labeled.column("label_span"))
    seconds = (stops - starts).astype(np.float64) / NS_PER_S
    if by_recording:
        from ..onda._arrow import uuids_from_array

        seconds = seconds[_first_rows(uuids_from_array(labeled.column("recording")))]
    return seconds


def event_epochs(labeled: pa.Table, events: EventLabels, classes: Sequence[int] | None = None):
    """Per row, whether each label epoch overlaps an event (of ``classes``, codes of
    ``events.classes``; default all). An instant event marks the epoch holding it."""
    rows = LabeledArrays(labeled)
    out = []
    for i in range(rows.n_rows):
        start, stop, epoch = int(rows.label_start[i]), int(rows.label_stop[i]), int(rows.epoch[i])
        n = int(rows.n_labels[i])
        hit = np.zeros(n, dtype=bool)
        on, off, cl = events.window(rows.recordings[i], start, stop)
        if classes is not None:
            keep = np.isin(cl, np.asarray(list(classes)))
            on, off = on[keep], off[keep]
        first = np.clip((on - start) // epoch, 0, n)
        last = np.clip(-(-(off - start) // epoch), 0, n)  # exclusive
        last = np.where(off == on, np.minimum(first + 1, n), last)
        for a, b in zip(first.tolist(), last.tolist(), strict=True):
            hit[a:b] = True
        out.append(hit)
    return out


def event_weights(
    labeled: pa.Table,
    events: EventLabels,
    *,
    fraction: float = 0.5,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(signal_weights, label_weights)`` for
    [`RandomBatches`][ondabatches.batches.RandomBatches] under which a ``fraction`` of
    the drawn windows hold an event (of ``classes``, names of ``events.classes``;
    default all), for rare-event training.

    RandomBatches draws an epoch by these weights and then a window start uniformly
    among the windows that hold it, so the event lands at a random position in its
    window, not centred. Windows of several epochs may hold events besides the drawn
    epoch's, so at least ``fraction`` of the windows hold one; the stream stays a pure
    function of (seed, batch index) and resumes like any other. Evaluation passes
    ([`SequentialBatches`][ondabatches.batches.SequentialBatches]) are unaffected: they
    cover every window once.

    Raises
    ------
    BatchSpecError
        For a fraction outside [0, 1], unknown classes, or no epoch with an event.
    """
    if isinstance(fraction, bool) or not 0.0 <= float(fraction) <= 1.0:
        raise BatchSpecError(f"fraction must be in [0, 1], got {fraction!r}")
    codes = None
    if classes is not None:
        unknown = [c for c in classes if c not in events.classes]
        if unknown:
            raise BatchSpecError(f"unknown event classes {unknown}; the set has {events.classes}")
        codes = [events.classes.index(c) for c in classes]
    hits = event_epochs(labeled, events, codes)
    n_hit = sum(int(h.sum()) for h in hits)
    n_other = sum(int((~h).sum()) for h in hits)
    if n_hit == 0 and fraction > 0:
        raise BatchSpecError(
            f"no label epoch of the table overlaps an event of {classes or events.classes}"
        )
    w_hit = fraction / n_hit if n_hit else 0.0
    w_other = (1.0 - fraction) / n_other if n_other else 0.0
    if n_other == 0:
        w_hit = 1.0 / n_hit
    label_weights = [np.where(h, w_hit, w_other) for h in hits]
    return np.array([w.sum() for w in label_weights]), label_weights
