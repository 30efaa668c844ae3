"""The node-local cache of remote byte ranges, against the local moto S3 server."""

from __future__ import annotations

import errno
import multiprocessing
import os
import time

import numpy as np
import pytest

from ondabatches.errors import CacheError
from ondabatches.onda import (
    CACHE_ENV,
    Samples,
    Settings,
    _cache,
    cache_stats,
    current_settings,
    filesystem_for,
    get_cache,
    load_rows,
    set_cache,
    storage_env,
    store,
    use_settings,
)
from ondabatches.onda._lpcm import forget_file, read_range

from .samplefiles import make_info, make_signal, random_encoded
from .test_s3 import GetObjectBytes

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]


@pytest.fixture
def cache_dir(tmp_path):
    folder = tmp_path / "cache"
    set_cache(folder, "8M")
    cache_stats(reset=True)
    yield folder
    set_cache(None)


@pytest.fixture
def remote(s3):
    """An object of 64 KiB of random bytes on S3, its filesystem and a request counter."""
    fs, path = filesystem_for(s3.url("blob.lpcm"), s3.storage_options)
    payload = np.random.default_rng(3).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    fs.pipe_file(path, payload)
    fs.ls(s3.bucket)
    counter = GetObjectBytes(fs)
    yield fs, path, payload, counter
    counter.close()
    forget_file(fs, path)


def _entries(folder) -> list[str]:
    return [
        os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".entry")
    ]


def test_off_by_default_and_forwarded_to_workers(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert get_cache() is None
    set_cache(tmp_path / "c", "1M")
    try:
        assert storage_env()[CACHE_ENV] == f"{tmp_path / 'c'}:{1 << 20}"
        assert get_cache().max_bytes == 1 << 20
        assert CACHE_ENV not in os.environ  # a setting, not the environment
    finally:
        set_cache(None)
    assert CACHE_ENV not in storage_env() and get_cache() is None


def test_second_read_makes_no_request(cache_dir, remote):
    fs, path, payload, counter = remote
    first = read_range(fs, path, 100, 30_000)
    n_first = len(counter.responses)
    assert n_first == 1 and counter.total == 29_900
    second = read_range(fs, path, 100, 30_000)
    assert len(counter.responses) == n_first  # no request at all
    assert first.tobytes() == second.tobytes() == payload[100:30_000]
    second[0] ^= 1  # writable, and a copy: the entry is untouched
    assert read_range(fs, path, 100, 30_000).tobytes() == payload[100:30_000]
    stats = cache_stats()
    assert (stats.hits, stats.misses) == (2, 1)


def test_changed_object_is_not_served_stale(cache_dir, remote):
    fs, path, payload, counter = remote
    assert read_range(fs, path, 0, 1000).tobytes() == payload[:1000]
    changed = bytes(255 - b for b in payload)
    fs.pipe_file(path, changed)  # same size, new ETag
    forget_file(fs, path)  # what a new process (or store()) starts with
    assert read_range(fs, path, 0, 1000).tobytes() == changed[:1000]
    assert len(counter.responses) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "extend"])
def test_damaged_entry_is_refetched_never_served(cache_dir, remote, damage):
    fs, path, payload, counter = remote
    read_range(fs, path, 0, 5000)
    (entry,) = _entries(cache_dir)
    with open(entry, "rb") as file:
        raw = bytearray(file.read())
    if damage == "flip":
        raw[-10] ^= 0xFF
    elif damage == "truncate":
        raw = raw[:-1]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw += b"x"
    with open(entry, "wb") as file:
        file.write(raw)
    assert read_range(fs, path, 0, 5000).tobytes() == payload[:5000]
    assert len(counter.responses) == 2  # fetched again
    assert cache_stats().corrupt == 1
    # and stored again, whole: the next read is a hit
    assert read_range(fs, path, 0, 5000).tobytes() == payload[:5000]
    assert len(counter.responses) == 2


def test_size_bound_evicts_least_recently_used(tmp_path, remote):
    fs, path, payload, counter = remote
    set_cache(tmp_path / "small", 40_000)
    try:
        for k in range(12):  # 12 x 4 KiB ranges into a 40 kB cache
            read_range(fs, path, k * 4096, (k + 1) * 4096)
            total = sum(os.path.getsize(e) for e in _entries(tmp_path / "small"))
            assert total <= 40_000
        assert len(_entries(tmp_path / "small")) < 12
        assert cache_stats().evicted > 0
        n = len(counter.responses)
        read_range(fs, path, 11 * 4096, 12 * 4096)  # the newest is still there
        assert len(counter.responses) == n
        read_range(fs, path, 0, 4096)  # the oldest is gone
        assert len(counter.responses) == n + 1
    finally:
        set_cache(None)


def test_leftover_temp_files_are_ignored_and_cleaned(cache_dir, remote):
    fs, path, payload, _ = remote
    read_range(fs, path, 0, 100)
    (entry,) = _entries(cache_dir)
    stale = os.path.join(os.path.dirname(entry), ".tmp-1-crashed")
    with open(stale, "wb") as file:
        file.write(b"half an entry")
    os.utime(stale, (0, 0))
    get_cache()._scan_and_evict()
    assert not os.path.exists(stale)
    assert read_range(fs, path, 0, 100).tobytes() == payload[:100]


def test_unwritable_directory_is_a_cache_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root: the mode is not enforced, so say what it says
            monkeypatch.setattr(os, "access", lambda path, mode: False)
        with pytest.raises(CacheError, match="not writable"):
            set_cache(folder, "1M")
        assert get_cache() is None
    finally:
        folder.chmod(0o700)


def test_shared_or_foreign_directory_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CacheError, match="writable by group or others"):
        set_cache(shared, "1M")
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    monkeypatch.setattr(_cache, "_owner", lambda st: os.getuid() + 1)
    with pytest.raises(CacheError, match="belongs to user id"):
        set_cache(mine, "1M")


def test_bad_directory_from_the_environment_warns_and_reads_uncached(tmp_path, remote, monkeypatch):
    fs, path, payload, counter = remote
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(CACHE_ENV, f"{shared}:1M")
    with use_settings(Settings.from_env()):  # as a process reads it at first use
        with pytest.warns(RuntimeWarning, match="writable by group or others"):
            assert read_range(fs, path, 0, 10).tobytes() == payload[:10]
        assert read_range(fs, path, 0, 10).tobytes() == payload[:10]  # warned once
    assert len(counter.responses) == 2
    assert list(shared.iterdir()) == []


def test_full_disk_warns_and_reads_uncached(cache_dir, remote, monkeypatch):
    fs, path, payload, counter = remote

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_cache, "_write_all", full)
    with pytest.warns(RuntimeWarning, match="No space left"):
        assert read_range(fs, path, 0, 3000).tobytes() == payload[:3000]
    assert read_range(fs, path, 0, 3000).tobytes() == payload[:3000]
    assert len(counter.responses) == 2
    assert _entries(cache_dir) == []
    assert [f for _, _, fs_ in os.walk(cache_dir) for f in fs_] == []  # no temp file left


def _read_many(args):
    url, options, payload_digest, seed = args
    import hashlib

    fs, path = filesystem_for(url, options)
    rng = np.random.default_rng(seed)
    for _ in range(60):
        k = int(rng.integers(0, 16))
        got = read_range(fs, path, k * 4096, (k + 1) * 4096).tobytes()
        if hashlib.blake2b(got).hexdigest() != payload_digest[k]:
            return f"wrong bytes for range {k}"
    return "ok"


def test_concurrent_processes_get_correct_bytes(tmp_path, s3, remote):
    import hashlib

    fs, path, payload, _ = remote
    digests = [hashlib.blake2b(payload[k * 4096 : (k + 1) * 4096]).hexdigest() for k in range(16)]
    # a bound below the 16 ranges' total, so that processes evict under each other
    set_cache(tmp_path / "shared-cache", 48_000)
    try:
        ctx = multiprocessing.get_context("spawn")
        # Processes started by hand get the settings as the Batcher's workers do.
        with ctx.Pool(3, initializer=use_settings, initargs=(current_settings(),)) as pool:
            results = pool.map(
                _read_many,
                [(s3.url("blob.lpcm"), s3.storage_options, digests, s) for s in range(3)],
            )
        assert results == ["ok"] * 3
        assert _entries(tmp_path / "shared-cache")
    finally:
        set_cache(None)


def test_load_rows_through_the_cache(cache_dir, s3):
    info = make_info("int16", 3)
    n = 12_000  # 72 kB: above the size of lpcm files read whole (SMALL_WHOLE_BYTES)
    enc = random_encoded(info, n)
    for suffix in (".lpcm", ".lpcm.zst"):
        url = s3.url(f"rec/c{suffix}")
        store(url, Samples(enc, info, encoded=True), storage_options=s3.storage_options)
        sig = make_signal(url, suffix.lstrip("."), info, n)
        for _ in range(2):
            got = load_rows(sig, range(500, 3100), encoded=True, storage_options=s3.storage_options)
            np.testing.assert_array_equal(got.data, enc[:, 500:3100])
    assert cache_stats().hits >= 2


def _age(entry: str, seconds: float = 10.0, whole: bool = False) -> None:
    """Make ``entry`` look written ``seconds`` ago (access and modification time; in
    whole seconds, as some file systems keep them, if ``whole``)."""
    then = int((time.time() - seconds) * 1e9)
    if whole:
        then -= then % 10**9
    os.utime(entry, ns=(then, then))


def _count_crcs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = _cache.zlib.crc32

    def counted(data, *args):
        calls.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(_cache.zlib, "crc32", counted)
    return calls


def test_checked_entry_is_served_without_its_crc_until_changed(cache_dir, remote, monkeypatch):
    fs, path, payload, counter = remote
    read_range(fs, path, 0, 5000)
    (entry,) = _entries(cache_dir)
    crcs = _count_crcs(monkeypatch)
    _age(entry, 1.0)
    monkeypatch.setattr(_cache, "_SETTLE_S", 3.0)
    read_range(fs, path, 0, 5000)  # fresh: checked, not remembered (the clock's tick)
    assert crcs == [5000]
    _age(entry)
    read_range(fs, path, 0, 5000)  # checked and remembered
    assert read_range(fs, path, 0, 5000).tobytes() == payload[:5000]
    assert crcs == [5000, 5000]  # the last hit skipped the CRC
    # A write in place, after the check, gives the entry a newer mtime: checked again.
    with open(entry, "r+b") as file:
        file.seek(-10, os.SEEK_END)
        file.write(b"\xff" * 10)
    assert read_range(fs, path, 0, 5000).tobytes() == payload[:5000]
    assert len(counter.responses) == 2 and cache_stats().corrupt == 1
    assert crcs[-1] == 5000


@pytest.mark.parametrize("damage", ["truncate", "replace"])
def test_changed_checked_entry_is_checked_again(cache_dir, remote, monkeypatch, damage):
    fs, path, payload, counter = remote
    read_range(fs, path, 0, 5000)
    (entry,) = _entries(cache_dir)
    _age(entry)
    read_range(fs, path, 0, 5000)  # remembered as checked, its descriptor kept
    with open(entry, "rb") as file:
        raw = file.read()
    if damage == "truncate":
        os.truncate(entry, len(raw) - 1)
    else:  # another file renamed over it, with the old times but a flipped byte
        st = os.stat(entry)
        tmp = entry + ".new"
        with open(tmp, "wb") as file:
            file.write(raw[:-1] + bytes([raw[-1] ^ 1]))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, entry)
    assert read_range(fs, path, 0, 5000).tobytes() == payload[:5000]
    assert len(counter.responses) == 2 and cache_stats().corrupt == 1


def test_hit_records_recency_in_access_time_only(cache_dir, remote):
    fs, path, payload, _ = remote
    read_range(fs, path, 0, 100)
    (entry,) = _entries(cache_dir)
    _age(entry)
    before = os.stat(entry)
    read_range(fs, path, 0, 100)
    after = os.stat(entry)
    assert after.st_mtime_ns == before.st_mtime_ns  # what the checked entries rely on
    assert after.st_atime_ns > before.st_atime_ns  # what eviction orders by


def test_eviction_keeps_the_entry_hit_last(tmp_path, remote):
    fs, path, payload, counter = remote
    set_cache(tmp_path / "lru", 40_000)
    try:
        seen: set[str] = set()
        for k in range(8):  # 8 x 4 KiB, each older than the next
            read_range(fs, path, k * 4096, (k + 1) * 4096)
            (entry,) = set(_entries(tmp_path / "lru")) - seen
            _age(entry, 200 - k)
            seen.add(entry)
        read_range(fs, path, 0, 4096)  # the oldest written, now the last used
        for k in range(8, 12):  # past the bound: the least recently used go
            read_range(fs, path, k * 4096, (k + 1) * 4096)
        n = len(counter.responses)
        read_range(fs, path, 0, 4096)
        assert len(counter.responses) == n
        read_range(fs, path, 4096, 2 * 4096)
        assert len(counter.responses) == n + 1
    finally:
        set_cache(None)


def test_whole_second_mtimes_must_be_older_to_skip_the_crc(cache_dir, remote, monkeypatch):
    fs, path, payload, _ = remote
    read_range(fs, path, 0, 3000)
    (entry,) = _entries(cache_dir)
    crcs = _count_crcs(monkeypatch)
    _age(entry, 0.5, whole=True)  # older than the tick, not than a whole second's
    for _ in range(2):
        assert read_range(fs, path, 0, 3000).tobytes() == payload[:3000]
    assert crcs == [3000, 3000]
    _age(entry, 5.0, whole=True)
    for _ in range(2):
        assert read_range(fs, path, 0, 3000).tobytes() == payload[:3000]
    assert crcs == [3000] * 3


def test_get_cache_follows_set_cache_and_settings(tmp_path):
    # get_cache remembers its last answer per settings object: a new set_cache of the
    # same folder and size, or settings without a cache, must not see the old one.
    set_cache(tmp_path / "a", "1M")
    first = get_cache()
    assert get_cache() is first
    set_cache(tmp_path / "a", "1M")
    second = get_cache()
    assert second is not first and second.directory == first.directory
    use_settings(cache_directory=None)
    assert get_cache() is None
    set_cache(tmp_path / "b", "2M")
    assert get_cache().directory == str(tmp_path / "b")
    set_cache(None)
    assert get_cache() is None
