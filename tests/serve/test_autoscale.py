"""Workers that follow the consumer: the controller's decisions, resizing a running
Batcher (the batches stay those of an inline run), and ``workers="auto"`` end to end."""

from __future__ import annotations

import logging
import multiprocessing
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.serve import AutoWorkers, Batcher
from ondabatches.serve._autoscale import IdleCpus, Measurement, WorkerController
from ondabatches.serve._stats import format_stats
from tests.serve.test_batcher import assert_same, reference
from tests.serve.toy import SteppingToyScheme, ToyScheme, toy_materialize

pytestmark = pytest.mark.timeout(90)


def starved(idle=4.0, wait=0.8):
    """An interval in which the consumer waited and CPUs were idle."""
    return Measurement(0.5, 10, wait_fraction=wait, full_fraction=0.0, idle_cpus=idle)


def ahead():
    """An interval in which every take found the whole buffer ready."""
    return Measurement(0.5, 10, wait_fraction=0.0, full_fraction=1.0, idle_cpus=0.0)


# -- the controller ------------------------------------------------------------------


def test_adds_while_the_consumer_waits_and_cpus_are_idle():
    c = WorkerController(1, 6, add_above=0.1, remove_after=3)
    assert c.step(1, starved(idle=4.0)) == 2  # at most doubling
    assert c.step(2, starved(idle=4.0)) == 4
    assert c.step(4, starved(idle=1.2)) == 5  # as far as the idle cores go
    assert c.step(5, starved(idle=8.0)) == 6  # never above the bound
    assert c.step(6, starved(idle=8.0)) == 6


def test_does_not_add_without_idle_cpus_or_below_the_threshold():
    c = WorkerController(1, 6, add_above=0.1, remove_after=3)
    assert c.step(2, starved(idle=0.3)) == 2  # every core busy: more workers cannot help
    assert c.step(2, starved(idle=4.0, wait=0.05)) == 2  # the consumer hardly waited
    assert c.step(3, starved(idle=None)) == 6  # unknown idle CPUs: the wait decides


def test_removes_after_the_buffer_stayed_full_for_n_intervals():
    c = WorkerController(1, 6, add_above=0.1, remove_after=3)
    assert [c.step(4, ahead()) for _ in range(3)] == [4, 4, 3]
    # An interval that is not full starts the count again.
    half = Measurement(0.5, 10, wait_fraction=0.0, full_fraction=0.5, idle_cpus=0.0)
    assert [c.step(3, m) for m in (ahead(), ahead(), half, ahead(), ahead())] == [3] * 5
    assert c.step(3, ahead()) == 2
    # Never below the bound.
    low = WorkerController(2, 6, add_above=0.1, remove_after=1)
    assert [low.step(2, ahead()) for _ in range(4)] == [2] * 4


def test_a_removal_the_consumer_paid_for_waits_twice_as_long_next_time():
    c = WorkerController(1, 6, add_above=0.1, remove_after=2)
    assert [c.step(3, ahead()) for _ in range(2)] == [3, 2]
    assert c.step(2, starved(idle=1.0)) == 3  # that removal made the consumer wait
    assert [c.step(3, ahead()) for _ in range(4)] == [3, 3, 3, 2]


def test_a_count_outside_the_bounds_is_brought_back():
    c = WorkerController(2, 4, add_above=0.1, remove_after=3)
    assert c.step(1, ahead()) == 2
    assert c.step(9, starved()) == 4


def test_the_same_measurements_give_the_same_counts():
    sequence = [starved(), starved(idle=0.0), ahead(), ahead(), ahead(), starved(1.0)] * 3

    def run():
        c, n, counts = WorkerController(1, 8, add_above=0.1, remove_after=2), 1, []
        for m in sequence:
            n = c.step(n, m)
            counts.append(n)
        return counts

    assert run() == run()


def test_idle_cpus_are_a_number_of_cores():
    idle = IdleCpus()
    time.sleep(0.2)
    value = idle.sample()
    assert value is None or 0.0 <= value <= multiprocessing.cpu_count() + 0.5


# -- arguments -----------------------------------------------------------------------


def test_bad_settings_name_what_was_expected_and_got():
    with pytest.raises(ValueError, match="min_workers <= max_workers, got min_workers=5"):
        AutoWorkers(min_workers=5, max_workers=2)
    with pytest.raises(ValueError, match="min_workers must be at least 1, got 0"):
        AutoWorkers(min_workers=0)
    with pytest.raises(TypeError, match="max_workers must be an int, got float 2.5"):
        AutoWorkers(max_workers=2.5)
    with pytest.raises(ValueError, match="interval must be a positive number of seconds, got 0"):
        AutoWorkers(interval=0)
    with pytest.raises(ValueError, match=r"add_above must be a share of time in \[0, 1\), got 1"):
        AutoWorkers(add_above=1)
    with pytest.raises(ValueError, match="workers must be an int, 'auto' or an AutoWorkers"):
        Batcher(ToyScheme(), workers="many")
    with pytest.raises(TypeError, match="workers must be an int, 'auto' or an AutoWorkers"):
        Batcher(ToyScheme(), workers=2.0)
    for backend in ("inline", pytest.importorskip("concurrent.futures").ThreadPoolExecutor(1)):
        with pytest.raises(ValueError, match="needs a pool that the Batcher makes and resizes"):
            Batcher(ToyScheme(), workers="auto", backend=backend)
    batcher = Batcher(ToyScheme(), workers=1, backend="threads")
    with pytest.raises(ValueError, match="at least 1 worker, got 0"):
        batcher.resize(0)
    with pytest.raises(TypeError, match="resize\\(\\) takes an int, got str"):
        batcher.resize("2")


def test_auto_starts_at_its_minimum_with_bounds_from_the_cpus():
    batcher = Batcher(ToyScheme(), workers=AutoWorkers(min_workers=2, max_workers=5))
    assert batcher.workers == 2 and batcher.buffer == 4
    batcher = Batcher(ToyScheme(), workers="auto", backend="threads")
    assert batcher.auto == AutoWorkers() and batcher.workers == 1


# -- resizing a running Batcher --------------------------------------------------------


def take_resizing(batcher, state, counts, per_count):
    """Take ``per_count`` batches at each worker count of ``counts`` in turn."""
    got = []
    for n in counts:
        batcher.resize(n)
        for _ in range(per_count):
            result = batcher.take(state)
            got.append(result)
            state = result[1]
    return got


RESIZABLE = ["threads", "processes", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture
def resizable(request):
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return request.param


@pytest.mark.parametrize("resizable", RESIZABLE, indirect=True)
@pytest.mark.parametrize("scheme", [ToyScheme(batch_size=3), SteppingToyScheme(batch_size=3)])
def test_resizing_mid_run_gives_the_batches_of_an_inline_run(resizable, scheme, no_leaks):
    counts = [2, 4, 1, 3, 1, 2]
    slow = ToyScheme(batch_size=3, actions=tuple((k, ("sleep", 0.01)) for k in range(0, 40, 3)))
    for sch in (scheme, type(scheme)(batch_size=3, actions=slow.actions)):
        with Batcher(sch, backend=resizable, workers=1, materialize=toy_materialize) as batcher:
            batcher.start(7)
            got = take_resizing(batcher, 7, counts, per_count=4)
            stats = batcher.stats()
        # The inline reference: the same states, the same arrays, in the same order.
        assert_same(got, reference(sch, 7, len(counts) * 4))
        changes = [(c["workers_before"], c["workers"]) for c in stats["worker_changes"]]
        assert changes == [(1, 2), (2, 4), (4, 1), (1, 3), (3, 1), (1, 2)]
        assert stats["workers"] == 2 and 0.0 <= stats["worker_busy"] <= 1.0


def test_retired_worker_processes_end(no_leaks):
    def workers():
        return {p.pid for p in multiprocessing.active_children() if p.name == "ondabatches-worker"}

    with Batcher(ToyScheme(), backend="processes", workers=3, materialize=toy_materialize) as b:
        b.start(0)
        state = b.take(0)[1]
        three = workers()
        assert len(three) == 3
        b.resize(1)
        deadline = time.monotonic() + 10
        while len(workers()) > 1 and time.monotonic() < deadline:
            state = b.take(state)[1]
        assert len(workers()) == 1 and workers() < three  # the others ended, none started
        b.resize(2)
        assert len(workers()) == 2
        got = [b.take(state)]
    assert_same(got, reference(ToyScheme(), state, 1))


def test_a_resized_batcher_restarts_with_its_count(no_leaks):
    with Batcher(ToyScheme(), backend="threads", workers=1, materialize=toy_materialize) as b:
        b.resize(3)  # before start: the pool starts with 3
        b.start(0)
        assert b.workers == 3 and b.buffer == 6
        assert_same([b.take(0)], reference(ToyScheme(), 0, 1))


# -- workers="auto" end to end -----------------------------------------------------------


def slow_batches(seconds, n=400):
    return ToyScheme(actions=tuple((k, ("sleep", seconds)) for k in range(n)))


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_auto_adds_workers_while_the_consumer_waits(backend, caplog, no_leaks):
    # Batches that take 20 ms of waiting (not CPU: cpu_check off, the machine is shared)
    # and a consumer that takes them at once: it waits, so workers are added.
    scheme = slow_batches(0.02)
    auto = AutoWorkers(min_workers=1, max_workers=4, interval=0.15, cpu_check=False)
    with caplog.at_level(logging.INFO, logger="ondabatches"):
        with Batcher(scheme, backend=backend, workers=auto, materialize=toy_materialize) as b:
            b.start(0)
            got, state = [], 0
            deadline = time.monotonic() + 30
            while b.workers < 4 and time.monotonic() < deadline:
                result = b.take(state)
                got.append(result)
                state = result[1]
            stats = b.stats()
    assert b.workers == 4, stats
    assert_same(got, reference(scheme, 0, len(got)))
    changes = stats["worker_changes"]
    assert [c["workers"] for c in changes] == sorted(c["workers"] for c in changes)
    assert all(c["wait_fraction"] > 0.1 and "waited" in c["reason"] for c in changes)
    assert stats["min_workers"] == 1 and stats["max_workers"] == 4
    assert 0.0 <= stats["interval_wait_fraction"] <= 1.0
    assert format_stats(stats).endswith(", 4 workers (auto)")
    lines = [r.getMessage() for r in caplog.records if "Batcher workers" in r.getMessage()]
    assert lines and lines[0].startswith("Batcher workers: 1 -> 2 (the consumer waited")
    assert all(r.levelno == logging.INFO for r in caplog.records if "workers:" in r.getMessage())


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_auto_removes_workers_while_the_buffer_stays_full(backend, caplog, no_leaks):
    # Quick batches, a consumer that pauses 20 ms per batch: the buffer stays full.
    scheme = ToyScheme()
    auto = AutoWorkers(min_workers=1, max_workers=4, interval=0.1, remove_after=2)
    with caplog.at_level(logging.INFO, logger="ondabatches"):
        with Batcher(scheme, backend=backend, workers=auto, materialize=toy_materialize) as b:
            b.start(0)
            b.resize(4)
            got, state = [], 0
            deadline = time.monotonic() + 30
            while b.workers > 1 and time.monotonic() < deadline:
                result = b.take(state)
                got.append(result)
                state = result[1]
                time.sleep(0.02)
            stats = b.stats()
    assert b.workers == 1, stats
    assert_same(got, reference(scheme, 0, len(got)))
    auto_changes = stats["worker_changes"][1:]  # after resize(4)
    assert [c["workers"] for c in auto_changes] == [3, 2, 1]
    assert all("buffer stayed full" in c["reason"] for c in auto_changes)
    assert "Batcher workers: 4 -> 3 (the buffer stayed full" in caplog.text


def test_auto_holds_without_idle_cpus(monkeypatch, no_leaks):
    # Every core busy (as the controller is told): a waiting consumer gets no more workers.
    monkeypatch.setattr(IdleCpus, "sample", lambda self: 0.0)
    scheme = slow_batches(0.02, n=60)
    auto = AutoWorkers(min_workers=1, max_workers=4, interval=0.1)
    with Batcher(scheme, backend="threads", workers=auto, materialize=toy_materialize) as b:
        b.start(0)
        state = 0
        for _ in range(40):
            state = b.take(state)[1]
        stats = b.stats()
    assert stats["workers"] == 1 and stats["worker_changes"] == []
    assert stats["interval_wait_fraction"] > 0.5


def test_the_auto_count_does_not_change_the_arrays():
    # Two runs that end with different counts give the same arrays as inline.
    scheme = slow_batches(0.01, n=30)
    outs = []
    for sample in (0.0, 8.0):
        auto = AutoWorkers(max_workers=3, interval=0.05)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(IdleCpus, "sample", lambda self, v=sample: v)
            with Batcher(scheme, backend="threads", workers=auto, materialize=toy_materialize) as b:
                got = [result for result, _ in zip(b.iterate(0), range(25), strict=False)]
                outs.append((got, b.workers))
    assert_same(outs[0][0], reference(scheme, 0, 25))
    assert_same(outs[1][0], reference(scheme, 0, 25))
    assert outs[0][1] == 1 and outs[1][1] > 1
    np.testing.assert_array_equal(outs[0][0][-1][0][0], outs[1][0][-1][0][0])


# -- Ray: actors added and retired -------------------------------------------------------


@pytest.mark.ray
def test_ray_actors_are_retired_and_added(ray_session, no_leaks):
    scheme = ToyScheme()
    with Batcher(scheme, backend="ray", workers=2, materialize=toy_materialize) as b:
        b.start(0)
        got = take_n_states(b, 0, 4)
        pool = b._pool
        b.resize(1)
        got += take_n_states(b, got[-1][1], 6)
        assert pool._retired == {1} and pool._dismissed == {1}  # killed once idle
        assert pool._started == [0]
        b.resize(2)  # a new actor, not the killed one
        deadline = time.monotonic() + 20
        while 2 not in pool._started and time.monotonic() < deadline:
            got += take_n_states(b, got[-1][1], 1)
        assert 2 in pool._started and len(pool._actors) == 3
        got += take_n_states(b, got[-1][1], 4)
    assert_same(got, reference(scheme, 0, len(got)))


@pytest.mark.ray
def test_ray_auto_adds_actors_while_the_consumer_waits(ray_session, no_leaks):
    from ondabatches.serve import RayBatcher

    scheme = slow_batches(0.03)
    auto = AutoWorkers(min_workers=1, max_workers=2, interval=0.15, cpu_check=False)
    with RayBatcher(scheme, workers=auto, materialize=toy_materialize) as b:
        b.start(0)
        got, state = [], 0
        deadline = time.monotonic() + 30
        while b.stats()["workers"] < 2 and time.monotonic() < deadline:
            result = b.take(state)
            got.append(result)
            state = result[1]
        stats = b.stats()
    assert stats["workers"] == 2 and stats["worker_changes"][0]["workers_before"] == 1, stats
    assert "the consumer waited" in stats["worker_changes"][0]["reason"]
    # Through the actor, arrays arrive as read-only views of Ray's object store.
    expected = reference(scheme, 0, len(got))
    assert len(got) == len(expected)
    for ((x, y), s), ((ex, ey), es) in zip(got, expected, strict=True):
        assert s == es
        np.testing.assert_array_equal(x, ex, strict=True)
        np.testing.assert_array_equal(y, ey, strict=True)


def take_n_states(batcher, state, n):
    out = []
    for _ in range(n):
        out.append(batcher.take(state))
        state = out[-1][1]
    return out


# -- properties ------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 4)), min_size=1, max_size=6),
    start=st.integers(0, 50),
)
def test_any_resizes_between_any_takes_give_the_inline_batches(plan, start):
    scheme = ToyScheme(batch_size=2, actions=((start + 1, ("sleep", 0.005)),))
    with Batcher(scheme, backend="threads", workers=1, materialize=toy_materialize) as b:
        b.start(start)
        got, state = [], start
        for workers, takes in plan:
            b.resize(workers)
            for _ in range(takes):
                got.append(b.take(state))
                state = got[-1][1]
    assert_same(got, reference(scheme, start, len(got)))


def test_a_worker_killed_while_it_retires_has_its_batch_retried(tmp_path, no_leaks):
    # Three workers take batches breadth first (0, 1, 2, then 3, 4, 5); the first take
    # waits for batches 1 and 2, the shrink to one worker then retires the second and
    # third workers while the second runs batch 4, which kills it.
    marker = tmp_path / "killed"
    scheme = ToyScheme(actions=((1, ("sleep", 0.3)), (4, ("kill_once", str(marker)))))
    with Batcher(
        scheme, backend="processes", workers=3, materialize=toy_materialize, retries=1
    ) as b:
        b.start(0)
        got = [b.take(0)]
        b.resize(1)
        got += take_n_states(b, got[-1][1], 7)
        assert len(b._pool._workers) == 1
    assert marker.exists()
    assert_same(got, reference(ToyScheme(), 0, 8))
