"""One conformance suite for the Batcher, run against every backend.

``BatcherSuite`` holds the assertions; each backend is a one-line subclass that
provides the ``backend`` fixture. The reference is the toy scheme materialized
directly, which is what the inline backend must return too.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ondabatches import Batcher, BatcherError, WorkerError
from ondabatches.errors import BatchTimeoutError, SampleFileNotFoundError, UntrustedPathError
from tests.serve.conftest import ROOT
from tests.serve.toy import (
    DRAWS,
    SteppingToyScheme,
    ToyScheme,
    UnloadableMaterialize,
    toy_materialize,
)

pytestmark = pytest.mark.timeout(60)


def reference(scheme, state, n):
    """The first ``n`` ((x, y), next_state) from ``state``, computed without a Batcher."""
    out = []
    for _ in range(n):
        step = scheme.iterate_batch(state)
        if step is None:
            break
        batch, state = step
        out.append((toy_materialize(batch, np.float32), state))
    return out


def assert_same(got, expected):
    assert len(got) == len(expected)
    for ((x, y), s), ((ex, ey), es) in zip(got, expected, strict=True):
        assert s == es
        assert x.dtype == ex.dtype and y.dtype == ey.dtype
        np.testing.assert_array_equal(x, ex, strict=True)
        np.testing.assert_array_equal(y, ey, strict=True)
        assert x.flags.writeable and y.flags.writeable


def take_n(batcher, state, n):
    out = []
    for _ in range(n):
        result = batcher.take(state)
        if result is None:
            break
        out.append(result)
        state = result[1]
    return out


class BatcherSuite:
    """The assertions every backend must pass."""

    #: Whether stop() ends a worker blocked in a batch (processes can be killed, threads not).
    kills_workers = True

    @pytest.fixture
    def backend(self):
        raise NotImplementedError

    def make(self, backend, scheme, **kwargs) -> Batcher:
        kwargs.setdefault("workers", 2)
        kwargs.setdefault("backoff", 0.01)
        return Batcher(scheme, backend=backend, materialize=toy_materialize, **kwargs)

    @pytest.mark.parametrize("workers", [1, 2, 4])
    def test_order_matches_reference(self, backend, workers, no_leaks):
        scheme = ToyScheme(batch_size=3)
        with self.make(backend, scheme, workers=workers) as batcher:
            batcher.start(5)
            assert batcher.status == "running"
            got = take_n(batcher, 5, 7)
        assert batcher.status == "closed"
        assert_same(got, reference(scheme, 5, 7))

    def test_finite_scheme_ends_with_none(self, backend, no_leaks):
        scheme = ToyScheme(n_batches=3)
        with self.make(backend, scheme, buffer=2) as batcher:
            batcher.start(0)
            got = take_n(batcher, 0, 10)
            assert_same(got, reference(scheme, 0, 10))
            assert len(got) == 3
            assert batcher.take(3) is None
            assert batcher.status == "done"
            # Taking an earlier state repositions and serves again.
            assert_same([batcher.take(1)], reference(scheme, 1, 1))
            assert batcher.status == "running"

    def test_iterate(self, backend, no_leaks):
        scheme = ToyScheme(n_batches=4)
        with self.make(backend, scheme) as batcher:
            got = list(batcher.iterate(1))
        assert_same(got, reference(scheme, 1, 10))

    def test_take_another_state_repositions(self, backend, caplog, no_leaks):
        scheme = ToyScheme()
        with self.make(backend, scheme, buffer=3) as batcher:
            batcher.start(0)
            take_n(batcher, 0, 2)
            with caplog.at_level(logging.WARNING, logger="ondabatches"):
                jumped = batcher.take(10)
            assert "repositioning" in caplog.text and "10" in caplog.text
            then = batcher.take(jumped[1])
            back = batcher.take(0)
        assert_same([jumped, then], reference(scheme, 10, 2))
        assert_same([back], reference(scheme, 0, 1))

    def test_resume_from_json_in_new_process(self, backend, tmp_path, no_leaks):
        scheme = ToyScheme(batch_size=2)
        with self.make(backend, scheme) as batcher:
            batcher.start(0)
            first = take_n(batcher, 0, 3)
            checkpoint = json.dumps(first[-1][1])
            here = take_n(batcher, first[-1][1], 3)
        out = tmp_path / "resumed.npz"
        script = textwrap.dedent(
            f"""
            import json, numpy as np
            from ondabatches import Batcher
            from tests.serve.toy import ToyScheme, toy_materialize
            state = json.loads({checkpoint!r})
            arrays = {{}}
            with Batcher(ToyScheme(batch_size=2), workers=2, materialize=toy_materialize) as b:
                b.start(state)
                for k in range(3):
                    (x, y), state = b.take(state)
                    arrays[f"x{{k}}"], arrays[f"y{{k}}"] = x, y
            np.savez({str(out)!r}, state=json.dumps(state), **arrays)
            """
        )
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=50)
        with np.load(out) as saved:
            resumed = [((saved[f"x{k}"], saved[f"y{k}"]), None) for k in range(3)]
            assert json.loads(str(saved["state"])) == here[-1][1]
        assert_same([(arrays, None) for arrays, _ in here], resumed)

    def test_error_after_retries(self, backend, no_leaks):
        scheme = ToyScheme(actions=((2, ("fail", "boom")),))
        batcher = self.make(backend, scheme, retries=2)
        batcher.start(0)
        assert_same(take_n(batcher, 0, 2), reference(scheme, 0, 2))
        with pytest.raises(WorkerError) as info:
            batcher.take(2)
        error = info.value
        assert error.state == 2
        assert error.batch == scheme.iterate_batch(2)[0]
        assert "ValueError: toy failure boom" in error.worker_traceback
        assert "toy.py" in error.worker_traceback
        assert "3 attempt(s)" in str(error)
        assert batcher.status is error
        with pytest.raises(WorkerError):
            batcher.take(3)
        batcher.stop()
        batcher.stop()
        assert batcher.status == "closed"
        # A restart after an error serves again.
        batcher.start(3)
        assert_same(take_n(batcher, 3, 1), reference(scheme, 3, 1))
        batcher.stop()

    def test_transient_error_is_retried(self, backend, tmp_path, no_leaks):
        counter = tmp_path / "count"
        scheme = ToyScheme(actions=((1, ("fail_times", (str(counter), 2))),))
        with self.make(backend, scheme, retries=2) as batcher:
            batcher.start(0)
            got = take_n(batcher, 0, 3)
        assert counter.read_text() == "xx"
        assert_same(got, reference(ToyScheme(), 0, 3))

    def test_stop_right_after_start(self, backend, no_leaks):
        # Workers (Ray actors above all) may still be starting while the pool closes.
        batcher = self.make(backend, SteppingToyScheme())
        batcher.start(0)
        batcher.stop()
        assert batcher.status == "closed"
        batcher.start(0)  # and the Batcher starts again
        assert_same(take_n(batcher, 0, 1), reference(ToyScheme(), 0, 1))
        batcher.stop()

    def test_workers_draw_the_batches_of_a_scheme_with_next_state(self, backend, no_leaks):
        DRAWS.clear()
        with self.make(backend, SteppingToyScheme(n_batches=6)) as batcher:
            batcher.start(0)
            got = take_n(batcher, 0, 10)
            sends_once = batcher._pool.sends_once
        assert_same(got, reference(ToyScheme(n_batches=6), 0, 10))
        # Pools that send the scheme to each worker once leave all drawing to workers
        # (other processes); the others draw here, once per batch and once at the end.
        assert DRAWS == ([] if sends_once else [os.getpid()] * 7)

    def test_a_batch_drawn_by_a_worker_is_named_in_its_error(self, backend, no_leaks):
        scheme = SteppingToyScheme(actions=((2, ("fail", "drawn")),))
        with self.make(backend, scheme, retries=0) as batcher:
            batcher.start(0)
            take_n(batcher, 0, 2)
            with pytest.raises(WorkerError) as info:
                batcher.take(2)
        assert info.value.state == 2
        assert info.value.batch == scheme.iterate_batch(2)[0]
        assert "toy failure drawn" in info.value.worker_traceback

    def test_missing_file_is_a_worker_error(self, backend, tmp_path, no_leaks):
        missing = tmp_path / "nope.lpcm"
        scheme = ToyScheme(actions=((0, ("read", str(missing))),))
        with self.make(backend, scheme, retries=0) as batcher:
            batcher.start(0)
            with pytest.raises(WorkerError) as info:
                batcher.take(0)
        assert "FileNotFoundError" in info.value.worker_traceback
        assert "nope.lpcm" in info.value.worker_traceback

    def test_a_missing_sample_file_is_reported_at_once_not_retried(
        self, backend, tmp_path, no_leaks
    ):
        missing = tmp_path / "gone.lpcm"
        scheme = ToyScheme(actions=((1, ("load", str(missing))),))
        with self.make(backend, scheme, retries=5, backoff=10.0) as batcher:
            batcher.start(0)
            batcher.take(0)
            started = time.monotonic()
            with pytest.raises(WorkerError, match="not retried") as info:
                batcher.take(1)
            # Five retries with a 10 s backoff would take minutes.
            assert time.monotonic() - started < 5
            assert batcher.status is info.value
        assert "SampleFileNotFoundError" in info.value.worker_traceback
        assert "gone.lpcm" in info.value.worker_traceback
        assert info.value.state == 1
        # The public class the worker raised is raised again in the trainer, so that
        # `except SampleFileNotFoundError` (or FileNotFoundError) catches it too.
        assert isinstance(info.value, SampleFileNotFoundError)
        assert isinstance(info.value, FileNotFoundError)
        assert "gone.lpcm" in str(info.value)

    def test_a_plugin_error_is_raised_again_as_its_public_class(self, backend, no_leaks):
        # A subclass made outside ondabatches._errors travels by the name of the public
        # class it derives from: `except UntrustedPathError` catches it in the trainer,
        # at once (a refusal is not retried), with the worker's traceback attached.
        scheme = ToyScheme(actions=((0, ("refuse", "s3://elsewhere/a.lpcm")),))
        with self.make(backend, scheme, retries=5, backoff=10.0) as batcher:
            batcher.start(0)
            started = time.monotonic()
            with pytest.raises(UntrustedPathError, match="s3://elsewhere/a.lpcm") as info:
                batcher.take(0)
            assert time.monotonic() - started < 5
        assert isinstance(info.value, WorkerError) and isinstance(info.value, PermissionError)
        assert "PluginRefusal" in info.value.worker_traceback
        assert "not retried" in str(info.value)

    def test_lifecycle(self, backend, no_leaks):
        scheme = ToyScheme()
        batcher = self.make(backend, scheme)
        assert batcher.status == "stopped"
        with pytest.raises(BatcherError, match="start"):
            batcher.take(0)
        batcher.stop()
        assert batcher.status == "closed"
        for _ in range(2):
            batcher.start(4)
            assert batcher.status == "running"
            assert_same(take_n(batcher, 4, 2), reference(scheme, 4, 2))
            batcher.stop()
            assert batcher.status == "closed"
        with pytest.raises(BatcherError):
            batcher.take(6)

    def test_stop_with_blocked_worker(self, backend, no_leaks):
        # Killable workers get a batch that would block for a minute; threads cannot
        # be killed, so theirs ends soon after stop() (and must not delay it).
        seconds = 60 if self.kills_workers else 1.5
        scheme = ToyScheme(actions=((0, ("sleep", seconds)),))
        batcher = self.make(backend, scheme)
        batcher.start(0)
        with pytest.raises(BatchTimeoutError) as info:  # ours, and a TimeoutError
            batcher.take(0, timeout=0.3)
        assert isinstance(info.value, TimeoutError) and "state 0" in str(info.value)
        assert batcher.status == "running"
        began = time.monotonic()
        batcher.stop()
        assert time.monotonic() - began < 5
        assert batcher.status == "closed"


class TestInline(BatcherSuite):
    @pytest.fixture
    def backend(self):
        return "inline"

    def test_stop_with_blocked_worker(self, backend, no_leaks):
        # Inline runs in the caller: a blocking batch blocks take() itself.
        scheme = ToyScheme(actions=((1, ("sleep", 0.5)),))
        with self.make(backend, scheme) as batcher:
            batcher.start(0)
            began = time.monotonic()
            batcher.take(0)
            assert time.monotonic() - began < 0.4  # nothing computed ahead
            batcher.take(1)
            assert time.monotonic() - began >= 0.5


class TestThreads(BatcherSuite):
    kills_workers = False

    @pytest.fixture
    def backend(self):
        return "threads"


class TestProcesses(BatcherSuite):
    @pytest.fixture
    def backend(self):
        return "processes"


class TestLokyExecutor(BatcherSuite):
    kills_workers = False

    @pytest.fixture
    def backend(self, loky_executor):
        return loky_executor


@pytest.mark.ray
class TestRay(BatcherSuite):
    kills_workers = True

    @pytest.fixture
    def backend(self, ray_session):
        return "ray"


def test_processes_survive_sigkill(tmp_path, no_leaks):
    """A worker SIGKILLed mid-batch is replaced and the batch re-run: same output."""
    marker = tmp_path / "killed"
    scheme = ToyScheme(actions=((3, ("kill_once", str(marker))),))
    with Batcher(
        scheme, workers=2, backend="processes", materialize=toy_materialize, retries=1
    ) as batcher:
        batcher.start(0)
        got = take_n(batcher, 0, 6)
        pids = {p.pid for p in multiprocessing.active_children() if p.name == "ondabatches-worker"}
        assert len(pids) == 2
    killed = int(marker.read_text())
    assert killed not in pids
    assert_same(got, reference(ToyScheme(), 0, 6))


@pytest.mark.parametrize("backend", ["processes", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_materializer_that_cannot_load_in_a_worker_fails_at_once(backend, request, no_leaks):
    if backend == "ray":
        request.getfixturevalue("ray_session")
    scheme = ToyScheme()
    with Batcher(
        scheme, workers=1, backend=backend, materialize=UnloadableMaterialize()
    ) as batcher:
        batcher.start(0)
        with pytest.raises(WorkerError) as info:
            batcher.take(0)
        assert "after 1 attempt" in str(info.value)  # permanent: not retried
        assert "could not be unpickled in the worker" in info.value.worker_traceback
        assert "cannot be loaded in a worker" in info.value.worker_traceback


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="iterate_batch"):
        Batcher(object())
    with pytest.raises(ValueError, match="backend"):
        Batcher(ToyScheme(), backend="gpu")
    with pytest.raises(ValueError, match="workers"):
        Batcher(ToyScheme(), workers=0)
    with pytest.raises(ValueError, match="buffer"):
        Batcher(ToyScheme(), buffer=0)


@pytest.mark.parametrize("backend", ["processes", "threads"])
def test_the_first_take_waits_for_every_workers_first_batch(backend, no_leaks):
    """Starting up is paid by the first take(): the other workers' first batches (here
    the second worker's is slow) are in when it returns, so the next takes are quick."""
    scheme = ToyScheme(actions=((1, ("sleep", 0.6)),))
    with Batcher(scheme, workers=2, backend=backend, materialize=toy_materialize) as batcher:
        started = time.perf_counter()  # before start(): the slow batch may begin at once
        batcher.start(0)
        _, state = batcher.take(0)
        assert time.perf_counter() - started >= 0.6
        assert batcher._slots[0].future.done()  # batch 1, the slow one
        started = time.perf_counter()
        got = batcher.take(state)
        assert time.perf_counter() - started < 0.3
    assert_same([got], reference(ToyScheme(), 1, 1))
