"""The sampler interface: which windows of a layout each batch holds.

A composed scheme ([`compose`][ondabatches.batches.compose]) is a sampler over a
[`Layout`][ondabatches.abc.Layout], split among ranks by a
[`Sharding`][ondabatches.batches.Sharding]. The sampler says which windows batch
``index`` of the stream seeded by ``seed`` holds, as row and first epoch per item; the
layout turns them into items; the scheme binds states to the configuration of all three.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .._errors import BatchSpecError
from ._layout import Layout, Windows
from ._shard import Sharding

__all__: list[str] = []


class Sampler(ABC):
    """The interface of samplers: batch ``index`` of seed ``seed`` -> its windows.

    Subclass it and implement [`windows`][ondabatches.abc.Sampler.windows]; it reads the
    rows of [`layout`][ondabatches.abc.Sampler.layout] (their ``n_labels``,
    ``window_epochs``, ``channels``...: see [`Layout`][ondabatches.abc.Layout]). Declare
    a finite sampler with [`finite`][ondabatches.abc.Sampler.finite] and
    [`n_batches`][ondabatches.abc.Sampler.n_batches]; put what its batches depend on in
    [`config`][ondabatches.abc.Sampler.config] (and sampling weights in
    [`weights`][ondabatches.abc.Sampler.weights]), so that a checkpoint refuses a
    sampler configured otherwise. ``windows`` must be a pure function of
    ``(seed, index)``: batches are drawn in any process, in any order.

    [`compose`][ondabatches.batches.compose] calls
    [`bind`][ondabatches.abc.Sampler.bind] once with the layout (override it, calling
    ``super().bind``, to check parameters against the rows and precompute what drawing
    needs).

    Examples
    --------
    >>> import numpy as np
    >>> from ondabatches.batches import SignalLayout, compose
    >>> from ondabatches.synthetic import labeled_table
    >>> class LastWindows(Sampler):
    ...     '''Every batch: the last window of every row (endless).'''
    ...     def windows(self, seed, index):
    ...         rows = np.arange(self.layout.n_rows)
    ...         return Windows(rows, self.layout.n_labels - self.layout.window_epochs)
    >>> layout = SignalLayout(labeled_table(2, duration=300 * 10**9), 60 * 10**9)
    >>> scheme = compose(LastWindows(), layout)
    >>> batch, state = scheme.iterate_batch(scheme.initial_state())
    >>> [item.window for item in batch]
    [TimeSpan(270 s, 330 s), TimeSpan(270 s, 330 s)]
    """

    #: Whether the batches end: [`n_batches`][ondabatches.abc.Sampler.n_batches] then
    #: says how many (the composed scheme declares ``remaining`` and ``len``).
    finite: ClassVar[bool] = False
    #: Whether [`bind`][ondabatches.abc.Sampler.bind] takes a round-robin
    #: [`Sharding`][ondabatches.batches.Sharding] of several ranks and then gives only
    #: this rank's share of the windows (with ``padding`` where shares are evened out).
    #: Other samplers are sharded by interleaving their batches.
    round_robin: ClassVar[bool] = False
    #: The layout it draws from (set by ``bind``).
    layout: Any = None
    #: The share it gives (set by ``bind``): one rank, unless round-robin.
    sharding: Sharding = Sharding()

    @property
    def name(self) -> str:
        """The ``scheme`` entry of the configuration (the class name by default)."""
        return type(self).__name__

    def bind(self, layout: Layout, sharding: Sharding) -> Sampler:
        """This sampler over ``layout``'s rows, giving ``sharding``'s share: by default a
        shallow copy with ``layout`` and ``sharding`` set (the sampler given to
        ``compose`` is left as it is, and can be composed again)."""
        bound = copy.copy(self)
        bound.layout = layout
        bound.sharding = sharding
        return bound

    @abstractmethod
    def windows(self, seed: int, index: int) -> Windows:
        """The windows of batch ``index`` of the stream seeded by ``seed``
        (``index < n_batches()`` for a finite sampler)."""

    def n_batches(self) -> int | None:
        """How many batches a finite sampler gives (None: endless)."""
        return None

    def _windows_in_layout(self) -> bool:
        """Whether every window it gives is in its layout by construction, so that the
        scheme need not check them (the built-in random draws); False by default."""
        return False

    def config(self) -> dict[str, Any]:
        """What its batches depend on, as JSON (the scheme's configuration holds it)."""
        return {}

    def weights(self) -> tuple[np.ndarray | None, ...]:
        """Sampling weights, mixed into the configuration's ``digest.weights``."""
        return ()


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int, refused unless an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BatchSpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
