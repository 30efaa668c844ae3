"""The settings' ``worker_tasks``: a worker process materializes that many batches at once."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from ondabatches import Batcher
from ondabatches.onda import use_settings
from tests.serve.test_batcher import assert_same, reference, take_n
from tests.serve.toy import ToyScheme, toy_materialize

pytestmark = pytest.mark.timeout(60)


def _most_at_once(folder) -> int:
    """The most batches running at once in one worker, from their recorded spans."""
    events: dict[str, list[tuple[float, int]]] = {}
    for path in folder.glob("span-*"):
        pid = path.name.split("-")[1]
        start, end = map(float, path.read_text().split())
        events.setdefault(pid, []).extend([(start, 1), (end, -1)])
    most = 0
    for timeline in events.values():
        running = 0
        for _, step in sorted(timeline, key=lambda e: (e[0], e[1])):  # ends first on ties
            running += step
            most = max(most, running)
    return most


def _meeting(tmp_path, wait: float) -> ToyScheme:
    """Batches 0..3 each wait up to ``wait`` s for another batch of the same worker."""
    return ToyScheme(actions=tuple((k, ("meet", (str(tmp_path), k, wait))) for k in range(4)))


@pytest.mark.parametrize("backend", ["processes", pytest.param("ray", marks=pytest.mark.ray)])
def test_one_worker_runs_two_batches_at_once_and_gives_the_same_batches(
    tmp_path, backend, request, no_leaks
):
    if backend == "ray":
        request.getfixturevalue("ray_session")
    with use_settings(worker_tasks=2):
        with Batcher(_meeting(tmp_path, 2.0), workers=1, backend=backend,
                     materialize=toy_materialize) as batcher:  # fmt: skip
            assert batcher.buffer == 3  # one more batch than runs at once
            batcher.start(0)
            got = take_n(batcher, 0, 8)
    assert_same(got, reference(ToyScheme(), 0, 8))
    assert len(list(tmp_path.glob("span-*"))) == 4
    assert _most_at_once(tmp_path) == 2


def test_by_default_a_worker_runs_one_batch_at_a_time(tmp_path, no_leaks):
    with Batcher(_meeting(tmp_path, 0.3), workers=1, backend="processes",
                 materialize=toy_materialize) as batcher:  # fmt: skip
        assert batcher.buffer == 2
        batcher.start(0)
        got = take_n(batcher, 0, 6)
    assert_same(got, reference(ToyScheme(), 0, 6))
    assert len(list(tmp_path.glob("span-*"))) == 4
    assert _most_at_once(tmp_path) == 1  # never two at once


def test_a_worker_killed_with_two_batches_running_is_replaced_and_both_rerun(tmp_path, no_leaks):
    marker = tmp_path / "killed"
    actions = ((2, ("sleep", 0.3)), (3, ("kill_once", str(marker))))
    with use_settings(worker_tasks=2):
        with Batcher(ToyScheme(actions=actions), workers=2, backend="processes",
                     materialize=toy_materialize, retries=1) as batcher:  # fmt: skip
            batcher.start(0)
            got = take_n(batcher, 0, 8)
            pids = {p.pid for p in multiprocessing.active_children()
                    if p.name == "ondabatches-worker"}  # fmt: skip
    assert int(marker.read_text()) not in pids and len(pids) == 2
    assert_same(got, reference(ToyScheme(), 0, 8))


def test_each_batch_in_flight_writes_its_own_segment(no_leaks):
    """Four workers' worth of batches through 1 worker x 4 threads: every array intact."""
    scheme = ToyScheme(batch_size=8, shape=(4, 4096))
    with use_settings(worker_tasks=4):
        with Batcher(scheme, workers=1, backend="processes",
                     materialize=toy_materialize) as batcher:  # fmt: skip
            batcher.start(0)
            got = take_n(batcher, 0, 24)
    expected = reference(scheme, 0, 24)
    assert_same(got, expected)
    assert len({float(np.asarray(x).sum()) for (x, _), _ in got}) == 24
