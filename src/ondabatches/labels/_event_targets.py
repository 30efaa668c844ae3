"""The targets models want from events, for windows of one or many recordings.

`event_masks`, `multi_hots` and `event_lists` work on the events found for a whole
batch at once (`Found`: item, onset, offset and class of each); `event_mask`,
`multi_hot` and `event_list` are the same for one window. The module docstring of
``_events`` says what each target holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import LabelError
from ..onda._timespan import n_samples

__all__ = [
    "Found",
    "event_list",
    "event_lists",
    "event_mask",
    "event_masks",
    "multi_hot",
    "multi_hots",
]


_NS = 10**9

Found = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # item, onset, offset, class


def _one(events: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Found:
    on, off, cl = events
    return np.zeros(len(on), dtype=np.int64), np.asarray(on), np.asarray(off), np.asarray(cl)


def _length(starts: np.ndarray, stops: np.ndarray, count: Any, what: str) -> int:
    """The one number of label samples of windows (``count(duration)``)."""
    sizes = {count(int(d)) for d in np.unique(stops - starts)}
    if len(sizes) != 1:
        raise LabelError(f"the windows of a batch need one {what}, got {sorted(sizes)}")
    return sizes.pop()


def _covered(
    group: np.ndarray,
    on: np.ndarray,
    off: np.ndarray,
    n_groups: int,
    edges: np.ndarray,
) -> np.ndarray:
    """``(n_groups, len(edges) - 1)``: how much of each bin ``[edges[j], edges[j + 1])``
    the union of group ``g``'s intervals ``[on, off)`` (times relative to the bins)
    covers. All groups at once: group ``g`` is laid at ``g * stride`` on one axis, the
    union taken there, and each bin's cover read from its cumulative length."""
    top = float(edges[-1])
    stride = int(np.ceil(top)) + 2
    on = np.clip(on, 0, int(np.ceil(top)))
    off = np.clip(off, 0, int(np.ceil(top)))
    out = np.zeros((n_groups, len(edges) - 1))
    if len(on) == 0:
        return out
    base = group.astype(np.int64) * stride
    order = np.argsort(base + on, kind="stable")
    a, b = (base + on)[order], (base + off)[order]
    reach = np.maximum.accumulate(b)
    first = np.flatnonzero(np.concatenate(([True], a[1:] > reach[:-1])))
    m_on, m_off = a[first], np.maximum.reduceat(b, first)
    lengths = m_off - m_on
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # union length before each
    m_group, m_rel = m_on // stride, m_on % stride
    # The cumulative union length at every bin edge of every group: the exact integer
    # lengths of whole intervals, plus the part of the last one (small numbers only).
    rows = np.arange(n_groups)[:, None]
    at = np.searchsorted(m_on, rows * stride + edges[None, :], side="right") - 1
    k = np.maximum(at, 0)
    part = (edges[None, :] - m_rel[k]) + (rows - m_group[k]) * float(stride)
    part = np.where(at >= 0, np.clip(part, 0, lengths[k]), 0.0)
    whole = np.where(at >= 0, before[k], 0)
    return np.diff(whole, axis=1).astype(np.float64) + np.diff(part, axis=1)


def _split(found: Found, starts: np.ndarray, n_classes: int):
    """Group (window * n_classes + class), onset and offset relative to the window's
    start, and which events are instants."""
    item, on, off, cl = found
    start = starts[item]
    return item * n_classes + cl.astype(np.int64), on - start, off - start, on == off


def event_masks(
    found: Found,
    starts: np.ndarray,
    stops: np.ndarray,
    n_classes: int,
    rate_hz: float,
    min_overlap: float | None = None,
) -> np.ndarray:
    """[`event_mask`][ondabatches.labels.event_mask] of many windows of one length:
    ``(windows, classes, n)``, from
    [`EventLabels.windows`][ondabatches.labels.EventLabels.windows]."""
    n = _length(starts, stops, lambda d: n_samples(d, rate_hz), f"mask length at {rate_hz} Hz")
    n_groups = len(starts) * n_classes
    group, on, off, instant = _split(found, starts, n_classes)
    period = _NS / rate_hz
    edges = np.arange(n + 1) * period  # label sample j: [edges[j], edges[j + 1])
    hits = np.zeros(n_groups * (n + 1), dtype=np.int64)
    j = np.searchsorted(edges, on[instant], side="right") - 1
    ok = (j >= 0) & (j < n)
    hits[group[instant][ok] * (n + 1) + j[ok]] = 1
    hits = hits.reshape(n_groups, n + 1)[:, :n] > 0
    long = ~instant
    if min_overlap is None:
        # Centre in [onset, offset): label samples first..last-1 of each event.
        centres = edges[:-1] + period / 2
        first = np.searchsorted(centres, on[long], side="left")
        last = np.searchsorted(centres, off[long], side="left")
        size = n_groups * (n + 1)
        where = group[long] * (n + 1)
        depth = np.bincount(where + first, minlength=size) - np.bincount(
            where + last, minlength=size
        )
        inside = np.cumsum(depth.reshape(n_groups, n + 1), axis=1)[:, :n] > 0
    else:
        cover = _covered(group[long], on[long], off[long], n_groups, edges)
        inside = cover >= min_overlap * period - 1e-6
    return (inside | hits).astype(np.uint8).reshape(len(starts), n_classes, n)


def multi_hots(
    found: Found,
    starts: np.ndarray,
    stops: np.ndarray,
    n_classes: int,
    epoch: int,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """[`multi_hot`][ondabatches.labels.multi_hot] of many windows of one length:
    ``(windows, epochs, classes)``."""
    n = _length(starts, stops, lambda d: d // epoch, f"number of {epoch} ns epochs")
    n_groups = len(starts) * n_classes
    group, on, off, instant = _split(found, starts, n_classes)
    hits = np.zeros(n_groups * (n + 1), dtype=bool)
    k = on[instant] // epoch
    ok = (k >= 0) & (k < n)
    hits[group[instant][ok] * (n + 1) + k[ok]] = True
    hits = hits.reshape(n_groups, n + 1)[:, :n]
    edges = np.arange(n + 1, dtype=np.int64) * epoch
    cover = _covered(group[~instant], on[~instant], off[~instant], n_groups, edges)
    hot = (cover >= min_overlap * epoch) | hits
    return hot.astype(np.uint8).reshape(len(starts), n_classes, n).transpose(0, 2, 1).copy()


def event_lists(
    found: Found, starts: np.ndarray, stops: np.ndarray, max_events: int
) -> dict[str, np.ndarray]:
    """[`event_list`][ondabatches.labels.event_list] of many windows: each array with a
    leading ``windows`` axis."""
    item, on, off, cl = found
    size = len(starts)
    order = np.lexsort((cl, on, item))
    item, on, off, cl = item[order], on[order], off[order], cl[order]
    rank = np.arange(len(item)) - np.searchsorted(item, item, side="left")
    keep = rank < max_events
    i, r = item[keep], rank[keep]
    start = starts[i]
    out = {
        "class": np.full((size, max_events), -1, dtype=np.int16),
        "onset": np.zeros((size, max_events), dtype=np.float32),
        "offset": np.zeros((size, max_events), dtype=np.float32),
        "valid": np.zeros((size, max_events), dtype=bool),
        "count": np.bincount(item, minlength=size).astype(np.int32),
    }
    out["class"][i, r] = cl[keep]
    out["onset"][i, r] = (np.maximum(on[keep], start) - start) / _NS
    out["offset"][i, r] = (np.minimum(off[keep], stops[i]) - start) / _NS
    out["valid"][i, r] = True
    return out


def event_mask(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    n_classes: int,
    rate_hz: float,
    min_overlap: float | None = None,
) -> np.ndarray:
    """The ``(classes, n)`` uint8 mask of a window (see the module documentation)."""
    return event_masks(_one(events), np.array([start]), np.array([stop]), n_classes, rate_hz,
                       min_overlap)[0]  # fmt: skip


def multi_hot(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    n_classes: int,
    epoch: int,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """The ``(epochs, classes)`` uint8 multi-hot target of a window."""
    return multi_hots(_one(events), np.array([start]), np.array([stop]), n_classes, epoch,
                      min_overlap)[0]  # fmt: skip


def event_list(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    max_events: int,
) -> dict[str, np.ndarray]:
    """The padded event list of a window: ``class`` (int16, -1 where padded), ``onset``
    and ``offset`` (float32 s from the window's start, clipped to it), ``valid`` (bool),
    ``count`` (how many events the window held, kept or not)."""
    lists = event_lists(_one(events), np.array([start]), np.array([stop]), max_events)
    return {k: v[0] for k, v in lists.items()}
