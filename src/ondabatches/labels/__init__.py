"""Labeled signals: annotations turned into dense label samples aligned with signals,
and sparse event label sets read per window."""

from . import _events, _labeled, _labels
from ._events import *  # noqa: F403
from ._labeled import *  # noqa: F403
from ._labels import *  # noqa: F403

__all__ = sorted({*_events.__all__, *_labeled.__all__, *_labels.__all__})
