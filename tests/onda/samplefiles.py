"""Helpers to build signals and sample files in tests (not a test module)."""

from __future__ import annotations

import uuid

import numpy as np
import zstandard

from ondabatches.onda import SamplesInfo, Signal, TimeSpan, time_from_index

RECORDING = uuid.UUID("176ecfcf-d4c7-49ba-adec-f338d0a0c01f")


def make_info(
    sample_type: str = "int16", n_channels: int = 3, rate: float = 128.0, **kw
) -> SamplesInfo:
    kw.setdefault("sample_resolution_in_unit", 0.5)
    kw.setdefault("sample_offset_in_unit", 0.0)
    return SamplesInfo(
        sensor_type="eeg",
        channels=tuple(f"ch{i}" for i in range(n_channels)),
        sample_unit="microvolt",
        sample_type=sample_type,
        sample_rate=rate,
        **kw,
    )


def make_signal(
    path, file_format: str, info: SamplesInfo, n: int, start: int = 5 * 10**9
) -> Signal:
    """A signal of ``n`` samples starting ``start`` ns into its recording."""
    span = TimeSpan(start, start + time_from_index(n, info.sample_rate))
    return Signal(RECORDING, str(path), file_format, span, "eeg", info)


def random_encoded(info: SamplesInfo, n: int, seed: int = 0) -> np.ndarray:
    """Encoded samples (channels x time) covering the whole range of the type."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=n * info.bytes_per_sample, dtype=np.uint8)
    return raw.view(info.dtype).reshape(n, info.n_channels).T.copy()


def lpcm_bytes(encoded: np.ndarray, info: SamplesInfo) -> bytes:
    return np.ascontiguousarray(encoded.T, dtype=info.dtype).tobytes()


def single_frame_zst(raw: bytes) -> bytes:
    """One zstd frame without a content size, as Onda.jl writes it."""
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    out = cctx.compressobj()
    return out.compress(raw) + out.flush()


def multi_frame_zst(raw: bytes, frame: int) -> bytes:
    """Independent frames with skippable frames in between, and no seek table."""
    cctx = zstandard.ZstdCompressor()
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    parts = [skippable]
    for i in range(0, max(len(raw), 1), frame):
        parts += [cctx.compress(raw[i : i + frame]), skippable]
    return b"".join(parts)


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes, dtypes and bytes (NaN payloads included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    as_uint = np.dtype(f"u{a.dtype.itemsize}")
    return bool(
        np.array_equal(np.ascontiguousarray(a).view(as_uint), np.ascontiguousarray(b).view(as_uint))
    )
