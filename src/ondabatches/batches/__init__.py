"""Batch specification: cheap, ordered, deterministic descriptions of what each batch holds."""

from . import _item, _montage, _multi_item, _random, _selectors, _sequential, _shard, _state
from ._item import *  # noqa: F403
from ._montage import *  # noqa: F403
from ._multi_item import *  # noqa: F403
from ._random import *  # noqa: F403
from ._selectors import *  # noqa: F403
from ._sequential import *  # noqa: F403
from ._shard import *  # noqa: F403
from ._state import *  # noqa: F403

__all__ = sorted(
    {
        *_item.__all__,
        *_montage.__all__,
        *_multi_item.__all__,
        *_random.__all__,
        *_selectors.__all__,
        *_sequential.__all__,
        *_shard.__all__,
        *_state.__all__,
    }
)
