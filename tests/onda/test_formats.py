"""The format registry and the built-in lpcm / lpcm.zst formats."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest
import zstandard

from ondabatches import SampleFileError, UnknownFormatError
from ondabatches.onda import (
    LPCMFormat,
    LPCMZstFormat,
    SampleFormat,
    Samples,
    _formats,
    get_format,
    load,
    load_rows,
    register_format,
    registered_formats,
    store,
)
from ondabatches.onda._zst import parse_seek_table

from .samplefiles import lpcm_bytes, make_info, make_signal, random_encoded, single_frame_zst


class NpyFormat:
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
    with pytest.raises(UnknownFormatError, match=r"'flac'.*\['lpcm', 'lpcm.zst'"):
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


def test_default_frames_are_about_one_mebibyte(tmp_path):
    info = make_info("int16", 19)
    enc = random_encoded(info, 60_000)  # 2.28 MB
    path = tmp_path / "x.lpcm.zst"
    store(path, Samples(enc, info, encoded=True))
    raw = path.read_bytes()
    sizes = np.diff(parse_seek_table(len(raw), lambda a, b: raw[a:b]).decompressed_offsets)
    assert sizes[0] == (1 << 20) // 38 * 38
    assert len(sizes) == 3


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
    real = _zst.read_range
    monkeypatch.setattr(
        _zst, "read_range", lambda fs, p, a, b: ranges.append((a, b)) or real(fs, p, a, b)
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
