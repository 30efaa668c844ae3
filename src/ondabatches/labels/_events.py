"""Sparse labels: events (intervals of any length, overlapping) stored per recording and
read per window, and the targets models want from them.

:func:`label_events` writes one small Arrow file per recording (``onset_ns``,
``offset_ns``, ``class``: sorted by onset, times relative to the recording's start, as
the annotations' spans are)
and returns an :class:`EventLabels`, a JSON-able reference to them with a digest of
their content. Nothing is densified at rest, and a window reads only its recording's
file (memory-mapped on local disk), then the events that overlap it.

Targets of a window ``[start, stop)`` (times in ns from the recording's start):

- :func:`event_mask`: ``(classes, n)`` at ``rate_hz``, ``n = floor(duration * rate)``;
  label sample ``j`` stands for ``[start + j / rate, start + (j + 1) / rate)`` and is 1
  where an event of the class contains its centre (``min_overlap=None``, the default),
  or overlaps it by at least ``min_overlap`` of its length. An instant event (zero
  duration) sets the one label sample whose interval holds its onset. Overlapping
  events of a class merge.
- :func:`multi_hot`: ``(epochs, classes)``, epochs of ``epoch`` ns from ``start``; 1
  where the events of the class (merged) cover at least ``min_overlap`` of the epoch,
  or where an instant event of the class falls in it.
- :func:`event_list`: the events overlapping the window in onset order (then class),
  at most ``max_events``: class (``-1`` past the count), onset and offset in seconds
  from the window's start, clipped to the window, a validity mask, and how many events
  the window held in all. Overlapping events stay separate.

Events past a recording's end are clipped to it (``past_end="clip"``, the default) or
refused (``"error"``); events wholly outside it are dropped when clipping.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import LabelError
from ..onda._arrow import span_bounds
from ..onda._storage import atomic_writer, filesystem_for, is_local, storage_errors
from ..onda._timespan import n_samples

__all__ = [
    "EventLabels",
    "EventsWarning",
    "event_list",
    "event_mask",
    "event_summary",
    "label_events",
    "load_event_labels",
    "multi_hot",
]


class EventsWarning(UserWarning):
    """Annotations that :func:`label_events` clipped, dropped or ignored, with counts."""


_SCHEMA = pa.schema([("onset_ns", pa.int64()), ("offset_ns", pa.int64()), ("class", pa.int16())])


@dataclass(frozen=True)
class EventLabels:
    """A label set of events: ``classes`` (their names, in code order) and one Arrow file
    per recording, listed by the ``manifest`` (``events.json``) beside them, with a
    ``digest`` of the content.

    :meth:`window` reads the events of one window. :meth:`to_dict` is small JSON (the
    manifest's URL and the digest, whatever the number of recordings): what a state's
    config holds; :meth:`from_dict` refuses a manifest whose digest has changed.
    """

    manifest: str
    classes: tuple[str, ...]
    files: Mapping[str, str]
    digest: str
    max_duration_ns: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "digest": self.digest}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EventLabels:
        if not isinstance(d, Mapping) or not {"manifest", "digest"} <= set(d):
            raise LabelError(f"an event label set is {{'manifest', 'digest'}}, got {d!r}")
        labels = load_event_labels(str(d["manifest"]))
        if labels.digest != d["digest"]:
            raise LabelError(
                f"the events of {d['manifest']} changed: digest {labels.digest}, expected "
                f"{d['digest']} (label them again, or resume with the events they had)"
            )
        return labels

    def __hash__(self) -> int:
        return hash((self.manifest, self.digest))

    def has(self, recording: uuid.UUID | str) -> bool:
        """Whether the recording has this label set (a file of its events)."""
        return str(recording) in self.files

    def window(
        self, recording: uuid.UUID | str, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(onsets, offsets, classes)`` of the events overlapping ``[start, stop)``
        (ns from the recording's start; an instant event at ``t`` overlaps it when
        ``start <= t < stop``), in onset order. Empty for a recording without events."""
        key = str(recording)
        name = self.files.get(key)
        if name is None:
            empty = np.empty(0, np.int64)
            return empty, empty, np.empty(0, np.int16)
        onsets, offsets, classes = _read(_beside(self.manifest, name), self.digest)
        # Sorted by onset: those starting before stop, and not ending before start
        # (none lasts longer than the recording's longest event).
        lo = int(np.searchsorted(onsets, start - self.max_duration_ns[key], side="left"))
        hi = int(np.searchsorted(onsets, stop, side="left"))
        on, off, cl = onsets[lo:hi], offsets[lo:hi], classes[lo:hi]
        keep = (off > start) | ((off == on) & (on >= start))
        return on[keep], off[keep], cl[keep]


def event_summary(events: EventLabels) -> dict[str, dict[str, float]]:
    """Per class: ``events``, ``instants``, ``seconds`` (total duration), ``overlapping``
    (events that overlap another event of their class) and ``recordings`` holding one.
    Reads each recording's events once."""
    out = {c: {"events": 0, "instants": 0, "seconds": 0.0, "overlapping": 0, "recordings": 0}
           for c in events.classes}  # fmt: skip
    for name in events.files.values():
        on, off, cl = _read(_beside(events.manifest, name), events.digest)
        for code, cls in enumerate(events.classes):
            sel = cl == code
            if not sel.any():
                continue
            c_on, c_off = on[sel], off[sel]
            row = out[cls]
            row["events"] += int(sel.sum())
            row["instants"] += int((c_on == c_off).sum())
            row["seconds"] += float((c_off - c_on).sum()) / 1e9
            row["recordings"] += 1
            # Sorted by onset: an event overlaps an earlier one when it starts before the
            # furthest offset so far, and a later one when the next starts before its end.
            reach = np.maximum.accumulate(c_off)
            early = np.concatenate(([False], c_on[1:] < reach[:-1]))
            late = np.concatenate((c_on[1:] < c_off[:-1], [False]))
            row["overlapping"] += int((early | late).sum())
    return out


def _uuid_keys(column: Any) -> np.ndarray:
    """A UUID column's values as 16-byte canonical keys (``S16``), column-wise."""
    storage = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(storage, pa.ExtensionArray):
        storage = storage.storage
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)
    raw = raw[storage.offset * 16 : (storage.offset + len(storage)) * 16].reshape(-1, 16)
    # Julia's little-endian UInt128: the canonical bytes reversed.
    return np.ascontiguousarray(raw[:, ::-1]).view("S16").ravel()


def _uuid_of(key: Any) -> uuid.UUID:
    # An S16 value drops its trailing zero bytes: pad them back.
    return uuid.UUID(bytes=bytes(key).ljust(16, b"\0"))


def _beside(manifest: str, name: str) -> str:
    return f"{manifest.rsplit('/', 1)[0]}/{name}" if "/" in manifest else name


@lru_cache(maxsize=16)
def load_event_labels(manifest: str) -> EventLabels:
    """The event label set a manifest (``events.json``) describes."""
    fs, path = filesystem_for(manifest)
    with storage_errors(manifest):
        raw = json.loads(fs.cat_file(path))
    try:
        return EventLabels(
            manifest, tuple(raw["classes"]), dict(raw["files"]), str(raw["digest"]),
            {k: int(v) for k, v in raw["max_duration_ns"].items()},
        )  # fmt: skip
    except (KeyError, TypeError, AttributeError) as exc:
        raise LabelError(f"{manifest} is not an events manifest ({exc})") from None


@lru_cache(maxsize=64)
def _read(url: str, digest: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fs, path = filesystem_for(url)
    with storage_errors(url):
        if is_local(fs):
            table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        else:
            table = pa.ipc.open_file(pa.BufferReader(fs.cat_file(path))).read_all()
    if table.schema != _SCHEMA:
        raise LabelError(f"{url} is not an events file: schema {table.schema}")
    return tuple(np.asarray(table.column(c).to_numpy()) for c in _SCHEMA.names)  # type: ignore[return-value]


def label_events(
    signals: pa.Table,
    annotations: pa.Table,
    *,
    column: str,
    classes: Sequence[str],
    out: str,
    past_end: str = "clip",
) -> EventLabels:
    """Write the annotations whose ``column`` is one of ``classes`` as an event label set
    under ``out`` (a folder, local or a URL), one file per recording of ``signals``.

    A recording's span is the union of its signals' spans; events are stored relative to
    its start. ``past_end``: ``"clip"`` events to the recording (dropping those wholly
    outside it) or ``"error"`` (a :class:`~ondabatches.LabelError` naming the event).
    Recordings of ``signals`` with no such event get an empty file (they have the label
    set, with no events); recordings only in ``annotations`` are ignored.
    """
    if past_end not in ("clip", "error"):
        raise LabelError(f"past_end must be 'clip' or 'error', got {past_end!r}")
    classes = tuple(str(c) for c in classes)
    if not classes or len(set(classes)) != len(classes):
        raise LabelError(f"classes must be distinct names, got {list(classes)}")
    if column not in annotations.column_names:
        raise LabelError(
            f"annotations have no column {column!r}; columns: {annotations.column_names}"
        )
    # Column-wise: recordings as 16-byte keys, values dictionary-encoded, spans as ns.
    sig_keys = _uuid_keys(signals.column("recording"))
    s_start, s_stop = span_bounds(signals.column("span"))
    recordings, inverse = np.unique(sig_keys, return_inverse=True)
    lo = np.full(len(recordings), np.iinfo(np.int64).max)
    hi = np.full(len(recordings), np.iinfo(np.int64).min)
    np.minimum.at(lo, inverse, s_start)
    np.maximum.at(hi, inverse, s_stop)
    a, b = span_bounds(annotations.column("span"))
    encoded = annotations.column(column).combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    lookup = np.array([classes.index(v) if v in classes else -1 for v in names] + [-1])
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    codes = lookup[np.where(np.isnan(indices.astype(float)), -1, indices).astype(np.int64)]
    ignored = {str(names[k]): int(n) for k, n in zip(*np.unique(
        indices[(codes < 0) & ~np.isnan(indices.astype(float))].astype(np.int64),
        return_counts=True), strict=True)}  # fmt: skip
    keys = _uuid_keys(annotations.column("recording"))
    where = np.searchsorted(recordings, keys)
    known = (where < len(recordings)) & (recordings[np.minimum(where, len(recordings) - 1)] == keys)
    kept = codes >= 0
    elsewhere = int((kept & ~known).sum())
    kept &= known
    r = np.where(known, where, 0)
    r_lo, r_hi = lo[r], hi[r]
    past = kept & ((b > r_hi) | (a < r_lo))
    if past_end == "error" and past.any():
        i = int(np.flatnonzero(past)[0])
        raise LabelError(
            f"event {i} ({column}={classes[codes[i]]!r}, [{a[i]}, {b[i]}) ns) of recording "
            f"{_uuid_of(keys[i])} lies past the recording's span "
            f"[{r_lo[i]}, {r_hi[i]}) ns; pass past_end='clip' to clip it"
        )
    outside = past & ((a >= r_hi) | (b < r_lo) | ((b == r_lo) & (a != b)))
    dropped, clipped = int(outside.sum()), int((past & ~outside).sum())
    kept &= ~outside
    a, b = np.maximum(a, r_lo), np.minimum(b, r_hi)
    if ignored or clipped or dropped or elsewhere:
        warnings.warn(
            f"label_events: {clipped} event(s) clipped to their recording's span, {dropped} "
            f"outside it dropped, {elsewhere} of recordings without signals ignored; "
            f"annotations of other {column!r} values ignored: {dict(sorted(ignored.items()))}",
            EventsWarning,
            stacklevel=2,
        )
    sel = np.flatnonzero(kept)
    order = sel[np.lexsort((codes[sel], b[sel], a[sel], r[sel]))]
    bounds = np.searchsorted(r[order], np.arange(len(recordings) + 1))
    files, longest, hasher = {}, {}, hashlib.sha256(json.dumps(classes).encode())
    root = str(out).rstrip("/")
    ids = sorted((str(_uuid_of(k)), i) for i, k in enumerate(recordings))
    for rid, i in ids:
        rows = order[bounds[i] : bounds[i + 1]]
        arr = np.stack([a[rows], b[rows], codes[rows]], axis=1).astype(np.int64).reshape(-1, 3)
        table = pa.table(
            {"onset_ns": arr[:, 0], "offset_ns": arr[:, 1], "class": arr[:, 2].astype(np.int16)},
            schema=_SCHEMA,
        )
        name = f"{rid}.events.arrow"
        _write(f"{root}/{name}", lambda f, t=table: _write_table(f, t))
        files[rid] = name
        longest[rid] = int((arr[:, 1] - arr[:, 0]).max()) if len(arr) else 0
        hasher.update(rid.encode() + arr.tobytes())
    digest = hasher.hexdigest()[:16]
    manifest = f"{root}/events.json"
    doc = {"classes": list(classes), "files": files, "digest": digest, "max_duration_ns": longest}
    _write(manifest, lambda f: f.write(json.dumps(doc, sort_keys=True).encode()))
    load_event_labels.cache_clear()
    return EventLabels(manifest, classes, files, digest, longest)


def _write_table(f: Any, table: pa.Table) -> None:
    with pa.ipc.new_file(f, _SCHEMA) as writer:
        writer.write_table(table)


def _write(url: str, write: Any) -> None:
    fs, path = filesystem_for(url)
    with storage_errors(url, action="write"):
        if is_local(fs):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with atomic_writer(fs, path) as f:
            write(f)


# -- targets --------------------------------------------------------------------------

_NS = 10**9


def _merged(on: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals (sorted by onset) as disjoint intervals."""
    if len(on) == 0:
        return on, off
    order = np.argsort(on, kind="stable")
    on, off = on[order], off[order]
    reach = np.maximum.accumulate(off)
    starts = np.concatenate(([True], on[1:] > reach[:-1]))
    return on[starts], np.maximum.reduceat(off, np.flatnonzero(starts))


def _covered(on: np.ndarray, off: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How much of each interval ``[lo, hi)`` the disjoint intervals ``[on, off)`` cover."""
    cover = np.zeros(len(lo), dtype=np.result_type(lo, np.int64))
    for a, b in zip(on.tolist(), off.tolist(), strict=True):
        cover += np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None)
    return cover


def event_mask(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    n_classes: int,
    rate_hz: float,
    min_overlap: float | None = None,
) -> np.ndarray:
    """The ``(classes, n)`` uint8 mask of a window (see the module documentation)."""
    n = n_samples(stop - start, rate_hz)
    out = np.zeros((n_classes, n), dtype=np.uint8)
    on, off, cl = events
    period = _NS / rate_hz
    edges = start + np.arange(n + 1) * period  # label sample j: [edges[j], edges[j + 1])
    for c in range(n_classes):
        sel = cl == c
        if not sel.any():
            continue
        c_on, c_off = on[sel], off[sel]
        instant = c_on == c_off
        for t in c_on[instant]:
            j = int(np.searchsorted(edges, t, side="right")) - 1
            if 0 <= j < n:
                out[c, j] = 1
        m_on, m_off = _merged(c_on[~instant], c_off[~instant])
        if len(m_on) == 0:
            continue
        if min_overlap is None:
            centres = edges[:-1] + period / 2
            # Centre in [onset, offset): the first interval whose offset is past it.
            k = np.searchsorted(m_off, centres, side="right")
            inside = (k < len(m_on)) & (m_on[np.minimum(k, len(m_on) - 1)] <= centres)
            out[c] |= inside.astype(np.uint8)
        else:
            cover = _covered(m_on, m_off, edges[:-1], edges[1:])
            out[c] |= (cover >= min_overlap * period - 1e-6).astype(np.uint8)
    return out


def multi_hot(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    n_classes: int,
    epoch: int,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """The ``(epochs, classes)`` uint8 multi-hot target of a window."""
    n = (stop - start) // epoch
    out = np.zeros((n, n_classes), dtype=np.uint8)
    on, off, cl = events
    lo = start + np.arange(n, dtype=np.int64) * epoch
    hi = lo + epoch
    for c in range(n_classes):
        sel = cl == c
        if not sel.any():
            continue
        c_on, c_off = on[sel], off[sel]
        instant = c_on == c_off
        for t in c_on[instant]:
            k = (int(t) - start) // epoch
            if 0 <= k < n:
                out[k, c] = 1
        m_on, m_off = _merged(c_on[~instant], c_off[~instant])
        cover = _covered(m_on, m_off, lo, hi)
        out[:, c] |= (cover >= min_overlap * epoch).astype(np.uint8)
    return out


def event_list(
    events: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    max_events: int,
) -> dict[str, np.ndarray]:
    """The padded event list of a window: ``class`` (int16, -1 where padded), ``onset``
    and ``offset`` (float32 s from the window's start, clipped to it), ``valid`` (bool),
    ``count`` (how many events the window held, kept or not)."""
    on, off, cl = events
    order = np.lexsort((cl, on))
    on, off, cl = on[order], off[order], cl[order]
    k = min(len(on), max_events)
    out = {
        "class": np.full(max_events, -1, dtype=np.int16),
        "onset": np.zeros(max_events, dtype=np.float32),
        "offset": np.zeros(max_events, dtype=np.float32),
        "valid": np.zeros(max_events, dtype=bool),
        "count": np.array(len(on), dtype=np.int32),
    }
    out["class"][:k] = cl[:k]
    out["onset"][:k] = (np.maximum(on[:k], start) - start) / _NS
    out["offset"][:k] = (np.minimum(off[:k], stop) - start) / _NS
    out["valid"][:k] = True
    return out
