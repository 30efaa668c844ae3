"""Cached descriptors of local sample files: bounded, fresh after a file is replaced,
never shared with a forked child, none left open."""

from __future__ import annotations

import gc
import multiprocessing
import os

import numpy as np
import pytest

from ondabatches.batches import RandomBatches
from ondabatches.materialize import materialize_batch
from ondabatches.onda import Samples, load, store, use_settings
from ondabatches.onda import _descriptors as descriptors
from ondabatches.serve import Batcher
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401
from tests.onda.samplefiles import make_info, make_signal, random_encoded

pytestmark = pytest.mark.timeout(60)


def open_fds() -> set[str]:
    """What this process's descriptors point at (Linux): files, shared memory, pipes.

    Sockets and event descriptors are left out: servers that other tests of the
    session leave running (moto, Ray) open and close those from their own threads.
    """
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed already
            continue
        if not target.startswith(("socket:", "anon_inode:")):
            out.add(f"{fd}->{target}")
    return out


@pytest.fixture
def fresh_cache():
    descriptors.close_all()
    before = open_fds()
    yield before
    descriptors.close_all()
    assert open_fds() == before


def _files(folder, n, info):
    paths = []
    for i in range(n):
        path = folder / f"s{i}.lpcm"
        store(path, Samples(random_encoded(info, 10, seed=i), info, encoded=True))
        paths.append(path)
    return paths


@pytest.fixture
def max_open():
    """Set the settings' ``max_open`` for the test (those of before come back after)."""
    with use_settings():
        yield lambda n: use_settings(max_open=n)


def test_descriptors_are_bounded_and_all_closed(tmp_path, fresh_cache, max_open):
    max_open(4)
    info = make_info("int16", 2)
    paths = _files(tmp_path, 10, info)
    for i, path in enumerate(paths):
        got = load(make_signal(path, "lpcm", info, 10), encoded=True).data
        assert np.array_equal(got, random_encoded(info, 10, seed=i))
        assert descriptors.open_count() <= 4
        assert len(open_fds() - fresh_cache) <= 4
    # Reading again reuses them: no new descriptor for the most recent files.
    held = open_fds()
    load(make_signal(paths[-1], "lpcm", info, 10), encoded=True)
    assert open_fds() == held


def test_a_replaced_file_is_read_afresh(tmp_path, fresh_cache):
    info = make_info("int16", 2)
    (path,) = _files(tmp_path, 1, info)
    sig = make_signal(path, "lpcm", info, 10)
    load(sig, encoded=True)
    # Replaced behind the library's back (not with store), by a rename over it.
    other = tmp_path / "other.lpcm"
    store(other, Samples(random_encoded(info, 10, seed=99), info, encoded=True))
    os.replace(other, path)
    assert np.array_equal(load(sig, encoded=True).data, random_encoded(info, 10, seed=99))
    # And replaced with store.
    store(path, Samples(random_encoded(info, 10, seed=7), info, encoded=True))
    assert np.array_equal(load(sig, encoded=True).data, random_encoded(info, 10, seed=7))


def _child_reads(path: str, queue) -> None:
    info = make_info("int16", 2)
    inherited = descriptors.open_count()
    data = load(make_signal(path, "lpcm", info, 10), encoded=True).data
    queue.put((inherited, data.tolist(), os.getpid()))


def test_a_forked_child_does_not_use_the_parents_descriptors(tmp_path, fresh_cache):
    info = make_info("int16", 2)
    (path,) = _files(tmp_path, 1, info)
    sig = make_signal(path, "lpcm", info, 10)
    load(sig, encoded=True)
    assert descriptors.open_count() == 1
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_reads, args=(str(path), queue))
    child.start()
    inherited, data, pid = queue.get(timeout=30)
    child.join(30)
    assert inherited == 0 and pid != os.getpid()
    assert data == random_encoded(info, 10, seed=0).tolist()
    # The parent's descriptor still works after the child closed its copy.
    assert np.array_equal(load(sig, encoded=True).data, random_encoded(info, 10, seed=0))


def test_no_descriptor_is_left_after_a_pool_closes(labeled):  # noqa: F811
    spec = RandomBatches(eeg_rows_at(labeled, 128.0), batch_size=4, batch_duration=60 * 10**9)
    state = spec.initial_state(seed=3)
    expected = materialize_batch(spec.iterate_batch(state)[0])[0]

    def run(backend: str) -> None:
        with Batcher(spec, backend=backend, workers=2) as batcher:
            batcher.start(state)
            (x, _), _ = batcher.take(state)
            assert np.array_equal(x, expected)
        del x  # a batch in shared memory holds its segment's mapping while it lives
        gc.collect()
        descriptors.close_all()  # the thread backend's reads happened in this process

    for backend in ("processes", "threads"):
        run(backend)  # starts what lives as long as the process (multiprocessing's tracker)
        before = open_fds()
        run(backend)
        assert open_fds() == before, backend


def test_threads_reading_more_files_than_are_kept_open_read_the_right_bytes(
    tmp_path, fresh_cache, max_open
):
    # Evictions happen while other threads read: a descriptor is closed only once no
    # read uses it (a closed, reused number would read another file's bytes).
    max_open(3)
    info = make_info("int16", 2)
    paths = _files(tmp_path, 12, info)
    expected = [random_encoded(info, 10, seed=i) for i in range(12)]
    signals = [make_signal(p, "lpcm", info, 10) for p in paths]

    def reader(k: int) -> bool:
        rng = np.random.default_rng(k)
        for i in rng.integers(0, 12, 300):
            if not np.array_equal(load(signals[i], encoded=True).data, expected[i]):
                return False
        return True

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(reader, range(8)))
    assert descriptors.open_count() <= 3


def test_the_descriptor_of_a_deleted_file_is_closed_when_next_read(tmp_path, fresh_cache):
    from ondabatches.errors import SampleFileNotFoundError

    info = make_info("int16", 2)
    (path,) = _files(tmp_path, 1, info)
    sig = make_signal(path, "lpcm", info, 10)
    load(sig, encoded=True)
    assert descriptors.open_count() == 1
    os.unlink(path)
    with pytest.raises(SampleFileNotFoundError, match="not found"):
        load(sig, encoded=True)
    assert descriptors.open_count() == 0


def test_by_descriptor_sees_a_file_renamed_over_or_deleted(tmp_path, fresh_cache):
    path = str(tmp_path / "entry")
    with open(path, "wb") as file:
        file.write(b"old")
    with descriptors.opened(path, by_descriptor=True) as (fd, _):
        assert os.pread(fd, 8, 0) == b"old"
    with descriptors.opened(path, by_descriptor=True) as (fd, st):
        assert os.pread(fd, 8, 0) == b"old" and st.st_nlink == 1  # the held one, kept
    tmp = str(tmp_path / "new")
    with open(tmp, "wb") as file:
        file.write(b"new!")
    os.replace(tmp, path)  # the old file has no link left: opened again
    with descriptors.opened(path, by_descriptor=True) as (fd, st):
        assert os.pread(fd, 8, 0) == b"new!" and st.st_size == 4
    assert descriptors.open_count() == 1
    os.unlink(path)
    with pytest.raises(FileNotFoundError):  # a deleted file is noticed, its space freed
        with descriptors.opened(path, by_descriptor=True):
            pass
    assert descriptors.open_count() == 0


def test_holds_keep_every_descriptor_open_until_the_block_ends(tmp_path, fresh_cache):
    """A batch's descriptors (`Holds`): the same descriptor as `opened` for a path, none
    closed while held even when the cache drops it, all closed once released."""
    paths = [str(tmp_path / f"f{k}") for k in range(3)]
    for k, path in enumerate(paths):
        with open(path, "wb") as f:
            f.write(bytes([k]) * 10)
    with use_settings(max_open=1):
        with descriptors.Holds() as holds:
            held = [holds.hold(path) for path in paths]  # the cache keeps only the last
            assert descriptors.open_count() == 1
            for k, (fd, st) in enumerate(held):
                assert os.pread(fd, 10, 0) == bytes([k]) * 10 and st.st_size == 10
            with descriptors.opened(paths[-1]) as (fd, _):
                assert fd == held[-1][0]
        assert len(open_fds() - fresh_cache) == 1  # the cached one, open for the next read
        with pytest.raises(FileNotFoundError), descriptors.Holds() as holds:
            holds.hold(str(tmp_path / "missing"))
