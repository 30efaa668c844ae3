"""Faults between the workers and S3, and in the data: nothing lost, nothing hangs.

Transient faults (HTTP 500/503, connections reset before or during an answer, a request
that hangs until the client's read timeout fires, a worker killed midway through a
batch) are retried, and the batch sequence is identical to a clean run. Permanent
faults (a corrupt zstd frame, a sample file truncated after the table was written, a
missing label file) surface as a WorkerError that names the batch state, the recording
and the file, with no process or shared memory left behind.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

import pyarrow as pa
import pytest

from benchmarks._proxy import Faults
from ondabatches import Batcher, SampleFileError, WorkerError
from ondabatches.errors import SampleFileNotFoundError
from ondabatches.labels import iter_labeled_signals, labeled_signals_table
from ondabatches.onda._zst import parse_seek_table

from .pipeline import DieOnce, at_rate, n_identical, reference_batches, scheme, take

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]

N_BATCHES = 8


@pytest.fixture(scope="module")
def clean_run(reference_labeled):
    return {
        fmt: reference_batches(at_rate(reference_labeled, fmt), N_BATCHES)
        for fmt in ("lpcm", "lpcm.zst")
    }


def _batcher_retries(caplog) -> int:
    return sum("retrying in" in r.getMessage() for r in caplog.records)


def _report(name, proxy, delivered, identical, batch_retries):
    c = proxy.counts
    print(
        f"\n{name}: {c.requests} requests, {c.failed} failed {c.faults} (each retried), "
        f"{batch_retries} batch retries, {delivered} batches delivered, "
        f"{identical} identical to the clean run"
    )


@pytest.mark.parametrize("file_format", ["lpcm", "lpcm.zst"])
def test_transient_faults_are_retried(
    file_format, s3_labeled_table, clean_run, faulty_s3, caplog, no_leaks
):
    batches = scheme(at_rate(s3_labeled_table, file_format))
    proxy = faulty_s3.proxy
    proxy.faults = Faults(error_rate=0.04, reset_rate=0.02, cut_rate=0.02, seed=7)
    with caplog.at_level(logging.WARNING, "ondabatches"):
        with Batcher(batches, workers=2, backend="processes", retries=3, backoff=0.05) as batcher:
            got = take(batcher, batches.initial_state(0), N_BATCHES)
    identical = n_identical(got, clean_run[file_format])
    _report(
        f"transient faults, {file_format}", proxy, len(got), identical, _batcher_retries(caplog)
    )
    assert proxy.counts.failed >= 3, proxy.counts  # the faults did happen
    assert {"reset", "cut"} & set(proxy.counts.faults)
    assert identical == N_BATCHES


@pytest.mark.slow  # 16-33 s on a 2-core AMD EPYC: CI's default run stays under 15 min
def test_hanging_request_times_out_and_is_retried(s3_labeled_table, clean_run, faulty_s3, no_leaks):
    batches = scheme(at_rate(s3_labeled_table, "lpcm"))
    proxy = faulty_s3.proxy
    # The first two sample reads hang for a minute; the clients' read timeout is 1 s.
    proxy.faults = Faults(
        hang_first=2, methods=frozenset({"GET"}), path_contains="eeg", hang_seconds=60
    )
    with Batcher(batches, workers=2, backend="processes", retries=0) as batcher:
        got = take(batcher, batches.initial_state(0), N_BATCHES)
    identical = n_identical(got, clean_run["lpcm"])
    _report("hanging requests", proxy, len(got), identical, 0)
    assert proxy.counts.faults == {"hang": 2}
    assert identical == N_BATCHES


def test_worker_killed_mid_batch(s3_labeled_table, clean_run, faulty_s3, tmp_path, no_leaks):
    batches = scheme(at_rate(s3_labeled_table, "lpcm.zst"))
    marker = tmp_path / "killed"
    with Batcher(batches, workers=2, backend="processes", materialize=DieOnce(str(marker)),
                 backoff=0.01) as batcher:  # fmt: skip
        got = take(batcher, batches.initial_state(0), N_BATCHES)
    assert marker.exists()  # a worker did die
    assert n_identical(got, clean_run["lpcm.zst"]) == N_BATCHES


@pytest.mark.ray
def test_ray_worker_killed_mid_batch_with_faults(
    s3_labeled_table, clean_run, ray_through_proxy, faulty_s3, tmp_path
):
    batches = scheme(at_rate(s3_labeled_table, "lpcm"))
    faulty_s3.proxy.faults = Faults(error_rate=0.03, reset_rate=0.02, seed=11)
    marker = tmp_path / "killed"
    with Batcher(batches, workers=2, backend="ray", materialize=DieOnce(str(marker))) as batcher:
        got = take(batcher, batches.initial_state(0), N_BATCHES)
    identical = n_identical(got, clean_run["lpcm"])
    _report("ray, killed worker + faults", faulty_s3.proxy, len(got), identical, 0)
    assert marker.exists()
    assert identical == N_BATCHES


# -- permanent faults ---------------------------------------------------------------


def _one_recording(table: pa.Table, s3, fs, file_format: str) -> tuple[pa.Table, str, str]:
    """A copy, under the test's own prefix, of one recording's sample and label files.

    Returns the one-row labeled table pointing at the copies, the sample file URL and
    the label file URL.
    """
    row = next(iter_labeled_signals(at_rate(table, file_format).slice(0, 1)))
    sample_url = s3.url(f"copy/{uuid.uuid4().hex}.{file_format}")
    labels_url = s3.url(f"copy/labels_{uuid.uuid4().hex}.lpcm")
    fs.copy(row.signal.file_path, sample_url)
    fs.copy(row.labels.file_path, labels_url)
    copy = replace(
        row,
        signal=replace(row.signal, file_path=sample_url),
        labels=replace(row.labels, file_path=labels_url),
    )
    return labeled_signals_table([copy]), sample_url, labels_url


def _corrupt_zst_frames(fs, url: str) -> None:
    """Overwrite the magic number of every zstd frame: any window fails to decompress."""
    data = bytearray(fs.cat_file(url))
    table = parse_seek_table(len(data), lambda a, b: bytes(data[a:b]))
    assert table is not None
    for offset in table.compressed_offsets[:-1]:
        data[int(offset) : int(offset) + 4] = b"\x00\x00\x00\x00"
    fs.pipe_file(url, bytes(data))


@pytest.mark.parametrize(
    ("fault", "file_format", "error"),
    [
        ("corrupt zstd frame", "lpcm.zst", SampleFileError),
        ("truncated sample file", "lpcm", SampleFileError),
        ("missing label file", "lpcm", SampleFileNotFoundError),
    ],
)
def test_permanent_fault_names_recording_file_and_state(
    fault, file_format, error, s3_labeled_table, faulty_s3, no_leaks
):
    s3, fs = faulty_s3.s3, faulty_s3.s3.fs
    row, sample_url, labels_url = _one_recording(s3_labeled_table, s3, fs, file_format)
    recording = str(row.column("recording").to_pylist()[0])
    if fault == "corrupt zstd frame":
        _corrupt_zst_frames(fs, sample_url)
        bad_url = sample_url
    elif fault == "truncated sample file":
        fs.pipe_file(sample_url, fs.cat_file(sample_url)[:1000])
        bad_url = sample_url
    else:
        fs.rm_file(labels_url)
        bad_url = labels_url
    batches = scheme(row, batch_size=2)
    state = batches.initial_state(0)
    with Batcher(batches, workers=2, backend="processes", retries=1, backoff=0.01) as batcher:
        batcher.start(state)
        with pytest.raises(WorkerError) as info:
            for _ in range(3):
                _, state = batcher.take(state, timeout=60)
        assert isinstance(batcher.status, WorkerError)
    message = str(info.value)
    print(f"\n{fault}: {message.splitlines()[0]}\n    {message.strip().splitlines()[-1]}")
    assert info.value.state == state
    assert repr(state) in message
    assert error.__name__ in info.value.worker_traceback
    assert recording in message and bad_url in message
