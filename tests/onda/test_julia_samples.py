"""Sample files written by Onda.jl load to exactly the matrices Julia saved."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from ondabatches.onda import Samples, SamplesInfo, Signal, TimeSpan, decode, load, load_rows, store

RECORDING = uuid.UUID("176ecfcf-d4c7-49ba-adec-f338d0a0c01f")
S = 10**9
EEG_CHANNELS = (
    "fp1", "f3", "c3", "p3", "f7", "t3", "t5", "o1", "fz", "cz",
    "pz", "fp2", "f4", "c4", "p4", "f8", "t4", "t6", "o2",
)  # fmt: skip


def eeg_signal(folder) -> Signal:
    # Row 1 of test.onda.signal.arrow.
    info = SamplesInfo("eeg", EEG_CHANNELS, "microvolt", 1.0, -1.0, "float32", 128.0)
    path = folder / f"{RECORDING}_eeg.lpcm"
    return Signal(RECORDING, path, "lpcm", TimeSpan(20 * S, 260 * S), "eeg", info)


def ecg_signal(folder, suffix=".lpcm.zst") -> Signal:
    # Row 2 of test.onda.signal.arrow.
    info = SamplesInfo("ecg", ("avl", "avr"), "microvolt", 0.25, 0.0, "int16", 143.5)
    path = folder / f"{RECORDING}_ecg{suffix}"
    return Signal(RECORDING, path, suffix.lstrip("."), TimeSpan(8 * S, 548 * S), "ecg", info)


@pytest.fixture(scope="module")
def eeg_npy(julia_dir):
    return np.load(julia_dir / f"{RECORDING}_eeg.npy")


@pytest.fixture(scope="module")
def ecg_npy(julia_dir):
    return np.load(julia_dir / f"{RECORDING}_ecg.npy")


def test_eeg_lpcm_loads_to_julias_matrix(julia_dir, eeg_npy):
    sig = eeg_signal(julia_dir)
    assert eeg_npy.shape == (19, 30720) and sig.n_samples == 30720
    got = load(sig, encoded=True)
    assert got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, eeg_npy)
    decoded = load(sig, dtype=np.float32)
    np.testing.assert_array_equal(decoded.data, eeg_npy - np.float32(1.0))


def test_ecg_zst_loads_to_julias_matrix(julia_dir, ecg_npy):
    sig = ecg_signal(julia_dir)
    assert ecg_npy.shape == (2, 77490) and sig.n_samples == 77490
    got = load(sig, encoded=True)
    assert got.data.dtype == np.int16
    np.testing.assert_array_equal(got.data, ecg_npy)
    np.testing.assert_array_equal(load(sig).data, ecg_npy * 0.25)
    np.testing.assert_array_equal(load(ecg_signal(julia_dir, ".lpcm"), encoded=True).data, ecg_npy)


@pytest.mark.parametrize(
    ("start_s", "stop_s", "rows"),
    [(0, 1, range(0, 128)), (1.5, 2, range(192, 256)), (100, 240, range(12800, 30720))],
)
def test_eeg_span_reads_match_slices(julia_dir, eeg_npy, start_s, stop_s, rows):
    span = TimeSpan(int(start_s * S), int(stop_s * S))
    got = load(eeg_signal(julia_dir), span, encoded=True)
    np.testing.assert_array_equal(got.data, eeg_npy[:, rows.start : rows.stop])


def test_ecg_span_reads_match_slices(julia_dir, ecg_npy):
    sig = ecg_signal(julia_dir)
    # 143.5 Hz: 10 s..20 s is samples floor(1435)..floor(2869.99...) = 1435..2869.
    got = load(sig, TimeSpan(10 * S, 20 * S), encoded=True)
    np.testing.assert_array_equal(got.data, ecg_npy[:, 1435:2870])
    got = load_rows(sig, range(77000, 77490), dtype=np.float32)
    np.testing.assert_array_equal(got.data, decode(ecg_npy[:, 77000:], sig.info, np.float32))


def test_our_lpcm_is_byte_identical_to_julias(julia_dir, ecg_npy, tmp_path):
    sig = ecg_signal(julia_dir, ".lpcm")
    out = tmp_path / "ecg.lpcm"
    store(out, Samples(ecg_npy, sig.info, encoded=True))
    assert out.read_bytes() == (julia_dir / f"{RECORDING}_ecg.lpcm").read_bytes()


def test_our_zst_holds_julias_bytes(julia_dir, ecg_npy, tmp_path):
    import pyzstd

    out = tmp_path / "ecg.lpcm.zst"
    store(out, Samples(ecg_npy, ecg_signal(julia_dir).info, encoded=True))
    assert pyzstd.decompress(out.read_bytes()) == (julia_dir / f"{RECORDING}_ecg.lpcm").read_bytes()
