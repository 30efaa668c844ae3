"""Fixtures for the Batcher tests: one Ray instance per session, leak snapshots."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import shm_segments

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every Ray test (starting one takes seconds)."""
    import ray

    path = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    if ray.is_initialized():  # e.g. by the Ray block of docs/distributed.md, when it ran first
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def loky_executor():
    """A real loky reusable executor, which the Batcher uses but does not own."""
    from loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=2)
    executor.submit(int).result()  # start its workers before the leak checks' snapshot
    yield executor
    executor.shutdown(wait=True, kill_workers=True)


def our_segments() -> set[str]:
    """Segments named by this process's Batchers (other test runs may share /dev/shm)."""
    return {s for s in shm_segments() if s.startswith(f"ondabatches_{os.getpid()}_")}


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ondabatches")]


@pytest.fixture
def no_leaks():
    """Check, after the test, that no segment, child process or pool thread outlived it.

    Processes that existed before (a passed executor's workers) are not the test's.
    """
    shm_before = our_segments()
    children_before = set(multiprocessing.active_children())
    yield
    # A thread pool's threads end just after their last task; give them a moment.
    deadline = time.monotonic() + 3.0
    while our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert our_threads() == []
    assert set(multiprocessing.active_children()) - children_before == set()
    assert our_segments() - shm_before == set()
