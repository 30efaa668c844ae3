"""Decode plans: every fast path gives exactly Onda's plain decode (float64, rounded once)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.onda import SAMPLE_TYPES
from ondabatches.onda._decoding import FAST_MAX_ERROR, decode_plan, exact_decode
from tests.onda.samplefiles import bitwise_equal, make_info, random_encoded

SETTINGS = settings(max_examples=150, deadline=None)

# Resolutions and offsets as EDF imports give them (ranges / 65535), powers of two
# (where float32 arithmetic is exact), and arbitrary doubles of any magnitude.
resolutions = st.one_of(
    st.sampled_from([1.0, 0.5, 0.25, 0.1, -2.5, 1 / 3, 2000 / 65535, 0.0625, 1e-3]),
    st.floats(1e-6, 1e4).map(lambda r: r * 1.0),
    st.floats(-1e4, -1e-6),
)
offsets = st.one_of(
    st.sampled_from([0.0, -1.0, 1e3, -8192.0, 0.05]),
    st.floats(-1e5, 1e5),
)


def _interleaved_view(encoded: np.ndarray) -> np.ndarray:
    """The layout a window read from LPCM has: channels x time over time-major bytes."""
    return np.ascontiguousarray(encoded.T).T


@SETTINGS
@given(
    sample_type=st.sampled_from(sorted(SAMPLE_TYPES)),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
    resolution=resolutions,
    offset=offsets,
    n_channels=st.integers(1, 5),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**16),
)
def test_plan_equals_the_plain_float64_decode(
    sample_type, dtype, resolution, offset, n_channels, n, seed
):
    info = make_info(
        sample_type, n_channels, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    dtype = np.dtype(dtype)
    encoded = _interleaved_view(random_encoded(info, n, seed=seed))
    with np.errstate(all="ignore"):  # random float bits overflow float32
        expected = exact_decode(encoded, info, dtype)
        got = decode_plan(info, dtype)(encoded, np.empty(encoded.shape, dtype=dtype))
        again = decode_plan(info, dtype)(encoded.copy(), np.empty(encoded.shape, dtype=dtype))
    assert bitwise_equal(got, expected)
    assert bitwise_equal(again, expected)


@SETTINGS
@given(
    sample_type=st.sampled_from(["int8", "uint8", "int16", "uint16"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    resolution=resolutions,
    offset=offsets,
)
def test_plan_equals_the_plain_decode_for_every_small_sample(
    sample_type, dtype, resolution, offset
):
    info = make_info(
        sample_type, 1, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    every = np.arange(2 ** (8 * info.dtype.itemsize), dtype=np.uint16).astype(
        info.dtype, casting="unsafe"
    )[None]
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        expected = exact_decode(every, info, dtype)
        got = decode_plan(info, dtype)(every, np.empty(every.shape, dtype=dtype))
    assert bitwise_equal(got, expected)


def test_float32_arithmetic_is_used_only_where_it_is_exact():
    # 0.25 and -8192 are exact in float32 for every int16; 0.1 is not.
    exact = make_info("int16", 1, sample_resolution_in_unit=0.25, sample_offset_in_unit=-8192.0)
    assert decode_plan(exact, np.dtype(np.float32)).how == "native"
    tenth = make_info("int16", 1, sample_resolution_in_unit=0.1)
    assert decode_plan(tenth, np.dtype(np.float32)).how == "float64"
    assert decode_plan(tenth, np.dtype(np.float32), fast=True).how == "native"
    identity = make_info("int16", 1, sample_resolution_in_unit=1.0)
    assert decode_plan(identity, np.dtype(np.float32)).how == "cast"


@SETTINGS
@given(
    sample_type=st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "float32"]),
    resolution=resolutions,
    offset=offsets,
    seed=st.integers(0, 2**16),
)
def test_fast_decode_stays_within_its_documented_error(sample_type, resolution, offset, seed):
    info = make_info(
        sample_type, 3, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    encoded = _interleaved_view(random_encoded(info, 200, seed=seed))
    if info.dtype.kind == "f":
        encoded = np.where(np.abs(encoded) < 1e6, encoded, 0).astype(info.dtype)
    exact = exact_decode(encoded, info, np.dtype(np.float32)).astype(np.float64)
    fast = decode_plan(info, np.dtype(np.float32), fast=True)(
        encoded, np.empty(encoded.shape, dtype=np.float32)
    )
    # Plus the spacing of float32's subnormals: below the normal range, errors are absolute.
    bound = FAST_MAX_ERROR * (np.abs(encoded.astype(np.float64) * resolution) + abs(offset))
    bound += np.finfo(np.float32).smallest_subnormal
    assert (np.abs(fast.astype(np.float64) - exact) <= bound).all()
