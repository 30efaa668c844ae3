"""Labeled signals: annotations turned into dense label samples aligned with signals,
and sparse event label sets read per window."""

from . import _events, _labeled, _labels, _schema, _stored
from ._events import *  # noqa: F403
from ._labeled import *  # noqa: F403
from ._labels import *  # noqa: F403
from ._schema import *  # noqa: F403
from ._stored import *  # noqa: F403

__all__ = sorted(
    {*_events.__all__, *_labeled.__all__, *_labels.__all__, *_schema.__all__, *_stored.__all__}
)
