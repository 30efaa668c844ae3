"""How a failed batch reaches the trainer: retried or not, and as which error.

A batch that failed on every attempt (or at once, for a failure no retry can mend)
surfaces in ``take`` as a [`WorkerError`][ondabatches._errors.WorkerError] combined with
the public class the worker raised, with the worker's traceback attached.
"""

from __future__ import annotations

import functools
import traceback

from .. import _errors
from .._errors import WorkerError
from ._tasks import _PERMANENT, TaskError, public_error_name

__all__: list[str] = []


def _worker_error(exc: BaseException) -> type[WorkerError]:
    """The class of the error a failed batch raises in the trainer:
    [`WorkerError`][ondabatches._errors.WorkerError], combined with the public class the
    worker raised when it raised one of ours, so that ``except UntrustedPathError``
    catches a refusal made on a worker as it would one made inline (and ``except
    WorkerError`` still catches every failed batch)."""
    name = exc.error_class if isinstance(exc, TaskError) else public_error_name(exc)
    if name is None or name == WorkerError.__name__:
        return WorkerError
    return _combined_worker_error(name)


@functools.cache
def _combined_worker_error(name: str) -> type[WorkerError]:
    public = getattr(_errors, name)
    if issubclass(public, WorkerError):
        return public
    if issubclass(WorkerError, public):  # OndaBatchesError, BatcherError: nothing to add
        return WorkerError
    return type(
        name,
        (WorkerError, public),
        {
            "__module__": __name__,
            "__doc__": f"A {name} raised on a worker, re-raised as a WorkerError too.",
            # Pickled by name (e.g. from a Ray actor's Batcher to its caller).
            "__reduce__": lambda self: (_rebuild_worker_error, (name, self.args, self.__dict__)),
        },
    )


def _rebuild_worker_error(name: str, args: tuple, attributes: dict) -> WorkerError:
    error = _combined_worker_error(name)(*args)
    error.__dict__.update(attributes)
    return error


def _permanent(exc: BaseException) -> bool:
    """A failure no retry can mend (the data is wrong, a size over its ceiling): report
    it at once."""
    return (isinstance(exc, TaskError) and exc.permanent) or isinstance(exc, _PERMANENT)


def _summary(exc: BaseException) -> str:
    if isinstance(exc, TaskError):
        lines = exc.worker_traceback.strip().splitlines()
        return lines[-1] if lines else "materialize failed"
    return f"{type(exc).__name__}: {exc}"


def _traceback_of(exc: BaseException) -> str:
    if isinstance(exc, TaskError):
        return exc.worker_traceback
    return "".join(traceback.format_exception(exc))
