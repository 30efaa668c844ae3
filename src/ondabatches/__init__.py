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

from . import batches, errors, labels, materialize, onda, serve  # noqa: E402
from ._errors import (  # noqa: E402
    BatcherError,
    LabelError,
    OndaBatchesError,
    SampleFileError,
    SchemaError,
    StateError,
    StorageError,
    WorkerError,
)
from ._version import __version__  # noqa: E402, F401 (the package version)
from .batches import (  # noqa: E402
    BatchItem,
    BatchScheme,
    BatchState,
    ChannelSelector,
    Modality,
    MultiBatchItem,
    RandomBatches,
    SequentialBatches,
    register_selector,
)
from .labels import (  # noqa: E402
    EventLabels,
    LabeledSignal,
    label_events,
    label_signals,
    read_labeled_signals,
    store_labels,
    write_labeled_signals,
)
from .materialize import materialize_batch, materialize_batch_item  # noqa: E402
from .onda import (  # noqa: E402
    Annotation,
    SampleFormat,
    Samples,
    Signal,
    TimeSpan,
    allowed_storage,
    load,
    read_annotations,
    read_signals,
    register_format,
    set_cache,
    set_storage_options,
    store,
    write_annotations,
    write_signals,
)
from .serve import Batcher, RayBatcher  # noqa: E402

# A library logs and leaves the handling to the application (logging's convention).
_logging.getLogger("ondabatches").addHandler(_logging.NullHandler())

__all__ = [
    "Annotation",
    "BatchItem",
    "BatchScheme",
    "BatchState",
    "Batcher",
    "BatcherError",
    "ChannelSelector",
    "EventLabels",
    "LabelError",
    "LabeledSignal",
    "Modality",
    "MultiBatchItem",
    "OndaBatchesError",
    "RandomBatches",
    "RayBatcher",
    "SampleFileError",
    "SampleFormat",
    "Samples",
    "SchemaError",
    "SequentialBatches",
    "Signal",
    "StateError",
    "StorageError",
    "TimeSpan",
    "WorkerError",
    "allowed_storage",
    "label_events",
    "label_signals",
    "load",
    "materialize_batch",
    "materialize_batch_item",
    "read_annotations",
    "read_labeled_signals",
    "read_signals",
    "register_format",
    "register_selector",
    "set_cache",
    "set_storage_options",
    "store",
    "store_labels",
    "write_annotations",
    "write_labeled_signals",
    "write_signals",
]


def _moved_names() -> dict[str, str]:
    """The names the top level no longer exports, each with the module that keeps it."""
    moved: dict[str, str] = {}
    for module in (onda, labels, batches, materialize, serve, errors):
        for name in module.__all__:
            if name not in __all__:
                moved.setdefault(name, module.__name__)
    return moved


# Deprecated aliases, kept for one release: ``ondabatches.event_mask`` still works but
# warns, naming the module to import it from (``ondabatches.labels.event_mask``).
_MOVED = _moved_names()


def __getattr__(name: str) -> object:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'ondabatches' has no attribute {name!r}")
    import warnings

    warnings.warn(
        f"ondabatches.{name} is deprecated and leaves the top level in the next release: "
        f"use {home}.{name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_sys.modules[home], name)


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
