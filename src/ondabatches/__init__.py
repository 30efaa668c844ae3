"""ondabatches: deterministic, resumable, distributed training batches from Onda datasets.

The pipeline, one subpackage per stage:

- :mod:`ondabatches.onda`: the Onda format (tables, samples, sample files, storage);
- :mod:`ondabatches.labels`: annotations -> labeled signals;
- :mod:`ondabatches.batches`: batch specification (cheap, ordered, deterministic);
- :mod:`ondabatches.materialize`: batch specification -> arrays (expensive, parallel);
- :mod:`ondabatches.serve`: the Batcher, on threads, processes, Ray or any executor.
"""

import logging

from . import _errors, batches, labels, materialize, onda, serve
from ._errors import *  # noqa: F403
from .batches import *  # noqa: F403
from .labels import *  # noqa: F403
from .materialize import *  # noqa: F403
from .onda import *  # noqa: F403
from .serve import *  # noqa: F403

# A library logs and leaves the handling to the application (logging's convention).
logging.getLogger("ondabatches").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = sorted(
    {
        *_errors.__all__,
        *batches.__all__,
        *labels.__all__,
        *materialize.__all__,
        *onda.__all__,
        *serve.__all__,
    }
)
