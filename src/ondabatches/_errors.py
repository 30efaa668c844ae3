"""The exception hierarchy of ondabatches.

Every exception raised on purpose by this package derives from
[`OndaBatchesError`][ondabatches._errors.OndaBatchesError] and, where one fits, also
from the matching built-in, so that ``except ValueError`` keeps working for callers who
do not know our names::

    OndaBatchesError
    ├── ArgumentError          (ValueError)         an argument's value that a function refuses
    ├── ArgumentTypeError      (TypeError)          an argument of a type that a function refuses
    ├── UnknownNameError       (KeyError)           a channel or modality name that is not there
    ├── OutOfRangeError        (IndexError)         an index past the end (a batch, a channel)
    ├── SchemaError            (ValueError)         a table's columns, types or metadata
    ├── SampleFileError        (ValueError)         a sample file's size or content
    │   └── SourceFileError                         a file to import that cannot be converted
    ├── DatasetExistsError     (FileExistsError)    an import's output holds another dataset
    ├── SampleFileNotFoundError(FileNotFoundError)  a sample, label or table file is missing
    ├── SpanError              (ValueError)         a span outside what it must lie in
    ├── UnknownFormatError     (ValueError)         a file_format or sample_type nobody registered
    ├── ReadOnlyFormatError    (TypeError)          writing through a read-only format (edf, bdf)
    ├── LabelError             (ValueError)         annotations that cannot become labels
    ├── BatchSpecError         (ValueError)         a batch scheme's parameters disagree
    ├── BatchShapeError        (ValueError)         items of one batch that do not stack
    ├── StateError             (ValueError)         a state that cannot be restored
    ├── SizeLimitError         (ValueError)         a size beyond a configured ceiling
    ├── UntrustedPathError     (PermissionError)    a path outside the allowed storage
    ├── StorageError           (OSError)            a storage backend failed (wraps fsspec/botocore)
    │   └── CacheError                              the node-local cache directory cannot be used
    ├── MissingDependencyError (ImportError)        an optional extra is not installed
    └── BatcherError           (RuntimeError)       the batching service failed
        ├── BatchTimeoutError  (TimeoutError)       a batch not ready within the timeout given
        ├── WorkerError                             a batch failed on a worker (with its traceback)
        └── SharedMemoryError  (OSError)            no room left in shared memory for a batch

Nothing in the package raises a bare built-in on purpose (``tests/test_errors.py``
walks the source to check it); the few built-ins left are protocol signals
(``NotImplementedError`` of an abstract method, ``AttributeError`` from a module's
``__getattr__``) and OS errors that a caller turns into a
[`StorageError`][ondabatches._errors.StorageError].

Messages name the file, column, recording or batch, and the expected and actual values.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "BatchTimeoutError",
    "BatchShapeError",
    "BatchSpecError",
    "BatcherError",
    "CacheError",
    "DatasetExistsError",
    "LabelError",
    "MissingDependencyError",
    "OndaBatchesError",
    "OutOfRangeError",
    "ReadOnlyFormatError",
    "SampleFileError",
    "SampleFileNotFoundError",
    "SchemaError",
    "SharedMemoryError",
    "SizeLimitError",
    "SourceFileError",
    "SpanError",
    "StateError",
    "StorageError",
    "UnknownFormatError",
    "UnknownNameError",
    "UntrustedPathError",
    "WorkerError",
]


class OndaBatchesError(Exception):
    """Root of every exception that ondabatches raises on purpose."""


class ArgumentError(OndaBatchesError, ValueError):
    """An argument whose value a function does not accept: the message names the
    argument, the values allowed and the value given."""


class ArgumentTypeError(OndaBatchesError, TypeError):
    """An argument of a type that a function does not accept: the message names the
    argument, the types allowed and the type given."""


class UnknownNameError(OndaBatchesError, KeyError):
    """A channel, modality or other name looked up where it is not; the message names
    the names there are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class OutOfRangeError(OndaBatchesError, IndexError):
    """An index past the end of what it indexes (a batch of a finite pass, a channel)."""


class SchemaError(OndaBatchesError, ValueError):
    """A table lacks a column, has a column of the wrong type, or is not an Onda table."""


class SampleFileError(OndaBatchesError, ValueError):
    """A sample file's size or content disagrees with its signal's metadata."""


class SourceFileError(SampleFileError):
    """A file to import (EDF, BDF, an MNE-readable file) that is unreadable, truncated, or
    holds what an Onda dataset cannot (a discontinuous EDF+D, annotations before the start
    or past the end of the recording); the message names the file."""


class DatasetExistsError(OndaBatchesError, FileExistsError):
    """An import's output folder already holds another dataset (other tables, options or
    files); the message names the folder and what differs."""


class SampleFileNotFoundError(OndaBatchesError, FileNotFoundError):
    """A sample file (or label or table file) does not exist."""


class SpanError(OndaBatchesError, ValueError):
    """A time span lies outside the span it must lie in."""


class UnknownFormatError(OndaBatchesError, ValueError):
    """A ``file_format`` or ``sample_type`` that no reader is registered for."""


class ReadOnlyFormatError(OndaBatchesError, TypeError):
    """A sample file format that reads files but does not write them (``edf``, ``bdf``)."""


class LabelError(OndaBatchesError, ValueError):
    """Annotations that cannot be turned into dense labels."""


class BatchSpecError(OndaBatchesError, ValueError):
    """Parameters of a batch scheme that disagree with each other or with the data."""


class BatchShapeError(OndaBatchesError, ValueError):
    """Items of one batch whose arrays do not have the same shape."""


class StateError(OndaBatchesError, ValueError):
    """A batch state that is malformed or belongs to another configuration."""


class SizeLimitError(OndaBatchesError, ValueError):
    """A size beyond a configured ceiling: a batch's shared-memory segment, a state's JSON."""


class UntrustedPathError(OndaBatchesError, PermissionError):
    """A path or URL outside the storage that [`allowed_storage`][ondabatches.onda.allowed_storage]
    allows, or a local path that is not a regular file."""


class StorageError(OndaBatchesError, OSError):
    """A storage backend (local disk, S3, ...) failed to read or write."""


class CacheError(StorageError):
    """The node-local cache of remote byte ranges cannot use its directory."""


class MissingDependencyError(OndaBatchesError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class BatcherError(OndaBatchesError, RuntimeError):
    """The batching service failed or was used in a state that does not allow it."""


class BatchTimeoutError(BatcherError, TimeoutError):
    """A batch that was not ready within the timeout given to ``take`` (the batch is
    still being made: a later ``take`` may get it)."""


class SharedMemoryError(BatcherError, OSError):
    """Shared memory (``/dev/shm``) has no room left for a batch: the message says how
    much was needed and how much is free, and how to give it more."""


class WorkerError(BatcherError):
    """A batch failed on a worker after its retries.

    Attributes
    ----------
    state:
        The batch state whose batch failed.
    batch:
        The batch specification (list of items) that failed, when known.
    worker_traceback:
        The formatted traceback from the worker.
    """

    def __init__(self, message: str, *, state=None, batch=None, worker_traceback: str = ""):
        super().__init__(message)
        self.state = state
        self.batch = batch
        self.worker_traceback = worker_traceback

    def __str__(self) -> str:
        base = super().__str__()
        if self.worker_traceback:
            return f"{base}\n\nWorker traceback:\n{self.worker_traceback}"
        return base


def require(module: str, extra: str):
    """Import an optional dependency or raise
    [`MissingDependencyError`][ondabatches._errors.MissingDependencyError] with a
    hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'ondabatches[{extra}]'"
        ) from exc
