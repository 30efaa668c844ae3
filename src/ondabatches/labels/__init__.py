"""Labeled signals: annotations turned into dense label samples aligned with signals."""

from . import _labeled, _labels
from ._labeled import *  # noqa: F403
from ._labels import *  # noqa: F403

__all__ = sorted({*_labeled.__all__, *_labels.__all__})
