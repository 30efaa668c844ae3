"""Batches that are trees of arrays (a dict per modality, a nested mask dict) travel as
a single array does: on every backend the same structure and the same bits as the
inline reference, without a copy where the backend promises none, nothing leaked."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ondabatches import Batcher
from ondabatches.serve._shm import SegmentPool, WorkerSegments
from ondabatches.serve._tasks import run_task, unpack_result
from ondabatches.serve._tree import flatten, map_leaves, unflatten
from tests.serve.conftest import our_segments
from tests.serve.toy import MODALITIES, SteppingToyScheme, ToyScheme, toy_dict_materialize

pytestmark = pytest.mark.timeout(90)

#: Backends whose arrays are views of a shared-memory segment (Ray's on this machine).
SHARED = {"processes", "ray"}


# SteppingToyScheme lets the processes' and Ray's workers draw the batches, as they do
# for the library's schemes; Ray, slow to start, runs only that case.
@pytest.fixture(
    params=[
        *(
            (name, scheme)
            for name in ("inline", "threads", "processes", "executor")
            for scheme in (ToyScheme, SteppingToyScheme)
        ),
        pytest.param(("ray", SteppingToyScheme), marks=pytest.mark.ray),
    ],
    ids=lambda param: f"{param[0]}-{param[1].__name__}",
)
def backend(request):
    """A backend's name, what to pass as ``backend`` (for an executor, the executor
    itself), and the scheme class."""
    name, scheme_class = request.param
    if name == "executor":
        return name, request.getfixturevalue("loky_executor"), scheme_class
    if name == "ray":
        request.getfixturevalue("ray_session")
    return name, name, scheme_class


def reference(scheme, state, n):
    """The first ``n`` ((x, y), next_state), materialized directly."""
    out = []
    for _ in range(n):
        batch, state = scheme.iterate_batch(state)
        out.append((toy_dict_materialize(batch, np.float32), state))
    return out


def assert_same_tree(got, expected):
    """Same nesting (dict keys in the same order, same container types), same arrays."""
    got_leaves, got_structure = flatten(got)
    leaves, structure = flatten(expected)
    assert got_structure == structure
    for g, e in zip(got_leaves, leaves, strict=True):
        assert type(g) is np.ndarray and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e, strict=True)
        assert g.tobytes() == e.tobytes()  # bit for bit (-0.0 and NaN payloads included)


def _address_ranges(segments: SegmentPool) -> list[range]:
    """Where the manager's mappings of its segments lie in its memory."""
    ranges = []
    for mapping in segments._maps.values():
        head = ctypes.c_char.from_buffer(mapping)  # an export: dropped at once
        ranges.append(range(ctypes.addressof(head), ctypes.addressof(head) + len(mapping)))
        del head
    return ranges


def assert_in_segments(tree, segments: SegmentPool) -> None:
    """Every array of ``tree`` is a view of one of ``segments``' mappings: no copy."""
    ranges = _address_ranges(segments)
    for leaf in flatten(tree)[0]:
        start = leaf.__array_interface__["data"][0]
        assert any(start in r and start + leaf.nbytes <= r.stop for r in ranges), leaf.shape
        assert leaf.base is not None  # a view, not an array owning a copy


def test_dict_batches_match_inline_on_every_backend(backend, no_leaks):
    name, backend, scheme_class = backend
    scheme = scheme_class(batch_size=3)
    got = []
    with Batcher(
        scheme, backend=backend, workers=2, materialize=toy_dict_materialize, backoff=0.01
    ) as batcher:
        batcher.start(2)
        state = 2
        for _ in range(5):
            (x, y), state = batcher.take(state)
            got.append(((x, y), state))
            if name in SHARED:
                assert_in_segments((x, y), batcher._pool._segments)
            # The consumer may write in place, as with single-array batches.
            assert all(leaf.flags.writeable for leaf in flatten((x, y))[0])
    expected = reference(scheme, 2, 5)
    for ((x, y), s), ((ex, ey), es) in zip(got, expected, strict=True):
        assert s == es
        assert list(x) == [*MODALITIES, "mask"] and list(x["mask"]) == list(MODALITIES)
        assert x["eeg"].shape == (3, 2, 16) and x["emg"].shape == (3, 1, 32)
        assert_same_tree((x, y), (ex, ey))


@pytest.mark.parametrize("name", ["processes", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_worker_killed_mid_dict_batch_is_replaced_and_the_batch_rerun(
    name, tmp_path, request, no_leaks
):
    if name == "ray":
        request.getfixturevalue("ray_session")
    marker = tmp_path / "killed"
    scheme = ToyScheme(actions=((2, ("kill_once", str(marker))),))
    with Batcher(
        scheme, backend=name, workers=2, materialize=toy_dict_materialize, retries=2,
        backoff=0.01,
    ) as batcher:  # fmt: skip
        batcher.start(0)
        got, state = [], 0
        for _ in range(5):
            (x, y), state = batcher.take(state)
            got.append(((x, y), state))
    assert marker.exists()  # the worker did die in batch 2
    for ((x, y), s), ((ex, ey), es) in zip(got, reference(ToyScheme(), 0, 5), strict=True):
        assert s == es
        assert_same_tree((x, y), (ex, ey))


@pytest.mark.ray
def test_ray_actors_without_shared_memory_return_dicts_of_object_store_arrays(
    ray_session, no_leaks
):
    from ondabatches.serve._ray import RayPool

    scheme = ToyScheme()
    pool = RayPool(workers=1, chunk=2, shared_memory=False)
    try:
        batches = [scheme.iterate_batch(k)[0] for k in range(3)]
        futures = [pool.submit(toy_dict_materialize, b, np.float32) for b in batches]
        for batch, future in zip(batches, futures, strict=True):
            got = future.result(timeout=60)
            assert_same_tree(got, toy_dict_materialize(batch, np.float32))
            # Read-only views of the object store: Ray's zero-copy reads.
            assert not any(leaf.flags.writeable for leaf in flatten(got)[0])
    finally:
        pool.close()


# -- the transport itself, against the plain return value ------------------------------

DTYPES = st.sampled_from(["int8", "<i4", ">f8", "float32", "uint64", "bool"])
ARRAYS = DTYPES.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
)
TREES = st.recursive(
    ARRAYS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
    ),
    max_leaves=8,
)


def _returning(batch, dtype, allocate=None):
    """The tree ``batch`` holds, through arrays from ``allocate`` when given."""
    if allocate is None:
        return batch

    def placed(leaf):
        out = allocate(leaf.shape, leaf.dtype)
        out[...] = leaf
        return out

    return map_leaves(placed, batch)


def _plain(batch, dtype):
    return batch


@settings(max_examples=60, deadline=None)
@given(x=TREES, y=TREES, allocate=st.booleans())
def test_trees_through_shared_memory_equal_the_plain_return_value(x, y, allocate):
    before = our_segments()
    pool = SegmentPool(keep=2)
    try:
        plain = unpack_result(run_task(_plain, (x, y), None))
        materialize = _returning if allocate else _plain
        result = run_task(materialize, (x, y), None, pool.lease())
        assert result[0] == "shm", result
        shared = unpack_result(result, pool)
        assert_same_tree(shared, plain)
        assert_same_tree(plain, (x, y))
        assert_in_segments(shared, pool)
    finally:
        pool.close()
    assert our_segments() == before


def test_arrays_allocated_before_the_segment_grows_keep_their_values():
    # A batch's later modality may not fit the segment sized for its first: the worker
    # maps a bigger one, and what it wrote through the smaller mapping stays.
    pool, worker = SegmentPool(keep=1), WorkerSegments()
    try:
        name, size = pool.lease()
        worker.begin(name, size)
        small = worker.allocate((4, 100), np.float32)
        small[...] = 7.0
        big = worker.allocate((3, 1 << 20), np.float32)  # 12 MB: beyond the slack
        big[...] = 1.5
        mask = worker.allocate((4,), np.bool_)
        mask[...] = [True, False, True, True]
        shared = worker.finish((small, big, mask), ("dict", ("a", "b", "mask"), (None,) * 3))
        got = unflatten(shared.tree, pool.receive(shared))
        np.testing.assert_array_equal(got["a"], 7.0)
        np.testing.assert_array_equal(got["b"], 1.5)
        np.testing.assert_array_equal(got["mask"], [True, False, True, True])
        assert shared.size >= big.nbytes + small.nbytes
    finally:
        pool.close()


def test_unflatten_refuses_a_structure_that_does_not_fit_its_leaves():
    leaves, structure = flatten({"a": np.zeros(2), "b": [np.ones(1), np.ones(3)]})
    assert unflatten(structure, leaves)["b"][1] is leaves[2]
    with pytest.raises(ValueError, match="fewer leaves"):
        unflatten(structure, leaves[:2])
    with pytest.raises(ValueError, match="more leaves"):
        unflatten(structure, [*leaves, np.zeros(1)])
