"""The shared-memory transport returns exactly what the plain (inline) path returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ondabatches.serve._pools import InlinePool, ProcessPool
from ondabatches.serve._shm import new_segment_name, read_shared, unlink_shared, write_shared
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


@settings(max_examples=60, deadline=None)
@given(x=ARRAYS, y=ARRAYS)
def test_shared_memory_round_trip(x, y):
    before = our_segments()
    shared = write_shared(new_segment_name(), (x, y))
    got_x, got_y = read_shared(shared)
    for got, expected in ((got_x, x), (got_y, y)):
        assert got.dtype == expected.dtype
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, strict=True)
        assert got.flags.writeable and got.flags.c_contiguous
    assert our_segments() == before


def test_unlink_shared_ignores_missing_segment():
    unlink_shared(new_segment_name())  # a worker that died before creating its segment


def test_object_arrays_are_refused():
    with pytest.raises(TypeError, match="object"):
        write_shared(new_segment_name(), (np.array([None]), np.zeros(1)))


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
