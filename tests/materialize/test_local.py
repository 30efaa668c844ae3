"""The local lpcm path of materialize_batch: the general path's values and errors, faster."""

from __future__ import annotations

import os
import pickle
import shutil
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ondabatches.batches import BatchState, RandomBatches
from ondabatches.errors import SampleFileError, SampleFileNotFoundError, UntrustedPathError
from ondabatches.materialize import _local, _materialize, materialize_batch
from ondabatches.onda import Samples, allowed_storage, load_rows, store
from ondabatches.onda._zst import parse_seek_table
from ondabatches.synthetic import make_dataset
from tests.dataset import (  # noqa: F401
    DURATION,
    dataset,
    eeg_rows_at,
    labeled,
    lazy_labeled,
    make_labeled,
)

MIN = 60 * 10**9


def _general(batch, dtype, exact) -> np.ndarray:
    """Each item by the general path alone, stacked."""
    return np.stack([_materialize._x(it, dtype, exact=exact) for it in batch])


def _counting(monkeypatch) -> list:
    calls: list = []
    general = _materialize._x_at

    def counted(item, *args, **kwargs):
        calls.append(item.file_format)
        return general(item, *args, **kwargs)

    monkeypatch.setattr(_materialize, "_x_at", counted)
    return calls


def _per_channel_count(table):
    """``table``'s rows split by channel count, one table per count."""
    counts = pa.array([len(c) for c in table.column("channels").to_pylist()])
    return [table.filter(pc.equal(counts, n)) for n in sorted(set(counts.to_pylist()))]


@pytest.fixture(scope="module")
def one_rate(tmp_path_factory):
    """Every EEG layout at 128 Hz: rows of one rate whose channel counts differ."""
    ds = make_dataset(
        tmp_path_factory.mktemp("one_rate"), n_recordings=4, duration=DURATION,
        sample_rate=128.0, eog_every=0,
    )  # fmt: skip
    return make_labeled(ds)


def test_one_rate_has_layouts_of_different_channel_counts(one_rate):
    assert len(_per_channel_count(one_rate)) > 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("source", ["labeled", "one_rate"])
def test_batches_equal_the_general_path_item_by_item(request, source, dtype, exact, monkeypatch):
    calls = _counting(monkeypatch)
    for _, batch in local_batches(request.getfixturevalue(source), 16, 3, seed=5):
        calls.clear()
        x, y = materialize_batch(batch, dtype, exact=exact)
        assert calls == []  # lpcm and lpcm.zst: all of them the local way
        np.testing.assert_array_equal(x, _general(batch, dtype, exact))
        assert x.dtype == dtype and y.shape == (16, 1, 2)
        np.testing.assert_array_equal(y[:, 0], [it.label_codes() for it in batch])
        assert y.flags.writeable


def local_batches(table_of_source, batch_size: int, per_case: int, seed: int):
    """``(where, batch)`` of ``per_case`` batches of every case the local path takes:
    each sample rate's lpcm and lpcm.zst rows (several encodings), every channel (a
    slice) per layout, since layouts of different channel counts do not stack, and
    random subsets (indices) of the whole table."""
    for rate in sorted(set(table_of_source.column("sample_rate").to_pylist())):
        table = eeg_rows_at(table_of_source, rate)
        cases = [(layout, None) for layout in _per_channel_count(table)] + [(table, 2)]
        for rows, n_channels in cases:
            spec = RandomBatches(rows, n_channels=n_channels, batch_size=batch_size,
                                 batch_duration=MIN)  # fmt: skip
            for index in range(per_case):
                batch, _ = spec.iterate_batch(spec.initial_state(seed=seed).advance(index))
                yield f"rate {rate}, {n_channels} channels, batch {index}", batch


def test_every_item_went_the_local_way_for_an_lpcm_table(labeled, monkeypatch):  # noqa: F811
    lpcm = labeled.filter(pc.equal(labeled.column("file_format"), "lpcm"))
    table = eeg_rows_at(lpcm, lpcm.column("sample_rate")[0].as_py())
    spec = RandomBatches(table, n_channels=3, batch_size=32, batch_duration=MIN)
    calls = _counting(monkeypatch)
    batch, _ = spec.iterate_batch(BatchState(2).bind(spec.initial_state().config))
    x, _ = materialize_batch(batch)
    assert calls == [] and len(batch) == 32
    np.testing.assert_array_equal(x, _general(batch, np.float32, True))


def _one_lpcm_batch(labeled, tmp_path, n=4, fmt="lpcm"):  # noqa: F811
    """A batch whose items all read one copy of a ``fmt`` file (ours to damage)."""
    lpcm = labeled.filter(pc.equal(labeled.column("file_format"), fmt)).slice(0, 1)
    copy = tmp_path / f"copy.{fmt}"
    shutil.copyfile(lpcm.column("file_path")[0].as_py(), copy)
    paths = pa.array([str(copy)])
    table = lpcm.set_column(lpcm.schema.get_field_index("file_path"), "file_path", paths)
    spec = RandomBatches(table, batch_size=n, batch_duration=MIN)
    return spec.iterate_batch(spec.initial_state(seed=1))[0], copy


def test_a_damaged_file_gets_the_general_paths_error(labeled, tmp_path, monkeypatch):  # noqa: F811
    batch, copy = _one_lpcm_batch(labeled, tmp_path)
    good, _ = materialize_batch(batch)
    size = copy.stat().st_size
    os.truncate(copy, size - 2)  # not the size its signal needs
    calls = _counting(monkeypatch)
    with pytest.raises(SampleFileError, match=rf"{copy}.*{size - 2} bytes.*expected {size}"):
        materialize_batch(batch)
    assert calls == ["lpcm"]  # the local path left it to the general one, which refused
    os.truncate(copy, size)  # the right size again (zeros at the end): read as it is now
    calls.clear()
    again, _ = materialize_batch(batch)
    assert calls == []
    np.testing.assert_array_equal(again, _general(batch, np.float32, True))
    copy.unlink()
    with pytest.raises(SampleFileNotFoundError, match=f"not found: {copy}"):
        materialize_batch(batch)
    assert good.shape == again.shape


def test_a_damaged_frame_gets_the_general_paths_error(labeled, tmp_path, monkeypatch):  # noqa: F811
    batch, copy = _one_lpcm_batch(labeled, tmp_path, n=1, fmt="lpcm.zst")
    materialize_batch(batch)
    table = parse_seek_table(copy.stat().st_size, lambda a, b: copy.read_bytes()[a:b])
    rows = _materialize._rows(batch[0])
    bps = batch[0].info.bytes_per_sample
    first, _ = table.frames_for(rows.start * bps, rows.stop * bps)
    data = bytearray(copy.read_bytes())
    at = int(table.compressed_offsets[first]) + 20  # inside the window's first frame
    data[at : at + 8] = bytes(8)
    copy.write_bytes(bytes(data))  # the same size: the seek table is parsed again (mtime)
    calls = _counting(monkeypatch)
    with pytest.raises(SampleFileError, match=rf"{copy} frame {first} .*not valid zstd"):
        materialize_batch(batch)
    assert calls == ["lpcm.zst"]


def test_windows_outside_the_file_are_left_to_the_general_path(labeled, tmp_path):  # noqa: F811
    batch, _ = _one_lpcm_batch(labeled, tmp_path, n=2)
    plans = [(_materialize._rows(it), _materialize._channel_index(it)) for it in batch]
    n_totals = [_materialize._n_total(it) for it in batch]
    x = np.zeros((2, batch[0].info.n_channels, len(plans[0][0])), np.float32)
    beyond = range(n_totals[1] - 3, n_totals[1] - 3 + len(plans[1][0]))
    left = _local.decode_local(batch, [plans[0], (beyond, plans[1][1])], n_totals, x.dtype, x, True)
    assert left == [1] and (x[1] == 0).all()
    np.testing.assert_array_equal(x[0], _general(batch[:1], np.float32, True)[0])
    # An x that is not C-ordered (an allocator's choice): nothing taken.
    f_ordered = np.asfortranarray(x)
    assert _local.decode_local(batch, plans, n_totals, x.dtype, f_ordered, True) == [0, 1]
    # Channel indices out of range are never handed to the kernel.
    bad = [(plans[0][0], [0, batch[0].info.n_channels])]
    assert _local.decode_local(batch[:1], bad, n_totals[:1], x.dtype, x[:1, :2], True) == [0]


def test_the_scratch_buffers_are_per_thread_and_bounded(labeled, tmp_path, monkeypatch):  # noqa: F811
    batch, _ = _one_lpcm_batch(labeled, tmp_path)
    materialize_batch(batch)
    mine = _local._scratch.buffers
    samples = mine.buffers[0]
    assert samples.size >= len(_materialize._rows(batch[0])) * batch[0].info.bytes_per_sample
    materialize_batch(batch)
    assert mine.buffers[0] is samples  # kept: no new pages for the next batch
    seen = []
    worker = threading.Thread(target=lambda: (materialize_batch(batch),
                                              seen.append(_local._scratch.buffers)))  # fmt: skip
    worker.start()
    worker.join(30)
    assert seen and seen[0] is not mine and _local._scratch.buffers is mine
    monkeypatch.setattr(_local, "_KEEP_SCRATCH", 16)  # a window over it is not kept
    materialize_batch(batch)
    assert mine.buffers[0] is None


@pytest.mark.parametrize("fmt", ["lpcm", "lpcm.zst"])
def test_a_file_replaced_between_batches_is_read_anew(labeled, tmp_path, fmt, monkeypatch):  # noqa: F811
    batch, copy = _one_lpcm_batch(labeled, tmp_path, fmt=fmt)
    before, _ = materialize_batch(batch)
    # The same samples reversed in time, moved over the path with the old file's
    # mtime: for lpcm (the same size) only the inode tells the files apart.
    item = batch[0]
    samples = load_rows(item.signal(), range(_materialize._n_total(item)), encoded=True)
    new = tmp_path / f"new.{fmt}"
    store(new, Samples(np.ascontiguousarray(samples.data[:, ::-1]), item.info, encoded=True))
    st = copy.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, copy)
    calls = _counting(monkeypatch)
    after, _ = materialize_batch(batch)
    assert calls == []  # the local path, with the new file's seek table
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, _general(batch, np.float32, True))


def test_new_settings_apply_to_the_next_batch(labeled, tmp_path):  # noqa: F811
    batch, copy = _one_lpcm_batch(labeled, tmp_path)
    materialize_batch(batch)
    with allowed_storage(protocols=["file"], prefixes=[f"{tmp_path}/elsewhere/"]):
        with pytest.raises(UntrustedPathError, match=str(copy)):
            materialize_batch(batch)
    materialize_batch(batch)


def test_kept_signals_are_per_thread_and_bounded(labeled, tmp_path, monkeypatch):  # noqa: F811
    batch, _ = _one_lpcm_batch(labeled, tmp_path)
    _local._kept_signals().clear()
    materialize_batch(batch)
    mine = _local._kept_signals()
    assert len(mine) == 1  # one signal: its items' entry
    seen = []
    worker = threading.Thread(target=lambda: (materialize_batch(batch),
                                              seen.append(_local._kept_signals())))  # fmt: skip
    worker.start()
    worker.join(30)
    assert seen and seen[0] is not mine and len(seen[0]) == 1
    monkeypatch.setattr(_local, "_KEEP_SIGNALS", 1)
    (tmp_path / "other").mkdir()
    other, _ = _one_lpcm_batch(labeled, tmp_path / "other")
    materialize_batch(other)
    assert len(_local._kept_signals()) == 1


@pytest.mark.parametrize("fmt", ["lpcm", "lpcm.zst"])
def test_an_unpickled_batch_finds_the_signals_kept_for_it(
    labeled,  # noqa: F811
    tmp_path,
    fmt,
    monkeypatch,
):
    # A worker's batches arrive unpickled: new objects for the same signals each time.
    batch, _ = _one_lpcm_batch(labeled, tmp_path, fmt=fmt)
    _local._kept_signals().clear()
    want, _ = materialize_batch(batch)
    opened = []
    new_signal = _local._new_signal
    monkeypatch.setattr(_local, "_new_signal", lambda *a: opened.append(a) or new_signal(*a))
    again = pickle.loads(pickle.dumps(batch))
    assert again[0].info is not batch[0].info and again[0].info == batch[0].info
    got, _ = materialize_batch(again)
    assert opened == []  # kept by value: nothing looked up, opened or checked anew
    np.testing.assert_array_equal(got, want)
    assert len(_local._kept_signals()) == 1


@pytest.mark.parametrize("fmt", ["lpcm", "lpcm.zst"])
def test_a_file_read_with_another_encoding_is_decoded_with_it(labeled, tmp_path, fmt):  # noqa: F811
    """Signals are kept by path, format and size, and held to the item's span and
    samples info: the same file under another resolution is decoded with that one, and
    the first resolution again afterwards."""
    from dataclasses import replace

    batch, _ = _one_lpcm_batch(labeled, tmp_path, fmt=fmt)
    first, _ = materialize_batch(batch)
    info = batch[0].info
    other = replace(info, sample_resolution_in_unit=info.sample_resolution_in_unit * 3)
    rescaled = [replace(it, info=other) for it in batch]
    got, _ = materialize_batch(rescaled)
    np.testing.assert_array_equal(got, _general(rescaled, np.float32, True))
    assert not np.array_equal(got, first)
    np.testing.assert_array_equal(materialize_batch(batch)[0], first)
