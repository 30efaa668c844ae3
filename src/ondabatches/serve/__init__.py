"""Serving batches: the Batcher and its worker-pool backends."""

from . import _batcher, _pools, _ray, _ray_batcher, _shm
from ._batcher import *  # noqa: F403
from ._pools import *  # noqa: F403
from ._ray import *  # noqa: F403
from ._ray_batcher import *  # noqa: F403
from ._shm import *  # noqa: F403

__all__ = sorted(
    {*_batcher.__all__, *_pools.__all__, *_ray.__all__, *_ray_batcher.__all__, *_shm.__all__}
)
