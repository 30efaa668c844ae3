"""Per-row arrays of a labeled table, computed once so that drawing an item is cheap."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..labels._labeled import StoredLabels, epoch_of, label_info
from ..labels._schema import check_labeled
from ..labels._stored import label_digest, label_digests, stored_label_key
from ..onda._arrow import span_bounds, spans_from_array, uuids_from_array
from ..onda._samples import SamplesInfo, sample_dtype
from ..onda._timespan import NS_PER_S, TimeLike, TimeSpan, nanoseconds, span_of_ints
from ._item import BatchItem, new_item


class LabeledArrays:
    """Columns of a labeled table as numpy arrays and shared Python objects.

    Label codes held in memory are numpy views of the table's own buffer (no copy).
    """

    def __init__(self, table: pa.Table) -> None:
        check_labeled(table)
        if table.num_rows == 0:
            raise BatchSpecError("the labeled table has no rows")
        self.n_rows = table.num_rows
        self.recordings = uuids_from_array(table.column("recording"))
        self.file_paths = table.column("file_path").to_pylist()
        self.file_formats = table.column("file_format").to_pylist()
        self.signal_spans = spans_from_array(table.column("span"))
        self.channels: list[tuple[str, ...]] = [
            tuple(c) for c in table.column("channels").to_pylist()
        ]
        self.n_channels = np.array([len(c) for c in self.channels], dtype=np.int64)
        info_columns = {
            name: table.column(name).to_pylist()
            for name in SamplesInfo.__dataclass_fields__
            if name != "channels"
        }
        # Rows of one layout share one SamplesInfo: 10,000 rows usually hold a handful.
        shared: dict[tuple, SamplesInfo] = {}
        self.infos = []
        for i in range(self.n_rows):
            values = {k: v[i] for k, v in info_columns.items()}
            key = (self.channels[i], *values.values())
            if key not in shared:
                shared[key] = SamplesInfo(channels=self.channels[i], **values)
            self.infos.append(shared[key])
        starts, stops = span_bounds(table.column("label_span"))
        self.label_start = starts.astype(np.int64)
        self.label_stop = stops.astype(np.int64)
        labels = table.column("labels").combine_chunks()
        types = labels.field("sample_type").to_pylist()
        rates = labels.field("sample_rate").to_pylist()
        label_infos = [
            replace(label_info(NS_PER_S, t), sample_rate=r)
            for t, r in zip(types, rates, strict=True)
        ]
        self.epoch = np.array([epoch_of(info) for info in label_infos], dtype=np.int64)
        self.n_labels = (self.label_stop - self.label_start) // self.epoch
        paths = labels.field("file_path").to_pylist()
        formats = labels.field("file_format").to_pylist()
        stored_spans = spans_from_array(labels.field("span"))
        data = labels.field("data")
        self._stored_digests = label_digests(table)
        self.labels: list[np.ndarray | StoredLabels] = []
        for i, path in enumerate(paths):
            if path is None:
                codes = np.frombuffer(data[i].as_buffer(), dtype=sample_dtype(types[i]))
                if len(codes) != self.n_labels[i]:
                    raise BatchSpecError(
                        f"row {i} (recording {self.recordings[i]}) holds {len(codes)} labels "
                        f"but its label span holds {self.n_labels[i]} epochs"
                    )
                self.labels.append(codes)
            else:
                self.labels.append(
                    StoredLabels(
                        self.recordings[i], path, formats[i], stored_spans[i], label_infos[i]
                    )
                )

    def check_signal_spans(self) -> None:
        """Refuse rows whose signal does not cover their label span (single-signal schemes).

        ``label_signals(..., partial_signals=True)`` keeps such rows for montages, which
        sample only windows inside every signal's span.
        """
        for i, span in enumerate(self.signal_spans):
            start, stop = int(self.label_start[i]), int(self.label_stop[i])
            if not (span.start <= start and stop <= span.stop):
                raise BatchSpecError(
                    f"row {i} (recording {self.recordings[i]}, {self.file_paths[i]}): its "
                    f"label span {TimeSpan(start, stop)} is not inside its signal span {span}; "
                    "only a scheme with modalities= samples such signals"
                )

    def segments(self, duration: TimeLike) -> tuple[int, np.ndarray]:
        """``duration`` in ns and in label epochs per row, checked against every row."""
        dur = nanoseconds(duration)
        if dur <= 0:
            raise BatchSpecError(f"batch_duration must be positive, got {dur} ns")
        bad = np.flatnonzero(dur % self.epoch)
        if len(bad):
            i = int(bad[0])
            raise BatchSpecError(
                f"batch_duration of {dur} ns is not a whole number of label epochs: row {i} "
                f"(recording {self.recordings[i]}) has {int(self.epoch[i])} ns epochs "
                f"({dur / self.epoch[i]:g} epochs)"
            )
        segments = dur // self.epoch
        bad = np.flatnonzero(segments > self.n_labels)
        if len(bad):
            i = int(bad[0])
            raise BatchSpecError(
                f"batch_duration of {dur} ns ({int(segments[i])} epochs) is longer than the "
                f"label span {TimeSpan(int(self.label_start[i]), int(self.label_stop[i]))} "
                f"({int(self.n_labels[i])} epochs) of row {i} (recording {self.recordings[i]})"
            )
        return dur, segments

    @functools.cached_property
    def _ints(self) -> tuple[list[int], list[int]]:
        # Label starts and epochs as Python ints: item() runs for every item of a batch.
        return self.label_start.tolist(), self.epoch.tolist()

    def item(
        self, row: int, first: int, count: int, duration: int, channels, padding: bool = False
    ) -> BatchItem:
        """The item of ``count`` epochs from epoch ``first`` of ``row``."""
        return self.items_of([row], [first], [count], duration, [channels], [padding])[0]

    def items_of(
        self,
        rows: Sequence[int],
        firsts: Sequence[int],
        counts: Sequence[int],
        duration: int,
        channels: Sequence[Any],
        padding: Sequence[bool],
    ) -> list[BatchItem]:
        """`item` of each ``(rows[j], firsts[j], counts[j], channels[j], padding[j])``, in
        one loop (it runs for every item of every batch)."""
        starts, epochs = self._ints
        recordings, paths, formats = self.recordings, self.file_paths, self.file_formats
        spans, infos, labels_of = self.signal_spans, self.infos, self.labels
        ints = type(duration) is int and duration >= 0
        out = []
        for row, first, count, selector, pad in zip(
            rows, firsts, counts, channels, padding, strict=True
        ):
            start = starts[row] + first * epochs[row]
            if ints and type(start) is int:
                window = span_of_ints(start, start + duration)
            else:
                window = TimeSpan(start, start + duration)
            labels = labels_of[row]
            if not isinstance(labels, StoredLabels):
                labels = labels[first : first + count]
            out.append(
                new_item(
                    recordings[row],
                    paths[row],
                    formats[row],
                    spans[row],
                    infos[row],
                    window,
                    selector,
                    labels,
                    pad,
                )  # fmt: skip
            )
        return out

    def fingerprint(self, *extra: np.ndarray | None) -> dict[str, str]:
        """Configuration entries identifying the data by content, one digest per component.

        ``digest.recordings`` (recording UUIDs, in row order), ``digest.spans`` (signal
        and label spans, label epochs), ``digest.channels``, ``digest.rates`` (sample
        rates), ``digest.encodings`` (sample types, units, resolutions, offsets, sensor
        types), ``digest.labels`` (the label codes themselves, and their type; for
        labels stored in files, see below) and
        ``digest.weights`` (``extra``: the scheme's sampling weights). File paths and
        file formats are left out: the same data moved from local disk to S3, or
        re-compressed, gives the same batches and keeps checkpoints valid, while a
        real change is refused naming the component that changed.

        Labels count by value, whether in memory or stored in files: each row's codes
        count through their `label_digest`, which
        [`store_labels`][ondabatches.labels.store_labels] and ``label_signals(store=...)`` record in
        the table's metadata for each file they write. So building a scheme over stored
        labels reads no label file (the out-of-core contract, ``tests/scale``), the same
        labels in memory and stored give the same fingerprint, and moving the label
        files keeps it. A stored table without recorded digests (written by ondabatches
        0.1, or rebuilt from a DataFrame, which drops Arrow metadata) counts its files
        by reference instead: name, span, sample type and rate.
        """
        h = _Hashes()
        h.recordings.update(b"".join(r.bytes for r in self.recordings))
        for span in self.signal_spans:
            h.spans.update(np.array([span.start, span.stop], dtype=np.int64).tobytes())
        for arr in (self.label_start, self.label_stop, self.epoch):
            h.spans.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        h.channels.update("\0".join(",".join(c) for c in self.channels).encode())
        h.rates.update(np.array([i.sample_rate for i in self.infos], dtype=np.float64).tobytes())
        for info in self.infos:
            h.encodings.update(
                repr(
                    (info.sensor_type, info.sample_unit, info.sample_type,
                     info.sample_resolution_in_unit, info.sample_offset_in_unit)
                ).encode()
            )  # fmt: skip
        for value in self._label_values():
            h.labels.update(value.encode())
        for arr in extra:
            h.weights.update(
                b"none" if arr is None else np.ascontiguousarray(arr, dtype=np.float64).tobytes()
            )
        return {f"digest.{name}": getattr(h, name).hexdigest()[:16] for name in _Hashes.__slots__}

    def digest(self, *extra: np.ndarray | None) -> str:
        """One short digest of `fingerprint` (all components together)."""
        parts = sorted(self.fingerprint(*extra).items())
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def _label_values(self):
        """Per row, the digest of its label codes, or a stored file's reference."""
        for labels in self.labels:
            if not isinstance(labels, StoredLabels):
                yield label_digest(labels)
                continue
            digest = self._stored_digests.get(stored_label_key(labels.recording, labels.file_path))
            if digest is not None:
                yield digest
            else:  # no digest recorded: the file counts by reference
                name = labels.file_path.replace("\\", "/").rsplit("/", 1)[-1]
                yield repr(
                    ("stored", name, labels.span.start, labels.span.stop,
                     labels.info.sample_type, labels.info.sample_rate)
                )  # fmt: skip


class _Hashes:
    """One running hash per fingerprint component."""

    __slots__ = ("recordings", "spans", "channels", "rates", "encodings", "labels", "weights")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, hashlib.sha256())
