"""Storing and loading through s3:// on a local moto server; window reads stay small."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ondabatches import StorageError
from ondabatches.errors import SampleFileNotFoundError, SpanError
from ondabatches.onda import LPCMZstFormat, Samples, filesystem_for, load, load_rows, store
from ondabatches.onda._lpcm import SMALL_WHOLE_BYTES
from ondabatches.onda._zst import parse_seek_table

from .samplefiles import lpcm_bytes, make_info, make_signal, random_encoded, single_frame_zst

pytestmark = pytest.mark.s3


class GetObjectBytes:
    """Counts the bytes the server sent for GetObject calls of one filesystem."""

    def __init__(self, fs):
        self._fs = fs
        self.responses: list[int] = []
        fs.s3.meta.events.register("after-call.s3.GetObject", self._record)

    def _record(self, parsed=None, **_):
        self.responses.append(int(parsed["ContentLength"]))

    @property
    def total(self) -> int:
        return sum(self.responses)

    def close(self):
        self._fs.s3.meta.events.unregister("after-call.s3.GetObject", self._record)


@pytest.fixture
def get_bytes(s3):
    fs, _ = filesystem_for(s3.url("x"), s3.storage_options)
    fs.ls(s3.bucket)  # make sure the client exists
    counter = GetObjectBytes(fs)
    yield counter
    counter.close()


@pytest.mark.parametrize("suffix", [".lpcm", ".lpcm.zst"])
def test_store_and_load_through_s3(s3, suffix):
    info = make_info("int16", 3)
    enc = random_encoded(info, 2000)
    url = s3.url(f"rec/x{suffix}")
    store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
    assert s3.fs.exists(url)
    sig = make_signal(url, suffix.lstrip("."), info, 2000)
    opts = s3.storage_options
    np.testing.assert_array_equal(load(sig, encoded=True, storage_options=opts).data, enc)
    np.testing.assert_array_equal(
        load_rows(sig, range(150, 1700), encoded=True, storage_options=opts).data, enc[:, 150:1700]
    )
    with pytest.raises(SpanError):
        load_rows(sig, range(0, 2001), storage_options=opts)


def test_lpcm_window_transfers_only_its_bytes(s3, get_bytes):
    info = make_info("int16", 19)
    n = 100_000  # 3.8 MB
    enc = random_encoded(info, n)
    url = s3.url("big.lpcm")
    store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
    sig = make_signal(url, "lpcm", info, n)
    rows = range(60_000, 61_000)
    got = load_rows(sig, rows, encoded=True, storage_options=s3.storage_options)
    np.testing.assert_array_equal(got.data, enc[:, 60_000:61_000])
    window_bytes = len(rows) * info.bytes_per_sample
    assert 0 < get_bytes.total <= window_bytes + 1024
    assert get_bytes.responses == [window_bytes]


@pytest.mark.parametrize("n_channels", [1, 3])
def test_small_lpcm_is_read_whole_once(s3, get_bytes, n_channels):
    info = make_info("int16", n_channels)
    n = SMALL_WHOLE_BYTES // info.bytes_per_sample  # at the threshold: read whole
    enc = random_encoded(info, n)
    url = s3.url(f"small{n_channels}.lpcm")
    store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
    sig = make_signal(url, "lpcm", info, n)
    for rows in (range(10, 50), range(n - 7, n), range(0, n), range(300, 301)):
        got = load_rows(sig, rows, encoded=True, storage_options=s3.storage_options)
        np.testing.assert_array_equal(got.data, enc[:, rows.start : rows.stop])
        got.data[:] = 0  # a copy: the kept file is untouched
    assert get_bytes.responses == [n * info.bytes_per_sample]  # one GET, the whole file
    changed = enc[::-1].copy()
    store(url, Samples(changed, info, encoded=True), storage_options=s3.storage_options)
    got = load_rows(sig, range(10, 50), encoded=True, storage_options=s3.storage_options)
    np.testing.assert_array_equal(got.data, changed[:, 10:50])  # store() forgot the old


def test_lpcm_above_the_small_size_reads_windows(s3, get_bytes):
    info = make_info("int16", 1)
    n = SMALL_WHOLE_BYTES // 2 + 1
    enc = random_encoded(info, n)
    url = s3.url("over.lpcm")
    store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
    sig = make_signal(url, "lpcm", info, n)
    got = load_rows(sig, range(10, 50), encoded=True, storage_options=s3.storage_options)
    np.testing.assert_array_equal(got.data, enc[:, 10:50])
    assert get_bytes.responses == [80]


def test_seekable_zst_window_reads_only_some_frames(s3, get_bytes):
    info = make_info("int16", 4)
    n = 200_000
    # Smooth data so that frames compress, as real signals do.
    enc = (np.cumsum(random_encoded(info, n) % 7 - 3, axis=1) % 1000).astype(np.int16)
    url = s3.url("big.lpcm.zst")
    fs, path = filesystem_for(url, s3.storage_options)
    with fs.open(path, "wb") as f:
        LPCMZstFormat(frame_bytes=64_000).write(f, enc, info)
    size = fs.size(path)
    table = parse_seek_table(size, lambda a, b: fs.cat_file(path, start=a, end=b))
    assert len(table.decompressed_offsets) - 1 == 25
    sig = make_signal(url, "lpcm.zst", info, n)
    rows = range(190_000, 194_000)  # 32 kB decompressed, inside one or two frames
    got = load_rows(sig, rows, encoded=True, storage_options=s3.storage_options)
    np.testing.assert_array_equal(got.data, enc[:, rows.start : rows.stop])
    c = table.compressed_offsets
    largest_two_frames = int(np.sort(np.diff(c))[-2:].sum())
    seek_table_bytes = size - int(c[-1])
    assert get_bytes.total <= largest_two_frames + seek_table_bytes + 9
    assert get_bytes.total < size / 5
    # A second window reuses the cached seek table: one GET for its frames only.
    get_bytes.responses.clear()
    load_rows(sig, range(0, 100), encoded=True, storage_options=s3.storage_options)
    assert get_bytes.responses == [int(c[1])]


def test_single_frame_zst_from_s3(s3):
    info = make_info("int16", 2)
    enc = random_encoded(info, 5000)
    url = s3.url("julia-style.lpcm.zst")
    s3.fs.pipe_file(url, single_frame_zst(lpcm_bytes(enc, info)))
    sig = make_signal(url, "lpcm.zst", info, 5000)
    got = load_rows(sig, range(4000, 5000), encoded=True, storage_options=s3.storage_options)
    np.testing.assert_array_equal(got.data, enc[:, 4000:])


def test_missing_object_and_bucket(s3):
    info = make_info("int16", 2)
    for fmt in ("lpcm", "lpcm.zst"):
        sig = make_signal(s3.url(f"nothing.{fmt}"), fmt, info, 10)
        with pytest.raises(SampleFileNotFoundError, match=r"s3://.*nothing\.lpcm"):
            load(sig, storage_options=s3.storage_options)
    sig = make_signal("s3://no-such-bucket-here/x.lpcm", "lpcm", info, 10)
    with pytest.raises(
        (SampleFileNotFoundError, StorageError), match="s3://no-such-bucket-here/x.lpcm"
    ):
        load(sig, storage_options=s3.storage_options)


def test_failed_upload_leaves_nothing(s3, monkeypatch):
    info = make_info("int16", 2)
    url = s3.url("failed.lpcm")

    def failing_chunks(data, info, chunk_bytes=1 << 24):
        yield memoryview(b"\x00" * 16)
        raise OSError("disk on fire")

    monkeypatch.setattr("ondabatches.onda._lpcm.interleaved_chunks", failing_chunks)
    with pytest.raises(StorageError, match=r"cannot write s3://.*failed\.lpcm.*disk on fire"):
        store(
            url,
            Samples(random_encoded(info, 10), info, encoded=True),
            storage_options=s3.storage_options,
        )
    assert not s3.fs.exists(url)


def test_worker_process_reaches_s3_through_the_environment(s3):
    """A fresh process configured only by AWS_* variables (set by the fixture) loads the file."""
    info = make_info("int16", 2)
    enc = random_encoded(info, 128)
    url = s3.url("env.lpcm")
    store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
    code = (
        "import sys, uuid, numpy as np\n"
        "from ondabatches.onda import Signal, SamplesInfo, TimeSpan, load_rows\n"
        "info = SamplesInfo('eeg', ('a', 'b'), 'uV', 0.5, 0.0, 'int16', 128.0)\n"
        f"sig = Signal(uuid.UUID(int=1), {url!r}, 'lpcm', TimeSpan(0, 10**9), 'eeg', info)\n"
        "sys.stdout.write(load_rows(sig, range(3, 5), encoded=True).data.tobytes().hex())\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert bytes.fromhex(child.stdout) == enc[:, 3:5].tobytes()
