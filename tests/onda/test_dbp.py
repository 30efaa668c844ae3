"""The ``dbp`` codec: its compiled and numpy paths give the same bytes and exact values."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches._errors import ArgumentError, SampleFileError
from ondabatches.onda import use_settings
from ondabatches.onda._dbp import (
    MAX_WIDTH,
    DbpFormat,
    _frame_parts,
    decode_frame_numpy,
    encode_frame_numpy,
)

from .samplefiles import make_info

TYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32")


def _block(dtype: str, kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    info, rng = np.iinfo(dtype), np.random.default_rng(seed)
    if kind == "noise":  # the widest residuals there are
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    if kind == "extremes":  # min, max alternating: second differences of 4 x the range
        return np.where(rng.random(shape) < 0.5, info.min, info.max).astype(dtype)
    if kind == "walk":  # EEG-like: small steps
        walk = np.cumsum(rng.normal(0, 3, size=shape), axis=1)
        return np.clip(walk, info.min, info.max).astype(dtype)
    return np.full(shape, info.max, dtype=dtype)


def _both(block: np.ndarray) -> tuple[bytes, bytes]:
    """The frame's bytes from the compiled path (numba's where installed) and numpy's."""
    with use_settings(kernels="auto"):
        compiled = DbpFormat().encode_frame(block)
    return compiled, encode_frame_numpy(block)


def _decoded(piece: bytes, shape: tuple[int, int], dtype, lo: int, hi: int, kernels: str):
    out = np.empty((shape[0], hi - lo), dtype=dtype)
    with use_settings(kernels=kernels):
        DbpFormat().decode_into(np.frombuffer(piece, np.uint8), out, lo, hi, shape[1], "f", 0)
    return out


@pytest.mark.parametrize("dtype", TYPES)
@pytest.mark.parametrize("kind", ["noise", "extremes", "walk", "constant"])
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 130, 2048])
def test_both_paths_give_the_same_bytes_and_the_samples_back(dtype, kind, n):
    block = _block(dtype, kind, (3, n), seed=n)
    compiled, numpy_bytes = _both(block)
    assert compiled == numpy_bytes
    rng = np.random.default_rng(n)
    for lo, hi in [(0, n), (0, 1), (n - 1, n), *sorted(rng.integers(0, n + 1, (4, 2)).tolist())]:
        if lo < hi:
            for kernels in ("auto", "numpy"):
                got = _decoded(compiled, block.shape, block.dtype, lo, hi, kernels)
                assert np.array_equal(got, block[:, lo:hi]), (lo, hi, kernels)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(TYPES),
    st.integers(1, 4),
    st.integers(1, 300),
    st.integers(0, 2**32 - 1),
)
def test_any_block_round_trips_exactly(dtype, channels, n, seed):
    block = _block(dtype, "noise" if seed % 2 else "walk", (channels, n), seed)
    compiled, numpy_bytes = _both(block)
    assert compiled == numpy_bytes
    widths, words = _frame_parts(np.frombuffer(compiled, np.uint8), channels, n, "f", 0)
    assert np.array_equal(decode_frame_numpy(widths, words, n), block.astype(np.int64))
    assert int(widths.max()) <= MAX_WIDTH


def test_a_slow_signal_takes_few_bits_per_sample():
    t = np.arange(4096)
    block = np.round(3000 * np.sin(2 * np.pi * t / 512)).astype(np.int16)[None, :]
    assert len(DbpFormat().encode_frame(block)) < 0.25 * block.nbytes


@pytest.mark.parametrize("damage", ["short", "long", "wide"])
def test_a_frame_that_does_not_fit_its_widths_is_an_error_naming_file_and_frame(damage):
    block = _block("int16", "walk", (2, 100), seed=1)
    piece = bytearray(DbpFormat().encode_frame(block))
    if damage == "short":
        piece = piece[:-8]
    elif damage == "long":
        piece += bytes(8)
    else:
        piece[0] = MAX_WIDTH + 1
    out = np.empty((2, 100), np.int16)
    with pytest.raises(SampleFileError, match=r"data\.dbp frame 7 .*not a dbp frame of 2 channels"):
        DbpFormat().decode_frame(np.frombuffer(bytes(piece), np.uint8), out, "data.dbp", 7)


def test_floats_and_64_bit_samples_are_refused_naming_what_it_stores(tmp_path):
    for dtype in ("float32", "int64"):
        with (
            open(tmp_path / "x.dbp", "wb") as f,
            pytest.raises(
                ArgumentError, match=rf"dbp format stores int8, uint8, .*uint32; got {dtype}"
            ),
        ):
            DbpFormat().write(f, np.zeros((1, 4), dtype), make_info(dtype, n_channels=1))


def test_a_file_written_by_numpy_reads_with_the_compiled_path(tmp_path):
    info = make_info("int16", n_channels=4)
    data = _block("int16", "walk", (4, 5000), seed=3)
    path = str(tmp_path / "x.dbp")
    with use_settings(kernels="numpy"), open(path, "wb") as f:
        DbpFormat(frame_samples=700).write(f, data, info)
    fs = fsspec.filesystem("file")
    with use_settings(kernels="auto"):
        got = DbpFormat(frame_samples=700).read(fs, path, info, range(650, 4321), 5000)
    assert np.array_equal(got, data[:, 650:4321])


def _rewrite_frame(path, k: int, change) -> None:
    """Change frame ``k``'s bytes with ``change`` and give the index its new CRC-32."""
    import zlib

    from ondabatches.onda._framed import parse_index

    raw = bytearray(path.read_bytes())
    index = parse_index(len(raw), lambda a, b: raw[a:b], str(path), b"OBDP", "dbp")
    a, b = int(index.offsets[k]), int(index.offsets[k + 1])
    piece = bytearray(raw[a:b])
    change(piece)
    raw[a:b] = piece
    at = int(index.offsets[-1]) + 8 * k  # frame k's index entry: size, CRC-32
    raw[at + 4 : at + 8] = zlib.crc32(bytes(piece)).to_bytes(4, "little")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kernels", ["auto", "numpy"])
def test_a_frame_whose_crc_holds_but_whose_widths_do_not_fit_is_refused(tmp_path, kernels):
    info = make_info("int16", n_channels=3)
    data = _block("int16", "walk", (3, 1000), seed=5)
    path = tmp_path / "x.dbp"
    with open(path, "wb") as f:
        DbpFormat(frame_samples=200).write(f, data, info)
    _rewrite_frame(path, 2, lambda piece: piece.__setitem__(0, piece[0] + 1))
    fs = fsspec.filesystem("file")
    with use_settings(kernels=kernels):
        fmt = DbpFormat(frame_samples=200)
        assert np.array_equal(fmt.read(fs, str(path), info, range(0, 400), 1000), data[:, :400])
        with pytest.raises(SampleFileError, match=rf"{path} frame 2 holds \d+ bytes"):
            fmt.read(fs, str(path), info, range(150, 650), 1000)


def test_windows_at_random_starts_read_the_same_with_either_path(tmp_path):
    info = make_info("uint16", n_channels=5)
    data = _block("uint16", "walk", (5, 9000), seed=9)
    path = str(tmp_path / "x.dbp")
    with open(path, "wb") as f:
        DbpFormat(frame_samples=512).write(f, data, info)
    fs, rng = fsspec.filesystem("file"), np.random.default_rng(4)
    for a in [0, 511, 512, 8999, *rng.integers(0, 9000, 25)]:
        b = int(min(9000, a + rng.integers(1, 3000)))
        got = {}
        for kernels in ("auto", "numpy"):
            with use_settings(kernels=kernels):
                got[kernels] = DbpFormat(frame_samples=512).read(fs, path, info, range(a, b), 9000)
        assert np.array_equal(got["auto"], data[:, a:b]) and np.array_equal(
            got["numpy"], got["auto"]
        )
