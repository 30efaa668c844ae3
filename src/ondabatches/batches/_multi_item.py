"""A multi-signal batch item: one window of a recording, one part per modality of a montage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import UnknownNameError
from ..labels._labeled import StoredLabels
from ..onda._timespan import TimeSpan
from ._item import BatchItem, labels_from_dict, labels_repr, labels_to_dict, same_labels

__all__ = ["MissingModality", "MultiBatchItem"]

# The label codes of a per-modality part: the labels belong to the whole item.
_NO_LABELS = np.empty(0, dtype=np.uint8)
_NO_LABELS.flags.writeable = False


@dataclass(frozen=True, slots=True)
class MissingModality:
    """A modality that an item lacks (zero-filled when materialized, its mask False).

    Parameters
    ----------
    shape:
        The shape the modality's channel selector gives, without the time axis
        (``(n_channels,)`` for names, indices and [`Bipolar`][ondabatches.materialize.Bipolar]).
    sample_rate:
        The rate the zeros are at (the modality's rate in the table's other recordings).

    Examples
    --------
    >>> MissingModality((2,), 128.0).to_dict()
    {'shape': [2], 'sample_rate': 128.0}
    """

    shape: tuple[int, ...]
    sample_rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "sample_rate", float(self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "sample_rate": self.sample_rate}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MissingModality:
        return cls(tuple(d["shape"]), d["sample_rate"])


Part = BatchItem | MissingModality


@dataclass(frozen=True, slots=True, eq=False)
class MultiBatchItem:
    """One window of one recording seen through a montage: one part per modality.

    Every part covers exactly [`window`][ondabatches.batches.MultiBatchItem.window]
    (relative to the recording's start); a present part is an ordinary
    [`BatchItem`][ondabatches.batches.BatchItem] of its signal (same window, no labels
    of its own), so that its rows follow the single-signal rule
    ``window_sample_range(window.translate(-signal_span.start), rate)``. The labels
    belong to the recording's timeline.

    Parameters
    ----------
    recording:
        The recording's UUID.
    window:
        The window, relative to the start of the recording.
    names:
        The modalities' names, in montage order.
    parts:
        Per name, a [`BatchItem`][ondabatches.batches.BatchItem] or a
        [`MissingModality`][ondabatches.batches.MissingModality].
    labels:
        The window's label codes (1-D) or a
        [`StoredLabels`][ondabatches.labels.StoredLabels] reference.
    rates:
        Per name, the rate to resample to, or None to keep the signal's own rate.
    concatenate:
        Whether a batch's modalities are concatenated along the channel axis.
    mask:
        Whether a batch carries ``x["mask"]`` (the scheme zero-fills missing data).
    padding:
        As for [`BatchItem`][ondabatches.batches.BatchItem]: a repeat that only evens
        out data-parallel shards.

    Examples
    --------
    >>> import json, pickle
    >>> from ondabatches import RandomBatches, label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("psg", n_recordings=2, duration=120 * 10**9, eog_every=1)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, modalities={"eeg": ("eeg", ["c3"]), "eog": "eog"},
    ...                         batch_size=1, batch_duration=60 * 10**9)
    >>> (item,), _ = batches.iterate_batch(batches.initial_state(seed=0))
    >>> item.names, item.parts[1].channels, len(item.labels)
    (('eeg', 'eog'), None, 2)
    >>> MultiBatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
    True
    >>> pickle.loads(pickle.dumps(item)) == item
    True
    """

    recording: uuid.UUID
    window: TimeSpan
    names: tuple[str, ...]
    parts: tuple[Part, ...]
    labels: np.ndarray | StoredLabels
    rates: tuple[float | None, ...] | None = None
    concatenate: bool = False
    mask: bool = False
    padding: bool = False

    def __reduce__(self):
        # As BatchItem: plain tuples and bytes pickle several times faster.
        # A present part travels as its signal's fields only (the recording, window and
        # padding are the item's), a missing one as itself.
        labels = self.labels
        if isinstance(labels, np.ndarray):
            labels = (labels.tobytes(), labels.dtype.str)
        parts = tuple(
            p if isinstance(p, MissingModality)
            else (p.file_path, p.file_format, p.signal_span, p.info, p.channels)
            for p in self.parts
        )  # fmt: skip
        return (
            _unpickle_multi,
            (
                self.recording, self.window, self.names, parts, labels, self.rates,
                self.concatenate, self.mask, self.padding,
            ),
        )  # fmt: skip

    def part(self, name: str) -> Part:
        """The part of modality ``name``."""
        try:
            return self.parts[self.names.index(name)]
        except ValueError:
            raise UnknownNameError(
                f"no modality {name!r}; the item has {list(self.names)}"
            ) from None

    def label_codes(self) -> np.ndarray:
        """The window's label codes (1-D); reads them if they are stored."""
        if isinstance(self.labels, StoredLabels):
            return self.labels.load(self.window)
        return self.labels

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        labels = labels_to_dict(self.labels)
        parts = []
        for p in self.parts:
            if isinstance(p, MissingModality):
                parts.append({"missing": p.to_dict()})
            else:
                d = p.to_dict()
                for key in ("recording", "window", "labels", "padding"):
                    del d[key]  # the item's own
                parts.append({"signal": d})
        return {
            "recording": str(self.recording),
            "window": self.window.to_dict(),
            "names": list(self.names),
            "parts": parts,
            "labels": labels,
            "rates": None if self.rates is None else list(self.rates),
            "concatenate": self.concatenate,
            "mask": self.mask,
            "padding": self.padding,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiBatchItem:
        labels = labels_from_dict(d["labels"])
        parts: list[Part] = []
        for p in d["parts"]:
            if "missing" in p:
                parts.append(MissingModality.from_dict(p["missing"]))
            else:
                parts.append(
                    BatchItem.from_dict(
                        {
                            **p["signal"],
                            "recording": d["recording"],
                            "window": d["window"],
                            "labels": {"dtype": "|u1", "codes": []},
                            "padding": d.get("padding", False),
                        }
                    )
                )
        rates = d.get("rates")
        return cls(
            recording=uuid.UUID(d["recording"]),
            window=TimeSpan.from_value(d["window"]),
            names=tuple(d["names"]),
            parts=tuple(parts),
            labels=labels,
            rates=None if rates is None else tuple(rates),
            concatenate=bool(d.get("concatenate", False)),
            mask=bool(d.get("mask", False)),
            padding=bool(d.get("padding", False)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiBatchItem):
            return NotImplemented
        return (
            same_labels(self.labels, other.labels)
            and self.recording == other.recording
            and self.window == other.window
            and self.names == other.names
            and self.parts == other.parts
            and self.rates == other.rates
            and self.concatenate == other.concatenate
            and self.mask == other.mask
            and self.padding == other.padding
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        labels = labels_repr(self.labels)
        parts = ", ".join(
            f"{n}=missing" if isinstance(p, MissingModality) else f"{n}={p.file_path!r}"
            for n, p in zip(self.names, self.parts, strict=True)
        )
        return (
            f"MultiBatchItem(recording={self.recording}, window={self.window}, {parts}, "
            f"labels={labels}{', padding=True' if self.padding else ''})"
        )


def signal_part(
    recording: uuid.UUID,
    file_path: str,
    file_format: str,
    signal_span: TimeSpan,
    info: Any,
    window: TimeSpan,
    channels: Any,
    padding: bool,
) -> BatchItem:
    """A modality's part: a [`BatchItem`][ondabatches.batches.BatchItem] without labels
    of its own."""
    return BatchItem(
        recording, file_path, file_format, signal_span, info, window, channels, _NO_LABELS, padding
    )


def _unpickle_multi(*fields: Any) -> MultiBatchItem:
    """Inverse of `MultiBatchItem.__reduce__` (label codes come back read-only)."""
    recording, window, names, parts, labels, *rest = fields
    if isinstance(labels, tuple):
        data, dtype = labels
        labels = np.frombuffer(data, dtype=dtype)
    padding = rest[-1]
    parts = tuple(
        p if isinstance(p, MissingModality)
        else BatchItem(recording, *p[:4], window, p[4], _NO_LABELS, padding)
        for p in parts
    )  # fmt: skip
    return MultiBatchItem(recording, window, names, parts, labels, *rest)
