"""What a worker runs for one batch, and how its result comes back.

`run_task` runs ``materialize`` on a worker (under the manager's settings:
`run_with_settings`), putting the arrays in shared memory when the pool gave a
segment; `unpack_result` turns what came back into ``(x, y)`` in the manager, or raises
`TaskError` (the failure of ``materialize`` itself, with the worker's traceback).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from .. import _errors
from .._errors import ArgumentTypeError
from ..materialize._materializer import Materializer
from ..onda._settings import Settings, adopt_settings
from ._shm import SegmentPool, SharedArrays, WorkerSegments
from ._tree import flatten, is_tree, unflatten

__all__: list[str] = []


#: ``materialize(batch, dtype) -> (x, y)``: ``x`` an array or a tree of arrays (a dict
#: per modality), ``y`` an array.
Materialize = Callable[[Any, Any], tuple[Any, Any]]


class TaskError(Exception):
    """``materialize`` raised on a worker; the argument is the formatted traceback.

    ``permanent`` marks errors that a retry cannot mend (a missing or malformed file,
    batch items that do not stack): the Batcher reports them at once.
    """

    def __init__(
        self,
        worker_traceback: str,
        permanent: bool = False,
        error_class: str | None = None,
        message: str = "",
    ):
        super().__init__(worker_traceback)
        self.permanent = permanent
        #: The name of the public ondabatches error the worker raised (None for others),
        #: and its message: the manager raises that class again (see public_error_name).
        self.error_class = error_class
        self.message = message

    def __reduce__(self):
        return (
            type(self),
            (self.worker_traceback, self.permanent, self.error_class, self.message),
        )

    @property
    def worker_traceback(self) -> str:
        return str(self.args[0])


# Our errors that say the data or an argument is wrong, not that reading failed this time.
_PERMANENT = (
    _errors.ArgumentError,
    _errors.ArgumentTypeError,
    _errors.BatchShapeError,
    _errors.LabelError,
    _errors.SampleFileError,
    _errors.SampleFileNotFoundError,
    _errors.SchemaError,
    _errors.SizeLimitError,
    _errors.SpanError,
    _errors.UnknownFormatError,
    _errors.UnknownNameError,
    _errors.OutOfRangeError,
    _errors.UntrustedPathError,
)


class WorkerLostError(Exception):
    """A worker process died while it held a batch."""


# Each thread's mappings of the manager's segments (created on its first task there).
_local = threading.local()


def _worker_segments() -> WorkerSegments:
    """This thread's mappings of the manager's segments (a worker with ``worker_tasks``
    above 1 runs tasks in several threads, each writing its own segment)."""
    segments = getattr(_local, "segments", None)
    if segments is None:
        segments = _local.segments = WorkerSegments()
    return segments


def takes_allocate(materialize: Materialize) -> bool:
    """Whether ``materialize`` declares that it takes ``allocate=`` (a
    [`Materializer`][ondabatches.abc.Materializer] whose ``allocates`` is True; pools
    also run plain functions, which never get it)."""
    return isinstance(materialize, Materializer) and materialize.allocates


def run_task(
    materialize: Materialize, batch: Any, dtype: Any, segment: tuple[str, int] | None = None
):
    """Materialize one batch on a worker, reporting failures as values.

    Returns ``("ok", x, y)``, ``("shm", SharedArrays)`` when ``segment`` (a name and
    the size the manager knows of it) names a shared memory segment to write into, or
    ``("error", traceback)``: exceptions travel as text because a user's exception
    type may not unpickle in the manager. A materializer that declares ``allocates``
    decodes straight into the segment (calling it once per array it makes).
    ``x`` and ``y`` are arrays or trees of them (dicts, tuples, lists: see ``_tree``),
    which travel as one segment of arrays and their structure.
    """
    try:
        if segment is None:
            result = materialize(batch, dtype)
        else:
            segments = _worker_segments()
            segments.begin(*segment)
            if takes_allocate(materialize):
                result = materialize(batch, dtype, allocate=segments.allocate)
            else:
                result = materialize(batch, dtype)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ArgumentTypeError(
                f"materialize must return a tuple (x, y), got {type(result).__name__}"
            )
        if is_tree(result[0]) or is_tree(result[1]):  # e.g. a dict of arrays per modality
            arrays, tree = flatten(result)
        else:
            arrays, tree = (np.asarray(result[0]), np.asarray(result[1])), None
        if segment is None:
            return ("ok", *(arrays if tree is None else unflatten(tree, arrays)))
        return ("shm", _worker_segments().finish(arrays, tree))
    except Exception as exc:
        return (
            "error",
            traceback.format_exc(),
            isinstance(exc, _PERMANENT),
            public_error_name(exc),
            str(exc),
        )


def public_error_name(exc: BaseException) -> str | None:
    """The name of the nearest of `ondabatches._errors`' public classes that ``exc``
    is an instance of (which the manager can raise again by name): its own class, or for
    a subclass made elsewhere (a plug-in's, a conformance check's) the public class it
    derives from; None when it derives from none.

    Only names travel: a user's exception class may not unpickle in the manager."""
    for cls in type(exc).__mro__:
        if cls.__module__ == _errors.__name__ and cls.__name__ in _errors.__all__:
            return cls.__name__
    return None


def unpack_result(result, segments: SegmentPool | None = None) -> tuple[Any, Any]:
    """Turn what `run_task` returned into ``(x, y)`` or raise `TaskError`.

    Arrays from shared memory are views of the segment's mapping, rebuilt into the
    materializer's structure when it returned trees.
    """
    kind = result[0]
    if kind == "ok":
        return result[1], result[2]
    if kind == "shm":
        assert segments is not None, "shared-memory results need the pool's segments"
        shared: SharedArrays = result[1]
        arrays = segments.receive(shared)
        if shared.tree is None:
            return arrays
        return unflatten(shared.tree, arrays)
    raise TaskError(*result[1:])


def chain(source: Future, transform: Callable[[Any], Any]) -> Future:
    """A future resolved with ``transform(source.result())`` or with ``source``'s exception."""
    target: Future = Future()
    target.set_running_or_notify_cancel()

    def done(fut: Future) -> None:
        if fut.cancelled():
            target.set_exception(WorkerLostError("the task was cancelled by its executor"))
            return
        exc = fut.exception()
        if exc is not None:
            target.set_exception(exc)
            return
        try:
            target.set_result(transform(fut.result()))
        except BaseException as err:  # a transform failure must still resolve the future
            target.set_exception(err)

    source.add_done_callback(done)
    return target


def run_with_settings(
    settings: tuple[Settings, int], materialize: Materialize, batch: Any, dtype: Any
):
    """`run_task` on an executor's worker with ``settings``, a pool's settings and the
    id of its process: installed first where the worker is another process (one of
    loky's or Dask's) that has other settings; threads share their process's."""
    adopt_settings(*settings)
    return run_task(materialize, batch, dtype)
