"""RayBatcher: a Batcher whose manager runs in a Ray actor, usable from anywhere.

It sits above both the Batcher (`._batcher`) and the Ray worker pool
(`._ray`), which the Batcher uses for ``backend="ray"``: keeping it apart keeps
the imports one way.
"""

from __future__ import annotations

from typing import Any

from .._errors import require
from ..onda._formats import install_formats, user_formats
from ..onda._settings import Settings, current_settings, use_settings
from ._batcher import Batcher

__all__ = ["RayBatcher"]


class _BatcherActor:
    """The body of the actor behind [`RayBatcher`][ondabatches.serve.RayBatcher]."""

    def __init__(
        self,
        batches: Any,
        kwargs: dict[str, Any],
        settings: Settings | None = None,
        formats: dict[str, Any] | None = None,
    ):
        use_settings(settings)  # the caller's, which the Batcher's workers then get
        install_formats(formats)  # the caller's plug-in formats, for this actor and its workers
        self._batcher = Batcher(batches, **kwargs)

    def start(self, state: Any) -> None:
        self._batcher.start(state)

    def take(self, state: Any, timeout: float | None):
        return self._batcher.take(state, timeout=timeout)

    def stop(self) -> None:
        self._batcher.stop()

    def status(self):
        return self._batcher.status

    def stats(self) -> dict[str, Any]:
        return self._batcher.stats()

    def resize(self, workers: int) -> None:
        self._batcher.resize(workers)


class RayBatcher:
    """A [`Batcher`][ondabatches.serve.Batcher] running in a Ray actor, usable from anywhere.

    The object is a light, picklable handle: pass it to Ray tasks or actors (a
    training process, say) and call [`take`][ondabatches.serve.RayBatcher.take] there.
    The Batcher's manager runs in the actor; with the default ``backend="ray"`` its
    batches run on Ray actors across the cluster. The actor gets this process's
    [`Settings`][ondabatches.onda.Settings] (storage options, allow-list, cache...),
    and passes them on to the Batcher's workers.

    Parameters
    ----------
    batches:
        A batch scheme (``iterate_batch(state)``); it is shipped to the actor.
    **kwargs:
        Passed to [`Batcher`][ondabatches.serve.Batcher] (``backend``, ``workers``, ``buffer``,
        ``retries``, ``materialize``, ``dtype``...).

    Examples
    --------
    With ``batches`` and ``state`` as in the [`Batcher`][ondabatches.serve.Batcher] example and
    Ray started (``ray.init()``; the docstring tests skip these lines, which need a
    Ray instance):

    >>> batcher = RayBatcher(batches, buffer=4)  # doctest: +SKIP
    >>> batcher.start(state)  # doctest: +SKIP
    >>> (x, y), state = batcher.take(state)  # doctest: +SKIP
    >>> x.shape, state.index, batcher.status  # doctest: +SKIP
    ((3, 1, 7680), 1, 'running')
    >>> batcher.shutdown()  # doctest: +SKIP
    """

    def __init__(self, batches: Any, **kwargs: Any):
        ray = require("ray", "ray")
        kwargs.setdefault("backend", "ray")
        # The manager is light: it must not hold a CPU that a batch task could use.
        actor_class = ray.remote(num_cpus=0)(_BatcherActor)
        self._actor = actor_class.remote(batches, kwargs, current_settings(), user_formats())

    def _call(self, method: str, *args: Any):
        ray = require("ray", "ray")
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            # Give callers our own exception (WorkerError, BatcherError...), not Ray's wrapper.
            raise exc.cause from None

    def start(self, state: Any) -> None:
        """Start (or restart) the actor's Batcher from ``state``."""
        self._call("start", state)

    def take(self, state: Any, *, timeout: float | None = None):
        """``((x, y), next_state)`` for ``state``, or ``None`` at the end: see ``Batcher.take``."""
        return self._call("take", state, timeout)

    def stop(self) -> None:
        """Stop the actor's Batcher; the actor stays, so
        [`start`][ondabatches.serve.RayBatcher.start] works again."""
        self._call("stop")

    @property
    def status(self):
        """The actor's Batcher's status: see ``Batcher.status``."""
        return self._call("status")

    def stats(self) -> dict[str, Any]:
        """The actor's Batcher's figures (worker count and its changes among them): see
        ``Batcher.stats``."""
        return self._call("stats")

    def resize(self, workers: int) -> None:
        """Change the number of worker actors: see ``Batcher.resize``."""
        self._call("resize", workers)

    def shutdown(self) -> None:
        """Stop the Batcher and end the actor."""
        ray = require("ray", "ray")
        self.stop()
        ray.kill(self._actor)

    def __enter__(self) -> RayBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
