"""Sparse labels: events (intervals of any length, overlapping) stored per recording and
read per window, and the targets models want from them.

[`label_events`][ondabatches.labels.label_events] writes one small Arrow file per
recording (``onset_ns``, ``offset_ns``, ``class``: sorted by onset, times relative to
the recording's start, as the annotations' spans are)
and returns an [`EventLabels`][ondabatches.labels.EventLabels], a JSON-able reference to
them with a digest of their content. Nothing is densified at rest, and a window reads
only its recording's file (memory-mapped on local disk), then the events that overlap
it.

Targets of a window ``[start, stop)`` (times in ns from the recording's start):

- [`event_mask`][ondabatches.labels.event_mask]: ``(classes, n)`` at ``rate_hz``, ``n =
  floor(duration * rate)``; label sample ``j`` stands for ``[start + j / rate, start +
  (j + 1) / rate)`` and is 1 where an event of the class contains its centre
  (``min_overlap=None``, the default), or overlaps it by at least ``min_overlap`` of its
  length. An instant event (zero duration) sets the one label sample whose interval
  holds its onset. Overlapping events of a class merge.
- [`multi_hot`][ondabatches.labels.multi_hot]: ``(epochs, classes)``, epochs of
  ``epoch`` ns from ``start``; 1 where the events of the class (merged) cover at least
  ``min_overlap`` of the epoch, or where an instant event of the class falls in it.
- [`event_list`][ondabatches.labels.event_list]: the events overlapping the window in
  onset order (then class), at most ``max_events``: class (``-1`` past the count), onset
  and offset in seconds from the window's start, clipped to the window, a validity mask,
  and how many events the window held in all. Overlapping events stay separate.

Events past a recording's end are clipped to it (``past_end="clip"``, the default) or
refused (``"error"``); events wholly outside it are dropped when clipping.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import LabelError
from ..onda._arrow import span_bounds
from ..onda._storage import atomic_writer, filesystem_for, is_local, storage_errors
from ._event_targets import event_list, event_lists, event_mask, event_masks, multi_hot, multi_hots

__all__ = [
    "EventLabels",
    "EventsWarning",
    "event_list",
    "event_lists",
    "event_mask",
    "event_masks",
    "event_summary",
    "label_events",
    "load_event_labels",
    "multi_hot",
    "multi_hots",
]


class EventsWarning(UserWarning):
    """Annotations that [`label_events`][ondabatches.labels.label_events] clipped,
    dropped or ignored, with counts."""


_SCHEMA = pa.schema([("onset_ns", pa.int64()), ("offset_ns", pa.int64()), ("class", pa.int16())])


@dataclass(frozen=True)
class EventLabels:
    """A label set of events: ``classes`` (their names, in code order) and one Arrow file
    per recording, listed by the ``manifest`` (``events.json``) beside them, with a
    ``digest`` of the content.

    [`window`][ondabatches.labels.EventLabels.window] reads the events of one window.
    [`to_dict`][ondabatches.labels.EventLabels.to_dict] is small JSON (the manifest's
    URL and the digest, whatever the number of recordings): what a state's config holds;
    [`from_dict`][ondabatches.labels.EventLabels.from_dict] refuses a manifest whose
    digest has changed.
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
        found, _ = self.windows([recording], np.array([start]), np.array([stop]))
        return found[1], found[2], found[3]

    def windows(
        self, recordings: Sequence[uuid.UUID | str], starts: np.ndarray, stops: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        """The events of many windows at once: ``((item, onsets, offsets, classes),
        present)``, the events of window ``i`` (as
        [`window`][ondabatches.labels.EventLabels.window] gives them) where ``item ==
        i``, and ``present[i]`` whether its recording has this label set. One pass per
        distinct recording, each over all its windows."""
        starts = np.asarray(starts, dtype=np.int64)
        stops = np.asarray(stops, dtype=np.int64)
        keys = [str(r) for r in recordings]
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        parts = []
        for key, where in groups.items():
            name = self.files.get(key)
            if name is None:
                continue
            onsets, offsets, classes = _read(_beside(self.manifest, name), self.digest)
            idx = np.array(where)
            # Sorted by onset: those starting before stop, and not ending before start
            # (none lasts longer than the recording's longest event).
            lo = np.searchsorted(onsets, starts[idx] - self.max_duration_ns[key], side="left")
            hi = np.searchsorted(onsets, stops[idx], side="left")
            counts = hi - lo
            item = np.repeat(idx, counts)
            rows = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
            on, off = onsets[rows], offsets[rows]
            start = starts[item]
            keep = (off > start) | ((off == on) & (on >= start))
            parts.append((item[keep], on[keep], off[keep], classes[rows][keep]))
        present = np.array([key in self.files for key in keys], dtype=bool)
        if not parts:
            e = np.empty(0, np.int64)
            return (e, e, e, np.empty(0, np.int16)), present
        found = tuple(np.concatenate(c) for c in zip(*parts, strict=True))
        if len(parts) > 1:
            order = np.argsort(found[0], kind="stable")
            found = tuple(c[order] for c in found)
        return found, present  # type: ignore[return-value]


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
        data = fs.cat_file(path)
    try:
        raw = json.loads(data)  # bytes that are not JSON text: a ValueError
        return EventLabels(
            manifest, tuple(raw["classes"]), dict(raw["files"]), str(raw["digest"]),
            {k: int(v) for k, v in raw["max_duration_ns"].items()},
        )  # fmt: skip
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
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


#: Annotation rows classified at a time (bounds label_events' memory on any input).
_CHUNK_ROWS = 1 << 16
#: Kept events as spilled to the work files: recording index, onset, offset, class.
_KEPT = np.dtype([("r", "<i4"), ("a", "<i8"), ("b", "<i8"), ("c", "<i2")])


def label_events(
    signals: pa.Table,
    annotations: pa.Table | str | os.PathLike[str] | Iterable[pa.RecordBatch],
    *,
    column: str,
    classes: Sequence[str],
    out: str,
    past_end: str = "clip",
) -> EventLabels:
    """Write the annotations whose ``column`` is one of ``classes`` as an event label set
    under ``out`` (a folder, local or a URL), one file per recording of ``signals``.

    ``annotations``: a table, record batches (a ``pyarrow.RecordBatchReader``, say), or
    the path or URL of an Arrow file (IPC file or stream, an Onda annotations file) read
    batch by batch. The annotations are streamed: classified ``_CHUNK_ROWS`` rows at a
    time and the kept events spilled, by recording, to work files, then each
    recording's sorted and written; memory stays that of a chunk and a recording's
    events, whatever their total (only the signals table is held whole).

    A recording's span is the union of its signals' spans; events are stored relative to
    its start. ``past_end``: ``"clip"`` events to the recording (dropping those wholly
    outside it) or ``"error"`` (a [`LabelError`][ondabatches._errors.LabelError] naming the event).
    Recordings of ``signals`` with no such event get an empty file (they have the label
    set, with no events); recordings only in ``annotations`` are ignored.
    """
    if past_end not in ("clip", "error"):
        raise LabelError(f"past_end must be 'clip' or 'error', got {past_end!r}")
    classes = tuple(str(c) for c in classes)
    if not classes or len(set(classes)) != len(classes):
        raise LabelError(f"classes must be distinct names, got {list(classes)}")
    spans = _recording_spans(signals)
    tally = _Tally()
    with tempfile.TemporaryDirectory(prefix="ondabatches-events-") as work:
        spill = _Spill(work, len(spans[0]))
        for offset, chunk in _chunks(annotations, column):
            spill.add(_classify(chunk, offset, column, classes, spans, past_end, tally))
        tally.warn(column)
        return _write_label_set(str(out).rstrip("/"), classes, spans[0], spill)


def _recording_spans(signals: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(recordings, lo, hi)``: the recordings' 16-byte keys (sorted, which is the order
    of their UUID strings) and the union of their signals' spans."""
    sig_keys = _uuid_keys(signals.column("recording"))
    s_start, s_stop = span_bounds(signals.column("span"))
    recordings, inverse = np.unique(sig_keys, return_inverse=True)
    lo = np.full(len(recordings), np.iinfo(np.int64).max)
    hi = np.full(len(recordings), np.iinfo(np.int64).min)
    np.minimum.at(lo, inverse, s_start)
    np.maximum.at(hi, inverse, s_stop)
    return recordings, lo, hi


def _chunks(annotations: Any, column: str) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(first row, batch)`` of at most ``_CHUNK_ROWS`` rows of ``annotations``, after
    checking that its schema has ``recording``, ``span`` and ``column``."""
    if isinstance(annotations, (str, os.PathLike)):
        yield from _file_chunks(os.fspath(annotations), column)
        return
    if isinstance(annotations, pa.Table):
        _check_columns(annotations.schema, column, "annotations")
        batches: Iterable[pa.RecordBatch] = annotations.to_batches(max_chunksize=_CHUNK_ROWS)
    else:
        batches = annotations
    offset, checked = 0, False
    for batch in batches:
        if not checked:
            _check_columns(batch.schema, column, "annotations")
            checked = True
        for start in range(0, batch.num_rows, _CHUNK_ROWS):
            piece = batch.slice(start, _CHUNK_ROWS)
            yield offset, piece
            offset += piece.num_rows


def _file_chunks(url: str, column: str) -> Iterator[tuple[int, pa.RecordBatch]]:
    fs, path = filesystem_for(url)
    with storage_errors(url, action="read"), fs.open(path, "rb") as f:
        try:
            reader: Any = pa.ipc.open_file(f)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            f.seek(0)  # Arrow.jl writes the stream format when given an IO
            try:
                reader = pa.ipc.open_stream(f)
            except pa.ArrowInvalid as exc:
                raise LabelError(f"{url}: not an Arrow IPC file or stream ({exc})") from None
            batches = iter(reader)
        _check_columns(reader.schema, column, url)
        yield from _chunks(batches, column)


def _check_columns(schema: pa.Schema, column: str, where: str) -> None:
    missing = [c for c in ("recording", "span", column) if c not in schema.names]
    if missing:
        raise LabelError(f"{where} have no column {missing[0]!r}; columns: {schema.names}")


@dataclass
class _Tally:
    """What the rules dropped or clipped, over all the chunks (for one warning)."""

    clipped: int = 0
    dropped: int = 0
    elsewhere: int = 0
    ignored: dict[str, int] = field(default_factory=dict)

    def warn(self, column: str) -> None:
        if self.ignored or self.clipped or self.dropped or self.elsewhere:
            warnings.warn(
                f"label_events: {self.clipped} event(s) clipped to their recording's span, "
                f"{self.dropped} outside it dropped, {self.elsewhere} of recordings without "
                f"signals ignored; annotations of other {column!r} values ignored: "
                f"{dict(sorted(self.ignored.items()))}",
                EventsWarning,
                stacklevel=3,
            )


def _classify(
    chunk: pa.RecordBatch,
    offset: int,
    column: str,
    classes: tuple[str, ...],
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    past_end: str,
    tally: _Tally,
) -> np.ndarray:
    """The events of ``chunk`` (rows from ``offset``) that are kept, clipped (``_KEPT``),
    column-wise: recordings as 16-byte keys, values dictionary-encoded, spans as ns."""
    recordings, lo, hi = spans
    a, b = span_bounds(chunk.column("span"))
    bad = np.flatnonzero(b < a)
    if len(bad):
        i = int(bad[0])
        raise LabelError(f"annotation {offset + i}: span [{a[i]}, {b[i]}) ns ends before it starts")
    encoded = chunk.column(column).dictionary_encode()
    names = encoded.dictionary.to_pylist()
    lookup = np.array([classes.index(v) if v in classes else -1 for v in names] + [-1])
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = ~np.isnan(indices.astype(float))
    codes = lookup[np.where(valid, indices, len(names)).astype(np.int64)]
    for k, n in zip(*np.unique(indices[(codes < 0) & valid].astype(np.int64),
                               return_counts=True), strict=True):  # fmt: skip
        tally.ignored[str(names[k])] = tally.ignored.get(str(names[k]), 0) + int(n)
    keys = _uuid_keys(chunk.column("recording"))
    where = np.searchsorted(recordings, keys)
    known = (where < len(recordings)) & (recordings[np.minimum(where, len(recordings) - 1)] == keys)
    kept = codes >= 0
    tally.elsewhere += int((kept & ~known).sum())
    kept &= known
    r = np.where(known, where, 0)
    r_lo, r_hi = lo[r], hi[r]
    past = kept & ((b > r_hi) | (a < r_lo))
    if past_end == "error" and past.any():
        i = int(np.flatnonzero(past)[0])
        raise LabelError(
            f"event {offset + i} ({column}={classes[codes[i]]!r}, [{a[i]}, {b[i]}) ns) of "
            f"recording {_uuid_of(keys[i])} lies past the recording's span "
            f"[{r_lo[i]}, {r_hi[i]}) ns; pass past_end='clip' to clip it"
        )
    outside = past & ((a >= r_hi) | (b < r_lo) | ((b == r_lo) & (a != b)))
    tally.dropped += int(outside.sum())
    tally.clipped += int((past & ~outside).sum())
    kept &= ~outside
    sel = np.flatnonzero(kept)
    out = np.empty(len(sel), dtype=_KEPT)
    out["r"], out["c"] = r[sel], codes[sel]
    out["a"], out["b"] = np.maximum(a[sel], r_lo[sel]), np.minimum(b[sel], r_hi[sel])
    return out


class _Spill:
    """Kept events appended to work files, one per range of recordings (in order), so
    that each range is sorted on its own."""

    def __init__(self, root: str, n_recordings: int, n_files: int = 64):
        self.n_files = max(1, min(n_files, n_recordings))
        self.n_recordings = n_recordings
        self.paths = [os.path.join(root, f"{k}.kept") for k in range(self.n_files)]
        for path in self.paths:
            open(path, "wb").close()

    def add(self, kept: np.ndarray) -> None:
        which = kept["r"].astype(np.int64) * self.n_files // max(self.n_recordings, 1)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(self.n_files + 1))
        for k in np.flatnonzero(np.diff(bounds)):
            with open(self.paths[k], "ab") as f:
                kept[order[bounds[k] : bounds[k + 1]]].tofile(f)

    def ranges(self) -> Iterator[tuple[range, np.ndarray]]:
        """``(recording indices, their events sorted by recording, onset, offset, class)``
        per work file, in recording order."""
        for k, path in enumerate(self.paths):
            first = -(-k * self.n_recordings // self.n_files)
            stop = -(-(k + 1) * self.n_recordings // self.n_files)
            kept = np.fromfile(path, dtype=_KEPT)
            os.unlink(path)
            yield range(first, stop), kept[np.lexsort((kept["c"], kept["b"], kept["a"], kept["r"]))]


def _write_label_set(
    root: str, classes: tuple[str, ...], recordings: np.ndarray, spill: _Spill
) -> EventLabels:
    files, longest, hasher = {}, {}, hashlib.sha256(json.dumps(classes).encode())
    for indices, kept in spill.ranges():
        bounds = np.searchsorted(kept["r"], np.arange(indices.start, indices.stop + 1))
        for i in indices:
            rid = str(_uuid_of(recordings[i]))
            rows = kept[bounds[i - indices.start] : bounds[i - indices.start + 1]]
            arr = np.stack([rows["a"], rows["b"], rows["c"].astype(np.int64)], axis=1)
            table = pa.table(
                {"onset_ns": arr[:, 0], "offset_ns": arr[:, 1], "class": rows["c"]},
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
