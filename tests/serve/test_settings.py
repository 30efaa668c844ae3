"""Every backend's workers run with the trainer's settings, given to them explicitly:
set through the Python API only (no environment variable), seen in the worker, and
seen again in a worker that replaces one that died."""

from __future__ import annotations

import json
import os
import signal
from functools import partial

import pytest

from ondabatches.materialize import FunctionMaterializer
from ondabatches.onda import Samples, Settings, current_settings, set_cache, store, use_settings
from ondabatches.serve import Batcher
from tests.onda.samplefiles import make_info, make_signal, random_encoded
from tests.serve.toy import ToyScheme, report_limits, report_settings

pytestmark = pytest.mark.timeout(90)

_VARIABLES = (
    "ONDABATCHES_STORAGE_OPTIONS",
    "ONDABATCHES_ALLOWED_STORAGE",
    "ONDABATCHES_KERNELS",
    "ONDABATCHES_CACHE",
    "ONDABATCHES_MAX_SEGMENT_BYTES",
    "ONDABATCHES_MAX_CONCURRENT_READS",
    "ONDABATCHES_MAX_OPEN",
    "ONDABATCHES_MAX_STATE_JSON",
    "FSSPEC_MEMORY",
)


@pytest.fixture
def trainer_settings(tmp_path, monkeypatch):
    """Settings unlike the defaults in every field, set through the API only."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = current_settings()
    set_cache(tmp_path / "cache", "1M")
    with use_settings(
        storage_options={"memory": {"ondabatches_test": 11}},
        allowed_protocols=["file", "memory"],
        allowed_prefixes=[f"{tmp_path}/", "memory://ok/"],
        kernels="numpy",
        max_segment_bytes=1 << 30,
        max_concurrent_reads=3,
        max_open=5,
        max_state_json=4096,
    ) as installed:
        assert not any(name in os.environ for name in _VARIABLES)
        yield installed.settings
    use_settings(before)


def _seen(batch) -> tuple[Settings, dict, int]:
    (x, y), _ = batch
    report = json.loads(x.tobytes())
    return Settings.from_dict(report["settings"]), report, int(y.ravel()[0])


def _check(seen: tuple[Settings, dict, int], expected: Settings, tmp_path) -> None:
    settings, report, _ = seen
    assert settings == expected
    assert report["kernels_enabled"] is False  # what follows from them was applied too
    assert report["cache"] == str(tmp_path / "cache")


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_workers_run_with_the_trainer_settings(backend, trainer_settings, tmp_path, no_leaks):
    with Batcher(
        ToyScheme(), backend=backend, workers=1, materialize=FunctionMaterializer(report_settings)
    ) as b:
        b.start(0)
        first = _seen(b.take(0))
    _check(first, trainer_settings, tmp_path)
    assert (first[2] == os.getpid()) == (backend != "processes")


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_a_changed_limit_takes_effect_in_the_workers(backend, tmp_path, no_leaks):
    info = make_info("int16", 2)
    signals = []
    for i in range(6):
        store(
            tmp_path / f"s{i}.lpcm", Samples(random_encoded(info, 10, seed=i), info, encoded=True)
        )
        signals.append(make_signal(tmp_path / f"s{i}.lpcm", "lpcm", info, 10))
    materialize = FunctionMaterializer(partial(report_limits, signals=signals))

    def seen() -> dict:
        with Batcher(ToyScheme(), backend=backend, workers=1, materialize=materialize) as b:
            b.start(0)
            (x, _), _ = b.take(0)
        return json.loads(x.tobytes())

    with use_settings(max_open=2, max_state_json=2048):
        assert seen() == {"open": 2, "state_refused": True}
    with use_settings(Settings()):  # the defaults: 64 files, 2**20 characters
        assert seen() == {"open": 6, "state_refused": False}


def test_an_executor_that_the_batcher_does_not_own_gets_them(
    loky_executor, trainer_settings, tmp_path, no_leaks
):
    # loky's workers started before the settings were made: the tasks carry them.
    with Batcher(
        ToyScheme(),
        backend=loky_executor,
        workers=2,
        materialize=FunctionMaterializer(report_settings),
    ) as b:
        b.start(0)
        seen = _seen(b.take(0))
    assert seen[2] != os.getpid()
    _check(seen, trainer_settings, tmp_path)


def _replaced(batcher, dead: int, start: int) -> tuple[Settings, dict, int]:
    """Take batches from ``start`` on until one comes from a worker other than ``dead``."""
    for k in range(start, start + 20):
        seen = _seen(batcher.take(k))
        if seen[2] != dead:
            return seen
    raise AssertionError(f"every batch still came from worker {dead}")


def _kill_and_check(backend: str, expected: Settings, tmp_path) -> None:
    report = FunctionMaterializer(report_settings)
    with Batcher(ToyScheme(), backend=backend, workers=1, materialize=report,
                 backoff=0.01) as b:  # fmt: skip
        b.start(0)
        first = _seen(b.take(0))
        _check(first, expected, tmp_path)
        # Settings changed in the trainer after start are for the next start: every
        # worker of this one, a replacement too, has the settings it started with.
        with use_settings(kernels="auto", max_segment_bytes=None):
            os.kill(first[2], signal.SIGKILL)
            again = _replaced(b, first[2], 1)
    assert again[2] != first[2]
    _check(again, expected, tmp_path)


def test_a_replaced_worker_process_gets_the_same_settings(trainer_settings, tmp_path, no_leaks):
    _kill_and_check("processes", trainer_settings, tmp_path)


@pytest.mark.ray
def test_ray_actors_and_a_restarted_actor_get_the_same_settings(
    ray_session, trainer_settings, tmp_path, no_leaks
):
    # The actors' environment is Ray's (the session sets only PYTHONPATH).
    _kill_and_check("ray", trainer_settings, tmp_path)


@pytest.mark.ray
def test_a_ray_batcher_passes_them_on(ray_session, trainer_settings, tmp_path):
    from ondabatches.serve import RayBatcher

    with RayBatcher(
        ToyScheme(), materialize=FunctionMaterializer(report_settings), workers=1, buffer=2
    ) as b:
        b.start(0)
        seen = _seen(b.take(0))
    _check(seen, trainer_settings, tmp_path)
