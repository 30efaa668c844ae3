"""Training as PyTorch users train: map-style dataset with DataLoader workers, torchdata's
StatefulDataLoader, lengths, labels as models want them, elastic resume, DeviceFeed."""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ondabatches import (
    Batcher,
    BatcherError,
    BatchState,
    LabelError,
    RandomBatches,
    SequentialBatches,
    StateError,
    materialize_batch,
)
from ondabatches.abc import BatchScheme, Materializer
from ondabatches.errors import BatchSpecError
from ondabatches.materialize import FunctionMaterializer
from ondabatches.torch import BatchDataset, BatchMapDataset, DeviceFeed, InterleavedBatches
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401

pytestmark = [
    pytest.mark.torch,
    pytest.mark.timeout(120),
    # torchdata 0.11's StatefulDataLoader calls torch.set_vital, deprecated in torch 2.13.
    pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning"),
]

MINUTE = 60 * 10**9
# DataLoader(pin_memory=True) warns on a machine without an accelerator; the tests run
# the CPU path on purpose.
PIN_WARNING = "ignore:.*pin_memory.*:UserWarning"


@pytest.fixture(scope="module")
def table(labeled):  # noqa: F811
    return eeg_rows_at(labeled, 128.0)


@pytest.fixture(scope="module")
def scheme(table):
    return RandomBatches(table, n_channels=2, batch_size=3, batch_duration=MINUTE)


@pytest.fixture(scope="module")
def sequential(table):
    return SequentialBatches(table, batch_size=4, batch_duration=MINUTE)


def batcher_batches(scheme, state, n):
    """What a Batcher takes from ``state``: the reference."""
    out = []
    with Batcher(scheme, backend="inline") as batcher:
        batcher.start(state)
        for _ in range(n):
            result = batcher.take(state)
            if result is None:
                break
            arrays, state = result
            out.append(arrays)
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want, strict=True):
        np.testing.assert_array_equal(x.numpy(), wx, strict=True)
        np.testing.assert_array_equal(y.numpy(), wy, strict=True)


def dataloader_children():
    return {p for p in multiprocessing.active_children()}


def torch_segments():
    try:
        return {s for s in os.listdir("/dev/shm") if s.startswith("torch_")}
    except FileNotFoundError:  # pragma: no cover
        return set()


@pytest.fixture
def no_leaked_workers():
    before, shm_before = dataloader_children(), torch_segments()
    yield
    gc.collect()
    deadline = time.monotonic() + 10
    while dataloader_children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dataloader_children() - before == set()
    assert torch_segments() - shm_before == set()


# -- the map-style dataset ---------------------------------------------------------------


def test_map_items_equal_the_batchers_batches(scheme, sequential):
    state = scheme.initial_state(seed=2).advance(3)
    ds = BatchMapDataset(scheme, state, length=5)
    assert len(ds) == 5
    assert_same([ds[k] for k in range(5)], batcher_batches(scheme, state, 5))
    seq = BatchMapDataset(sequential, sequential.initial_state())
    assert len(seq) == len(sequential)
    assert_same(list(seq), batcher_batches(sequential, sequential.initial_state(), 99))
    assert (
        len(BatchMapDataset(sequential, sequential.initial_state().advance(2)))
        == len(sequential) - 2
    )
    with pytest.raises(IndexError, match="batch 5 is out of range for 5"):
        ds[5]


def test_map_dataset_arguments_are_checked(scheme, sequential):
    with pytest.raises(BatchSpecError, match="endless: give length="):
        BatchMapDataset(scheme, scheme.initial_state())
    with pytest.raises(BatchSpecError, match=f"has only {len(sequential)} batches"):
        BatchMapDataset(sequential, sequential.initial_state(), length=len(sequential) + 1)
    with pytest.raises(StateError, match="needs a BatchState"):
        BatchMapDataset(scheme, 0, length=2)
    with pytest.raises(ValueError, match="labels must be one of"):
        BatchMapDataset(scheme, scheme.initial_state(), length=2, labels="onehot")


@pytest.mark.filterwarnings(PIN_WARNING)
def test_dataloader_workers_pinned_and_persistent(scheme, no_leaked_workers):
    state = scheme.initial_state(seed=1)
    ds = BatchMapDataset(scheme, state, length=6, labels="classes")
    loader = DataLoader(
        ds, batch_size=None, num_workers=2, pin_memory=True, persistent_workers=True
    )
    assert len(loader) == 6
    epochs = [list(loader), list(loader)]  # the same workers serve both epochs
    want = batcher_batches(scheme, state, 6)
    want = [(x, y[:, 0, :].astype(np.int64) - 1) for x, y in want]
    for got in epochs:
        assert_same(got, want)
    del loader, epochs
    gc.collect()


class _MaterializeUnder(Materializer):
    """``materialize_batch``, refusing to run unless the process's settings are ``want``."""

    def __init__(self, want):
        self.want = want

    def __call__(self, batch, dtype):
        from ondabatches.onda import current_settings

        got = current_settings()
        assert got == self.want, f"worker {os.getpid()} runs with {got!r}, not {self.want!r}"
        return materialize_batch(batch, dtype)


def test_spawned_dataloader_workers_get_the_settings(scheme, no_leaked_workers):
    from ondabatches.onda import use_settings

    # Set through the API only: a spawned worker's environment does not have them.
    with use_settings(kernels="numpy", storage_options={"memory": {"x": 1}}) as ours:
        state = scheme.initial_state(seed=2)
        ds = BatchMapDataset(scheme, state, length=2, materialize=_MaterializeUnder(ours.settings))
        loader = DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="spawn")
        got = list(loader)
    want = batcher_batches(scheme, state, 2)
    assert_same(got, want)
    del loader
    gc.collect()


def test_stateful_dataloader_with_workers_resumes_exactly(scheme, no_leaked_workers):
    from torchdata.stateful_dataloader import StatefulDataLoader

    state = scheme.initial_state(seed=4)

    def loader():
        ds = BatchMapDataset(scheme, state, length=8)
        return StatefulDataLoader(ds, batch_size=None, num_workers=2)

    uninterrupted = list(loader())
    first = loader()
    it = iter(first)
    head = list(itertools.islice(it, 3))
    checkpoint = first.state_dict()
    del it, first
    resumed = loader()
    resumed.load_state_dict(checkpoint)
    tail = list(resumed)
    assert len(head) + len(tail) == 8
    want = [(x.numpy(), y.numpy()) for x, y in uninterrupted]
    assert_same(head + tail, want)
    assert_same(uninterrupted, batcher_batches(scheme, state, 8))
    del resumed
    gc.collect()


def test_stateful_dataloader_refuses_other_data(scheme, table):
    from torchdata.stateful_dataloader import StatefulDataLoader

    ds = BatchMapDataset(scheme, scheme.initial_state(), length=4)
    loader = StatefulDataLoader(ds, batch_size=None)
    next(iter(loader))
    checkpoint = loader.state_dict()
    other = RandomBatches(table, n_channels=1, batch_size=3, batch_duration=MINUTE)
    loader2 = StatefulDataLoader(
        BatchMapDataset(other, other.initial_state(), length=4), batch_size=None
    )
    loader2.load_state_dict(checkpoint)
    with pytest.raises(StateError, match="n_channels"):
        next(iter(loader2))


def test_distributed_sampler_splits_like_interleaved_ranks(scheme):
    state = scheme.initial_state(seed=3)
    ds = BatchMapDataset(scheme, state, length=6)
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=False)
        got = list(DataLoader(ds, batch_size=None, sampler=sampler))
        with BatchDataset(scheme, state, world_size=2, rank=rank, backend="inline") as it:
            want = list(itertools.islice(it, 3))
        assert_same(got, [(x.numpy(), y.numpy()) for x, y in want])
    sharded = BatchMapDataset(InterleavedBatches(scheme, 2, 1), state, length=3)
    assert [sharded.state_of(k).index for k in range(3)] == [1, 3, 5]


# -- lengths and labels --------------------------------------------------------------


class Finite(BatchScheme):
    """A finite scheme that does not shard itself (ranks interleave it)."""

    def __init__(self, scheme):
        self.scheme = scheme
        self._config = scheme.config

    @property
    def config(self):
        return self._config

    def remaining(self, state):
        return max(0, len(self.scheme) - state.index)

    def iterate_batch(self, state):
        return self.scheme.iterate_batch(state)


def test_iterable_dataset_has_a_length_when_the_scheme_is_finite(scheme, sequential, table):
    with BatchDataset(sequential, sequential.initial_state(), backend="inline") as ds:
        loader = DataLoader(ds, batch_size=None)
        assert len(loader) == len(sequential)
        assert len(list(loader)) == len(sequential)
        assert len(ds) == 0  # ended
    seq = SequentialBatches(table, batch_size=2, batch_duration=MINUTE)
    for w in (2, 3):
        for rank in range(w):  # a finite scheme that ranks interleave
            with BatchDataset(Finite(seq), seq.initial_state().advance(1), world_size=w,
                              rank=rank, backend="inline") as ds:  # fmt: skip
                n = len(ds)
                assert n == len(list(ds)) and n >= (len(seq) - 1) // w
            own = SequentialBatches(table, batch_size=2, batch_duration=MINUTE, world_size=w,
                                    rank=rank)  # fmt: skip
            with BatchDataset(own, own.initial_state(), world_size=w, rank=rank,
                              backend="inline") as ds:  # fmt: skip
                assert len(ds) == len(own) == len(list(ds))
    with pytest.raises(TypeError, match="no length"):
        len(BatchDataset(scheme, scheme.initial_state()))


def test_labels_as_classes_or_another_dtype(scheme):
    state = scheme.initial_state(seed=6)
    (x, codes), = batcher_batches(scheme, state, 1)  # fmt: skip
    with BatchDataset(scheme, state, backend="inline", labels="classes") as ds:
        _, y = next(iter(ds))
    assert y.dtype == torch.int64 and tuple(y.shape) == (codes.shape[0], codes.shape[2])
    np.testing.assert_array_equal(y.numpy(), codes[:, 0, :].astype(np.int64) - 1)
    assert int(y.min()) >= 0
    with BatchDataset(scheme, state, backend="inline", label_dtype=torch.float32) as ds:
        _, y = next(iter(ds))
    assert y.dtype == torch.float32 and tuple(y.shape) == codes.shape
    with pytest.raises(ValueError, match="classes are always int64"):
        BatchDataset(scheme, state, labels="classes", label_dtype=torch.int32)

    def zero_codes(batch, dtype):
        x, y = materialize_batch(batch, dtype)
        return x, np.zeros_like(y)

    ds = BatchMapDataset(
        scheme, state, length=1, labels="classes", materialize=FunctionMaterializer(zero_codes)
    )
    with pytest.raises(LabelError, match="holds code 0"):
        ds[0]


# -- elastic resume --------------------------------------------------------------------


def run_ranks(scheme, state_dicts, world_size, steps):
    """Each rank takes ``steps`` batches; returns global indices taken and rank 0's checkpoint."""
    taken = []
    checkpoints = []
    for rank in range(world_size):
        with BatchDataset(scheme, scheme.initial_state(seed=9), world_size=world_size,
                          rank=rank, backend="inline") as ds:  # fmt: skip
            if state_dicts is not None:
                ds.load_state_dict(state_dicts)
            for _ in range(steps):
                index = ds.state_dict()["state"]["index"]
                rank_state = InterleavedBatches(scheme, world_size, rank).state_of(
                    BatchState(seed=9, index=index), 0
                )
                x, _ = next(iter(ds))
                want = materialize_batch(scheme.iterate_batch(rank_state)[0])[0]
                np.testing.assert_array_equal(x.numpy(), want)
                taken.append(rank_state.index)
            checkpoints.append(ds.state_dict())
    return taken, checkpoints


@pytest.mark.parametrize("kind", ["random", "sequential"])
@pytest.mark.parametrize("before, after", [(2, 3), (3, 2), (2, 1), (1, 4), (2, 2)])
def test_resume_at_another_world_size_neither_repeats_nor_skips(scheme, table, kind, before, after):
    if kind == "sequential":
        # An unsharded SequentialBatches is interleaved by batch like any scheme: elastic.
        scheme = SequentialBatches(table, batch_size=1, batch_duration=MINUTE)
        assert len(scheme) >= 3 * 3 + 2 * 4  # every case below stays inside it
    taken, checkpoints = run_ranks(scheme, None, before, steps=3)
    assert sorted(taken) == list(range(3 * before))
    for checkpoint in checkpoints:  # any rank's checkpoint gives the same frontier
        assert checkpoint["frontier"]["index"] == 3 * before
        more, _ = run_ranks(scheme, checkpoint, after, steps=2)
        assert sorted(more) == list(range(3 * before, 3 * before + 2 * after))


def test_a_version_1_checkpoint_resumes_on_its_own_rank(scheme):
    with BatchDataset(scheme, scheme.initial_state(), world_size=2, rank=1,
                      backend="inline") as ds:  # fmt: skip
        list(itertools.islice(iter(ds), 2))
        old = {k: v for k, v in ds.state_dict().items() if k != "frontier"} | {"version": 1}
    with BatchDataset(scheme, scheme.initial_state(), world_size=2, rank=1,
                      backend="inline") as ds:  # fmt: skip
        ds.load_state_dict(old)
        assert ds.state_dict()["state"]["index"] == 5
    other = BatchDataset(scheme, scheme.initial_state(), world_size=3, rank=1)
    with pytest.raises(StateError, match="holds no global frontier"):
        other.load_state_dict(old)


def test_unconsumed_steps_back_over_prefetched_batches(scheme):
    with BatchDataset(scheme, scheme.initial_state(seed=2), world_size=2, rank=1,
                      backend="inline") as ds:  # fmt: skip
        list(itertools.islice(iter(ds), 4))  # global 1, 3, 5, 7
        checkpoint = ds.state_dict(unconsumed=1)  # 7 was fetched, not trained on
    assert checkpoint["state"]["index"] == 7 and checkpoint["frontier"]["index"] == 6
    with pytest.raises(ValueError, match="remembers the last 4"):
        ds.state_dict(unconsumed=5)


# -- the device feed -------------------------------------------------------------------


def test_device_feed_on_cpu_passes_batches_through(scheme):
    state = scheme.initial_state(seed=1)
    with BatchDataset(scheme, state, backend="threads", workers=2) as ds:
        feed = DeviceFeed(DataLoader(ds, batch_size=None), device="cpu", ahead=2)
        got, pending = [], []
        for batch in itertools.islice(feed, 5):
            got.append(batch)
            pending.append(feed.pending)
            checkpoint = ds.state_dict(unconsumed=feed.pending)
        stats = feed.stats()
    assert_same(got, batcher_batches(scheme, state, 5))
    assert pending == [2, 2, 2, 2, 2]
    assert checkpoint["state"]["index"] == 5  # the next batch training needs
    assert stats["batches"] == 5 and 0.0 <= stats["wait_fraction"] <= 1.0
    assert stats["bytes"] == sum(x.nbytes + y.nbytes for x, y in (
        (b[0].numpy(), b[1].numpy()) for b in got))  # fmt: skip
    assert DeviceFeed([1, 2], device="cpu").device.type == "cpu"
    assert list(DeviceFeed([{"x": torch.ones(1)}], device="cpu", ahead=0))[0]["x"].item() == 1


def test_device_feed_arguments(monkeypatch):
    with pytest.raises(ValueError, match="ahead"):
        DeviceFeed([], ahead=-1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BatcherError, match="CUDA is not available"):
        DeviceFeed([], device="cuda")
    assert DeviceFeed([]).device.type == "cpu"


# -- statistics --------------------------------------------------------------------------


def test_dataset_stats_and_interval_logging(scheme, caplog):
    with caplog.at_level(logging.INFO, logger="ondabatches"):
        with BatchDataset(scheme, scheme.initial_state(), backend="threads", workers=2,
                          log_interval=1e-6) as ds:  # fmt: skip
            got = list(itertools.islice(iter(ds), 3))
            stats = ds.stats()
    assert stats["batches"] == 3
    assert stats["bytes"] == sum(x.nbytes + y.nbytes for x, y in (
        (a.numpy(), b.numpy()) for a, b in got))  # fmt: skip
    assert 0.0 <= stats["wait_fraction"] <= 1.0 and 0.0 <= stats["worker_busy"] <= 1.0
    assert stats["workers"] == 2 and stats["retries"] == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("BatchDataset:")]
    assert lines and "batches/s" in lines[0] and "waited" in lines[0]


# -- the index arithmetic, against plain iteration ---------------------------------------


@pytest.fixture(scope="module")
def spec_only():
    from ondabatches.synthetic import labeled_table

    return SequentialBatches(labeled_table(3, duration=300 * 10**9), batch_size=2,
                             batch_duration=30 * 10**9)  # fmt: skip


def test_lengths_and_item_states_equal_plain_iteration(spec_only):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    finite = Finite(spec_only)
    n = len(spec_only)

    @settings(max_examples=25, deadline=None)
    @given(w=st.integers(1, 5), data=st.data(), start=st.integers(0, n + 2))
    def check(w, data, start):
        rank = data.draw(st.integers(0, w - 1))
        scheme = InterleavedBatches(finite, w, rank) if w > 1 else finite
        state = spec_only.initial_state().advance(start)
        states = []
        while (step := scheme.iterate_batch(state)) is not None:
            states.append(state)
            state = step[1]
        assert scheme.remaining(spec_only.initial_state().advance(start)) == len(states)
        if states:
            ds = BatchMapDataset(scheme, spec_only.initial_state().advance(start))
            assert len(ds) == len(states)
            for k, s in enumerate(states):
                got = scheme.iterate_batch(ds.state_of(k))[0]
                assert got == scheme.iterate_batch(s)[0]

    check()
