"""RayBatcher: a Batcher in a Ray actor, taken from by a Ray task (the trainer)."""

from __future__ import annotations

import multiprocessing.connection
import os
import signal

import numpy as np
import pytest

from ondabatches import Batcher, RayBatcher, WorkerError
from ondabatches.serve._ray import RayPool
from tests.dataset import dataset, labeled  # noqa: F401
from tests.serve.toy import ToyScheme, toy_materialize
from tests.test_plugins import plugged_scheme, registry  # noqa: F401

pytestmark = [pytest.mark.ray, pytest.mark.timeout(60)]


def _train(handle, state, n):
    """What a training process does: take batches, pass each returned state back."""
    xs = []
    for _ in range(n):
        (x, _y), state = handle.take(state)
        xs.append(x)
    return xs, state


def test_take_from_a_ray_task(ray_session):
    ray = ray_session
    scheme = ToyScheme()
    # One worker actor holds one of the session's 2 CPUs; the trainer task takes the other.
    with RayBatcher(scheme, materialize=toy_materialize, workers=1, buffer=2) as batcher:
        batcher.start(0)
        assert batcher.status == "running"
        xs, state = ray.get(ray.remote(_train).remote(batcher, 0, 3))
        # The trainer's position is the actor's position: the driver continues from it.
        (x3, _), _ = batcher.take(state)
        batcher.stop()
        assert batcher.status == "closed"
    expected = [toy_materialize(scheme.iterate_batch(k)[0], np.float32)[0] for k in range(4)]
    assert state == 3
    for got, want in zip([*xs, x3], expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_errors_come_back_as_ours(ray_session):
    scheme = ToyScheme(actions=((0, ("fail", "in actor")),))
    with RayBatcher(scheme, materialize=toy_materialize, retries=0) as batcher:
        batcher.start(0)
        with pytest.raises(WorkerError) as info:
            batcher.take(0)
        assert info.value.state == 0
        assert "toy failure in actor" in info.value.worker_traceback
        assert isinstance(batcher.status, WorkerError)


def _expected(scheme, k):
    return toy_materialize(scheme.iterate_batch(k)[0], np.float32)


def _run_batches(pool, n, writeable):
    """Submit the toy scheme's first ``n`` batches to ``pool`` and check what comes back."""
    scheme = ToyScheme()
    futures = [pool.submit(toy_materialize, scheme.iterate_batch(k)[0], np.float32)
               for k in range(n)]  # fmt: skip
    for k, future in enumerate(futures):
        x, y = future.result(timeout=30)
        np.testing.assert_array_equal(x, _expected(scheme, k)[0], strict=True)
        np.testing.assert_array_equal(y, _expected(scheme, k)[1], strict=True)
        # Shared memory gives writable arrays, the object store read-only views.
        assert x.flags.writeable == writeable


def test_local_actors_take_their_batches_over_channels(ray_session, no_leaks):
    pool = RayPool(workers=2)
    try:
        _run_batches(pool, 6, writeable=True)
        # Every actor that took batches here did over a channel (the second one may
        # not have started yet: work goes to the actors that have).
        assert pool._channels and set(pool._channels) == set(pool._local)
    finally:
        pool.close()


def test_ray_calls_carry_chunks_of_batches_in_order(ray_session, no_leaks):
    # Without channels, as for actors on other nodes: a busy actor's next call waits
    # for a whole chunk of batches.
    pool = RayPool(workers=1, chunk=3, channels=False)
    sizes = []
    call = pool._call

    def counted(index, chunk):
        made = call(index, chunk)
        sizes.append(len(made[0].targets))
        return made

    pool._call = counted
    pool._timed(1e-4)  # quick batches (the first ones, mapping new segments, are slower)
    try:
        _run_batches(pool, 10, writeable=True)  # this machine's actor: shared memory
    finally:
        pool.close()
    assert sum(sizes) == 10 and max(sizes) == 3
    assert len(sizes) < 10


def test_calls_carry_several_batches_only_when_batches_are_quick(ray_session, no_leaks):
    pool = RayPool(workers=1, chunk=4, channels=False)
    try:
        assert pool._chunk_size() == 1  # nothing measured yet
        for _ in range(20):
            pool._timed(0.002)  # 2 ms per batch: a 1 ms call would be half as much again
        assert pool._chunk_size() == 4
        for _ in range(20):
            pool._timed(0.25)  # S3-latency-bound batches: one per call
        assert pool._chunk_size() == 1
    finally:
        pool.close()


def test_a_killed_actor_is_reconnected_after_its_restart(ray_session, no_leaks):
    scheme = ToyScheme()
    with Batcher(scheme, backend="ray", workers=1, materialize=toy_materialize,
                 backoff=0.01) as batcher:  # fmt: skip
        batcher.start(0)
        got = [batcher.take(k)[0] for k in range(2)]
        (pid,) = batcher._pool._local.values()
        os.kill(pid, signal.SIGKILL)
        got += [batcher.take(k)[0] for k in range(2, 8)]
        (restarted,) = batcher._pool._local.values()
    assert restarted != pid
    for k, (x, y) in enumerate(got):
        np.testing.assert_array_equal(x, _expected(scheme, k)[0], strict=True)
        np.testing.assert_array_equal(y, _expected(scheme, k)[1], strict=True)


def test_actors_without_shared_memory_return_object_store_arrays(ray_session, no_leaks):
    # As actors on other nodes do: Ray calls, arrays through the object store.
    pool = RayPool(workers=1, chunk=2, shared_memory=False)
    try:
        _run_batches(pool, 5, writeable=False)
        assert not pool._channels and not pool._local
    finally:
        pool.close()


def test_an_actor_that_cannot_be_reached_on_its_channel_takes_ray_calls(
    ray_session, monkeypatch, no_leaks
):
    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("no route to the actor's socket")

    monkeypatch.setattr(multiprocessing.connection, "Client", unreachable)
    pool = RayPool(workers=1, accept_timeout=0.5)
    try:
        _run_batches(pool, 3, writeable=True)  # the same machine: still shared memory
        assert not pool._channels and len(pool._local) == 1
    finally:
        pool.close()


@pytest.mark.timeout(180)  # three Batchers' actors start, each importing the project
def test_a_plug_in_that_passes_works_on_ray(ray_session, labeled, tmp_path, registry):  # noqa: F811
    """The plug-in format and scheme of tests/test_plugins.py, on Ray actors (the
    Batcher's ray backend and RayBatcher): the same batches as read inline, and the
    format's own refusal of a damaged file reaches the trainer as its error."""
    from ondabatches.errors import SampleFileError

    scheme, want, paths, _ = plugged_scheme(labeled, tmp_path)
    for make in (lambda: Batcher(scheme, backend="ray", workers=2),
                 lambda: RayBatcher(scheme, workers=1)):  # fmt: skip
        with make() as batcher:
            state = scheme.initial_state()
            batcher.start(state)
            for k in range(3):
                (x, y), state = batcher.take(state)
                np.testing.assert_array_equal(x, want[k][0], err_msg=f"{batcher!r} batch {k}")
                np.testing.assert_array_equal(y, want[k][1])
    with open(paths[0], "r+b") as f:
        f.truncate(os.path.getsize(paths[0]) // 2)
    with Batcher(scheme, backend="ray", workers=1, retries=0) as batcher:
        batcher.start(scheme.initial_state())
        with pytest.raises(SampleFileError, match="not a whole .npy file"):
            state = scheme.initial_state()
            for _ in range(3):
                _, state = batcher.take(state)
