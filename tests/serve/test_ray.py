"""RayBatcher: a Batcher in a Ray actor, taken from by a Ray task (the trainer)."""

from __future__ import annotations

import numpy as np
import pytest

from ondabatches import RayBatcher, WorkerError
from tests.serve.toy import ToyScheme, toy_materialize

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
