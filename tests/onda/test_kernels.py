"""Compiled decode kernels: the same bits as numpy's path, for every type and selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.errors import ArgumentError
from ondabatches.onda import SAMPLE_TYPES, Settings, _kernels, use_settings
from ondabatches.onda._decoding import decode_plan, exact_decode
from tests.onda.samplefiles import bitwise_equal, make_info, random_encoded
from tests.onda.test_decoding import SETTINGS, _interleaved_view, offsets, resolutions


def _numpy_path(plan, encoded, index, dtype) -> np.ndarray:
    selected = encoded if isinstance(index, slice) else encoded[index]
    with np.errstate(all="ignore"):
        return plan(selected, np.empty(selected.shape, dtype=dtype))


def _case(sample_type, dtype, resolution, offset, fast, n_channels, n, pick, seed):
    """A random window's info, output dtype, encoded samples (a read's layout), channel
    index and decode plan."""
    info = make_info(
        sample_type, n_channels, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    dtype = np.dtype(dtype)
    encoded = _interleaved_view(random_encoded(info, n, seed=seed))
    index = slice(None) if pick is None else [i % n_channels for i in pick]
    return info, dtype, encoded, index, decode_plan(info, dtype, fast)


@SETTINGS
@given(
    sample_type=st.sampled_from(sorted(SAMPLE_TYPES)),
    dtype=st.sampled_from([np.float32, np.float64, np.float16]),
    resolution=resolutions,
    offset=offsets,
    fast=st.booleans(),
    # Under and over the kernel's _FEW channels: its two loop orders.
    n_channels=st.integers(1, 20),
    n=st.integers(0, 200),
    pick=st.one_of(st.none(), st.lists(st.integers(0, 19), min_size=1, max_size=12)),
    seed=st.integers(0, 2**16),
    order=st.sampled_from([None, "rows", "steps"]),  # measured, or either loop forced
)
def test_select_equals_numpys_path(
    sample_type, dtype, resolution, offset, fast, n_channels, n, pick, seed, order
):
    info, dtype, encoded, index, plan = _case(
        sample_type, dtype, resolution, offset, fast, n_channels, n, pick, seed
    )
    expected = _numpy_path(plan, encoded, index, dtype)
    out = np.empty(expected.shape, dtype=dtype)
    _kernels.FORCED = order
    try:
        with np.errstate(all="ignore"):
            got = plan.select(encoded, index, out)
    finally:
        _kernels.FORCED = None
    assert got is out
    assert bitwise_equal(got, expected)
    if not fast:  # and both are Onda's decode, rounded once
        with np.errstate(all="ignore"):
            assert bitwise_equal(got, exact_decode(encoded[index], info, dtype))


@settings(max_examples=60, deadline=None)
@given(
    sample_type=st.sampled_from(["int8", "uint8", "int16", "uint16"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    resolution=resolutions,
    offset=offsets,
    fast=st.booleans(),
)
def test_every_small_sample_decodes_as_numpy_does(sample_type, dtype, resolution, offset, fast):
    info = make_info(
        sample_type, 10, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    every = np.arange(2 ** (8 * info.dtype.itemsize), dtype=np.uint16).astype(
        info.dtype, casting="unsafe"
    )
    encoded = _interleaved_view(np.stack([np.roll(every, k) for k in range(10)]))
    dtype = np.dtype(dtype)
    plan = decode_plan(info, dtype, fast)
    for index in (slice(None), [1], [1, 0, 1], [9, *range(9)]):
        expected = _numpy_path(plan, encoded, index, dtype)
        got = plan.select(encoded, index, np.empty(expected.shape, dtype=dtype))
        assert bitwise_equal(got, expected)


def test_the_kernel_runs_for_the_everyday_window():
    pytest.importorskip("numba")
    assert _kernels.available()
    assert _kernels.warm_up()
    encoded = _interleaved_view(np.arange(-60, 60, dtype=np.int16).reshape(3, 40))
    out = np.empty((3, 40), dtype=np.float32)
    assert _kernels.decode_rows(encoded, slice(None), 0.1, 0.0, False, out)
    assert bitwise_equal(out, (encoded.astype(np.float64) * 0.1).astype(np.float32))
    many = _interleaved_view(np.arange(-240, 240, dtype=np.int16).reshape(12, 40))
    wide = np.empty((12, 40), dtype=np.float32)  # the other loop order
    assert _kernels.decode_rows(many, slice(None), 0.1, -3.0, False, wide)
    assert bitwise_equal(wide, (many.astype(np.float64) * 0.1 - 3.0).astype(np.float32))
    picked = np.empty((2, 40), dtype=np.float32)
    assert _kernels.decode_rows(encoded, [2, 0], 0.1, 0.5, False, picked)
    assert bitwise_equal(
        picked, (encoded[[2, 0]].astype(np.float64) * 0.1 + 0.5).astype(np.float32)
    )


def test_the_loop_order_is_measured_once_per_window_shape(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(_kernels, "_ROWS", {})
    measured = []

    def rows_faster(*args):
        measured.append(args[-1].shape)
        return len(measured) % 2 == 1  # rows for the first shape, time steps for the next

    monkeypatch.setattr(_kernels, "_rows_faster", rows_faster)
    encoded = _interleaved_view(np.arange(-950, 950, dtype=np.int16).reshape(19, 100))
    expected = (encoded.astype(np.float64) * 0.1).astype(np.float32)
    for window in (slice(None), slice(0, 40), slice(None)):  # a shorter one: the same shape
        out = np.empty((19, 100), np.float32)[:, window].copy()
        assert _kernels.decode_rows(encoded[:, window], slice(None), 0.1, 0.0, False, out)
        assert bitwise_equal(out, expected[:, window])
    assert measured == [(19, 100)]
    picked = np.empty((9, 100), np.float32)  # another shape: measured, the other order
    assert _kernels.decode_rows(encoded, list(range(9)), 0.1, 0.0, False, picked)
    assert bitwise_equal(picked, expected[:9])
    assert len(measured) == 2
    assert sorted(_kernels.orders().values()) == ["rows", "time steps"]
    # Fewer rows than _FEW are decoded one at a time, with nothing measured.
    assert _kernels.decode_rows(encoded, [3, 1], 0.1, 0.0, False, picked[:2])
    assert len(measured) == 2 and bitwise_equal(picked[:2], expected[[3, 1]])


def test_measuring_the_loop_orders_gives_an_answer():
    pytest.importorskip("numba")
    assert _kernels.available()
    src = np.zeros((50, 19), np.int16)
    out = np.empty((19, 50), np.float32)
    answer = _kernels._rows_faster(src, _kernels._NO_CHANNELS, True, False,
                                   np.empty(19, np.float32), out)  # fmt: skip
    assert answer in (True, False)


def test_layouts_and_indices_the_kernel_does_not_take_fall_back(monkeypatch):
    encoded = _interleaved_view(np.arange(60, dtype=np.int16).reshape(3, 20))
    out = np.empty((3, 20), dtype=np.float32)
    # channels x time already contiguous (not a read's layout), a time slice, a
    # Fortran-ordered out, an index out of range, a negative index, a 32-bit float32 product
    assert not _kernels.decode_rows(
        np.ascontiguousarray(encoded), slice(None), 0.1, 0.0, False, out
    )
    assert not _kernels.decode_rows(encoded[:, ::2], slice(None), 0.1, 0.0, False, out[:, :10])
    assert not _kernels.decode_rows(
        encoded, slice(None), 0.1, 0.0, False, np.empty((20, 3), "f4").T
    )
    assert not _kernels.decode_rows(encoded, [0, 3], 0.1, 0.0, False, out[:2])
    assert not _kernels.decode_rows(encoded, [-1], 0.1, 0.0, False, out[:1])
    wide = _interleaved_view(np.arange(60, dtype=np.int32).reshape(3, 20))
    assert not _kernels.decode_rows(wide, slice(None), 0.1, 0.0, True, out)
    # ... and decode_plan.select still gives numpy's values there, or its errors.
    info = make_info("int16", 3, sample_resolution_in_unit=0.1)
    plan = decode_plan(info, np.dtype(np.float32))
    assert bitwise_equal(
        plan.select(encoded, [-1], out[:1]), _numpy_path(plan, encoded, [-1], "f4")
    )
    with pytest.raises(IndexError):
        plan.select(encoded, [0, 3], out[:2])
    # Turned off, the kernels never run.
    monkeypatch.setattr(_kernels, "ENABLED", False)
    assert not _kernels.available()
    assert not _kernels.decode_rows(encoded, slice(None), 0.1, 0.0, False, out)
    assert bitwise_equal(
        plan.select(encoded, slice(None), out), _numpy_path(plan, encoded, slice(None), "f4")
    )


def test_the_switch_follows_the_settings(monkeypatch):
    pytest.importorskip("numba")
    with use_settings(kernels="numpy"):
        assert not _kernels.warm_up() and not _kernels.ENABLED
    with use_settings(kernels="auto"):
        assert _kernels.warm_up() and _kernels.ENABLED
    # ONDABATCHES_KERNELS is read once, into the settings.
    monkeypatch.setenv("ONDABATCHES_KERNELS", "NumPy ")
    with use_settings(Settings.from_env()):
        assert not _kernels.available()
    monkeypatch.setenv("ONDABATCHES_KERNELS", "numba")
    expected = r"ONDABATCHES_KERNELS must be one of \['auto', 'numpy'\], got 'numba'"
    with pytest.raises(ArgumentError, match=expected):
        Settings.from_env()


def test_without_numba_numpy_decodes_and_the_log_says_how_to_get_the_kernels(monkeypatch, caplog):
    import logging
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.setattr(_kernels, "_compile", _kernels.CompileOnce(
        _kernels._build, _kernels._try, "decode kernels", _kernels.log,
        missing=_kernels._compile.missing,
    ))  # fmt: skip
    with caplog.at_level(logging.INFO, logger=_kernels.__name__):
        assert not _kernels.available()
    assert "pip install 'ondabatches[fast]'" in caplog.text
    encoded = _interleaved_view(np.arange(60, dtype=np.int16).reshape(3, 20))
    out = np.empty((3, 20), dtype=np.float32)
    assert not _kernels.decode_rows(encoded, slice(None), 0.1, 0.0, False, out)
    plan = decode_plan(make_info("int16", 3, sample_resolution_in_unit=0.1), np.dtype("f4"))
    assert bitwise_equal(
        plan.select(encoded, slice(None), out),
        exact_decode(encoded, make_info("int16", 3, sample_resolution_in_unit=0.1), np.dtype("f4")),
    )


def test_a_kernel_that_cannot_compile_is_tried_once_then_none_with_a_warning(caplog):
    import logging

    calls = []

    def build():
        calls.append(1)
        raise TypeError("no such typing")

    once = _kernels.CompileOnce(build, lambda k: None, "test kernel", _kernels.log)
    with caplog.at_level(logging.WARNING, logger=_kernels.__name__):
        assert once() is None
        assert once() is None
    assert calls == [1]
    assert "test kernel unavailable: no such typing" in caplog.text
    ok = _kernels.CompileOnce(lambda: len, lambda k: None, "len", _kernels.log)
    assert ok() is len and ok() is len


@SETTINGS
@given(
    sample_type=st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "uint32"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    resolution=resolutions,
    offset=offsets,
    fast=st.booleans(),
    n_channels=st.integers(1, 20),  # under and over _FEW: both loop orders
    n=st.integers(1, 200),
    pick=st.one_of(st.none(), st.lists(st.integers(0, 19), min_size=1, max_size=12)),
    gain=st.one_of(st.none(), st.floats(-4, 4, allow_nan=False, width=32)),
    reverse=st.booleans(),
    dropped=st.one_of(
        st.none(), st.lists(st.sampled_from([0.0, -0.0, np.nan]), min_size=20, max_size=20)
    ),  # fmt: skip
    seed=st.integers(0, 2**16),
    order=st.sampled_from([None, "rows", "steps"]),
)
def test_the_folded_decoder_gives_selects_bits(
    sample_type, dtype, resolution, offset, fast, n_channels, n, pick, gain, reverse, dropped,
    seed, order,
):  # fmt: skip
    """`decoder(folded=True)` (the local path's, its checks done once per batch) against
    `DecodePlan.select` with the same gain, reversal and zeroed rows (the general path's),
    and both against numpy's decode followed by `post_decode`."""
    from ondabatches.onda._decoding import post_decode

    info, dtype, encoded, index, plan = _case(
        sample_type, dtype, resolution, offset, fast, n_channels, n, pick, seed
    )
    rows = n_channels if pick is None else len(pick)
    g = None if gain is None else dtype.type(gain)
    fill = None if dropped is None else np.array(dropped[:rows], dtype)
    with np.errstate(all="ignore"):
        expected = post_decode(_numpy_path(plan, encoded, index, dtype), g, reverse, fill)
    _kernels.FORCED = order
    try:
        with np.errstate(all="ignore"):
            general = plan.select(encoded, index, np.empty_like(expected), g, reverse, fill)
            decode = plan.kernel_decoder(info.dtype, folded=True)
            if decode is not None:
                local = np.empty_like(expected)
                channels = None if pick is None else np.asarray(index, dtype=np.intp)
                decode(encoded.T, channels, local, g, reverse, fill)
                assert bitwise_equal(local, expected)
    finally:
        _kernels.FORCED = None
    assert bitwise_equal(general, expected)
    narrow = plan.how == "native" and dtype == np.float32 and info.dtype.itemsize > 2
    assert (decode is None) == (not _kernels.available() or narrow)
