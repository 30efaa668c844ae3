"""Event targets: each item's ``y`` as a dict of label sets, sparse ones read per window.

``EventTargets({"arousal": (events, EventMask(2.0)), "apnea": (events2,
EventList(16))})`` makes ``y = {"labels": <the dense per-epoch codes>, "arousal": ...,
"apnea": {...}, "present": {"arousal": bool, "apnea": bool}}``: a recording that lacks
a label set is served with zero targets and ``present`` False. Each set's
configuration (its manifest and digest, and the target) is in the state's config, so a
checkpoint resumed over changed events is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import BatchSpecError
from ..labels._events import EventLabels, event_lists, event_masks, multi_hots
from ..onda._timespan import n_samples
from ._target import Target, register_target, target_from_dict
from ._transform import Transform, register_transform

__all__ = ["EventList", "EventMask", "EventTargets", "MultiHot"]

_NS = 10**9


@register_target
@dataclass(frozen=True)
class EventMask(Target):
    """A ``(classes, time)`` mask at ``rate_hz`` (at most the signal's rate): 1 where an
    event contains the label sample's centre (``min_overlap`` None) or covers at least
    ``min_overlap`` of it (see [`event_mask`][ondabatches.labels.event_mask])."""

    name = "mask"

    rate_hz: float
    min_overlap: float | None = None

    def output(self, duration: int, n_classes: int) -> tuple[tuple[int, ...], np.dtype]:
        return (n_classes, n_samples(duration, self.rate_hz)), np.dtype(np.uint8)

    def compute(self, found, starts, stops, n_classes: int) -> np.ndarray:
        return event_masks(found, starts, stops, n_classes, self.rate_hz, self.min_overlap)

    def check(self, sample_rate: float, where: str) -> None:
        if not 0 < self.rate_hz <= sample_rate:
            raise BatchSpecError(
                f"{self!r}: rate_hz must be in (0, {sample_rate}] (the signal's rate of {where})"
            )


@register_target
@dataclass(frozen=True)
class MultiHot(Target):
    """An ``(epochs, classes)`` multi-hot target: 1 where the class's events cover at
    least ``min_overlap`` of the epoch of ``epoch_s`` seconds (see
    [`multi_hot`][ondabatches.labels.multi_hot])."""

    name = "multi_hot"

    epoch_s: float
    min_overlap: float = 0.5

    def output(self, duration: int, n_classes: int) -> tuple[tuple[int, ...], np.dtype]:
        return (duration // round(self.epoch_s * _NS), n_classes), np.dtype(np.uint8)

    def compute(self, found, starts, stops, n_classes: int) -> np.ndarray:
        return multi_hots(found, starts, stops, n_classes, round(self.epoch_s * _NS),
                          self.min_overlap)  # fmt: skip

    def check(self, sample_rate: float, where: str) -> None:
        if self.epoch_s <= 0 or not 0 <= self.min_overlap <= 1:
            raise BatchSpecError(f"{self!r}: epoch_s must be > 0 and min_overlap in [0, 1]")


@register_target
@dataclass(frozen=True)
class EventList(Target):
    """Up to ``max_events`` events per window as padded arrays (see
    [`event_list`][ondabatches.labels.event_list])."""

    name = "list"

    max_events: int

    def output(self, duration: int, n_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        n = (self.max_events,)
        return {
            "class": (n, np.dtype(np.int16)),
            "onset": (n, np.dtype(np.float32)),
            "offset": (n, np.dtype(np.float32)),
            "valid": (n, np.dtype(bool)),
            "count": ((), np.dtype(np.int32)),
        }

    def compute(self, found, starts, stops, n_classes: int) -> dict[str, np.ndarray]:
        return event_lists(found, starts, stops, self.max_events)

    def check(self, sample_rate: float, where: str) -> None:
        if (
            isinstance(self.max_events, bool)
            or not isinstance(self.max_events, int)
            or (self.max_events < 1)
        ):
            raise BatchSpecError(f"{self!r}: max_events must be a positive int")


@register_transform
class EventTargets(Transform):
    """Event label sets as targets (an item transform; see the module documentation).

    Parameters
    ----------
    targets:
        Label-set name -> ``(EventLabels, target)``, the target an
        [`EventMask`][ondabatches.transforms.EventMask],
        [`MultiHot`][ondabatches.transforms.MultiHot] or
        [`EventList`][ondabatches.transforms.EventList], or a registered
        [`Target`][ondabatches.abc.Target] of one's own (or the dict forms in a config).
    dense:
        The key of the item's dense per-epoch label codes in ``y``.
    """

    name = "event_targets"
    makes_targets = True

    def __init__(self, targets: Mapping[str, Any], dense: str = "labels"):
        if not isinstance(targets, Mapping) or not targets:
            raise BatchSpecError(f"targets must be a non-empty mapping, got {targets!r}")
        self.targets: dict[str, tuple[EventLabels, Any]] = {}
        for key, value in targets.items():
            if key in (dense, "present"):
                raise BatchSpecError(f"a label set may not be named {key!r}")
            if isinstance(value, Mapping):
                events, target = value.get("events"), value.get("target")
            else:
                events, target = value
            if isinstance(events, Mapping):
                events = EventLabels.from_dict(events)
            if not isinstance(events, EventLabels):
                raise BatchSpecError(
                    f"targets[{key!r}]'s events must be EventLabels, got {events!r}"
                )
            self.targets[str(key)] = (events, target_from_dict(target))
        self.dense = str(dense)

    def params(self):
        return {
            "targets": {
                k: {"events": ev.to_dict(), "target": t.to_dict()}
                for k, (ev, t) in sorted(self.targets.items())
            },
            "dense": self.dense,
        }

    def check(self, sample_rate, window, recording, where):
        for _, target in self.targets.values():
            target.check(sample_rate, where)

    def apply(self, x, y, rng, sample_rate):
        raise BatchSpecError("EventTargets needs the batch's items: it runs in materialize_batch")

    def make_targets(self, y: Any, items: Sequence[Any]) -> dict[str, Any]:
        """The batch's ``y`` (the stacked dense labels) with every label set's targets,
        computed for all the items at once (each item's recording and window)."""
        recordings = [item.recording for item in items]
        starts = np.array([item.window.start for item in items], dtype=np.int64)
        stops = np.array([item.window.stop for item in items], dtype=np.int64)
        out: dict[str, Any] = {self.dense: y}
        present, read = {}, {}
        for key, (events, target) in self.targets.items():
            if events not in read:  # one read of a label set serves all its targets
                read[events] = events.windows(recordings, starts, stops)
            found, has = read[events]
            out[key] = target.compute(found, starts, stops, len(events.classes))
            present[key] = has
        out["present"] = present
        return out
