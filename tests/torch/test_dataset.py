"""BatchDataset: tensors equal the Batcher's, checkpoints resume exactly, ranks interleave."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ondabatches import (
    Batcher,
    BatcherError,
    BatchState,
    RandomBatches,
    SequentialBatches,
    StateError,
    materialize_batch,
)
from ondabatches.errors import BatchSpecError
from ondabatches.materialize import FunctionMaterializer
from ondabatches.torch import BatchDataset, InterleavedBatches, shard_batches
from tests.dataset import eeg_rows_at

pytestmark = [pytest.mark.torch, pytest.mark.timeout(60)]

MINUTE = 60 * 10**9


@pytest.fixture(scope="module")
def table(labeled):
    return eeg_rows_at(labeled, 128.0)


@pytest.fixture(scope="module")
def scheme(table):
    return RandomBatches(table, n_channels=2, batch_size=3, batch_duration=MINUTE)


def expected(scheme, index, seed=0):
    """The arrays of global batch ``index``, materialized directly."""
    batch, _ = scheme.iterate_batch(BatchState(seed=seed, index=index))
    return materialize_batch(batch)


def first(dataset, n):
    return list(itertools.islice(iter(dataset), n))


def assert_tensors_equal(got, want):
    (x, y), (wx, wy) = got, want
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    np.testing.assert_array_equal(x.numpy(), wx, strict=True)
    np.testing.assert_array_equal(y.numpy(), wy, strict=True)


def test_tensors_equal_the_batchers_arrays(scheme):
    state = scheme.initial_state(seed=3)
    with Batcher(scheme, backend="inline") as batcher:
        batcher.start(state)
        reference = []
        for _ in range(4):
            arrays, state_ = batcher.take(state)
            reference.append(arrays)
            state = state_
    with BatchDataset(scheme, scheme.initial_state(seed=3), backend="inline") as dataset:
        got = first(dataset, 4)
    for g, want in zip(got, reference, strict=True):
        assert_tensors_equal(g, want)
        assert g[0].dtype == torch.float32 and g[1].dtype == torch.uint8


def test_tensors_share_memory_with_the_arrays(scheme):
    arrays = []

    def keep(batch, dtype):
        arrays.append(materialize_batch(batch, dtype))
        return arrays[-1]

    with BatchDataset(
        scheme, scheme.initial_state(), backend="inline", materialize=FunctionMaterializer(keep)
    ) as ds:
        x, y = next(iter(ds))
    assert np.shares_memory(x.numpy(), arrays[0][0]) and np.shares_memory(y.numpy(), arrays[0][1])


def _read_only(batch, dtype):
    x, y = materialize_batch(batch, dtype)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def test_read_only_arrays_become_tensors_without_warning(scheme):
    # A RayBatcher hands back Ray's read-only zero-copy arrays; torch must not warn.
    state = scheme.initial_state()
    with BatchDataset(
        scheme, state, backend="inline", materialize=FunctionMaterializer(_read_only)
    ) as ds:
        got = first(ds, 2)
    for k, g in enumerate(got):
        assert_tensors_equal(g, expected(scheme, k))


def test_checkpoint_resumes_identically(scheme):
    with BatchDataset(scheme, scheme.initial_state(seed=5), backend="inline") as dataset:
        it = iter(dataset)
        first_three = list(itertools.islice(it, 3))
        checkpoint = json.loads(json.dumps(dataset.state_dict()))
        rest = list(itertools.islice(it, 3))
    assert checkpoint["state"]["index"] == 3
    with BatchDataset(scheme, scheme.initial_state(seed=0), backend="inline") as resumed:
        resumed.load_state_dict(checkpoint)
        again = first(resumed, 3)
    for g, want in zip(again, rest, strict=True):
        assert_tensors_equal(g, (want[0].numpy(), want[1].numpy()))
    assert not torch.equal(first_three[0][0], again[0][0])


def test_next_iteration_continues_where_the_last_stopped(scheme):
    with BatchDataset(scheme, scheme.initial_state(), backend="inline") as dataset:
        a = first(dataset, 2)
        b = first(dataset, 2)
    for k, g in enumerate([*a, *b]):
        assert_tensors_equal(g, expected(scheme, k))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_interleave_the_global_stream(scheme, world_size):
    n = 3
    streams = []
    for rank in range(world_size):
        with BatchDataset(
            scheme, scheme.initial_state(), world_size=world_size, rank=rank, backend="inline"
        ) as dataset:
            streams.append(first(dataset, n))
            assert dataset.state_dict()["state"]["index"] == rank + n * world_size
    # Rank r's k-th batch is global batch r + k * w: disjoint, and together the whole stream.
    for rank, stream in enumerate(streams):
        for k, got in enumerate(stream):
            assert_tensors_equal(got, expected(scheme, rank + k * world_size))
    xs = [x for stream in streams for x, _ in stream]
    assert len({x.numpy().tobytes() for x in xs}) == len(xs)


def test_rank_checkpoints_resume_on_their_rank(scheme):
    make = lambda rank: BatchDataset(  # noqa: E731
        scheme, scheme.initial_state(), world_size=2, rank=rank, backend="inline"
    )
    with make(1) as dataset:
        first(dataset, 2)
        checkpoint = dataset.state_dict()
    with make(1) as resumed:
        resumed.load_state_dict(checkpoint)
        assert_tensors_equal(next(iter(resumed)), expected(scheme, 5))
    # Any rank's checkpoint resumes every rank at the global frontier: rank 1 took
    # global batches 1 and 3, so (in lockstep) 0..3 were taken and rank 0 goes on at 4.
    with make(0) as other:
        other.load_state_dict(checkpoint)
        assert_tensors_equal(next(iter(other)), expected(scheme, 4))


def test_a_self_sharding_scheme_resumes_on_its_own_rank_only(table):
    seq = SequentialBatches(table, batch_size=2, batch_duration=MINUTE, world_size=2, rank=1)
    with BatchDataset(seq, seq.initial_state(), world_size=2, rank=1, backend="inline") as ds:
        first(ds, 1)
        checkpoint = ds.state_dict()
    assert "frontier" not in checkpoint
    seq0 = SequentialBatches(table, batch_size=2, batch_duration=MINUTE, world_size=2, rank=0)
    other = BatchDataset(seq0, seq0.initial_state(), world_size=2, rank=0)
    with pytest.raises(StateError, match="rank 1 of 2 but this dataset is rank 0.*shards itself"):
        other.load_state_dict(checkpoint)


def test_interleaving_from_an_off_lattice_state(scheme):
    sharded = InterleavedBatches(scheme, world_size=3, rank=2)
    batch, state = sharded.iterate_batch(scheme.initial_state().advance(4))
    assert state.index == 8  # served global batch 5, the next on rank 2's lattice
    assert batch == scheme.iterate_batch(BatchState(seed=0, index=5))[0]


def test_sequential_batches_use_their_own_sharding(table):
    def sequential(rank):
        return SequentialBatches(
            table, batch_size=4, batch_duration=MINUTE, world_size=2, rank=rank
        )

    for rank in range(2):
        seq = sequential(rank)
        state = seq.initial_state()
        with BatchDataset(seq, state, world_size=2, rank=rank, backend="inline") as ds:
            got = list(ds)
            assert list(ds) == []  # a finite scheme has ended
        assert len(got) == len(seq)
        state = seq.initial_state()
        for g in got:
            batch, state = seq.iterate_batch(state)
            assert_tensors_equal(g, materialize_batch(batch))
    with pytest.raises(BatchSpecError, match="built for rank 0 of 2"):
        BatchDataset(sequential(0), None, world_size=2, rank=1)
    assert shard_batches(sequential(1), 2, 1).rank == 1


def test_in_a_dataloader_with_processes(scheme):
    state = scheme.initial_state(seed=1)
    with BatchDataset(scheme, state, backend="processes", workers=2) as dataset:
        loader = DataLoader(dataset, batch_size=None, num_workers=0)
        got = list(itertools.islice(loader, 4))
        checkpoint = dataset.state_dict()
    for k, g in enumerate(got):
        assert_tensors_equal(g, expected(scheme, k, seed=1))
    assert checkpoint["state"]["index"] == 4


def test_dataloader_workers_are_refused_with_a_clear_error(scheme):
    dataset = BatchDataset(scheme, scheme.initial_state(), backend="inline")
    batches = iter(DataLoader(dataset, batch_size=None, num_workers=2))
    try:
        with pytest.raises(BatcherError, match="num_workers=0"):
            next(batches)
    finally:
        # Left to the garbage collector, the failed loader's shutdown can wait 5 s
        # per worker at some later, unrelated moment.
        batches._shutdown_workers()


def test_a_passed_batcher_is_used_and_left_running(scheme):
    with Batcher(scheme, backend="threads", workers=2) as batcher:
        dataset = BatchDataset(batcher, scheme.initial_state())
        got = first(dataset, 2)
        dataset.close()
        assert batcher.status == "running"
    for k, g in enumerate(got):
        assert_tensors_equal(g, expected(scheme, k))
    with Batcher(scheme, backend="inline") as batcher:
        with pytest.raises(BatchSpecError, match="shard_batches"):
            BatchDataset(batcher, scheme.initial_state(), world_size=2, rank=0)
        sharded = Batcher(shard_batches(scheme, 2, 1), backend="inline")
        got = first(BatchDataset(sharded, scheme.initial_state(), world_size=2, rank=1), 1)
        assert_tensors_equal(got[0], expected(scheme, 1))


def test_bad_arguments(scheme, table):
    state = scheme.initial_state()
    with pytest.raises(BatchSpecError, match="both world_size and rank"):
        BatchDataset(scheme, state, world_size=2)
    with pytest.raises(BatchSpecError, match="rank 2 of 2"):
        BatchDataset(scheme, state, world_size=2, rank=2)
    with pytest.raises(TypeError, match="batch scheme"):
        BatchDataset(object(), state)
    other = RandomBatches(table, n_channels=1, batch_size=3, batch_duration=MINUTE)
    with pytest.raises(StateError, match="n_channels"):
        BatchDataset(scheme, other.initial_state())
    dataset = BatchDataset(scheme, state)
    with pytest.raises(StateError, match="version 9"):
        dataset.load_state_dict({**dataset.state_dict(), "version": 9})
    with pytest.raises(StateError, match="not a BatchDataset state dict"):
        dataset.load_state_dict({"state": 1})
