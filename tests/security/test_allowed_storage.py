"""An opt-in allow-list of storage protocols and path prefixes, enforced in workers too."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ondabatches import Batcher, RandomBatches, WorkerError, label_signals, materialize_batch
from ondabatches.errors import ArgumentError, UntrustedPathError
from ondabatches.onda import (
    ALLOWED_STORAGE_ENV,
    Settings,
    allowed_storage,
    current_settings,
    filesystem_for,
    load_rows,
    storage_env,
    use_settings,
)
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

from ..onda.samplefiles import make_info, make_signal, random_encoded

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_setting_left(monkeypatch):
    monkeypatch.delenv(ALLOWED_STORAGE_ENV, raising=False)
    assert not current_settings().allowed
    yield
    assert not current_settings().allowed
    assert ALLOWED_STORAGE_ENV not in os.environ  # a setting, never the environment


def _file(folder, name="x.lpcm"):
    from ondabatches.onda import Samples, store

    info = make_info("int16", 2)
    folder.mkdir(exist_ok=True)
    path = folder / name
    store(path, Samples(random_encoded(info, 100), info, encoded=True))
    return make_signal(path, "lpcm", info, 100)


def test_paths_outside_the_allowed_prefixes_are_refused_before_opening(tmp_path):
    inside = _file(tmp_path / "ok")
    outside = _file(tmp_path / "secret")
    (tmp_path / "ok" / "link.lpcm").symlink_to(outside.file_path)
    with allowed_storage(protocols=["file"], prefixes=[f"{tmp_path}/ok/"]):
        assert load_rows(inside, range(0, 10)).data.shape == (2, 10)
        for path in (
            outside.file_path,
            f"{tmp_path}/ok/../secret/x.lpcm",  # .. resolved before comparing
            f"{tmp_path}/ok/link.lpcm",  # symbolic links too
            f"{tmp_path}/okay/x.lpcm",  # a prefix is a folder, not a string start
            "http://169.254.169.254/latest/meta-data/",  # a protocol not allowed
            "simplecache::file:///etc/passwd",  # chained protocols
            "/etc/passwd",
        ):
            with pytest.raises(UntrustedPathError, match="outside the allowed storage"):
                filesystem_for(path)
        with pytest.raises(UntrustedPathError, match=r"secret/x\.lpcm is under none"):
            load_rows(outside, range(0, 10))
    assert load_rows(outside, range(0, 10)).data.shape == (2, 10)  # lifted on exit


def test_protocols_and_url_prefixes():
    with allowed_storage(protocols=["s3"], prefixes=["s3://bucket/eeg/"]):
        for url in ("s3://bucket/other/x.lpcm", "s3://bucket/eeg/../x.lpcm", "/tmp/x.lpcm",
                    "gs://bucket/eeg/x.lpcm"):  # fmt: skip
            with pytest.raises(UntrustedPathError):
                filesystem_for(url)
        assert "bucket/eeg/x.lpcm" in filesystem_for("s3://bucket/eeg/x.lpcm")[1]
        # Forwarded to Ray workers with the storage settings.
        assert ALLOWED_STORAGE_ENV in storage_env()


def test_a_plain_call_sets_it_and_only_an_explicit_call_lifts_it():
    allowed_storage(protocols=["s3"])
    try:
        with pytest.raises(UntrustedPathError, match="protocol 'file' is not allowed"):
            filesystem_for("/tmp/x")
        # An empty call would allow everything: it is refused, and nothing changes.
        with pytest.raises(ArgumentError, match="would allow every protocol and path"):
            allowed_storage()
        assert current_settings().allowed_protocols == ("s3",)
    finally:
        use_settings(allowed_protocols=None, allowed_prefixes=None)
    filesystem_for("/tmp/x")


def test_empty_lists_allow_nothing():
    with allowed_storage(protocols=[]):
        with pytest.raises(UntrustedPathError, match=r"allowed: protocols \[\], prefixes any"):
            filesystem_for("/tmp/x")


def test_the_block_restores_only_the_allow_list():
    with allowed_storage(prefixes=["/data/"]):
        use_settings(kernels="numpy")  # changed inside the block, for good
    try:
        assert not current_settings().allowed and current_settings().kernels == "numpy"
    finally:
        use_settings(kernels="auto")


def test_a_malformed_setting_is_an_error(monkeypatch):
    from ondabatches import StorageError

    for raw in ('{"prefixes": "/data"}x', '["/data"]', '{"prefix": ["/data"]}'):
        monkeypatch.setenv(ALLOWED_STORAGE_ENV, raw)
        with pytest.raises(StorageError, match=f"{ALLOWED_STORAGE_ENV} must be a JSON object"):
            Settings.from_env()
    monkeypatch.setenv(ALLOWED_STORAGE_ENV, '{"prefixes": ["/data/"]}')
    assert Settings.from_env().allowed_prefixes == ("/data/",)
    monkeypatch.delenv(ALLOWED_STORAGE_ENV)


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_workers_enforce_it(tmp_path, backend):
    ds = make_dataset(tmp_path / "ds", n_recordings=2, duration=2 * 60 * 10**9,
                      sample_rate=128.0, eog_every=0)  # fmt: skip
    labeled = label_signals(
        ds.signals, ds.annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    batches = RandomBatches(labeled, n_channels=1, batch_size=2, batch_duration=60 * 10**9)
    state = batches.initial_state(seed=0)
    x, _ = materialize_batch(batches.iterate_batch(state)[0])
    assert np.isfinite(x).all()
    with allowed_storage(protocols=["file"], prefixes=[f"{tmp_path}/elsewhere/"]):
        with Batcher(batches, backend=backend, workers=1, retries=3, backoff=30.0) as b:
            b.start(state)
            with pytest.raises(
                UntrustedPathError, match=r"not retried.*UntrustedPathError"
            ) as info:
                b.take(state)
            assert isinstance(info.value, WorkerError) and "elsewhere" in str(info.value)
