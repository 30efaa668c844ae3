"""A map-style dataset: item ``k`` is batch ``k`` of a scheme, made where it is asked for."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ArgumentTypeError, BatchSpecError, OutOfRangeError, StateError, require
from ..batches._shard import STATE_DICT_VERSION, InterleavedBatches
from ..batches._state import BatchState, as_batch_scheme
from ..materialize._materializer import Materializer, as_materializer
from ..onda._settings import adopt_settings, current_settings
from ..serve._stats import DataPathMeter
from ._tensors import check_labels, labels_as, tensor, tensors

torch = require("torch", "torch")

__all__ = ["BatchMapDataset"]

logger = logging.getLogger("ondabatches")


class BatchMapDataset(torch.utils.data.Dataset):
    """A map-style dataset: item ``k`` is the ``(x, y)`` tensors of batch ``k`` from ``state``.

    Batch ``k`` is a pure function of its state, so any process can make any item:
    ``DataLoader(ds, batch_size=None, num_workers=N, pin_memory=True,
    persistent_workers=True)`` parallelizes it, and torchdata's ``StatefulDataLoader``
    resumes exactly (its sampler position is the batch index). The items equal the
    batches a [`Batcher`][ondabatches.serve.Batcher] takes from the same state.

    Parameters
    ----------
    batches:
        A batch scheme with [`BatchState`][ondabatches.batches.BatchState] states. For data-parallel
        training give the whole scheme and split it with
        ``DistributedSampler(ds, shuffle=False)`` (rank ``r`` then gets batches
        ``r, r + w, ...``, as
        [`InterleavedBatches`][ondabatches.torch.InterleavedBatches]), or a scheme that
        shards itself (``SequentialBatches(..., world_size=w, rank=r)``) without one.
    state:
        The state of item 0.
    length:
        The number of items: required for endless schemes (an "epoch" of
        ``length`` batches; the next epoch is ``BatchMapDataset(batches,
        state.advance(length), length=length)``), at most the batches left for finite
        ones (default: all of them).
    dtype, materialize:
        As for [`Batcher`][ondabatches.serve.Batcher]; ``materialize`` must be picklable to reach
        DataLoader workers.
    labels, label_dtype:
        As for [`BatchDataset`][ondabatches.torch.BatchDataset].
    transforms:
        `ondabatches.transforms` run on each batch: ``batches`` is wrapped in
        [`TransformedBatches`][ondabatches.transforms.TransformedBatches], whose states name the
        pipeline (make ``state`` with ``TransformedBatches(...).initial_state``).
        [`BatchDataset`][ondabatches.torch.BatchDataset] takes ``transforms=`` as a Batcher option.

    Examples
    --------
    >>> from ondabatches.batches import RandomBatches
    >>> from ondabatches.labels import label_signals
    >>> from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset
    >>> ds = make_dataset("data", n_recordings=2, duration=120 * 10**9, sample_rate=128.0,
    ...                   eog_every=0)
    >>> labeled = label_signals(ds.signals, ds.annotations, labels_column="stage",
    ...                         epoch=EPOCH, encoding=STAGE_ENCODING)
    >>> batches = RandomBatches(labeled, n_channels=2, batch_size=3, batch_duration=60 * 10**9)
    >>> dataset = BatchMapDataset(batches, batches.initial_state(seed=1), length=100,
    ...                           labels="classes")
    >>> loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    >>> x, y = next(iter(loader))
    >>> len(loader), x.shape, y.shape, y.dtype
    (100, torch.Size([3, 2, 7680]), torch.Size([3, 2]), torch.int64)
    """

    def __init__(
        self,
        batches: Any,
        state: BatchState,
        *,
        length: int | None = None,
        dtype: Any = np.float32,
        materialize: Materializer | None = None,
        labels: str = "codes",
        label_dtype: Any = None,
        transforms: Any = None,
    ):
        materialize = as_materializer(materialize, "BatchMapDataset")
        if transforms:
            from ..transforms import TransformedBatches

            if not materialize.runs_transforms:
                raise BatchSpecError(
                    f"transforms need a materializer that runs them (runs_transforms); got "
                    f"{materialize!r}"
                )
            batches = TransformedBatches(batches, transforms)
        batches = as_batch_scheme(batches, "BatchMapDataset")
        if not isinstance(state, BatchState):
            raise StateError(
                f"BatchMapDataset needs a BatchState (batch k is state.advance(k)), got "
                f"{type(state).__name__}"
            )
        check_labels(labels, label_dtype)
        self.batches = batches
        config = batches.config
        self.state = state.bind(config) if isinstance(config, Mapping) else state
        left = batches.remaining(self.state)
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0
        ):
            raise BatchSpecError(f"length must be a non-negative int, got {length!r}")
        if left is None and length is None:
            raise BatchSpecError(
                f"{batches!r} is endless: give length=, the number of batches of an epoch"
            )
        if left is not None and length is not None and length > left:
            raise BatchSpecError(
                f"length={length} but {batches!r} has only {left} batches from state index "
                f"{self.state.index}"
            )
        self.length = int(left if length is None else length)
        self.dtype = dtype
        self.materialize = materialize
        self.labels = labels
        self.label_dtype = label_dtype
        self._meter = DataPathMeter()
        # DataLoader workers get these (a spawned worker would read its environment).
        self._settings = (current_settings(), os.getpid())

    def __len__(self) -> int:
        return self.length

    def state_of(self, k: int) -> BatchState:
        """The state of item ``k``."""
        if isinstance(self.batches, InterleavedBatches):
            return self.batches.state_of(self.state, k)
        return self.state.advance(k)

    def __getitem__(self, k: int) -> tuple[Any, Any]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ArgumentTypeError(f"BatchMapDataset items are batch indices, got {k!r}")
        if not 0 <= k < self.length:
            raise OutOfRangeError(f"batch {k} is out of range for {self.length} batches")
        adopt_settings(*self._settings)
        began = time.perf_counter()
        state = self.state_of(int(k))
        step = self.batches.iterate_batch(state)
        if step is None:
            raise BatchSpecError(f"{self.batches!r} has no batch at {state!r}")
        x, y = self.materialize(step[0], self.dtype)
        x, y = tensors(x), labels_as(tensor(y), self.labels, self.label_dtype, state)
        # In this process only: in DataLoader workers each worker counts its own.
        self._meter.took((x, y), time.perf_counter() - began)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("BatchMapDataset item %d (state %r) made", k, state)
        return x, y

    def stats(self) -> dict[str, Any]:
        """Items made *in this process* (``wait_s``: time making them); with DataLoader
        workers each worker has its own copy: measure the consumer with
        [`DeviceFeed`][ondabatches.torch.DeviceFeed]."""
        return self._meter.snapshot()

    # torchdata's StatefulDataLoader saves this with its sampler position; loading it
    # refuses a loader over other data or another start, whose positions would differ.
    def state_dict(self) -> dict[str, Any]:
        """The start state and length: what the loader's positions are relative to."""
        return {"version": STATE_DICT_VERSION, "state": self.state.to_dict(), "length": self.length}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Check that a checkpoint was made over the same data, start and length.

        Raises
        ------
        StateError
            If the data or configuration changed (naming what changed), or the start
            state or length differ.
        """
        try:
            state = BatchState.from_dict(state_dict["state"])
            length = state_dict["length"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a BatchMapDataset state dict: {state_dict!r}") from exc
        config = self.batches.config
        if isinstance(config, Mapping):
            state = state.bind(config)
        if (state.seed, state.index, length) != (self.state.seed, self.state.index, self.length):
            raise StateError(
                f"the checkpoint's dataset starts at seed {state.seed}, index {state.index} "
                f"with {length} batches, but this one at seed {self.state.seed}, index "
                f"{self.state.index} with {self.length}: the loader's positions would differ"
            )

    def __repr__(self) -> str:
        return f"BatchMapDataset({self.batches!r}, {self.length} batches from {self.state!r})"
