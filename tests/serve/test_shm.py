"""The shared-memory transport returns exactly what the plain (inline) path returns."""

from __future__ import annotations

import errno
import gc
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ondabatches import Batcher, RandomBatches
from ondabatches.errors import SharedMemoryError
from ondabatches.serve._pools import InlinePool
from ondabatches.serve._processes import ProcessPool
from ondabatches.serve._shm import (
    _SWEEP,
    SegmentPool,
    WorkerSegments,
    new_segment_name,
    unlink_shared,
)
from ondabatches.serve._tasks import run_task
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401
from tests.serve.conftest import our_segments

DTYPES = st.sampled_from(
    ["int8", "uint16", "<i4", ">i4", "int64", "uint64", "float16", "float32", ">f8", "bool"]
)
ARRAYS = DTYPES.flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    )
)


def _building(batch, dtype):
    """A materializer building arrays from (dtype, shape) pairs (top-level, so picklable).

    The arrays are built on the worker, not sent to it, so that the comparison is
    about the way back only.
    """
    return tuple(
        np.arange(int(np.prod(shape)), dtype=np.int64).astype(kind).reshape(shape)
        for kind, shape in batch
    )


def _round_trip(pool: SegmentPool, worker: WorkerSegments, arrays, allocate=False):
    name, size = pool.lease()
    worker.begin(name, size)
    if allocate:  # as materialize_batch does with the allocate callback
        placed = []
        for a in arrays:
            out = worker.allocate(a.shape, a.dtype)
            out[...] = a
            placed.append(out)
        arrays = tuple(placed)
    return name, pool.receive(worker.finish(tuple(arrays)))


@settings(max_examples=60, deadline=None)
@given(x=ARRAYS, y=ARRAYS, allocate=st.booleans())
def test_shared_memory_round_trip(x, y, allocate):
    before = our_segments()
    pool, worker = SegmentPool(keep=2), WorkerSegments()
    try:
        _, (got_x, got_y) = _round_trip(pool, worker, (x, y), allocate)
        for got, expected in ((got_x, x), (got_y, y)):
            assert got.dtype == expected.dtype
            assert got.shape == expected.shape
            np.testing.assert_array_equal(got, expected, strict=True)
            assert got.flags.writeable and got.flags.c_contiguous
    finally:
        pool.close()
    assert our_segments() == before


def test_segments_are_recycled_once_the_consumer_drops_the_arrays():
    before = our_segments()
    pool, worker = SegmentPool(keep=1), WorkerSegments()
    try:
        first, arrays = _round_trip(pool, worker, (np.ones((64, 1024)), np.zeros(3)))
        held = arrays[0]
        second, more = _round_trip(pool, worker, (np.full((64, 1024), 2.0), np.zeros(3)))
        assert second != first  # the first batch is still held: its segment is not reused
        np.testing.assert_array_equal(held, 1.0)  # and the second did not overwrite it
        del arrays, held
        gc.collect()
        third, _ = _round_trip(pool, worker, (np.full((8, 8), 3.0), np.zeros(3)))
        assert third == first
        del more
        gc.collect()
        # keep=1: a second free segment beyond the one kept is unlinked at once.
        assert len(our_segments() - before) <= 2
    finally:
        pool.close()
    assert our_segments() == before


def test_a_worker_lets_go_of_the_mappings_of_unlinked_segments():
    # A worker's mapping would keep an unlinked segment's memory: it sweeps them.
    pool, worker = SegmentPool(keep=4), WorkerSegments()
    try:
        name, arrays = _round_trip(pool, worker, (np.ones(1000), np.zeros(1)))
        del arrays
        gc.collect()  # the segment is free again, and the worker keeps its mapping
        kept, _ = pool.lease()
        assert kept == name and name in worker._maps
        pool.abandon(name)  # now unlinked
        for _ in range(_SWEEP):
            _round_trip(pool, worker, (np.ones(10), np.zeros(1)))
        assert name not in worker._maps
        assert worker._maps  # the live segments' mappings stay
    finally:
        pool.close()


def test_arrays_outlive_the_pool_that_unlinked_their_segment():
    pool, worker = SegmentPool(keep=1), WorkerSegments()
    _, (x, _) = _round_trip(pool, worker, (np.arange(10.0), np.zeros(1)))
    pool.close()
    np.testing.assert_array_equal(x, np.arange(10.0))


def test_unlink_shared_removes_a_segment_and_ignores_a_missing_one():
    from multiprocessing import shared_memory

    name = new_segment_name()
    shared_memory.SharedMemory(name=name, create=True, size=16).close()
    assert name in our_segments()
    unlink_shared(name)
    assert name not in our_segments()
    unlink_shared(name)  # a worker that died before creating its segment: no error
    assert name not in our_segments()


def test_object_arrays_are_refused():
    pool, worker = SegmentPool(keep=1), WorkerSegments()
    try:
        with pytest.raises(TypeError, match="object"):
            _round_trip(pool, worker, (np.array([None]), np.zeros(1)))
    finally:
        pool.close()


@pytest.mark.timeout(60)
def test_process_pool_matches_inline():
    cases = [
        ((">f8", (2, 3, 4)), ("uint8", (2, 1, 0))),
        (("int16", (0, 5)), ("<i8", ())),
        (("float32", (5,)), ("bool", (3, 1, 2))),
    ]
    before = our_segments()
    inline = InlinePool()
    pool = ProcessPool(2)
    try:
        futures = [pool.submit(_building, case, None) for case in cases]
        for case, future in zip(cases, futures, strict=True):
            expected = inline.submit(_building, case, None).result()
            got = future.result(timeout=30)
            assert [g.dtype for g in got] == [np.dtype(kind) for kind, _ in case]
            for g, e in zip(got, expected, strict=True):
                assert g.dtype == e.dtype
                np.testing.assert_array_equal(g, e, strict=True)
    finally:
        pool.close()
    assert our_segments() == before


def test_the_default_materializer_decodes_straight_into_the_segment(labeled, monkeypatch):  # noqa: F811
    # A worker that materialized into its own memory would copy each batch into the
    # segment afterwards: as much memory traffic again as decoding it.
    scheme = RandomBatches(eeg_rows_at(labeled, 128.0), batch_size=4, batch_duration=30 * 10**9)
    materialize = Batcher(scheme, backend="inline").materialize
    state = scheme.initial_state()
    batch, _ = scheme.iterate_batch(state)
    expected = materialize(batch, np.float32)
    copies = []
    copyto = np.copyto
    monkeypatch.setattr(
        np, "copyto", lambda dst, src, **kw: copies.append(dst.shape) or copyto(dst, src, **kw)
    )
    pool = SegmentPool(keep=1)
    try:
        result = run_task(materialize, batch, np.float32, pool.lease())
        assert result[0] == "shm"
        x, y = pool.receive(result[1])
        np.testing.assert_array_equal(x, expected[0], strict=True)
        np.testing.assert_array_equal(y, expected[1], strict=True)
    finally:
        pool.close()
    assert expected[0].shape not in copies  # y is small and may be copied


def test_a_full_dev_shm_is_our_error_naming_sizes_not_a_sigbus(monkeypatch):
    # A tmpfs maps pages it has no room for, then kills the writer with SIGBUS: the
    # worker reserves them first and reports how much it needed and what was free.
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    pool, worker = SegmentPool(keep=1), WorkerSegments()
    try:
        name, size = pool.lease()
        worker.begin(name, size)
        with pytest.raises(SharedMemoryError) as info:
            worker.allocate((1000, 1000), np.float32)
        message = str(info.value)
        assert name in message and "needs 5 MB" in message  # 4 MB, rounded up
        assert "MB free of" in message and "--shm-size" in message
        assert isinstance(info.value, OSError)
    finally:
        pool.close()


def _write_and_check(pool, worker, name: str, size: int, value: float) -> None:
    """A worker writes a (64, 1024) batch of ``value`` into segment ``name``; the pool
    reads it back."""
    worker.begin(name, size)
    x = worker.allocate((64, 1024), np.float64)
    x[...] = value
    got, _ = pool.receive(worker.finish((x, np.zeros(3))))
    np.testing.assert_array_equal(got, value)


def test_leased_segments_are_sized_ahead_once_the_first_batch_tells_the_size():
    before = our_segments()
    pool, worker = SegmentPool(keep=4, prepare=True), WorkerSegments()
    try:
        waiting = [pool.lease() for _ in range(2)]  # tasks already sent, not yet started
        first, arrays = _round_trip(pool, worker, (np.ones((64, 1024)), np.zeros(3)))
        later = pool.lease()  # leased after the size is known
        need = arrays[0].nbytes
        deadline = time.monotonic() + 10
        names = [name for name, _ in waiting] + [later[0]]
        while time.monotonic() < deadline and not all(n in pool._maps for n in names):
            time.sleep(0.01)
        for name in names:
            # Sized (pages allocated) and mapped by the manager: the worker only maps it.
            assert os.stat(f"/dev/shm/{name}").st_size >= need
            assert name in pool._maps
        assert len(our_segments() - before) == 4  # nothing made beyond what was leased
        for name, size in [*waiting, later]:
            _write_and_check(pool, worker, name, size, 5.0)
    finally:
        pool.close()
    assert our_segments() == before
    assert not pool._preparer.is_alive()


def test_closing_while_segments_are_being_sized_leaves_none():
    before = our_segments()
    for _ in range(5):
        pool, worker = SegmentPool(keep=2, prepare=True), WorkerSegments()
        for _ in range(6):
            pool.lease()
        _round_trip(pool, worker, (np.ones(4 << 20, dtype=np.uint8), np.zeros(1)))
        pool.close()  # the sizing thread stops; every segment is unlinked
        assert our_segments() == before
        assert not pool._preparer.is_alive()


def test_sizing_ahead_gives_up_quietly_when_a_worker_resizes_the_segment_meanwhile(monkeypatch):
    """The sizing thread and a worker can race on one segment: if its size changes
    between fstat and mmap (mmap raises ValueError), the thread leaves the segment to
    the worker instead of dying with an unhandled exception."""
    from multiprocessing import shared_memory

    from ondabatches.serve import _shm

    name = new_segment_name()
    shared_memory.SharedMemory(name=name, create=True, size=16).close()
    try:

        def resized_meanwhile(fd, size):
            raise ValueError("mmap length is greater than file size")

        monkeypatch.setattr(_shm, "_map", resized_meanwhile)
        assert _shm._grow_and_map(name, 1 << 16) is None
        monkeypatch.undo()
        mapping = _shm._grow_and_map(name, 1 << 16)
        assert mapping is not None and len(mapping) >= 1 << 16
        mapping.close()
    finally:
        unlink_shared(name)


def test_settling_sizes_leased_segments_and_adds_spare_ones_now():
    before = our_segments()
    pool, worker = SegmentPool(keep=4, prepare=True), WorkerSegments()
    try:
        pool.settle(spare=2)  # no batch yet: nothing to size, nothing made
        assert len(our_segments() - before) == 0
        waiting = [pool.lease() for _ in range(2)]
        _, arrays = _round_trip(pool, worker, (np.ones((64, 1024)), np.zeros(3)))
        pool.settle(spare=2)  # in this thread: done when it returns
        for name, _ in waiting:
            assert name in pool._maps and os.stat(f"/dev/shm/{name}").st_size >= arrays[0].nbytes
        spare = [entry for entry in pool._free]
        assert len(spare) == 2 and all(name in pool._maps for name, _ in spare)
        assert len(our_segments() - before) == 5  # 3 leased + 2 spare
        del arrays
        gc.collect()  # the first batch's segment is free again: 3 free in all
        leased = [pool.lease() for _ in range(3)]
        assert {name for name, _ in spare} <= {name for name, _ in leased}
        for name, size in leased:  # each ready to be written at its size
            assert size >= 64 * 1024 * 8
            _write_and_check(pool, worker, name, size, 7.0)
        pool.settle(spare=10)  # never beyond the free list's bound
        assert len(pool._free) <= 4
    finally:
        pool.close()
    assert our_segments() == before
