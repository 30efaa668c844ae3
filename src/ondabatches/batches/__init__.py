"""Batch specification: cheap, ordered, deterministic descriptions of what each batch holds.

A scheme is a sampler (which windows: [`RandomSampler`][ondabatches.batches.RandomSampler],
[`SequentialSampler`][ondabatches.batches.SequentialSampler],
[`EventSampler`][ondabatches.batches.EventSampler] or your own
[`Sampler`][ondabatches.abc.Sampler]) over a layout (windows of what:
[`SignalLayout`][ondabatches.batches.SignalLayout],
[`MontageLayout`][ondabatches.batches.MontageLayout]), split among ranks by a
[`Sharding`][ondabatches.batches.Sharding]: [`compose`][ondabatches.batches.compose].
[`RandomBatches`][ondabatches.batches.RandomBatches] and
[`SequentialBatches`][ondabatches.batches.SequentialBatches] are two such compositions.
"""

from . import (
    _compose,
    _item,
    _layout,
    _montage,
    _multi_item,
    _random,
    _selectors,
    _sequential,
    _shard,
    _state,
    _weights,
)
from ._compose import *  # noqa: F403
from ._item import *  # noqa: F403
from ._layout import *  # noqa: F403
from ._montage import *  # noqa: F403
from ._multi_item import *  # noqa: F403
from ._random import *  # noqa: F403
from ._selectors import *  # noqa: F403
from ._sequential import *  # noqa: F403
from ._shard import *  # noqa: F403
from ._state import *  # noqa: F403
from ._weights import *  # noqa: F403

__all__ = sorted(
    {
        *_compose.__all__,
        *_item.__all__,
        *_layout.__all__,
        *_montage.__all__,
        *_multi_item.__all__,
        *_random.__all__,
        *_selectors.__all__,
        *_sequential.__all__,
        *_shard.__all__,
        *_state.__all__,
        *_weights.__all__,
    }
)
