"""A batch scheme with a transform pipeline: the pipeline in the state, the key in the batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .._errors import StateError
from ..batches._item import BatchItem
from ..batches._multi_item import MultiBatchItem
from ..batches._state import BatchScheme, BatchState, _frozen_config, as_batch_scheme
from ..onda._timespan import n_samples
from ._base import Pipeline

__all__ = ["KeyedBatch", "TransformedBatches", "check_items"]

#: The key of the pipeline in a state's config.
CONFIG_KEY = "transforms"
#: The key, in the config of a state whose pipeline draws at random, of how its random
#: transforms draw (`DRAWS_VERSION`): a checkpoint saved by a version of
#: ondabatches that drew otherwise is refused, rather than resumed with other draws.
DRAWS_KEY = "transform_draws"
#: 2: coins hashed from the key (``coins_for``), generators made when more is drawn.
#: 3: coins and the few numbers drawn after them (a scale, dropped channels) hashed
#: from the key with a counter (``keyed_uniforms``), every item of a batch at once.
DRAWS_VERSION = 3


class KeyedBatch(Sequence):
    """A batch's items with the ``(seed, index)`` its random transforms draw from and
    the pipeline to apply (what
    [`TransformedBatches`][ondabatches.transforms.TransformedBatches] yields)."""

    __slots__ = ("items", "key", "pipeline")

    def __init__(self, items: Sequence[Any], key: tuple[int, int], pipeline: Pipeline):
        self.items = list(items)
        self.key = (int(key[0]), int(key[1]))
        self.pipeline = pipeline

    def __reduce__(self):
        return (_keyed_batch, (self.items, self.key, self.pipeline.config))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyedBatch):
            return (self.items, self.key, self.pipeline) == (other.items, other.key, other.pipeline)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"KeyedBatch({len(self.items)} items, key={self.key}, {self.pipeline!r})"


def check_items(pipeline: Pipeline, items: Sequence[Any]) -> None:
    """[`Pipeline.check`][ondabatches.transforms.Pipeline.check] on each distinct signal
    and window length of ``items``."""
    seen = set()
    for item in items:
        if isinstance(item, MultiBatchItem):
            key = (item.names, item.concatenate)
            if key not in seen:
                seen.add(key)
                where = f"the montage of recording {item.recording} ({list(item.names)})"
                pipeline.check_modalities(item.names, item.concatenate, where)
            for name, part, target in zip(
                item.names, item.parts, item.rates or (None,) * len(item.names), strict=True
            ):
                if isinstance(part, BatchItem):
                    _check_part(pipeline, part, seen, name, target)
            continue
        if isinstance(item, BatchItem):
            _check_part(pipeline, item, seen)


def _check_part(
    pipeline: Pipeline,
    item: BatchItem,
    seen: set,
    modality: str | None = None,
    target: float | None = None,
) -> None:
    """[`Pipeline.check`][ondabatches.transforms.Pipeline.check] of one signal's window
    (a modality's at ``target``, the rate it is resampled to, where it is)."""
    rate = item.info.sample_rate
    sizes = (rate, item.window.duration, item.signal_span.duration, modality, target)
    if sizes in seen:
        return
    seen.add(sizes)
    where = f"recording {item.recording} ({item.file_path})"
    if modality is not None:
        where = f"modality {modality!r} of {where}"
    at = rate if target is None else target
    # The whole signal at the target rate has ceil(n * at / rate) samples; the bound is
    # what the filters' checks need.
    total = -(-n_samples(item.signal_span.duration, rate) * at // rate)
    pipeline.check(
        at, n_samples(item.window.duration, at), int(total), where, modality,
    )  # fmt: skip


def _keyed_batch(items: list[Any], key: tuple[int, int], config: list[dict]) -> KeyedBatch:
    return KeyedBatch(items, key, Pipeline(config))


class TransformedBatches(BatchScheme):
    """A batch scheme whose batches carry a transform pipeline.

    Its states are the scheme's, with the pipeline's configuration added under
    ``"transforms"``: a state saved with one pipeline is refused by another with a
    [`StateError`][ondabatches._errors.StateError] naming both. Its batches are
    [`KeyedBatch`][ondabatches.transforms.KeyedBatch] lists of the scheme's items, which
    [`materialize_batch`][ondabatches.materialize.materialize_batch] transforms (random
    transforms draw from the state's seed and index). What the scheme declares
    (``next_state``, ``remaining``, ``world_size`` and ``rank``, its ``len``) is the
    wrapper's too.

    Examples
    --------
    >>> from ondabatches import RandomBatches, label_signals, materialize_batch
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> from ondabatches.transforms import Bandpass, SignFlip
    >>> ds = make_dataset("data", n_recordings=2, duration=300 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> scheme = RandomBatches(labeled, n_channels=2, batch_size=4, batch_duration=30 * 10**9)
    >>> batches = TransformedBatches(scheme, [Bandpass(0.3, 30.0), SignFlip(p=0.5)])
    >>> batch, state = batches.iterate_batch(batches.initial_state(seed=0))
    >>> x, y = materialize_batch(batch)
    >>> x.shape, state.to_dict()["config"]["transforms"][0]["name"]
    ((4, 2, 3840), 'bandpass')
    """

    def __new__(cls, batches: Any = None, transforms: Any = None):
        # len() where the scheme has one (finite schemes): a class of its own, so that
        # hasattr(scheme, "__len__") tells the same about the wrapper as the scheme.
        if cls is TransformedBatches and hasattr(type(batches), "__len__"):
            cls = _SizedTransformedBatches
        return object.__new__(cls)

    def __init__(self, batches: Any, transforms: Pipeline | Sequence[Any]):
        if isinstance(batches, TransformedBatches):
            raise StateError("the scheme already has a pipeline: pass all transforms at once")
        batches = as_batch_scheme(batches, "TransformedBatches")
        self.batches = batches
        self.pipeline = transforms if isinstance(transforms, Pipeline) else Pipeline(transforms)
        inner = dict(batches.config or {})
        if CONFIG_KEY in inner:
            raise StateError(f"the scheme's config already has a {CONFIG_KEY!r} key")
        self._inner = _frozen_config(inner)
        if DRAWS_KEY in inner:
            raise StateError(f"the scheme's config already has a {DRAWS_KEY!r} key")
        draws = {DRAWS_KEY: DRAWS_VERSION} if self.pipeline.random else {}
        self._config = _frozen_config({**inner, CONFIG_KEY: self.pipeline.config, **draws})
        # Bad parameters for these signals (an edge above Nyquist, a window too short)
        # surface here, before any worker starts: the first batch's items are checked.
        step = self.iterate_batch(self.initial_state(0))
        if step is not None:
            check_items(self.pipeline, step[0])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "batches":
            raise AttributeError(name)
        return getattr(self.batches, name)

    def initial_state(self, seed: int = 0) -> BatchState:
        return BatchState(seed=seed, index=0, config=self._config)

    def _unwrap(self, state: BatchState) -> BatchState:
        if not isinstance(state, BatchState):
            raise StateError(f"expected a BatchState, got {type(state).__name__}")
        try:
            state = state.bind(self._config)
        except StateError as exc:
            if not any(k == CONFIG_KEY for k, _ in state.config):
                raise StateError(
                    f"{exc}\n(the state has no transform pipeline: it comes from the scheme "
                    f"without transforms; start from this scheme's initial_state(seed), e.g. "
                    f"batcher.batches.initial_state(seed) for Batcher(..., transforms=...))"
                ) from None
            raise
        return BatchState(state.seed, state.index, self._inner, state.version)

    def _wrap(self, state: BatchState) -> BatchState:
        return BatchState(state.seed, state.index, self._config, state.version)

    def iterate_batch(self, state: BatchState) -> tuple[KeyedBatch, BatchState] | None:
        inner = self._unwrap(state)
        step = self.batches.iterate_batch(inner)
        if step is None:
            return None
        batch, after = step
        return KeyedBatch(batch, (inner.seed, inner.index), self.pipeline), self._wrap(after)

    @property
    def steps_without_drawing(self) -> bool:  # type: ignore[override]
        return self.batches.steps_without_drawing

    @property
    def world_size(self) -> int:  # type: ignore[override]
        return self.batches.world_size

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self.batches.rank

    def next_state(self, state: BatchState) -> BatchState | None:
        after = self.batches.next_state(self._unwrap(state))
        return None if after is None else self._wrap(after)

    def remaining(self, state: BatchState) -> int | None:
        if not isinstance(state, BatchState):
            return None
        return self.batches.remaining(self._unwrap(state))

    def __repr__(self) -> str:
        return f"TransformedBatches({self.batches!r}, {self.pipeline!r})"


class _SizedTransformedBatches(TransformedBatches):
    """A [`TransformedBatches`][ondabatches.transforms.TransformedBatches] of a scheme
    with ``len()``."""

    def __len__(self) -> int:
        return len(self.batches)
