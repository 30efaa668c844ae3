"""Fixtures of the end-to-end tests: the dataset on S3 (moto, through a faulty proxy), Ray."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ondabatches.onda import storage_env
from tests.conftest import shm_segments
from tests.faults import FaultyS3, faulty_proxy, faulty_s3  # noqa: F401 (fixtures)

from .pipeline import Dataset, local_labeled, make_s3_dataset, s3_labeled

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def s3_dataset(s3_session, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_s3_dataset(
        tmp_path_factory.mktemp("e2e"), s3_session.fs, f"s3://{s3_session.bucket}/e2e-dataset"
    )


@pytest.fixture(scope="session")
def reference_labeled(s3_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """Labeled table of the local copy, labels stored on local disk."""
    return local_labeled(s3_dataset, tmp_path_factory.mktemp("e2e-labels"))


@pytest.fixture(scope="session")
def s3_labeled_table(s3_dataset: Dataset, s3_session) -> pa.Table:
    """Labeled table read from S3, labels written to S3 with ``store_labels``."""
    return s3_labeled(s3_dataset, f"s3://{s3_session.bucket}/e2e-labels")


@pytest.fixture(scope="module")
def ray_through_proxy(faulty_proxy, s3_session):  # noqa: F811 (the fixture)
    """A local Ray instance whose workers reach S3 through the faulty proxy.

    Worker environment comes from ``storage_env()`` as a user would forward it; a Ray
    instance left by other tests is shut down first (its workers have another one).
    """
    import ray

    faulty = FaultyS3(s3_session, faulty_proxy)
    env = {**storage_env(), **faulty.env()}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


def _our_segments() -> set[str]:
    return {s for s in shm_segments() if s.startswith(f"ondabatches_{os.getpid()}_")}


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ondabatches")]


@pytest.fixture
def no_leaks():
    """After the test: no new shared memory segment, child process or pool thread."""
    shm_before = _our_segments()
    children_before = set(multiprocessing.active_children())
    yield
    deadline = time.monotonic() + 3.0
    while _our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _our_threads() == []
    assert set(multiprocessing.active_children()) - children_before == set()
    assert _our_segments() - shm_before == set()
