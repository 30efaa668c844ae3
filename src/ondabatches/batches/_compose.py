"""Composed schemes: a sampler, a layout and sharding options make a batch scheme.

[`RandomBatches`][ondabatches.batches.RandomBatches] and
[`SequentialBatches`][ondabatches.batches.SequentialBatches] are compositions of the
built-in samplers and layouts; [`compose`][ondabatches.batches.compose] makes any other,
a user's own sampler included.

The configuration a state is bound to is, in this order: ``scheme`` (the sampler's
[`name`][ondabatches.abc.Sampler.name]), the sampler's
[`config`][ondabatches.abc.Sampler.config], ``n_rows``, the layout's digests of its data
(with the sampler's [`weights`][ondabatches.abc.Sampler.weights]) and the layout's own
entries (a montage's modalities).
"""

from __future__ import annotations

from typing import Any

from .._errors import ArgumentTypeError, BatchSpecError
from ._layout import Layout, Windows
from ._sampler import Sampler
from ._shard import InterleavedBatches, Sharding
from ._state import BatchScheme, BatchState, _frozen_config

__all__ = ["ComposedBatches", "compose"]


class ComposedBatches(BatchScheme):
    """The scheme of ``sampler`` over ``layout``: batch ``state.index`` of
    ``state.seed`` holds the items of the sampler's windows.

    ``sharding``, if given, is a round-robin [`Sharding`][ondabatches.batches.Sharding]
    that the sampler applies itself (it must declare
    [`round_robin`][ondabatches.abc.Sampler.round_robin]); the scheme is then that
    rank's share. [`compose`][ondabatches.batches.compose] also interleaves.

    Raises
    ------
    ArgumentTypeError
        If ``sampler``, ``layout`` or ``sharding`` is not of its interface.
    BatchSpecError
        If the sampler cannot give a round-robin share, or does not say how many
        batches it gives where it declares itself finite.
    """

    steps_without_drawing = True

    def __init__(self, sampler: Sampler, layout: Layout, sharding: Sharding | None = None):
        _check_parts(sampler, layout, sharding)
        sharding = Sharding() if sharding is None else sharding
        if sharding.world_size > 1 and sharding.mode != "round-robin":
            raise BatchSpecError(
                f"ComposedBatches gives round-robin shares only; interleave with "
                f"compose(..., sharding={sharding!r})"
            )
        if sharding.world_size > 1 and not sampler.round_robin:
            raise BatchSpecError(
                f"{type(sampler).__name__} does not give round-robin shares of its windows "
                f"(its round_robin is False): shard it with Sharding(mode='interleave')"
            )
        self.layout = layout
        self.sampler = bound = sampler.bind(layout, sharding)
        self.world_size, self.rank = sharding.world_size, sharding.rank
        n = bound.n_batches() if sampler.finite else None
        if sampler.finite and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise BatchSpecError(
                f"{type(sampler).__name__} declares itself finite but n_batches() gave {n!r}"
            )
        self._n_batches = n
        config = {
            "scheme": bound.name,
            **bound.config(),
            "n_rows": layout.n_rows,
            **layout.fingerprint(*bound.weights()),
            **layout.config(),
        }
        if sharding.world_size > 1:  # what changes which windows a rank gets
            config.setdefault("world_size", sharding.world_size)
            config.setdefault("drop_last", sharding.drop_last)
        self._config = config
        self._frozen_config = _frozen_config(config)
        self._unchecked = bound._windows_in_layout()

    @property
    def config(self) -> dict[str, Any]:
        """The configuration fingerprint that states are bound to (rank excluded)."""
        return dict(self._config)

    def initial_state(self, seed: int = 0) -> BatchState:
        """The state of the first batch of the stream seeded by ``seed``."""
        return BatchState(seed=seed).bind(self._frozen_config)  # shares the scheme's pairs

    def remaining(self, state: Any) -> int | None:
        """The batches from ``state`` on (None: endless)."""
        if self._n_batches is None or not isinstance(state, BatchState):
            return None
        return max(0, self._n_batches - state.index)

    def next_state(self, state: BatchState) -> BatchState | None:
        """The state after ``state`` (None past the end), without drawing its batch.

        Raises
        ------
        StateError
            If ``state`` is bound to another configuration.
        """
        state = state.bind(self._frozen_config)
        if self._n_batches is not None and state.index >= self._n_batches:
            return None
        return state.advance()

    def iterate_batch(self, state: BatchState) -> tuple[list[Any], BatchState] | None:
        """Batch ``state.index`` of ``state.seed``'s stream and the next state (None past
        the end of a finite sampler).

        Raises
        ------
        StateError
            If ``state`` is bound to another configuration.
        BatchSpecError
            If the sampler gives a window that is not in the layout.
        """
        state = state.bind(self._frozen_config)
        if self._n_batches is not None and state.index >= self._n_batches:
            return None
        return self.batch(state.seed, state.index), state.advance()

    def batch(self, seed: int, index: int) -> list[Any]:
        """The items of batch ``index`` of ``seed``'s stream."""
        windows = self.sampler.windows(seed, index)
        if not isinstance(windows, Windows):
            raise BatchSpecError(
                f"{type(self.sampler).__name__}.windows({seed}, {index}) gave "
                f"{type(windows).__name__}, not Windows"
            )
        if not self._unchecked:
            self.layout.check(windows, f"{type(self.sampler).__name__} batch {index}")
        return self.layout.items(windows)

    def __repr__(self) -> str:
        shard = f", rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return f"ComposedBatches({type(self.sampler).__name__} over {self.layout!r}{shard})"


class _SizedComposedBatches(ComposedBatches):
    """A composed scheme of a finite sampler: ``len`` is its number of batches."""

    def __len__(self) -> int:
        return self._n_batches  # type: ignore[return-value]


def _check_parts(sampler: Any, layout: Any, sharding: Any) -> None:
    for value, cls, what in (
        (sampler, Sampler, "sampler"),
        (layout, Layout, "layout"),
    ):
        if not isinstance(value, cls):
            raise ArgumentTypeError(
                f"the {what} must subclass ondabatches.abc.{cls.__name__}, "
                f"got {type(value).__name__}"
            )
    if sharding is not None and not isinstance(sharding, Sharding):
        raise ArgumentTypeError(
            f"sharding must be an ondabatches.batches.Sharding or None, got "
            f"{type(sharding).__name__}"
        )


def compose(sampler: Sampler, layout: Layout, sharding: Sharding | None = None) -> BatchScheme:
    """The batch scheme of ``sampler`` over ``layout``, split as ``sharding`` says.

    Parameters
    ----------
    sampler:
        Which windows each batch holds: a built-in
        ([`RandomSampler`][ondabatches.batches.RandomSampler],
        [`SequentialSampler`][ondabatches.batches.SequentialSampler],
        [`EventSampler`][ondabatches.batches.EventSampler]) or your own
        [`Sampler`][ondabatches.abc.Sampler].
    layout:
        What the windows are of: [`SignalLayout`][ondabatches.batches.SignalLayout] or
        [`MontageLayout`][ondabatches.batches.MontageLayout].
    sharding:
        This rank's share (None: one rank). Interleaved, the result is an
        [`InterleavedBatches`][ondabatches.batches.InterleavedBatches] of the composed
        scheme; round-robin, the sampler gives the share itself.

    Examples
    --------
    >>> from ondabatches.batches import RandomSampler, SignalLayout, Sharding
    >>> from ondabatches.synthetic import labeled_table
    >>> layout = SignalLayout(labeled_table(2, duration=300 * 10**9), 60 * 10**9)
    >>> scheme = compose(RandomSampler(batch_size=3), layout)
    >>> batch, state = scheme.iterate_batch(scheme.initial_state(seed=1))
    >>> batch[0].window, batch[0].labels.tolist()
    (TimeSpan(150 s, 210 s), [5, 6])
    >>> compose(RandomSampler(batch_size=3), layout, Sharding(world_size=2, rank=1))
    InterleavedBatches(ComposedBatches(RandomSampler over SignalLayout(...)), rank 1 of 2)
    """
    _check_parts(sampler, layout, sharding)
    sharding = Sharding() if sharding is None else sharding
    cls = _SizedComposedBatches if sampler.finite else ComposedBatches
    if sharding.mode == "round-robin":
        return cls(sampler, layout, sharding)
    scheme = cls(sampler, layout)
    if sharding.world_size == 1:
        return scheme
    return InterleavedBatches(scheme, sharding.world_size, sharding.rank)
