"""The interface of materializers, and the built-in one.

A materializer turns a batch specification into arrays: ``materializer(batch, dtype)
-> (x, y)``. What else it can do is declared on the class (never probed from its
signature): [`allocates`][ondabatches.abc.Materializer.allocates] (it writes ``x`` into
an array that ``allocate=`` gives, so that the process backend's workers decode straight
into shared memory) and [`runs_transforms`][ondabatches.abc.Materializer.runs_transforms]
(it runs the transform pipeline that a
[`TransformedBatches`][ondabatches.transforms.TransformedBatches] batch carries).
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._errors import ArgumentTypeError

__all__ = ["BatchMaterializer", "FunctionMaterializer", "Materializer"]


class Materializer(ABC):
    """The interface of materializers: a batch specification -> ``(x, y)`` arrays.

    Subclass it and implement ``__call__(batch, dtype, **options)``; it must be
    picklable (it travels to worker processes and Ray actors) and a pure function of
    the batch. ``x`` is an array or a dict of arrays (one per modality), ``y`` an array
    or a dict of them. Declare what it can do with the class attributes below. Check
    it with [`ondabatches.testing.check_materializer`][ondabatches.testing.check_materializer].

    Examples
    --------
    >>> class Sums(Materializer):
    ...     def __call__(self, batch, dtype=np.float32, **options):
    ...         return np.asarray(batch, dtype=dtype), np.zeros((len(batch), 1, 1))
    >>> Sums()([1.0, 2.0], np.float32)[0]
    array([1., 2.], dtype=float32)
    """

    #: Whether it takes ``allocate=`` (``allocate(shape, dtype)`` -> the uninitialized
    #: array ``x`` is written into); the library passes it only when this is True.
    allocates: ClassVar[bool] = False
    #: Whether it runs the transforms a batch of
    #: [`TransformedBatches`][ondabatches.transforms.TransformedBatches] carries (only
    #: such a materializer may serve a Batcher or dataset given ``transforms=``).
    runs_transforms: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, batch: Any, dtype: Any = np.float32, **options: Any) -> tuple[Any, Any]:
        """``(x, y)`` of ``batch``, ``x`` in ``dtype``; ``options`` holds ``allocate`` when
        [`allocates`][ondabatches.abc.Materializer.allocates]."""


class BatchMaterializer(Materializer):
    """The built-in materializer:
    [`materialize_batch`][ondabatches.materialize.materialize_batch] as a
    [`Materializer`][ondabatches.abc.Materializer] (the Batcher's default).

    Parameters
    ----------
    exact:
        As for ``materialize_batch`` (``False``: float32 computed in float32).

    Examples
    --------
    >>> BatchMaterializer(exact=False)
    BatchMaterializer(exact=False)
    """

    allocates = True
    runs_transforms = True

    __slots__ = ("exact",)

    def __init__(self, exact: bool = True):
        if not isinstance(exact, bool):
            raise ArgumentTypeError(f"BatchMaterializer: exact must be a bool, got {exact!r}")
        self.exact = exact

    def __call__(
        self,
        batch: Any,
        dtype: Any = np.float32,
        *,
        allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None,
        transforms: Any = None,
        key: tuple[int, int] | None = None,
    ) -> tuple[Any, Any]:
        # Imported here: materialization pulls in storage and decoding, which a Batcher
        # given its own materializer never needs.
        from ._materialize import materialize_batch

        return materialize_batch(
            batch, dtype, allocate=allocate, exact=self.exact, transforms=transforms, key=key
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.exact == self.exact  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.exact))

    def __reduce__(self):
        return (type(self), (self.exact,))

    def __repr__(self) -> str:
        return f"BatchMaterializer(exact={self.exact})"


class FunctionMaterializer(Materializer):
    """A plain function ``fn(batch, dtype, **options) -> (x, y)`` as a
    [`Materializer`][ondabatches.abc.Materializer], with what it can do declared here.

    Parameters
    ----------
    fn:
        The function (picklable, to reach worker processes: defined at module level).
    allocates, runs_transforms:
        As for [`Materializer`][ondabatches.abc.Materializer]: ``fn`` then takes
        ``allocate=`` / runs the transforms its batches carry.

    Examples
    --------
    >>> m = FunctionMaterializer(lambda batch, dtype: (np.zeros(len(batch), dtype), None))
    >>> m([1, 2], np.float32)[0]
    array([0., 0.], dtype=float32)
    """

    __slots__ = ("allocates", "fn", "runs_transforms")

    def __init__(
        self, fn: Callable[..., Any], *, allocates: bool = False, runs_transforms: bool = False
    ):
        if not callable(fn):
            raise ArgumentTypeError(f"FunctionMaterializer takes a callable, got {fn!r}")
        self.fn = fn
        self.allocates = bool(allocates)  # type: ignore[misc]
        self.runs_transforms = bool(runs_transforms)  # type: ignore[misc]

    def __call__(self, batch: Any, dtype: Any = np.float32, **options: Any) -> tuple[Any, Any]:
        return self.fn(batch, dtype, **options)

    def __reduce__(self):
        return (_function_materializer, (self.fn, self.allocates, self.runs_transforms))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionMaterializer) and self.__reduce__() == other.__reduce__()

    def __hash__(self) -> int:
        return hash((self.fn, self.allocates, self.runs_transforms))

    def __repr__(self) -> str:
        return (
            f"FunctionMaterializer({self.fn!r}, allocates={self.allocates}, "
            f"runs_transforms={self.runs_transforms})"
        )


def _function_materializer(fn: Any, allocates: bool, runs_transforms: bool) -> Any:
    return FunctionMaterializer(fn, allocates=allocates, runs_transforms=runs_transforms)


def as_materializer(materialize: Any, where: str = "materialize") -> Materializer:
    """``materialize`` as a [`Materializer`][ondabatches.abc.Materializer]: itself, the
    built-in one for None, or (deprecated) a plain callable seen through the interface
    with nothing declared (a ``functools.partial`` of ``materialize_batch`` becomes the
    ``BatchMaterializer`` of its options)."""
    if materialize is None:
        return BatchMaterializer()
    if isinstance(materialize, Materializer):
        return materialize
    if not callable(materialize):
        raise ArgumentTypeError(
            f"{where}: materialize must be an ondabatches.abc.Materializer, got "
            f"{type(materialize).__name__}"
        )
    from ._materialize import materialize_batch

    options = _batch_options(materialize, materialize_batch)
    if options is not None:
        found: Materializer = BatchMaterializer(**options)
        hint = f"pass {found!r}"
    else:
        found = FunctionMaterializer(materialize)
        hint = "wrap it in FunctionMaterializer or subclass ondabatches.abc.Materializer"
    warnings.warn(
        f"{where}: {materialize!r} is not an ondabatches.abc.Materializer; it is called as "
        f"fn(batch, dtype) with nothing declared: {hint}. Plain callables will be refused "
        "in a later release",
        DeprecationWarning,
        stacklevel=3,
    )
    return found


def _batch_options(fn: Any, materialize_batch: Any) -> dict[str, Any] | None:
    """The options of ``materialize_batch`` or a ``functools.partial`` of it taking only
    ``exact`` (None for any other callable)."""
    if fn is materialize_batch:
        return {}
    if isinstance(fn, functools.partial) and fn.func is materialize_batch and not fn.args:
        if set(fn.keywords) <= {"exact"}:
            return dict(fn.keywords)
    return None
