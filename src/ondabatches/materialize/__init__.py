"""Materialization: reading, decoding and stacking the arrays of a batch specification."""

from . import _materialize, _selectors
from ._materialize import *  # noqa: F403
from ._selectors import *  # noqa: F403

__all__ = sorted({*_materialize.__all__, *_selectors.__all__})
