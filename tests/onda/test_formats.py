"""The format registry and the built-in lpcm / lpcm.zst formats."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import OrderedDict

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches import SampleFileError
from ondabatches.errors import UnknownFormatError
from ondabatches.onda import (
    LPCMFormat,
    LPCMZstFormat,
    SampleFormat,
    Samples,
    _formats,
    _lpcm,
    get_format,
    load,
    load_rows,
    register_format,
    registered_formats,
    store,
)
from ondabatches.onda._zst import SeekTable, parse_seek_table

from .samplefiles import lpcm_bytes, make_info, make_signal, random_encoded, single_frame_zst


class NpyFormat(SampleFormat):
    """A custom format: one .npy file holding the channels x time matrix."""

    def read(self, fs, path, info, rows, n_total):
        with fs.open(path, "rb") as f:
            return np.load(f)[:, rows.start : rows.stop]

    def write(self, file, data, info):
        np.save(file, data)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the format registry for this test."""
    monkeypatch.setattr(_formats, "_FORMATS", dict(_formats._FORMATS))


def test_builtin_formats_are_registered():
    assert {"lpcm", "lpcm.zst"} <= set(registered_formats())
    assert isinstance(get_format("lpcm"), LPCMFormat)
    assert isinstance(get_format("lpcm.zst"), LPCMZstFormat)
    assert isinstance(get_format("lpcm"), SampleFormat)


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(
        UnknownFormatError, match=r"'flac'.*\['bdf', 'dbp', 'edf', 'lpcm', 'lpcm.zst'"
    ):
        get_format("flac")


def test_custom_format_round_trip(registry, tmp_path):
    register_format("npy", NpyFormat())
    assert "npy" in registered_formats()
    info = make_info("int32", 2)
    enc = random_encoded(info, 50)
    path = tmp_path / "x.npy"
    store(path, Samples(enc, info, encoded=True))  # format inferred from the extension
    np.testing.assert_array_equal(np.load(path), enc)
    sig = make_signal(path, "npy", info, 50)
    np.testing.assert_array_equal(load_rows(sig, range(10, 20), encoded=True).data, enc[:, 10:20])
    np.testing.assert_array_equal(load(sig.to_row(), encoded=True).data, enc)


def test_register_refuses_clobbering_and_non_formats(registry):
    with pytest.raises(ValueError, match="already registered"):
        register_format("lpcm", NpyFormat())
    register_format("lpcm", NpyFormat(), replace=True)
    assert isinstance(get_format("lpcm"), NpyFormat)
    with pytest.raises(TypeError, match="read"):
        register_format("bad", object())


def test_lpcm_layout_is_interleaved_little_endian(tmp_path):
    info = make_info("uint16", 2)
    enc = np.array([[1, 2, 3], [256, 512, 768]], dtype=np.uint16)
    path = tmp_path / "x.lpcm"
    store(path, Samples(enc, info, encoded=True))
    assert path.read_bytes() == struct.pack("<6H", 1, 256, 2, 512, 3, 768)


def _write_zst(path, fmt, enc, info):
    with open(path, "wb") as f:
        fmt.write(f, enc, info)


def test_zst_is_seekable_with_whole_sample_frames(tmp_path):
    info = make_info("int16", 3)  # 6-byte samples
    enc = random_encoded(info, 1000)
    path = tmp_path / "x.lpcm.zst"
    _write_zst(path, LPCMZstFormat(frame_bytes=1000), enc, info)
    raw = path.read_bytes()
    table = parse_seek_table(len(raw), lambda a, b: raw[a:b])
    assert table is not None
    sizes = np.diff(table.decompressed_offsets)
    assert set(sizes[:-1].tolist()) == {996}  # 1000 rounded down to whole samples
    assert table.decompressed_size == 6000
    assert len(sizes) == 7


def test_default_frames_hold_32_kib_of_whole_samples(tmp_path):
    info = make_info("int16", 19)
    enc = random_encoded(info, 2_000)  # 76 kB
    path = tmp_path / "x.lpcm.zst"
    store(path, Samples(enc, info, encoded=True))
    raw = path.read_bytes()
    table = parse_seek_table(len(raw), lambda a, b: raw[a:b])
    sizes = np.diff(table.decompressed_offsets)
    frame = 32768 // 38 * 38
    assert sizes.tolist() == [frame, frame, 76_000 - 2 * frame]
    # Equal frames keep only their compressed offsets (and a byte each: header checked).
    assert table.varying is None
    assert table.nbytes == 8 * 4 + 3
    assert table.frame_size == frame


def test_seek_table_of_frames_of_varying_sizes_finds_the_same_frames():
    decompressed = np.array([100, 50, 100, 7], dtype=np.uint32)
    compressed = np.array([10, 20, 30, 40], dtype=np.uint32)
    varying = SeekTable.from_sizes(compressed, decompressed)
    assert varying.varying is not None
    assert varying.decompressed_offsets.tolist() == [0, 100, 150, 250, 257]
    assert varying.frames_for(120, 251) == (1, 4)
    assert varying.frame_start(2) == 150
    uniform = SeekTable.from_sizes(compressed, np.array([100, 100, 100, 7], dtype=np.uint32))
    assert uniform.varying is None
    offsets = uniform.decompressed_offsets
    assert offsets.tolist() == [0, 100, 200, 300, 307]
    for start in range(0, 307):
        for stop in (start + 1, min(start + 100, 307), 307):
            first = int(np.searchsorted(offsets, start, side="right")) - 1
            last = int(np.searchsorted(offsets, stop, side="left"))
            assert uniform.frames_for(start, stop) == (first, last)
    assert uniform.compressed_offsets.tolist() == [0, 10, 30, 60, 100]


def test_file_metadata_cache_is_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(_lpcm, "_meta", OrderedDict())
    monkeypatch.setattr(_lpcm, "_meta_bytes", 0)
    monkeypatch.setattr(_lpcm, "_META_MAX_BYTES", 3000)
    for i in range(10):
        _lpcm.cached_meta(("t", i), lambda: np.zeros(100))  # 800 bytes each
        assert _lpcm._meta_bytes <= 3000
    assert list(_lpcm._meta) == [("t", i) for i in (7, 8, 9)]
    assert _lpcm._meta_bytes == 2400
    # A value larger than the whole budget is still kept, alone, until the next one.
    _lpcm.cached_meta(("big",), lambda: np.zeros(1000))
    assert list(_lpcm._meta) == [("big",)]
    assert _lpcm._meta_bytes == 8000


def test_reference_zstd_tool_decompresses_our_files(tmp_path):
    zstd = shutil.which("zstd")
    assert zstd is not None, "the zstd command-line tool is needed (it is on the CI image)"
    info = make_info("float64", 4)
    enc = random_encoded(info, 5000)
    path = tmp_path / "x.lpcm.zst"
    _write_zst(path, LPCMZstFormat(frame_bytes=4096), enc, info)
    out = subprocess.run([zstd, "-d", "-c", str(path)], check=True, capture_output=True).stdout
    assert out == lpcm_bytes(enc, info)


def test_zstd_tool_output_is_readable(tmp_path):
    zstd = shutil.which("zstd")
    assert zstd is not None
    info = make_info("int32", 2)
    enc = random_encoded(info, 3000)
    raw_path = tmp_path / "x.lpcm"
    store(raw_path, Samples(enc, info, encoded=True))
    zst_path = tmp_path / "y.lpcm.zst"
    subprocess.run([zstd, "-q", "-o", str(zst_path), str(raw_path)], check=True)
    sig = make_signal(zst_path, "lpcm.zst", info, 3000)
    np.testing.assert_array_equal(
        load_rows(sig, range(100, 2000), encoded=True).data, enc[:, 100:2000]
    )


def _corrupt_frame(path, table, frame):
    """Overwrite the middle of one compressed frame with garbage."""
    c = table.compressed_offsets
    data = bytearray(path.read_bytes())
    lo, hi = int(c[frame]) + 6, int(c[frame + 1]) - 1
    data[lo:hi] = b"\xff" * (hi - lo)
    path.write_bytes(bytes(data))


def test_window_decompresses_only_the_frames_it_overlaps(tmp_path):
    info = make_info("int16", 2)  # 4-byte samples, 1000 per 4000-byte frame
    enc = random_encoded(info, 10_000)
    path = tmp_path / "x.lpcm.zst"
    _write_zst(path, LPCMZstFormat(frame_bytes=4000), enc, info)
    raw = path.read_bytes()
    table = parse_seek_table(len(raw), lambda a, b: raw[a:b])
    _corrupt_frame(path, table, 5)  # samples 5000..5999
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    for rows in (range(0, 1000), range(3500, 4999), range(6000, 10_000), range(8999, 9001)):
        np.testing.assert_array_equal(
            load_rows(sig, rows, encoded=True).data, enc[:, rows.start : rows.stop]
        )
    for rows in (range(4999, 5001), range(5999, 6000), range(0, 10_000)):
        with pytest.raises(SampleFileError, match="not valid zstd"):
            load_rows(sig, rows, encoded=True)


def test_window_reads_only_the_compressed_bytes_of_its_frames(tmp_path, monkeypatch):
    from ondabatches.onda import _zst

    info = make_info("int16", 2)
    enc = random_encoded(info, 10_000)
    path = tmp_path / "x.lpcm.zst"
    _write_zst(path, LPCMZstFormat(frame_bytes=4000), enc, info)
    raw = path.read_bytes()
    table = parse_seek_table(len(raw), lambda a, b: raw[a:b])
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    load_rows(sig, range(1), encoded=True)  # caches the seek table
    ranges = []
    real = _zst.read_at  # local files are read at a cached descriptor
    monkeypatch.setattr(
        _zst, "read_at", lambda fd, a, n, url: ranges.append((a, a + n)) or real(fd, a, n, url)
    )
    load_rows(sig, range(2500, 4500), encoded=True)  # frames 2, 3 and 4
    c = table.compressed_offsets
    assert ranges == [(int(c[2]), int(c[5]))]


def test_single_frame_file_streams_only_up_to_the_window(tmp_path, monkeypatch):
    info = make_info("int16", 2)
    enc = random_encoded(info, 100_000)
    path = tmp_path / "x.lpcm.zst"
    path.write_bytes(single_frame_zst(lpcm_bytes(enc, info)))
    sig = make_signal(path, "lpcm.zst", info, 100_000)
    assert parse_seek_table(path.stat().st_size, lambda a, b: path.read_bytes()[a:b]) is None

    consumed = []
    real_reader = zstandard.ZstdDecompressor.stream_reader

    def counting_reader(self, source, *args, **kwargs):
        class Counting:
            def read(self, n=-1):
                data = source.read(n)
                consumed.append(len(data))
                return data

        return real_reader(self, Counting(), *args, **kwargs)

    monkeypatch.setattr(zstandard.ZstdDecompressor, "stream_reader", counting_reader)
    np.testing.assert_array_equal(load_rows(sig, range(0, 100), encoded=True).data, enc[:, :100])
    assert sum(consumed) < path.stat().st_size / 2


def test_lpcm_size_errors_name_the_file_and_sizes(tmp_path):
    info = make_info("int16", 3)
    enc = random_encoded(info, 100)
    path = tmp_path / "x.lpcm"
    sig = make_signal(path, "lpcm", info, 100)
    path.write_bytes(lpcm_bytes(enc, info)[:-1])
    with pytest.raises(
        SampleFileError, match=r"x\.lpcm holds 599 bytes, not a whole number.*expected 600"
    ):
        load_rows(sig, range(0, 1))
    path.write_bytes(lpcm_bytes(enc, info)[:-6])
    with pytest.raises(
        SampleFileError, match=r"holds 594 bytes; expected 600 bytes = 100 samples x 3"
    ):
        load_rows(sig, range(0, 1))
    path.write_bytes(lpcm_bytes(enc, info) * 2)
    with pytest.raises(SampleFileError, match=r"holds 1200 bytes; expected 600"):
        load(sig)


@pytest.mark.parametrize("kind", ["seekable", "single"])
def test_zst_size_errors(tmp_path, kind):
    info = make_info("int16", 3)
    path = tmp_path / "x.lpcm.zst"

    def write(n):
        enc = random_encoded(info, n)
        if kind == "seekable":
            _write_zst(path, LPCMZstFormat(frame_bytes=60), enc, info)
        else:
            path.write_bytes(single_frame_zst(lpcm_bytes(enc, info)))

    sig = make_signal(path, "lpcm.zst", info, 100)
    write(90)
    with pytest.raises(SampleFileError, match=r"x\.lpcm\.zst decompresses to .*540 bytes"):
        load(sig)
    write(110)
    with pytest.raises(
        SampleFileError, match=r"decompresses to .*660 bytes|more than the 600 bytes"
    ):
        load(sig)


def test_not_zstd_at_all(tmp_path):
    info = make_info("int16", 1)
    path = tmp_path / "x.lpcm.zst"
    path.write_bytes(b"definitely not zstd")
    with pytest.raises(SampleFileError, match=r"x\.lpcm\.zst is not valid zstd"):
        load(make_signal(path, "lpcm.zst", info, 4))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 3000),
    frame=st.integers(1, 700),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
)
def test_streamed_zst_equals_whole_write_and_every_frame_declares_its_size(n, frame, cuts):
    """The importer's block-by-block writer writes the bytes write() does: frames with
    content sizes and checksums, whatever the blocks' lengths."""
    import io

    info = make_info("int16", 3)
    enc = random_encoded(info, n)
    fmt = LPCMZstFormat(frame_bytes=frame)
    whole = io.BytesIO()
    fmt.write(whole, enc, info)
    raw = lpcm_bytes(enc, info)
    streamed = io.BytesIO()
    with fmt.stream_writer(streamed, info) as out:
        edges = sorted({0, len(raw), *(min(c * 2, len(raw)) for c in cuts)})
        for a, b in zip(edges, edges[1:], strict=False):
            out.write(raw[a:b])
    assert streamed.getvalue() == whole.getvalue()
    data = whole.getvalue()
    table = parse_seek_table(len(data), lambda a, b: data[a:b])
    starts = table.decompressed_offsets
    for k, offset in enumerate(table.compressed_offsets[:-1]):
        header = data[int(offset) : int(offset) + 18]
        assert zstandard.frame_content_size(header) == starts[k + 1] - starts[k]
        assert zstandard.get_frame_parameters(header).has_checksum
