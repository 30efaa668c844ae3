"""The exception hierarchy of ondabatches, under its public name.

``from ondabatches.errors import SpanError``: every class of the hierarchy, the same
objects as raised by the package. The eight a trainer most often catches are also at the
top level (``ondabatches.StateError``). The tree, and what each class means, is in the
docs of [`OndaBatchesError`][ondabatches._errors.OndaBatchesError]'s module.
"""

from ._errors import *  # noqa: F403
from ._errors import __all__ as __all__
