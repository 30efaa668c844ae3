"""Montages of modalities: which signal of each recording serves each named input.

A montage maps names to [`Modality`][ondabatches.batches.Modality] values (a sensor type
or a predicate on a row of the signals table, and a channel selector). A scheme given
``modalities=`` draws windows of *recordings*: per recording one label timeline and per
modality the one signal that serves it.

Where the labels come from (the choice made here): the schemes take the labeled table
that [`label_signals`][ondabatches.labels.label_signals] makes (one row per signal) rather than
a second kind of table. Labelled by recording, every row of a recording carries the
same labels (its annotations'), so the recording's timeline is its first row's; rows
of one recording with different label spans are an error. A signal that does not
cover the whole label span (an EMG that starts late) is kept with
``label_signals(..., partial_signals=True)``: with ``missing="exclude"`` only windows
inside every signal's span are drawn (the label span is cut to the whole epochs that
all signals cover); with ``missing="zero-fill"`` every labeled window is drawn and a
signal that does not cover the whole window counts as missing from that item.
Single-signal schemes refuse such rows.
"""

from __future__ import annotations

import hashlib
import math
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..labels._labeled import StoredLabels
from ..onda._samples import Samples
from ..onda._timespan import NS_PER_S, TimeLike, TimeSpan, _rate, n_samples, nanoseconds
from ._multi_item import MissingModality, MultiBatchItem, signal_part
from ._selectors import selector_fingerprint
from ._table import LabeledArrays

__all__ = ["ExcludedRecordingsWarning", "Modality"]

#: The largest numerator or denominator of a resampling ratio (143.5 Hz -> 128 Hz is
#: 256/287): beyond it the polyphase filter's cost grows out of proportion.
MAX_RESAMPLE_TERM = 1024

#: What a scheme does with recordings or windows that lack a modality.
MISSING = ("exclude", "zero-fill")


class ExcludedRecordingsWarning(UserWarning):
    """Recordings of a labeled table that a montage scheme never samples, with reasons."""


@dataclass(frozen=True, slots=True)
class Modality:
    """One named input of a montage: which signal of a recording, and which channels.

    Parameters
    ----------
    sensor:
        The signals' ``sensor_type`` (e.g. ``"eeg"``), or a predicate called with a
        row of the signals table as a dict (``row["sensor_label"] == "chin"``). At
        most one signal of a recording may match.
    channels:
        A channel selector, as for single-signal schemes: None (all channels in
        order), names or indices, or a selector object such as
        [`Bipolar`][ondabatches.materialize.Bipolar].

    Examples
    --------
    >>> from ondabatches.materialize import Bipolar
    >>> Modality("eeg", Bipolar(["c3-m2", "c4-m1"]))
    Modality(sensor='eeg', channels=Bipolar(derivations=('c3-m2', 'c4-m1')))
    >>> Modality("eog", ["eog-l", "eog-r"]).channels
    ('eog-l', 'eog-r')
    """

    sensor: str | Callable[[dict[str, Any]], bool]
    channels: Any = None

    def __post_init__(self) -> None:
        if not (isinstance(self.sensor, str) or callable(self.sensor)):
            raise BatchSpecError(
                f"a modality's sensor must be a sensor type string or a predicate on a "
                f"signals-table row, got {self.sensor!r}"
            )
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))

    def fingerprint(self) -> list[Any]:
        """A JSON-able description that is the same in every process."""
        sensor = self.sensor
        if not isinstance(sensor, str):
            name = getattr(sensor, "__qualname__", type(sensor).__qualname__)
            sensor = f"predicate:{getattr(sensor, '__module__', '?')}.{name}"
        return [sensor, selector_fingerprint(self.channels)]


def montage_of(modalities: Mapping[str, Any]) -> tuple[tuple[str, Modality], ...]:
    """``modalities`` as ``(name, Modality)`` pairs in the mapping's order.

    A value may be a [`Modality`][ondabatches.batches.Modality], a ``(sensor,
    channels)`` pair or a bare sensor.
    """
    if not isinstance(modalities, Mapping) or not modalities:
        raise BatchSpecError(
            f"modalities must be a non-empty mapping name -> (sensor, channels), got {modalities!r}"
        )
    out = []
    for name, value in modalities.items():
        if not isinstance(name, str) or not name or name == "mask":
            raise BatchSpecError(
                f"modality names must be non-empty strings other than 'mask' (the key of "
                f"the batch's masks), got {name!r}"
            )
        if isinstance(value, Modality):
            mod = value
        elif isinstance(value, tuple) and len(value) == 2:
            mod = Modality(*value)
        elif isinstance(value, str) or callable(value):
            mod = Modality(value)
        else:
            raise BatchSpecError(
                f"modality {name!r}: expected (sensor, channels), a sensor or a Modality, "
                f"got {value!r}"
            )
        out.append((name, mod))
    return tuple(out)


def resample_of(
    resample: Mapping[str, Any] | None, names: Sequence[str]
) -> tuple[tuple[float | None, ...] | None, bool]:
    """Per name the target rate (None: the signal's own), and whether to concatenate."""
    if resample is None:
        return None, False
    if not isinstance(resample, Mapping) or set(resample) - {"rate", "concatenate"}:
        raise BatchSpecError(
            f"resample must be a mapping with 'rate' (Hz, or name -> Hz) and optionally "
            f"'concatenate', got {resample!r}"
        )
    rate = resample.get("rate")
    if isinstance(rate, Mapping):
        unknown = sorted(set(rate) - set(names))
        if unknown:
            raise BatchSpecError(f"resample rates name {unknown}, not modalities of {list(names)}")
        rates = tuple(rate.get(n) for n in names)
    else:
        rates = tuple(rate for _ in names)
    for r in rates:
        if r is not None and not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise BatchSpecError(f"resample rates must be positive numbers, got {r!r}")
    rates = tuple(None if r is None else float(r) for r in rates)
    concatenate = bool(resample.get("concatenate", False))
    if concatenate and (None in rates or len(set(rates)) != 1):
        raise BatchSpecError(
            f"resample concatenate=True needs one rate for every modality, got "
            f"{dict(zip(names, rates, strict=True))}"
        )
    return rates, concatenate


def resample_ratio(rate: float, target: float) -> tuple[int, int]:
    """``(up, down)``: the reduced ratio ``target / rate`` (``(1, 1)`` if equal)."""
    ratio = _rate(target) / _rate(rate)
    return ratio.numerator, ratio.denominator


def _where(base: LabeledArrays, row: int) -> str:
    return f"signal {base.file_paths[row]} (sensor type {base.infos[row].sensor_type!r})"


def channel_shape(selector: Any, info: Any) -> tuple[int, ...]:
    """The shape a selector gives for a signal's window, without the time axis.

    Raises ``KeyError``/``IndexError``/``ValueError`` when the signal lacks a channel.
    Computed once per (selector, layout) where the selector is hashable.
    """
    try:
        return _channel_shape_cached(selector, info)
    except TypeError:  # an unhashable selector object
        return _channel_shape(selector, info)


def _channel_shape(selector: Any, info: Any) -> tuple[int, ...]:
    if selector is None:
        return (len(info.channels),)
    if isinstance(selector, tuple):
        info.channel_indices(selector)
        return (len(selector),)
    # Any selector object: its output on one sample of zeros tells its shape and
    # whether the signal has what it needs.
    probe = Samples(np.zeros((len(info.channels), 1), dtype=np.float32), info)
    return tuple(np.asarray(selector.select(probe)).shape[:-1])


_channel_shape_cached = lru_cache(maxsize=4096)(_channel_shape)


class RecordingArrays:
    """The recordings of a labeled table seen through a montage, shaped like
    `LabeledArrays` (one "row" per sampled recording) so that the schemes'
    drawing code serves both.
    """

    def __init__(
        self,
        table: pa.Table,
        modalities: Mapping[str, Any],
        *,
        missing: str,
        duration: TimeLike,
        resample: Mapping[str, Any] | None,
        stacklevel: int = 3,
    ) -> None:
        if missing not in MISSING:
            raise BatchSpecError(f"missing must be one of {MISSING}, got {missing!r}")
        self.montage = montage_of(modalities)
        self.names = tuple(n for n, _ in self.montage)
        self.missing = missing
        self.rates, self.concatenate = resample_of(resample, self.names)
        self.base = base = LabeledArrays(table)
        order: dict[uuid.UUID, list[int]] = {}
        for r, rec in enumerate(base.recordings):
            order.setdefault(rec, []).append(r)
        self.table_recordings = list(order)
        matches = self._match(base, table, order)
        dur = nanoseconds(duration)
        if dur <= 0:
            raise BatchSpecError(f"batch_duration must be positive, got {dur} ns")
        self.duration = dur
        self._check_parts(base, matches)
        self._missing_parts = self._missing_shapes(base, matches)
        kept, k_lo, k_hi, reasons = [], [], [], []
        for i, rec in enumerate(self.table_recordings):
            window = self._window_range(base, order[rec], matches[i], rec)
            if isinstance(window, str):
                reasons.append((rec, window))
                continue
            kept.append(i)
            k_lo.append(window[0])
            k_hi.append(window[1])
        if not kept:
            raise BatchSpecError(
                f"no recording can be sampled with modalities {list(self.names)} "
                f"(missing={missing!r}): " + "; ".join(f"recording {r} {why}" for r, why in reasons)
            )
        if reasons:
            self._warn_excluded(reasons, stacklevel + 1)
        self.kept = np.array(kept, dtype=np.int64)
        self.label_offset = np.array(k_lo, dtype=np.int64)
        first_rows = [order[self.table_recordings[i]][0] for i in kept]
        self.full_n_labels = np.array(
            [int(base.n_labels[order[rec][0]]) for rec in self.table_recordings], dtype=np.int64
        )
        self.n_rows = len(kept)
        self.recordings = [self.table_recordings[i] for i in kept]
        self.epoch = base.epoch[first_rows]
        self.label_start = base.label_start[first_rows] + self.label_offset * self.epoch
        self.label_stop = base.label_start[first_rows] + np.array(k_hi) * self.epoch
        self.n_labels = np.array(k_hi, dtype=np.int64) - self.label_offset
        self.labels: list[np.ndarray | StoredLabels] = []
        for r, lo, hi in zip(first_rows, k_lo, k_hi, strict=True):
            labels = base.labels[r]
            self.labels.append(labels if isinstance(labels, StoredLabels) else labels[lo:hi])
        self.modality_rows = [matches[i] for i in kept]
        self.channels: list[Any] = [None] * self.n_rows
        self._segments = dur // self.epoch

    def _window_range(
        self, base: LabeledArrays, rows_of_rec: list[int], rows: Sequence[int], rec: uuid.UUID
    ) -> tuple[int, int] | str:
        """The label epochs ``[lo, hi)`` of recording ``rec`` that windows may cover (inside
        every modality's signal when missing modalities exclude), or why it has none.

        ``rows_of_rec`` are the recording's rows of the table, ``rows`` its row per
        modality (-1 where absent)."""
        dur, missing = self.duration, self.missing
        first = rows_of_rec[0]
        start, stop = int(base.label_start[first]), int(base.label_stop[first])
        epoch = int(base.epoch[first])
        for r in rows_of_rec[1:]:
            if (int(base.label_start[r]), int(base.label_stop[r]), int(base.epoch[r])) != (
                start, stop, epoch,
            ):  # fmt: skip
                raise BatchSpecError(
                    f"recording {rec} has rows with different label timelines: "
                    f"{base.file_paths[first]} has {TimeSpan(start, stop)} in {epoch} ns "
                    f"epochs, {base.file_paths[r]} has "
                    f"{TimeSpan(int(base.label_start[r]), int(base.label_stop[r]))} in "
                    f"{int(base.epoch[r])} ns epochs (label all rows by recording)"
                )
        if dur % epoch:
            raise BatchSpecError(
                f"batch_duration of {dur} ns is not a whole number of label epochs: "
                f"recording {rec} has {epoch} ns epochs ({dur / epoch:g} epochs)"
            )
        n = (stop - start) // epoch
        lo, hi = 0, n
        if missing == "exclude":
            absent = [name for name, r in zip(self.names, rows, strict=True) if r < 0]
            if absent:
                return f"lacks modality {', '.join(map(repr, absent))}"
            first_t = max(base.signal_spans[r].start for r in rows)
            last_t = min(base.signal_spans[r].stop for r in rows)
            lo = max(0, -(-(first_t - start) // epoch))
            hi = min(n, (last_t - start) // epoch)
        if hi - lo < dur // epoch:
            where = "label span" + (" inside every signal's span" if missing == "exclude" else "")
            return (f"has no window of {dur / NS_PER_S:g} s in its {where} "
                    f"({max(hi - lo, 0)} epochs of {dur // epoch})")  # fmt: skip
        return lo, hi

    def _warn_excluded(self, reasons: list[tuple[uuid.UUID, str]], stacklevel: int) -> None:
        counts: dict[str, int] = {}
        for _, why in reasons:
            key = why.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        warnings.warn(
            f"{len(reasons)} of {len(self.table_recordings)} recordings are excluded from "
            f"sampling with modalities {list(self.names)} (missing={self.missing!r}): "
            + "; ".join(f"{n} {why}" for why, n in counts.items())
            + f". First: recording {reasons[0][0]} {reasons[0][1]}",
            ExcludedRecordingsWarning,
            stacklevel=stacklevel,
        )

    def _match(
        self, base: LabeledArrays, table: pa.Table, order: dict[uuid.UUID, list[int]]
    ) -> list[tuple[int, ...]]:
        """Per recording (table order), per modality, the row serving it or -1."""
        row_dicts = None
        if any(not isinstance(m.sensor, str) for _, m in self.montage):
            row_dicts = table.drop_columns(["labels"]).to_pylist()
        types = [info.sensor_type for info in base.infos]
        for name, mod in self.montage:
            if isinstance(mod.sensor, str) and mod.sensor not in types:
                raise BatchSpecError(
                    f"modality {name!r}: no signal of the table has sensor type "
                    f"{mod.sensor!r}; the table has {sorted(set(types))}"
                )
        out = []
        for rec, rows in order.items():
            per = []
            for name, mod in self.montage:
                if isinstance(mod.sensor, str):
                    found = [r for r in rows if types[r] == mod.sensor]
                else:
                    found = [r for r in rows if mod.sensor(row_dicts[r])]
                if len(found) > 1:
                    raise BatchSpecError(
                        f"modality {name!r} matches {len(found)} signals of recording {rec}: "
                        + ", ".join(_where(base, r) for r in found)
                        + "; make its sensor a predicate that picks one"
                    )
                per.append(found[0] if found else -1)
            out.append(tuple(per))
        if row_dicts is not None:
            for k, (name, mod) in enumerate(self.montage):
                if not isinstance(mod.sensor, str) and all(m[k] < 0 for m in out):
                    raise BatchSpecError(
                        f"modality {name!r}: its predicate matches no signal of the table"
                    )
        return out

    def _check_parts(self, base: LabeledArrays, matches: list[tuple[int, ...]]) -> None:
        """Every matched signal has the montage's channels and a rate that resamples exactly."""
        for rows in matches:
            for k, ((name, mod), r) in enumerate(zip(self.montage, rows, strict=True)):
                if r < 0:
                    continue
                info = base.infos[r]
                try:
                    shape = channel_shape(mod.channels, info)
                except (KeyError, IndexError, ValueError) as exc:
                    raise BatchSpecError(
                        f"modality {name!r} of recording {base.recordings[r]}: {_where(base, r)} "
                        f"with channels {list(info.channels)} cannot give {mod.channels!r} ({exc})"
                    ) from None
                if self.concatenate and len(shape) != 1:
                    raise BatchSpecError(
                        f"modality {name!r}: concatenate needs (channels, time) arrays, but its "
                        f"selector gives {shape + ('time',)} for {_where(base, r)}"
                    )
                target = None if self.rates is None else self.rates[k]
                if target is not None:
                    check_resample(
                        info.sample_rate, target, self.duration,
                        f"modality {name!r} of recording {base.recordings[r]}, {_where(base, r)}",
                    )  # fmt: skip

    def _missing_shapes(
        self, base: LabeledArrays, matches: list[tuple[int, ...]]
    ) -> list[MissingModality]:
        """Per modality, what a recording or window without it is filled with."""
        out = []
        for k, (_, mod) in enumerate(self.montage):
            r = next(m[k] for m in matches if m[k] >= 0)
            out.append(MissingModality(channel_shape(mod.channels, base.infos[r]),
                                       base.infos[r].sample_rate))  # fmt: skip
        return out

    def segments(self, duration: TimeLike) -> tuple[int, np.ndarray]:
        """``duration`` in ns and in label epochs per sampled recording."""
        return self.duration, self._segments

    def restrict_weights(self, signal_weights: Any, label_weights: Any) -> tuple[Any, Any]:
        """Per-recording weights (table order) cut down to the sampled recordings and epochs."""
        n = len(self.table_recordings)
        if signal_weights is not None:
            w = np.asarray(signal_weights, dtype=np.float64)
            if w.ndim != 1 or len(w) != n:
                raise BatchSpecError(
                    f"with modalities, signal_weights must be one weight per recording "
                    f"({n}, in table order; see class_balanced_weights(..., by_recording=True)), "
                    f"got shape {w.shape}"
                )
            signal_weights = w[self.kept]
        if label_weights is not None:
            if len(label_weights) != n:
                raise BatchSpecError(
                    f"with modalities, label_weights must have one entry per recording ({n}), "
                    f"got {len(label_weights)}"
                )
            out = []
            for i, lo, count in zip(self.kept, self.label_offset, self.n_labels, strict=True):
                w = np.asarray(label_weights[i], dtype=np.float64)
                if w.shape != (self.full_n_labels[i],):
                    raise BatchSpecError(
                        f"label_weights of recording {self.table_recordings[i]} must be "
                        f"{self.full_n_labels[i]} weights, got shape {w.shape}"
                    )
                out.append(w[lo : lo + count])
            label_weights = out
        return signal_weights, label_weights

    def item(
        self, row: int, first: int, count: int, duration: int, channels: Any, padding: bool = False
    ) -> MultiBatchItem:
        """The item of ``count`` epochs from epoch ``first`` of sampled recording ``row``."""
        base = self.base
        start = int(self.label_start[row]) + first * int(self.epoch[row])
        window = TimeSpan(start, start + duration)
        zero_fill = self.missing == "zero-fill"
        parts: list[Any] = []
        for k, r in enumerate(self.modality_rows[row]):
            span = base.signal_spans[r] if r >= 0 else None
            if span is None or (zero_fill and not span.contains(window)):
                parts.append(self._missing_parts[k])
                continue
            parts.append(
                signal_part(
                    base.recordings[r], base.file_paths[r], base.file_formats[r], span,
                    base.infos[r], window, self.montage[k][1].channels, padding,
                )
            )  # fmt: skip
        labels = self.labels[row]
        if not isinstance(labels, StoredLabels):
            labels = labels[first : first + count]
        return MultiBatchItem(
            self.recordings[row], window, self.names, tuple(parts), labels, self.rates,
            self.concatenate, zero_fill, padding,
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        """What the schemes' configuration fingerprint adds for a montage."""
        return {
            "modalities": [[name, *mod.fingerprint()] for name, mod in self.montage],
            "missing": self.missing,
            "resample": None
            if self.rates is None
            else {"rates": list(self.rates), "concatenate": self.concatenate},
        }

    def fingerprint(self, *extra: np.ndarray | None) -> dict[str, str]:
        """As `LabeledArrays.fingerprint` (the table's content, ``extra`` the
        per-recording weights), plus ``digest.montage``: which rows serve which modality
        where, and the windows each recording keeps."""
        out = self.base.fingerprint(*extra)
        h = hashlib.sha256(np.asarray(self.modality_rows, dtype=np.int64).tobytes())
        for arr in (self.kept, self.label_offset, self.n_labels):
            h.update(np.ascontiguousarray(arr).tobytes())
        out["digest.montage"] = h.hexdigest()[:16]
        return out

    def digest(self, *extra: np.ndarray | None) -> str:
        """One short digest of `fingerprint` (all components together)."""
        parts = sorted(self.fingerprint(*extra).items())
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def check_resample(rate: float, target: float, duration: int | None, where: str) -> tuple[int, int]:
    """``(up, down)`` for ``rate -> target``; a
    [`BatchSpecError`][ondabatches._errors.BatchSpecError] naming ``where`` if the
    ratio's terms are too large or a window of ``duration`` does not hold a whole number
    of target samples."""
    up, down = resample_ratio(rate, target)
    if max(up, down) > MAX_RESAMPLE_TERM:
        raise BatchSpecError(
            f"{where}: {rate:g} Hz cannot be resampled exactly to {target:g} Hz with a "
            f"small polyphase filter (ratio {up}/{down}; terms up to {MAX_RESAMPLE_TERM})"
        )
    if duration is not None:
        n_in, n_out = n_samples(duration, rate), n_samples(duration, target)
        if n_in * up != n_out * down:
            raise BatchSpecError(
                f"{where}: a window of {duration / NS_PER_S:g} s holds {n_in} samples at "
                f"{rate:g} Hz, which is not a whole number of samples at {target:g} Hz "
                f"({n_in} * {up}/{down} != {n_out})"
            )
    return up, down
