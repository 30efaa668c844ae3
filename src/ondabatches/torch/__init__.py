"""PyTorch adapter: datasets of tensors, a GPU feed, and checkpoints that resume exactly.

Needs the ``torch`` extra (``pip install 'ondabatches[torch]'``; the CPU build is
enough). ``import ondabatches`` never imports torch; ``import ondabatches.torch`` does.
See ``docs/pytorch.md`` for DataLoader, torchdata and Lightning recipes.

Two datasets, both giving the very batches a [`Batcher`][ondabatches.serve.Batcher] gives for
the same states:

- [`BatchMapDataset`][ondabatches.torch.BatchMapDataset] (map-style): item ``k`` is
  batch ``k`` of the scheme from a start state, materialized where it is asked for.
  Parallelism is the DataLoader's own: ``DataLoader(ds, batch_size=None, num_workers=N,
  pin_memory=True, persistent_workers=True)``; torchdata's ``StatefulDataLoader``
  checkpoints and resumes it exactly (its sampler position is the batch index). Finite
  schemes give its length; endless ones
  ([`RandomBatches`][ondabatches.batches.RandomBatches]) take ``length``.
- [`BatchDataset`][ondabatches.torch.BatchDataset] (iterable): **parallelism lives in a
  Batcher** inside the training process (worker processes, Ray...), and the dataset
  knows exactly which batch it yielded last. Use ``DataLoader(dataset, batch_size=None,
  num_workers=0)``: iterating inside DataLoader worker processes is refused with a
  [`BatcherError`][ondabatches._errors.BatcherError], because a worker's copy of the dataset would
  advance while the one you checkpoint would not.

Shared by both:

- **Labels as models want them**: ``labels="codes"`` (default) gives ``y`` as
  materialized, ``(batch, 1, label_samples)`` codes (``uint8`` for the usual
  encodings; ``label_dtype`` converts them); ``labels="classes"`` gives ``int64``
  class indices ``code - 1``, shaped ``(batch, label_samples)``: the target
  ``torch.nn.functional.cross_entropy`` wants for ``(batch, classes, label_samples)``
  logits. Encodings are 1-based (OndaBatches' convention); a code 0 is refused.
- **Checkpoints hold the next batch's state.**
  [`BatchDataset.state_dict`][ondabatches.torch.BatchDataset.state_dict] is a JSON-able
  dict (torchdata's ``Stateful`` protocol).
- **Ranks interleave one global stream.** For DistributedDataParallel, rank ``r`` of
  ``w`` gets the batches with global index ``r, r + w, r + 2w, ...`` of the scheme
  ([`InterleavedBatches`][ondabatches.torch.InterleavedBatches]): disjoint by
  construction, each a pure function of ``(seed, rank, world_size)``, together exactly
  the single-process stream. A [`BatchMapDataset`][ondabatches.torch.BatchMapDataset]
  over the whole scheme with ``DistributedSampler(ds, shuffle=False)`` splits it the
  same way. Schemes built as one rank's share (``SequentialBatches(..., world_size=w,
  rank=r)``: windows round-robin, padded to equal batch counts) are used as they are,
  after checking that their ``world_size`` and ``rank`` are the ones asked for; an
  unsharded ``SequentialBatches`` is interleaved like any scheme.
- **Elastic resume.** A [`BatchDataset`][ondabatches.torch.BatchDataset] checkpoint of
  an interleaved scheme records the *global frontier*: when every rank has taken the
  same number ``k`` of batches since a common start state ``s`` (as in synchronous
  data-parallel training), the global batches ``s .. s + k*w - 1`` have all been taken,
  by exactly one rank each, and no later one has. Any rank's checkpoint, loaded at any
  world size ``w'``, resumes at that frontier: step ``j`` after the resume takes global
  batches ``F + j*w' .. F + (j+1)*w' - 1`` (``F = s + k*w``), so no global batch is
  repeated or skipped. This holds for finite schemes too (an unsharded
  ``SequentialBatches``: the ranks' batch counts then differ by at most one at the end).
  Schemes built sharded resume at their own world size only.

[`DeviceFeed`][ondabatches.torch.DeviceFeed] copies batches to a CUDA device ahead of
the training step, on a side stream from pinned memory, and measures how long training
waited for data.
"""

from __future__ import annotations

from .._errors import require

# Sharding lives in the core (no torch needed); the names stay here, the same objects.
from ..batches._shard import STATE_DICT_VERSION as STATE_DICT_VERSION
from ..batches._shard import InterleavedBatches, shard_batches

torch = require("torch", "torch")

from ._batch_dataset import BatchDataset  # noqa: E402
from ._device_feed import DeviceFeed  # noqa: E402
from ._map_dataset import BatchMapDataset  # noqa: E402

__all__ = ["BatchDataset", "BatchMapDataset", "DeviceFeed", "InterleavedBatches", "shard_batches"]
