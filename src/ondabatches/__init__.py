"""ondabatches: deterministic, resumable, distributed training batches from Onda datasets.

The pipeline, one subpackage per stage:

- `ondabatches.onda`: the Onda format (tables, samples, sample files, storage);
- `ondabatches.labels`: annotations -> labeled signals;
- `ondabatches.batches`: batch specification (cheap, ordered, deterministic);
- `ondabatches.materialize`: batch specification -> arrays (expensive, parallel);
- `ondabatches.serve`: the Batcher, on threads, processes, Ray or any executor.
"""

import logging as _logging
import sys as _sys

# First of all: the worker processes run under multiprocessing's forkserver, which on
# Linux in Python 3.10.0-3.10.8 and 3.11.0 listens on an abstract socket that any local
# user can connect to and have code run as this user (CVE-2022-42919). pyproject.toml
# excludes those versions; an interpreter installed some other way is refused here.
if _sys.platform.startswith("linux") and (
    (3, 10, 0) <= tuple(_sys.version_info[:3]) < (3, 10, 9)
    or tuple(_sys.version_info[:3]) == (3, 11, 0)
):
    raise ImportError(
        "ondabatches refuses to run on Python "
        + ".".join(map(str, _sys.version_info[:3]))
        + ": its multiprocessing forkserver lets any local user run code as you "
        "(CVE-2022-42919). Upgrade to Python 3.10.9+, 3.11.1+ or later."
    )

from . import _errors, batches, labels, materialize, onda, serve  # noqa: E402
from ._errors import *  # noqa: E402, F403
from ._version import __version__  # noqa: E402, F401 (the package version)
from .batches import *  # noqa: E402, F403
from .labels import *  # noqa: E402, F403
from .materialize import *  # noqa: E402, F403
from .onda import *  # noqa: E402, F403
from .serve import *  # noqa: E402, F403

# A library logs and leaves the handling to the application (logging's convention).
_logging.getLogger("ondabatches").addHandler(_logging.NullHandler())

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
