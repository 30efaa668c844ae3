"""Materialization: reading, decoding and stacking the arrays of a batch specification."""

# _multi registers the multi-signal item kind with _materialize on import, _transformed
# the path of batches with transforms.
from . import _materialize, _materializer, _multi, _selectors, _transformed  # noqa: F401
from ._materialize import *  # noqa: F403
from ._materializer import *  # noqa: F403
from ._selectors import *  # noqa: F403

__all__ = sorted({*_materialize.__all__, *_materializer.__all__, *_selectors.__all__})
