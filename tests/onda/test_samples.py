"""Onda's encode/decode rules, SamplesInfo and Samples selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.errors import SpanError, UnknownFormatError
from ondabatches.onda import (
    SAMPLE_TYPES,
    Samples,
    SamplesInfo,
    TimeSpan,
    decode,
    encode,
    sample_dtype,
)

S = 1_000_000_000
INT_TYPES = [t for t in SAMPLE_TYPES if SAMPLE_TYPES[t].kind in "iu"]
FLOAT_TYPES = [t for t in SAMPLE_TYPES if SAMPLE_TYPES[t].kind == "f"]


def info_for(sample_type: str, resolution: float = 1.0, offset: float = 0.0, n_channels: int = 1):
    channels = tuple(f"ch{i}" for i in range(n_channels))
    return SamplesInfo("x", channels, "unit", resolution, offset, sample_type, 10.0)


def test_sample_types_are_the_onda_ten_little_endian():
    assert sorted(SAMPLE_TYPES) == sorted(
        [
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float32",
            "float64",
        ]
    )
    assert all(dt.byteorder in "<=|" for dt in SAMPLE_TYPES.values())
    assert sample_dtype("int16") == np.dtype("<i2")
    with pytest.raises(UnknownFormatError, match="float16"):
        sample_dtype("float16")


def test_samples_info_validates():
    with pytest.raises(UnknownFormatError):
        info_for("int12")
    with pytest.raises(ValueError, match="unique"):
        SamplesInfo("x", ("a", "a"), "u", 1.0, 0.0, "int8", 1.0)
    with pytest.raises(ValueError, match="sample_rate"):
        SamplesInfo("x", ("a",), "u", 1.0, 0.0, "int8", 0.0)
    with pytest.raises(ValueError, match="resolution"):
        SamplesInfo("x", ("a",), "u", 0.0, 0.0, "int8", 1.0)
    info = SamplesInfo("x", ["a", "b"], "u", 1, 0, "int16", 128)
    assert info.channels == ("a", "b") and info.bytes_per_sample == 4
    assert SamplesInfo.from_dict(info.to_dict()) == info


# Resolutions and offsets that are not powers of two, to exercise rounding.
resolutions = st.sampled_from([1.0, 0.25, 0.5, 3.7, 1e-3, 0.1])
offsets = st.sampled_from([0.0, -1.0, 2.5, 100.3])


def representable(dtype: np.dtype, resolution: float, offset: float):
    """Values whose encoding lies inside the type and within float64's exact integers."""
    ii = np.iinfo(dtype)
    lo, hi = max(int(ii.min), -(2**40)), min(int(ii.max), 2**40)
    return st.floats(lo * resolution + offset, hi * resolution + offset, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(), sample_type=st.sampled_from(INT_TYPES), resolution=resolutions, offset=offsets
)
def test_int_round_trip_is_within_half_a_resolution(data, sample_type, resolution, offset):
    info = info_for(sample_type, resolution, offset)
    x = np.array(
        [
            data.draw(
                st.lists(representable(info.dtype, resolution, offset), min_size=1, max_size=20)
            )
        ]
    )
    encoded = encode(x, info)
    assert encoded.dtype == info.dtype
    decoded = decode(encoded, info)
    tolerance = resolution / 2 + 1e-9 * np.maximum(1.0, np.abs(x))
    assert np.all(np.abs(decoded - x) <= tolerance)


@settings(max_examples=60, deadline=None)
@given(
    sample_type=st.sampled_from(INT_TYPES),
    resolution=resolutions,
    offset=offsets,
    beyond=st.floats(1.0, 1e30),
)
def test_encoding_clamps_at_the_type_bounds(sample_type, resolution, offset, beyond):
    info = info_for(sample_type, resolution, offset)
    ii = np.iinfo(info.dtype)
    high = float(ii.max) * resolution + offset + beyond * resolution
    low = float(ii.min) * resolution + offset - beyond * resolution
    encoded = encode(np.array([[high, low, np.inf, -np.inf]]), info)
    assert encoded.tolist() == [[ii.max, ii.min, ii.max, ii.min]]


def test_encoding_rounds_ties_to_even():
    info = info_for("int16")
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001]])
    assert encode(x, info).tolist() == [[0, 2, 2, 0, -2, 2, 3]]
    halves = info_for("int8", resolution=0.5, offset=1.0)
    # (x - 1) / 0.5: 1.25 -> 0.5 -> 0, 1.75 -> 1.5 -> 2, 2.25 -> 2.5 -> 2
    assert encode(np.array([[1.25, 1.75, 2.25]]), halves).tolist() == [[0, 2, 2]]


def test_encoding_nan_into_integers_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        encode(np.array([[1.0, np.nan]]), info_for("int32"))


def test_docstring_example_of_encode():
    info = SamplesInfo("x", ("a",), "u", 0.5, 1.0, "int8", 1.0)
    assert encode(np.array([[1.0, 2.25, 1000.0]]), info).tolist() == [[0, 2, 127]]


def test_64_bit_bounds_are_exact():
    info = info_for("int64")
    out = encode(np.array([[9.3e18, -9.3e18, 2.0**62]]), info)
    assert out.tolist() == [[2**63 - 1, -(2**63), 2**62]]
    assert encode(np.array([[2.0e19, -1.0]]), info_for("uint64")).tolist() == [[2**64 - 1, 0]]


@settings(max_examples=60, deadline=None)
@given(
    sample_type=st.sampled_from(FLOAT_TYPES),
    resolution=resolutions,
    offset=offsets,
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20),
)
def test_float_round_trip(sample_type, resolution, offset, values):
    info = info_for(sample_type, resolution, offset)
    x = np.array([values])
    encoded = encode(x, info)
    assert encoded.dtype == info.dtype
    rtol = 1e-6 if sample_type == "float32" else 1e-12
    np.testing.assert_allclose(decode(encoded, info), x, rtol=rtol, atol=rtol * resolution * 1e6)


@pytest.mark.parametrize("sample_type", sorted(SAMPLE_TYPES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_identity_encoding_still_honours_the_dtype(sample_type, dtype):
    info = info_for(sample_type)
    stored = np.array([[1, 2, 3]], dtype=info.dtype)
    out = decode(stored, info, dtype)
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == [[1, 2, 3]]
    assert not np.shares_memory(out, stored)
    assert encode(out, info).dtype == info.dtype


def test_decode_applies_resolution_and_offset():
    info = info_for("int16", resolution=0.25, offset=-1.0)
    out = decode(np.array([[0, 4, -8]], dtype=np.int16), info, np.float32)
    assert out.dtype == np.float32
    assert out.tolist() == [[-1.0, 0.0, -3.0]]


# ----------------------------------------------------------------------------- Samples


@pytest.fixture
def samples() -> Samples:
    info = SamplesInfo("eeg", ("c3", "c4", "o1"), "uV", 0.5, 0.0, "int16", 10.0)
    return Samples(np.arange(3 * 50, dtype=np.int16).reshape(3, 50), info, encoded=True)


def test_select_by_names_and_indices(samples):
    by_name = samples.select(channels=["o1", "c3"])
    assert by_name.info.channels == ("o1", "c3")
    np.testing.assert_array_equal(by_name.data, samples.data[[2, 0]])
    by_index = samples.select(channels=[2, 0])
    assert by_index == by_name
    assert samples.select(channels="c4").data.tolist() == [list(range(50, 100))]
    assert samples.select(channels=-1).info.channels == ("o1",)
    assert samples.select() == samples


def test_select_unknown_channel_names_the_channels(samples):
    with pytest.raises(KeyError, match=r"'fz' not found.*\['c3', 'c4', 'o1'\]"):
        samples.select(channels=["fz"])
    with pytest.raises(IndexError):
        samples.select(channels=[3])


def test_select_by_span(samples):
    # 10 Hz: 1.0 s .. 2.05 s covers samples 10 .. 20 (the one at or before the start counts).
    part = samples.select(channels="c3", span=TimeSpan(S, 2 * S + 50_000_000))
    assert part.data.tolist() == [list(range(10, 21))]
    assert part.encoded and part.info.channels == ("c3",)
    assert samples.select(span=TimeSpan(0, 5 * S)).n_samples == 50
    with pytest.raises(SpanError, match="only 50 samples"):
        samples.select(span=TimeSpan(0, 5 * S + 1))


def test_window_has_floor_duration_times_rate_samples(samples):
    window = samples.window(TimeSpan(1_050_000_000, 2_050_000_000))
    assert window.n_samples == 10
    assert window.data[0].tolist() == list(range(10, 20))
    with pytest.raises(SpanError):
        samples.window(TimeSpan(4 * S, 6 * S))


def test_samples_decode_and_encode(samples):
    decoded = samples.decode(np.float32)
    assert not decoded.encoded and decoded.data.dtype == np.float32
    assert decoded.data[0, 3] == 1.5
    assert decoded.encode() == samples


def test_samples_check_their_shape():
    info = SamplesInfo("eeg", ("a", "b"), "uV", 1.0, 0.0, "int16", 10.0)
    with pytest.raises(ValueError, match="2 channels"):
        Samples(np.zeros((3, 5), np.int16), info, encoded=True)
    with pytest.raises(ValueError, match="must have dtype int16"):
        Samples(np.zeros((2, 5), np.float32), info, encoded=True)
    with pytest.raises(ValueError, match="2-D"):
        Samples(np.zeros(5, np.int16), info, encoded=True)
