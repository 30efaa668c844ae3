"""Serving batches: the Batcher and its worker-pool backends."""

from . import _batcher
from ._batcher import *  # noqa: F403

__all__ = sorted({*_batcher.__all__})
