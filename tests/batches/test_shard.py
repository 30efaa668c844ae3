"""Sharding in the core: ranks interleave one global stream, checkpoints resume at any
world size, and none of it needs torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ondabatches import StateError
from ondabatches.batches import (
    BatchState,
    InterleavedBatches,
    RandomBatches,
    SequentialBatches,
    shard_batches,
)
from ondabatches.batches._shard import STATE_DICT_VERSION, RankCursor
from ondabatches.errors import ArgumentError, BatchSpecError
from ondabatches.synthetic import labeled_table

ROOT = Path(__file__).resolve().parents[2]
MIN = 60 * 10**9


@pytest.fixture(scope="module")
def table():
    return labeled_table(3, duration=20 * MIN, seed=4)


@pytest.fixture(scope="module")
def scheme(table):
    return RandomBatches(table, n_channels=2, batch_size=3, batch_duration=MIN)


def take(cursor: RankCursor, n: int) -> list:
    """The batches of ``n`` steps of ``cursor`` (as a training loop takes them)."""
    batches = []
    for _ in range(n):
        state = cursor.state
        step = cursor.scheme.iterate_batch(state)
        if step is None:
            break
        batch, cursor.state = step
        cursor.took(state)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_ranks_partition_the_global_stream(scheme, world_size):
    start = scheme.initial_state(seed=7).advance(2)
    steps = 4
    seen = {}
    for rank in range(world_size):
        share = shard_batches(scheme, world_size, rank)
        state = start
        for k in range(steps):
            # Rank r serves the global indices = r mod w, from the start state on.
            g = start.index + (rank - start.index) % world_size + k * world_size
            if world_size > 1:
                assert share.state_of(start, k).index == g
            batch, state = share.iterate_batch(state)
            assert g not in seen
            seen[g] = batch
    assert sorted(seen) == list(range(start.index, start.index + steps * world_size))
    for g, batch in seen.items():
        assert batch == scheme.iterate_batch(BatchState(seed=7, index=g))[0]


def test_finite_schemes_interleave_with_counts_one_apart(table):
    seq = SequentialBatches(table, batch_size=4, batch_duration=MIN)
    total = len(seq)
    counts = [shard_batches(seq, 3, r).remaining(seq.initial_state()) for r in range(3)]
    assert sum(counts) == total and max(counts) - min(counts) <= 1
    got = []
    for rank in range(3):
        got.extend(take(RankCursor(shard_batches(seq, 3, rank), 3, rank, seq.initial_state()), 99))
    assert len(got) == total


def test_shard_batches_returns_or_refuses_self_sharded_schemes(table, scheme):
    assert shard_batches(scheme, 1, 0) is scheme
    shard = SequentialBatches(table, batch_size=4, batch_duration=MIN, world_size=2, rank=1)
    assert shard_batches(shard, 2, 1) is shard
    with pytest.raises(BatchSpecError, match="built for rank 1 of 2, but rank 0 of 2"):
        shard_batches(shard, 2, 0)
    for world_size, rank in [(0, 0), (2, 2), (2, -1), (True, 0), (2, 1.0)]:
        with pytest.raises(BatchSpecError):
            shard_batches(scheme, world_size, rank)
    with pytest.raises(StateError, match="needs BatchState states"):
        InterleavedBatches(scheme, 2, 0).iterate_batch({"index": 0})


def test_a_checkpoint_resumes_at_the_global_frontier_at_any_world_size(scheme):
    start = scheme.initial_state(seed=1)
    old = RankCursor(shard_batches(scheme, 2, 1), 2, 1, start)
    take(old, 3)  # global batches 1, 3, 5: in lockstep, 0..5 were taken
    checkpoint = json.loads(json.dumps(old.state_dict()))
    assert checkpoint["version"] == STATE_DICT_VERSION
    assert (checkpoint["state"]["index"], checkpoint["frontier"]["index"]) == (7, 6)
    assert old.state_dict(unconsumed=1)["frontier"]["index"] == 4
    for world_size in (1, 2, 3):
        for rank in range(world_size):
            new = RankCursor(shard_batches(scheme, world_size, rank), world_size, rank, start)
            new.load_state_dict(checkpoint)
            (batch,) = take(new, 1)
            want = scheme.iterate_batch(BatchState(seed=1, index=6 + rank))[0]
            assert batch == want


def test_checkpoints_of_self_sharded_schemes_stay_on_their_rank(table):
    def cursor(rank):
        seq = SequentialBatches(table, batch_size=2, batch_duration=MIN, world_size=2, rank=rank)
        return RankCursor(seq, 2, rank, seq.initial_state())

    one = cursor(1)
    take(one, 2)
    checkpoint = one.state_dict()
    assert "frontier" not in checkpoint
    with pytest.raises(StateError, match="rank 1 of 2 but this dataset is rank 0.*shards itself"):
        cursor(0).load_state_dict(checkpoint)
    again = cursor(1)
    again.load_state_dict(checkpoint)
    assert again.state.index == 2 and again.taken == 0


def test_bad_checkpoints_are_refused(scheme):
    cursor = RankCursor(scheme, 1, 0, scheme.initial_state())
    with pytest.raises(StateError, match="not a BatchDataset state dict"):
        cursor.load_state_dict({"version": 2})
    with pytest.raises(StateError, match="version 9 is not supported"):
        cursor.load_state_dict({**cursor.state_dict(), "version": 9})
    with pytest.raises(ArgumentError, match="cannot step back over 1"):
        cursor.state_dict(unconsumed=1)
    with pytest.raises(ArgumentError, match="non-negative int"):
        cursor.state_dict(unconsumed=-1)


def test_sharding_works_without_torch(scheme):
    """With torch unimportable, the core shards and resumes; the adapter says what to install."""
    code = textwrap.dedent(
        """
        import json, sys
        sys.modules["torch"] = None  # any import of torch now fails
        from ondabatches.batches import RandomBatches, shard_batches
        from ondabatches.batches._shard import RankCursor
        from ondabatches.synthetic import labeled_table
        scheme = RandomBatches(labeled_table(3, duration=20 * 60 * 10**9, seed=4), n_channels=2,
                               batch_size=3, batch_duration=60 * 10**9)
        cursor = RankCursor(shard_batches(scheme, 3, 2), 3, 2, scheme.initial_state(seed=1))
        for _ in range(2):
            state = cursor.state
            batch, cursor.state = cursor.scheme.iterate_batch(state)
            cursor.took(state)
        try:
            import ondabatches.torch
        except ImportError as exc:
            hint = str(exc)
        print(json.dumps({"checkpoint": cursor.state_dict(), "batch": repr(batch), "hint": hint,
                          "torch": sys.modules["torch"] is None}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["torch"] is True
    assert "pip install 'ondabatches[torch]'" in out["hint"]
    assert (out["checkpoint"]["state"]["index"], out["checkpoint"]["frontier"]["index"]) == (8, 6)
    assert out["batch"] == repr(scheme.iterate_batch(BatchState(seed=1, index=5))[0])
