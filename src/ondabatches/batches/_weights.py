"""Sampling weights (class-balanced, by duration, event-aware) and the event-aware sampler.

[`EventSampler`][ondabatches.batches.EventSampler] is a
[`RandomSampler`][ondabatches.batches.RandomSampler] whose weights come from events: it
computes [`event_weights`][ondabatches.batches.event_weights] over the rows of the layout
it is composed with, a montage's recordings included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..labels._events import EventLabels
from ..labels._labeled import StoredLabels
from ..onda._timespan import NS_PER_S, TimeSpan
from ._random import RandomSampler
from ._table import LabeledArrays

__all__ = [
    "EventSampler",
    "class_balanced_weights",
    "duration_weights",
    "event_weights",
    "inverse_frequency_label_weights",
]


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
    >>> from ondabatches.batches import RandomBatches
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
    return _epochs_with_events(LabeledArrays(labeled), events, classes)


def _epochs_with_events(rows: Any, events: EventLabels, classes: Sequence[int] | None):
    """`event_epochs` over rows with label timelines (a table's, or a layout's)."""
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
    cover every window once. [`EventSampler`][ondabatches.batches.EventSampler] computes
    the same weights over the rows of any layout, a montage's included.

    Raises
    ------
    BatchSpecError
        For a fraction outside [0, 1], unknown classes, or no epoch with an event.
    """
    codes = _event_codes(events, fraction, classes)
    return _event_weights(LabeledArrays(labeled), events, fraction, codes, classes)


def _event_codes(
    events: EventLabels, fraction: float, classes: Sequence[str] | None
) -> list[int] | None:
    """The codes of ``classes`` (None: all), after checking them and ``fraction``."""
    if isinstance(fraction, bool) or not 0.0 <= float(fraction) <= 1.0:
        raise BatchSpecError(f"fraction must be in [0, 1], got {fraction!r}")
    if classes is None:
        return None
    unknown = [c for c in classes if c not in events.classes]
    if unknown:
        raise BatchSpecError(f"unknown event classes {unknown}; the set has {events.classes}")
    return [events.classes.index(c) for c in classes]


def _event_weights(
    rows: Any,
    events: EventLabels,
    fraction: float,
    codes: list[int] | None,
    classes: Sequence[str] | None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """`event_weights` over rows with label timelines (a table's, or a layout's)."""
    hits = _epochs_with_events(rows, events, codes)
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


class EventSampler(RandomSampler):
    """Endless random windows of which at least a ``fraction`` hold an event: a
    [`RandomSampler`][ondabatches.batches.RandomSampler] whose weights are
    [`event_weights`][ondabatches.batches.event_weights] computed over the rows of the
    layout it is composed with.

    Over a [`SignalLayout`][ondabatches.batches.SignalLayout] it gives the batches (and
    the configuration) of ``RandomBatches(labeled, *event_weights(labeled, events,
    ...))``; over a [`MontageLayout`][ondabatches.batches.MontageLayout] the weights are
    per recording, over the epochs its windows can cover.

    Parameters
    ----------
    events:
        The events ([`label_events`][ondabatches.labels.label_events]).
    fraction, classes:
        As for [`event_weights`][ondabatches.batches.event_weights].
    batch_size, n_channels, channels:
        As for [`RandomSampler`][ondabatches.batches.RandomSampler].

    Raises
    ------
    BatchSpecError
        For a fraction outside [0, 1] or unknown classes; when composed, if no epoch of
        the layout's rows overlaps an event.
    """

    def __init__(
        self,
        events: EventLabels,
        *,
        fraction: float = 0.5,
        classes: Sequence[str] | None = None,
        batch_size: int,
        n_channels: int | None = None,
        channels: Any = None,
    ) -> None:
        super().__init__(batch_size=batch_size, n_channels=n_channels, channels=channels)
        self._codes = _event_codes(events, fraction, classes)
        self.events, self.fraction, self.classes = events, fraction, classes

    def user_weights(self, layout: Any) -> tuple[Any, Any]:
        """The event weights of ``layout``'s rows."""
        return _event_weights(layout, self.events, self.fraction, self._codes, self.classes)
