"""lpcm.zst integrity: checksummed frames, seek tables that cannot shift a window."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import pyzstd
import zstandard

from ondabatches import SampleFileError
from ondabatches.onda import LPCMZstFormat, _zst, load_rows
from ondabatches.onda._zst import parse_seek_table

from ..onda.samplefiles import lpcm_bytes, make_info, make_signal, random_encoded

FIXTURES = Path("/work/shared/fixtures/julia-onda")


@pytest.fixture(autouse=True, params=["one-shot", "stream"])
def one_pass(request, monkeypatch):
    """Every test with each one-pass decompression of a window's frames: zstd's
    one-shot call (zstandard's cffi backend) and, as where that backend is missing,
    ``stream_reader``; both must give the same bytes and the same errors."""
    if request.param == "stream":
        monkeypatch.setattr(_zst, "_one_shot", lambda: None)
    elif _zst._one_shot() is None:
        pytest.skip("zstandard's cffi backend is not installed here")
    return request.param


def _written(tmp_path, n=10_000, frame_bytes=4000):
    info = make_info("int16", 2)  # 4-byte samples, 1000 per frame
    enc = random_encoded(info, n)
    path = tmp_path / "x.lpcm.zst"
    with open(path, "wb") as f:
        LPCMZstFormat(frame_bytes=frame_bytes).write(f, enc, info)
    raw = path.read_bytes()
    return info, enc, path, parse_seek_table(len(raw), lambda a, b: raw[a:b])


def test_frames_carry_content_size_and_checksum_and_the_table_repeats_it(tmp_path):
    info, enc, path, table = _written(tmp_path)
    raw = path.read_bytes()
    c = table.compressed_offsets
    for i in range(len(c) - 1):
        params = zstandard.get_frame_parameters(raw[int(c[i]) : int(c[i + 1])])
        assert params.has_checksum
        assert params.content_size == int(np.diff(table.decompressed_offsets)[i])
    n_frames, descriptor, _ = struct.unpack("<IBI", raw[-9:])
    assert descriptor & 0x80 and n_frames == 10
    # Each entry's checksum equals the frame's own trailing checksum.
    entries = raw[-9 - 12 * n_frames : -9]
    for i in range(n_frames):
        assert entries[12 * i + 8 : 12 * i + 12] == raw[int(c[i + 1]) - 4 : int(c[i + 1])]
    assert zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read() == (
        lpcm_bytes(enc, info)
    )


@pytest.mark.parametrize("rows", [range(5200, 5300), range(4990, 6010), range(5999, 6000)])
def test_eight_flipped_bytes_in_a_frame_are_an_error_naming_the_frame(tmp_path, rows):
    info, enc, path, table = _written(tmp_path)
    c = table.compressed_offsets
    data = bytearray(path.read_bytes())
    # 8 bytes in the middle of frame 5 (samples 5000..5999): random samples compress to
    # raw literals, so the frame still decodes, to wrong values, but for its checksum.
    middle = (int(c[5]) + int(c[6])) // 2
    for k in range(middle, middle + 8):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    with pytest.raises(SampleFileError, match=r"x\.lpcm\.zst frame 5 .*not valid zstd"):
        load_rows(sig, rows, encoded=True)
    # Windows that do not touch frame 5 still read.
    np.testing.assert_array_equal(
        load_rows(sig, range(6000, 7000), encoded=True).data, enc[:, 6000:7000]
    )


@pytest.mark.parametrize("rows", [range(1500, 1600), range(900, 1100), range(0, 10_000)])
def test_a_seek_table_whose_frame_sizes_lie_is_an_error_not_a_shifted_window(tmp_path, rows):
    info, enc, path, table = _written(tmp_path)
    data = bytearray(path.read_bytes())
    n_frames = 10
    entries = len(data) - 9 - 12 * n_frames
    # Frame 0 claims 100 samples more, frame 1 100 fewer: the total still matches.
    for frame, delta in ((0, +400), (1, -400)):
        at = entries + 12 * frame + 4
        struct.pack_into("<I", data, at, struct.unpack_from("<I", data, at)[0] + delta)
    path.write_bytes(bytes(data))
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    with pytest.raises(SampleFileError, match=r"frame [01] decompresses to .*seek table says"):
        load_rows(sig, rows, encoded=True)


def test_files_of_earlier_versions_without_checksums_still_read_and_are_size_checked(tmp_path):
    # What LPCMZstFormat wrote before (pyzstd's seekable writer: no checksum, no size).
    info = make_info("int16", 2)
    enc = random_encoded(info, 10_000)
    path = tmp_path / "old.lpcm.zst"
    with pyzstd.SeekableZstdFile(path, "w", max_frame_content_size=4000) as out:
        out.write(lpcm_bytes(enc, info))
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    np.testing.assert_array_equal(
        load_rows(sig, range(2500, 7500), encoded=True).data, enc[:, 2500:7500]
    )
    raw = bytearray(path.read_bytes())
    entries = len(raw) - 9 - 8 * 10
    for frame, delta in ((2, +400), (3, -400)):
        at = entries + 8 * frame + 4
        struct.pack_into("<I", raw, at, struct.unpack_from("<I", raw, at)[0] + delta)
    path.write_bytes(bytes(raw))
    with pytest.raises(SampleFileError, match=r"frame [23] decompresses to"):
        load_rows(sig, range(2500, 3500), encoded=True)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the Julia fixtures are not on this machine")
def test_onda_jl_single_frame_files_still_read():
    from ..onda.test_julia_samples import ecg_signal

    sig = ecg_signal(FIXTURES)
    raw = (FIXTURES / Path(sig.file_path).name.replace(".zst", "")).read_bytes()
    expected = np.frombuffer(raw, "<i2").reshape(-1, 2).T
    np.testing.assert_array_equal(
        load_rows(sig, range(0, sig.n_samples), encoded=True).data, expected
    )


def _count_readers(monkeypatch) -> list:
    """Each pass across frames from now on: ``"one-shot"`` for zstd's one-shot call,
    else the ``read_across_frames`` of the zstd stream reader opened."""
    readers = []
    real = zstandard.ZstdDecompressor.stream_reader

    def counting(self, source, *args, **kwargs):
        readers.append(kwargs.get("read_across_frames"))
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(zstandard.ZstdDecompressor, "stream_reader", counting)
    one_shot = _zst._one_shot()
    if one_shot is not None:

        def counted(compressed, out):
            readers.append("one-shot")
            return one_shot(compressed, out)

        monkeypatch.setattr(_zst, "_one_shot", lambda: counted)
    return readers


def test_a_window_of_our_files_is_one_pass_across_its_frames(tmp_path, monkeypatch, one_pass):
    info, enc, path, _ = _written(tmp_path)
    sig = make_signal(path, "lpcm.zst", info, 10_000)
    load_rows(sig, range(1), encoded=True)  # caches the seek table
    readers = _count_readers(monkeypatch)
    got = load_rows(sig, range(2500, 6500), encoded=True).data  # frames 2..6
    np.testing.assert_array_equal(got, enc[:, 2500:6500])
    # Sizes declared in the frame headers (zstd holds each frame to its own): one pass.
    assert readers == ["one-shot" if one_pass == "one-shot" else True]


@pytest.mark.parametrize("rows", [range(9800, 10_500), range(10_000, 10_500), range(0, 10_500)])
def test_a_window_reaching_a_short_last_frame_is_one_pass(tmp_path, monkeypatch, rows, one_pass):
    # The file's last frame holds less than the others: the header check expects its
    # own size there, and only there.
    info, enc, path, table = _written(tmp_path, n=10_500)
    assert table.frame_size == 4000 and table.decompressed_size == 42_000
    sig = make_signal(path, "lpcm.zst", info, 10_500)
    load_rows(sig, range(1), encoded=True)  # caches the seek table
    readers = _count_readers(monkeypatch)
    got = load_rows(sig, rows, encoded=True).data
    np.testing.assert_array_equal(got, enc[:, rows.start : rows.stop])
    assert readers == ["one-shot" if one_pass == "one-shot" else True]


def test_one_pass_gives_exactly_the_frames_bytes_or_false(tmp_path, one_pass):
    """A window's one pass: True only for frames that give exactly the buffer's bytes
    (then written there); short, long or damaged frames give False (the frame by
    frame pass then names the frame)."""
    info, enc, path, table = _written(tmp_path)
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    c = table.compressed_offsets
    frames = raw[int(c[2]) : int(c[5])]  # frames 2, 3, 4: 12,000 bytes
    one_shot = _zst._one_shot()
    run = one_shot if one_shot is not None else _zst._one_pass
    out = np.zeros(12_000, dtype=np.uint8)
    assert run(frames, out)
    assert out.tobytes() == lpcm_bytes(enc, info)[8000:20_000]
    assert not run(frames, np.zeros(11_999, dtype=np.uint8))  # more than fits
    assert not run(frames, np.zeros(12_001, dtype=np.uint8))  # fewer than expected
    if one_pass == "one-shot":  # the stream reader ends a cut checksum quietly
        assert not run(frames[:-1], out)
    damaged = frames.copy()
    damaged[len(damaged) // 2 : len(damaged) // 2 + 8] ^= 0xFF
    assert not run(damaged, out)
