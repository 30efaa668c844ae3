"""A batch item: everything needed to load one (x, y) pair on any machine, and nothing more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..labels._labeled import StoredLabels
from ..onda._samples import SamplesInfo
from ..onda._signal import Signal
from ..onda._timespan import TimeSpan

__all__ = ["BatchItem"]


@dataclass(frozen=True, slots=True, eq=False)
class BatchItem:
    """One item of a batch specification.

    Parameters
    ----------
    recording:
        The recording's UUID (for bookkeeping and messages).
    file_path, file_format, signal_span, info:
        The signal: where its samples are, their span relative to the recording, and
        how to decode them.
    window:
        The window to load, relative to the start of the recording; it holds exactly
        ``floor(window.duration * rate)`` samples.
    channels:
        The channel selector: ``None`` (all channels in order), a tuple of names or
        indices, or a selector object (see `ondabatches.materialize`).
    labels:
        The label codes of the window (a 1-D array), or a
        [`StoredLabels`][ondabatches.labels.StoredLabels] reference read when the item
        is materialized.
    padding:
        True for an item that repeats a window only to even out data-parallel shards
        (see [`SequentialBatches`][ondabatches.batches.SequentialBatches]); evaluation
        should ignore it.

    Examples
    --------
    >>> import json
    >>> from ondabatches import RandomBatches
    >>> from ondabatches.synthetic import labeled_table
    >>> batches = RandomBatches(labeled_table(1, duration=300 * 10**9), n_channels=2,
    ...                         batch_size=1, batch_duration=60 * 10**9)
    >>> (item,), _ = batches.iterate_batch(batches.initial_state(seed=0))
    >>> item.window.duration, len(item.channels), len(item.labels)
    (60000000000, 2, 2)
    >>> BatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
    True
    """

    recording: uuid.UUID
    file_path: str
    file_format: str
    signal_span: TimeSpan
    info: SamplesInfo
    window: TimeSpan
    channels: Any
    labels: np.ndarray | StoredLabels
    padding: bool = False

    def __reduce__(self):
        # Batches are pickled to a worker for every batch: plain bytes and tuples
        # pickle several times faster than the dataclass, UUID and ndarray defaults.
        labels = self.labels
        if isinstance(labels, np.ndarray):
            labels = (labels.tobytes(), labels.dtype.str)
        return (
            _unpickle_item,
            (
                self.recording, self.file_path, self.file_format, self.signal_span,
                self.info, self.window, self.channels, labels, self.padding,
            ),
        )  # fmt: skip

    def signal(self) -> Signal:
        """The item's signal as a [`Signal`][ondabatches.onda.Signal] (what `load_rows` reads)."""
        return Signal(
            self.recording, self.file_path, self.file_format, self.signal_span, "", self.info
        )

    def label_codes(self) -> np.ndarray:
        """The window's label codes (1-D); reads them if they are stored."""
        if isinstance(self.labels, StoredLabels):
            return self.labels.load(self.window)
        return self.labels

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (channel selector objects need a registered kind)."""
        from ._selectors import selector_to_dict

        return {
            "recording": str(self.recording),
            "file_path": self.file_path,
            "file_format": self.file_format,
            "signal_span": self.signal_span.to_dict(),
            "info": self.info.to_dict(),
            "window": self.window.to_dict(),
            "channels": selector_to_dict(self.channels),
            "labels": labels_to_dict(self.labels),
            "padding": self.padding,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchItem:
        from ._selectors import selector_from_dict

        return cls(
            recording=uuid.UUID(d["recording"]),
            file_path=d["file_path"],
            file_format=d["file_format"],
            signal_span=TimeSpan.from_value(d["signal_span"]),
            info=SamplesInfo.from_dict(d["info"]),
            window=TimeSpan.from_value(d["window"]),
            channels=selector_from_dict(d["channels"]),
            labels=labels_from_dict(d["labels"]),
            padding=bool(d.get("padding", False)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchItem):
            return NotImplemented
        return (
            same_labels(self.labels, other.labels)
            and self.recording == other.recording
            and self.file_path == other.file_path
            and self.file_format == other.file_format
            and self.signal_span == other.signal_span
            and self.info == other.info
            and self.window == other.window
            and self.channels == other.channels
            and self.padding == other.padding
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        labels = labels_repr(self.labels)
        return (
            f"BatchItem(recording={self.recording}, file_path={self.file_path!r}, "
            f"window={self.window}, channels={self.channels!r}, labels={labels}"
            f"{', padding=True' if self.padding else ''})"
        )


_FIELDS = tuple(getattr(BatchItem, f).__set__ for f in BatchItem.__dataclass_fields__)
(_S_RECORDING, _S_PATH, _S_FORMAT, _S_SPAN, _S_INFO, _S_WINDOW, _S_CHANNELS, _S_LABELS,
 _S_PADDING) = _FIELDS  # fmt: skip


def new_item(
    recording: uuid.UUID,
    file_path: str,
    file_format: str,
    signal_span: TimeSpan,
    info: SamplesInfo,
    window: TimeSpan,
    channels: Any,
    labels: np.ndarray | StoredLabels,
    padding: bool = False,
) -> BatchItem:
    """``BatchItem(...)``, the same object, made by setting its slots directly: a layout
    makes one for every item of every batch, and the frozen dataclass's ``__init__``
    (one ``object.__setattr__`` per field) costs about twice as much."""
    item = _NEW(BatchItem)
    _S_RECORDING(item, recording)
    _S_PATH(item, file_path)
    _S_FORMAT(item, file_format)
    _S_SPAN(item, signal_span)
    _S_INFO(item, info)
    _S_WINDOW(item, window)
    _S_CHANNELS(item, channels)
    _S_LABELS(item, labels)
    _S_PADDING(item, padding)
    return item


_NEW = object.__new__


def labels_to_dict(labels: np.ndarray | StoredLabels) -> dict[str, Any]:
    """The JSON form of an item's labels: codes held in memory, or a stored reference."""
    if isinstance(labels, StoredLabels):
        return {"stored": labels.to_dict()}
    return {"dtype": labels.dtype.str, "codes": labels.tolist()}


def labels_from_dict(raw: dict[str, Any]) -> np.ndarray | StoredLabels:
    """Inverse of `labels_to_dict`."""
    if "stored" in raw:
        return StoredLabels.from_dict(raw["stored"])
    return np.asarray(raw["codes"], dtype=np.dtype(raw["dtype"]))


def same_labels(a: np.ndarray | StoredLabels, b: np.ndarray | StoredLabels) -> bool:
    """Whether two items' labels are equal: the same reference, or the same codes and type."""
    if isinstance(a, StoredLabels) or isinstance(b, StoredLabels):
        return a == b
    return a.dtype == b.dtype and np.array_equal(a, b)


def labels_repr(labels: np.ndarray | StoredLabels) -> str:
    return (
        f"stored:{labels.file_path}" if isinstance(labels, StoredLabels) else f"{labels.tolist()}"
    )


def _unpickle_item(*fields: Any) -> BatchItem:
    """Inverse of `BatchItem.__reduce__` (label codes come back read-only)."""
    *rest, labels, padding = fields
    if isinstance(labels, tuple):
        data, dtype = labels
        labels = np.frombuffer(data, dtype=dtype)
    return BatchItem(*rest, labels, padding)
