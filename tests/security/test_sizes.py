"""Sizes are checked against the file (and a ceiling) before anything is allocated."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa
import pytest

from ondabatches import (
    Batcher,
    RandomBatches,
    SampleFileError,
    WorkerError,
    label_signals,
    materialize_batch,
)
from ondabatches.errors import SizeLimitError
from ondabatches.onda import Settings, use_settings
from ondabatches.serve import _shm
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def absurd_batches(tmp_path_factory):
    """A dataset whose signals table claims sample_rate=1e9 over files of a few 10 kB."""
    root = tmp_path_factory.mktemp("absurd")
    ds = make_dataset(root, n_recordings=2, duration=120 * 10**9, sample_rate=128.0, eog_every=0)
    signals = ds.signals
    i = signals.schema.get_field_index("sample_rate")
    rates = pa.array([1e9] * len(signals), pa.float64())
    signals = signals.set_column(i, signals.schema.field(i), rates)
    labeled = label_signals(
        signals, ds.annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    return RandomBatches(labeled, n_channels=2, batch_size=4, batch_duration=60 * 10**9)


def test_an_impossible_window_is_a_sample_file_error_before_allocating(absurd_batches):
    batch, _ = absurd_batches.iterate_batch(absurd_batches.initial_state(seed=0))
    allocated = []

    def allocate(shape, dtype):
        allocated.append(shape)
        return np.empty(shape, dtype)

    with pytest.raises(SampleFileError, match=r"recording .* sample_rate 1000000000.0 Hz"):
        materialize_batch(batch, allocate=allocate)
    assert allocated == []


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_an_impossible_window_is_permanent_on_every_backend(absurd_batches, backend):
    mine = f"/dev/shm/ondabatches_{os.getpid()}_*"  # others run tests on this machine too
    before = set(glob.glob(mine))
    with Batcher(absurd_batches, backend=backend, workers=1, retries=3, backoff=30.0) as b:
        state = absurd_batches.initial_state(seed=0)
        b.start(state)
        # A retry would wait 30 s (backoff): failing at once shows it was not retried.
        with pytest.raises(WorkerError, match=r"not retried.*SampleFileError.*expected"):
            b.take(state)
    # No segment of 480 GB was reserved (or left behind).
    assert set(glob.glob(mine)) <= before


def test_a_segment_over_the_ceiling_is_a_size_limit_error(monkeypatch):
    pool = _shm.SegmentPool(keep=1)
    try:
        name, size = pool.lease()
        segments = _shm.WorkerSegments()
        with use_settings(max_segment_bytes=10 << 20):
            segments.begin(name, size)
            with pytest.raises(SizeLimitError, match=r"21 MB of shared memory.*ceiling of 10 MB"):
                segments.allocate((21 * 10**6,), np.uint8)
            assert os.fstat(_open(name)).st_size <= 1  # nothing was reserved
        segments.begin(name, size)
        assert segments.allocate((1000,), np.uint8).shape == (1000,)
    finally:
        pool.close()


def test_the_default_ceiling_is_the_size_of_dev_shm(monkeypatch):
    st = os.statvfs("/dev/shm")
    with use_settings(max_segment_bytes=None):
        assert _shm.max_segment_bytes() == st.f_blocks * st.f_frsize
    # The variable is read once, into the settings.
    monkeypatch.setenv(_shm.MAX_SEGMENT_ENV, str(1 << 20))
    with use_settings(Settings.from_env()):
        assert _shm.max_segment_bytes() == 1 << 20
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv(_shm.MAX_SEGMENT_ENV, bad)
        with pytest.raises(SizeLimitError, match=f"whole number of bytes, got '{bad}'"):
            Settings.from_env()


def _open(name):
    import _posixshmem

    return _posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600)


def test_large_batches_of_sound_tables_pass_the_check(tmp_path, monkeypatch):
    from ondabatches.materialize import _materialize

    ds = make_dataset(tmp_path, n_recordings=4, duration=120 * 10**9, sample_rate=128.0,
                      eog_every=0)  # fmt: skip
    labeled = label_signals(
        ds.signals, ds.annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    batches = RandomBatches(labeled, n_channels=2, batch_size=8, batch_duration=60 * 10**9)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=3))
    assert {item.file_format for item in batch} == {"lpcm", "lpcm.zst"}
    expected = materialize_batch(batch)
    checked = []
    real = _materialize.check_rows
    monkeypatch.setattr(_materialize, "_CHECK_ABOVE", 0)  # every batch counts as large
    monkeypatch.setattr(_materialize, "check_rows", lambda s, r: checked.append(s) or real(s, r))
    x, y = materialize_batch(batch)
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    assert 0 < len(checked) <= len({item.file_path for item in batch})
