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

from . import batches, errors, labels, materialize, onda, serve  # noqa: E402, F401
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


# Deprecated aliases, kept for one release: the names of 0.1's top level that it no
# longer exports, each with the module that keeps it. ``ondabatches.event_mask`` still
# works but warns, naming the module to import it from (``ondabatches.labels.event_mask``).
_MOVED = {
    "ALLOWED_STORAGE_ENV": "ondabatches.onda",
    "ANNOTATION_SCHEMA": "ondabatches.onda",
    "ArgumentError": "ondabatches.errors",
    "ArgumentTypeError": "ondabatches.errors",
    "BatchShapeError": "ondabatches.errors",
    "BatchSpecError": "ondabatches.errors",
    "BatchTimeoutError": "ondabatches.errors",
    "Bipolar": "ondabatches.materialize",
    "CACHE_ENV": "ondabatches.onda",
    "CacheError": "ondabatches.errors",
    "ChannelSelection": "ondabatches.onda",
    "DatasetExistsError": "ondabatches.errors",
    "EdfFormat": "ondabatches.onda",
    "EvenOddCompartments": "ondabatches.materialize",
    "EventsWarning": "ondabatches.labels",
    "ExcludedRecordingsWarning": "ondabatches.batches",
    "JuliaUUIDType": "ondabatches.onda",
    "LABELED_SCHEMA": "ondabatches.labels",
    "LPCMFormat": "ondabatches.onda",
    "LPCMZstFormat": "ondabatches.onda",
    "MissingDependencyError": "ondabatches.errors",
    "MissingLabelsWarning": "ondabatches.labels",
    "MissingModality": "ondabatches.batches",
    "OutOfRangeError": "ondabatches.errors",
    "ReadOnlyFormatError": "ondabatches.errors",
    "S3_CONFIG_DEFAULTS": "ondabatches.onda",
    "SAMPLE_TYPES": "ondabatches.onda",
    "SIGNAL_SCHEMA": "ondabatches.onda",
    "STATE_VERSION": "ondabatches.batches",
    "STORAGE_OPTIONS_ENV": "ondabatches.onda",
    "SampleFileNotFoundError": "ondabatches.errors",
    "SamplesInfo": "ondabatches.onda",
    "SharedMemoryError": "ondabatches.errors",
    "SignalLike": "ondabatches.onda",
    "SizeLimitError": "ondabatches.errors",
    "SourceFileError": "ondabatches.errors",
    "SpanError": "ondabatches.errors",
    "StoredLabels": "ondabatches.labels",
    "TimeLike": "ondabatches.onda",
    "TimeSpanType": "ondabatches.onda",
    "UnknownFormatError": "ondabatches.errors",
    "UnknownNameError": "ondabatches.errors",
    "UntrustedPathError": "ondabatches.errors",
    "ZeroFillMontage": "ondabatches.materialize",
    "annotations_table": "ondabatches.onda",
    "cache_stats": "ondabatches.onda",
    "class_balanced_weights": "ondabatches.batches",
    "decode": "ondabatches.onda",
    "duration_weights": "ondabatches.batches",
    "encode": "ondabatches.onda",
    "event_list": "ondabatches.labels",
    "event_lists": "ondabatches.labels",
    "event_mask": "ondabatches.labels",
    "event_masks": "ondabatches.labels",
    "event_summary": "ondabatches.labels",
    "event_weights": "ondabatches.batches",
    "filesystem_for": "ondabatches.onda",
    "get_cache": "ondabatches.onda",
    "get_format": "ondabatches.onda",
    "get_storage_options": "ondabatches.onda",
    "index_from_time": "ondabatches.onda",
    "inverse_frequency_label_weights": "ondabatches.batches",
    "iter_annotations": "ondabatches.onda",
    "iter_labeled_signals": "ondabatches.labels",
    "iter_signals": "ondabatches.onda",
    "label_info": "ondabatches.labels",
    "labeled_signals_table": "ondabatches.labels",
    "load_event_labels": "ondabatches.labels",
    "load_labeled_signal": "ondabatches.labels",
    "load_rows": "ondabatches.onda",
    "multi_hot": "ondabatches.labels",
    "multi_hots": "ondabatches.labels",
    "n_samples": "ondabatches.onda",
    "nanoseconds": "ondabatches.onda",
    "registered_formats": "ondabatches.onda",
    "sample_dtype": "ondabatches.onda",
    "sample_range": "ondabatches.onda",
    "selector_from_dict": "ondabatches.batches",
    "selector_to_dict": "ondabatches.batches",
    "signals_from_table": "ondabatches.onda",
    "signals_table": "ondabatches.onda",
    "sort_and_trim_spans": "ondabatches.labels",
    "storage_env": "ondabatches.onda",
    "sub_label_span": "ondabatches.labels",
    "time_from_index": "ondabatches.onda",
    "to_pandas": "ondabatches.onda",
    "to_polars": "ondabatches.onda",
    "window_sample_range": "ondabatches.onda",
}


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
