"""Multi-signal batches against an independent decode of each signal's whole file."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from ondabatches import (
    RandomBatches,
    SequentialBatches,
    label_signals,
    materialize_batch,
    materialize_batch_item,
    read_signals,
)
from ondabatches.batches import ExcludedRecordingsWarning, MissingModality
from ondabatches.batches._montage import resample_ratio
from ondabatches.errors import BatchShapeError
from ondabatches.onda import TimeSpan
from tests.psg import MONTAGE, S, decode_file, label, select, window_rows

CHECKED = ("eeg", "eog", "emg", "ecg")


def scheme(labeled, cls=RandomBatches, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        return cls(labeled, modalities=MONTAGE, **kwargs)


def by_recording(batch):
    groups: dict = {}
    for item in batch:
        groups.setdefault(item.recording, []).append(item)
    return list(groups.values())


def expected_part(part) -> np.ndarray:
    first, count = window_rows(part)
    return select(part, decode_file(part))[:, first : first + count]


def test_each_modality_equals_a_direct_decode_at_the_index_rules(psg_labeled):
    batches = scheme(psg_labeled, batch_size=24, batch_duration=90 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=4))
    formats, rates = set(), set()
    for group in by_recording(batch):
        x, y = materialize_batch(group, np.float64)
        assert list(x) == list(MONTAGE)
        assert y.shape == (len(group), 1, 3)
        for i, item in enumerate(group):
            np.testing.assert_array_equal(y[i, 0], item.labels)
            for name in CHECKED:
                part = item.part(name)
                formats.add(part.file_format)
                rates.add(part.info.sample_rate)
                want = expected_part(part)
                assert x[name][i].shape == want.shape
                np.testing.assert_allclose(x[name][i], want, rtol=1e-12, atol=1e-9)
        x32, _ = materialize_batch(group)
        for name in CHECKED:
            assert x32[name].dtype == np.float32
            np.testing.assert_allclose(x32[name], x[name], rtol=1e-6, atol=1e-3)
    assert formats == {"lpcm", "lpcm.zst"}
    assert 143.5 in rates and 512.0 in rates and 64.0 in rates


def test_zero_fill_gives_zeros_and_masks(psg_labeled):
    batches = scheme(psg_labeled, missing="zero-fill", batch_size=32, batch_duration=60 * S,
                     resample={"rate": 128})  # fmt: skip
    batch, _ = batches.iterate_batch(batches.initial_state(seed=8))
    x, y = materialize_batch(batch)
    assert set(x) == {*MONTAGE, "mask"}
    for name in MONTAGE:
        mask = x["mask"][name]
        assert mask.dtype == np.bool_ and mask.shape == (32,)
        want = [not isinstance(it.part(name), MissingModality) for it in batch]
        assert mask.tolist() == want
        assert x[name].shape[-1] == 60 * 128
        absent = ~mask
        assert not np.any(x[name][absent])
        assert np.all(np.any(x[name][mask].reshape(int(mask.sum()), -1), axis=1))
    assert not x["mask"]["emg"].all() and not x["mask"]["ecg"].all()
    xi, yi = materialize_batch_item(batch[0])
    for name in MONTAGE:
        np.testing.assert_array_equal(xi[name], x[name][0])
        assert xi["mask"][name] == x["mask"][name][0]
    np.testing.assert_array_equal(yi, y[0])


def test_concatenated_batch_is_the_modalities_side_by_side(psg_labeled):
    kw = dict(missing="zero-fill", batch_size=6, batch_duration=60 * S)
    apart = scheme(psg_labeled, resample={"rate": 128}, **kw)
    joined = scheme(psg_labeled, resample={"rate": 128, "concatenate": True}, **kw)
    a, ya = materialize_batch(apart.iterate_batch(apart.initial_state(seed=1))[0])
    b, yb = materialize_batch(joined.iterate_batch(joined.initial_state(seed=1))[0])
    assert set(b) == {"x", "mask"}
    np.testing.assert_array_equal(b["x"], np.concatenate([a[n] for n in MONTAGE], axis=1))
    assert b["x"].shape == (6, 1 + 2 + 1 + 1, 60 * 128)
    np.testing.assert_array_equal(ya, yb)
    exclude = scheme(psg_labeled, resample={"rate": 128, "concatenate": True}, batch_size=2,
                     batch_duration=60 * S)  # fmt: skip
    x, _ = materialize_batch(exclude.iterate_batch(exclude.initial_state())[0])
    assert isinstance(x, np.ndarray) and x.shape == (2, 5, 60 * 128)


def test_resampling_equals_resample_poly_of_the_whole_signal(psg_labeled):
    batches = scheme(psg_labeled, resample={"rate": 128}, batch_size=24, batch_duration=60 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=6))
    x, _ = materialize_batch(batch, np.float64)
    checked = set()
    for i, item in enumerate(batch):
        for name in CHECKED:
            part = item.part(name)
            up, down = resample_ratio(part.info.sample_rate, 128.0)
            whole = resample_poly(select(part, decode_file(part)), up, down, axis=-1)
            j0 = target_index(part, 128)
            want = whole[:, j0 : j0 + 60 * 128]
            scale = np.abs(whole).max()
            np.testing.assert_allclose(x[name][i], want, rtol=0, atol=1e-9 * scale)
            checked.add((part.info.sample_rate, up, down))
    # Downsampling (512, 256, 200, 143.5 Hz), upsampling (64 Hz), and 128 Hz as is.
    assert {r for r, _, _ in checked} >= {512.0, 256.0, 143.5, 64.0}


def target_index(part, rate: int) -> int:
    """The window's first sample at ``rate`` (exact integer arithmetic)."""
    return (part.window.start - part.signal_span.start) * rate // S


@pytest.mark.parametrize("target", [128, 100, 256])
def test_resampling_is_aligned_at_any_window_start(psg_labeled, target):
    # Output sample i is the whole signal resampled, at the window's start + i / rate,
    # whatever input row the window starts on (not only multiples of the down factor),
    # including starts between samples and windows that touch the signal's ends.
    batches = scheme(psg_labeled, resample={"rate": 128}, batch_size=8, batch_duration=30 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=3))
    rng = np.random.default_rng(target)
    seen_off_grid = 0
    for item in batch[:3]:
        for name in CHECKED:
            part = item.part(name)
            rate = part.info.sample_rate
            up, down = resample_ratio(rate, float(target))
            if up == down:
                continue
            whole = resample_poly(select(part, decode_file(part)), up, down, axis=-1)
            span = part.signal_span
            last = span.duration - 30 * S
            starts = [0, last, 7 * S, *rng.integers(0, last, 6).tolist()]
            for offset in starts:
                window = TimeSpan(span.start + offset, span.start + offset + 30 * S)
                moved = replace(part, window=window)
                one = replace(item, window=window, names=(name,), rates=(float(target),),
                              parts=(moved,))  # fmt: skip
                x, _ = materialize_batch_item(one, np.float64)
                j0 = target_index(moved, target)
                want = whole[:, j0 : j0 + 30 * target]
                np.testing.assert_allclose(
                    x[name], want, rtol=0, atol=1e-9 * np.abs(whole).max(),
                    err_msg=f"{name} at {rate} Hz -> {target} Hz, window at {offset} ns",
                )  # fmt: skip
                seen_off_grid += window_rows(moved)[0] % down != 0
    assert seen_off_grid >= 10  # the windows the old anchoring got wrong were checked


def test_resampling_at_the_signal_edges_pads_as_the_whole_signal_does(psg_labeled):
    batches = scheme(psg_labeled, resample={"rate": 128}, batch_size=8, batch_duration=30 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=0))
    item = next(it for it in batch if it.part("eeg").info.sample_rate == 143.5)
    for name in ("eeg", "emg"):
        part = item.part(name)
        up, down = resample_ratio(part.info.sample_rate, 128.0)
        whole = resample_poly(select(part, decode_file(part)), up, down, axis=-1)
        span = part.signal_span
        # The first and the last window that fit, on whole even seconds (on the grid).
        last = (span.duration - 30 * S) // (2 * S) * (2 * S)
        for offset in (0, last):
            window = TimeSpan(span.start + offset, span.start + offset + 30 * S)
            edge = replace(item, window=window, names=(name,), rates=(128.0,),
                           parts=(replace(part, window=window),))  # fmt: skip
            x, _ = materialize_batch_item(edge, np.float64)
            first = window_rows(replace(part, window=window))[0]
            assert first % down == 0
            want = whole[:, first * up // down : first * up // down + 30 * 128]
            np.testing.assert_allclose(x[name], want, rtol=0, atol=1e-9 * np.abs(whole).max())


def test_items_of_different_shapes_are_named(psg_labeled):
    batches = scheme(psg_labeled, batch_size=16, batch_duration=60 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=0))
    with pytest.raises(BatchShapeError, match=r"different shapes of modality 'eeg'"):
        materialize_batch(batch)


def test_threads_and_inline_give_the_same_batches(psg_labeled):
    batches = scheme(psg_labeled, missing="zero-fill", resample={"rate": 128}, batch_size=8,
                     batch_duration=60 * S)  # fmt: skip
    states = [batches.initial_state(seed=2).advance(k) for k in range(6)]
    inline = [materialize_batch(batches.iterate_batch(s)[0]) for s in states]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda s: materialize_batch(batches.iterate_batch(s)[0]), states))
    for (xa, ya), (xb, yb) in zip(inline, threaded, strict=True):
        for name in MONTAGE:
            np.testing.assert_array_equal(xa[name], xb[name])
            np.testing.assert_array_equal(xa["mask"][name], xb["mask"][name])
        np.testing.assert_array_equal(ya, yb)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**64 - 1), index=st.integers(0, 10**6))
def test_a_batch_is_its_items_stacked(psg_labeled, seed, index):
    batches = scheme(psg_labeled, missing="zero-fill", resample={"rate": {"eeg": 64, "emg": 64,
                     "ecg": 64, "eog": 64}}, batch_size=3, batch_duration=30 * S)  # fmt: skip
    batch, _ = batches.iterate_batch(batches.initial_state(seed=seed).advance(index))
    x, y = materialize_batch(batch)
    for i, item in enumerate(batch):
        xi, yi = materialize_batch_item(item)
        for name in MONTAGE:
            np.testing.assert_array_equal(xi[name], x[name][i])
        np.testing.assert_array_equal(yi, y[i])


def test_allocate_provides_every_array(psg_labeled):
    batches = scheme(psg_labeled, missing="zero-fill", resample={"rate": 128}, batch_size=4,
                     batch_duration=60 * S)  # fmt: skip
    batch, _ = batches.iterate_batch(batches.initial_state(seed=3))
    made = []

    def allocate(shape, dtype):
        made.append(np.empty(shape, dtype))
        return made[-1]

    x, _ = materialize_batch(batch, allocate=allocate)
    arrays = [x[n] for n in MONTAGE] + [x["mask"][n] for n in MONTAGE]
    assert len(made) == len(arrays) and all(any(a is m for m in made) for a in arrays)


def test_sequential_montage_batches_materialize(psg_labeled):
    seq = scheme(psg_labeled, SequentialBatches, batch_size=4, batch_duration=60 * S,
                 resample={"rate": 128})  # fmt: skip
    out = seq.iterate_batch(seq.initial_state())
    assert out is not None
    x, y = materialize_batch(out[0])
    assert {x[n].shape[-1] for n in MONTAGE} == {60 * 128} and y.shape == (4, 1, 2)


@pytest.mark.s3
def test_s3_batches_equal_local_ones(psg, psg_labeled, s3):
    root = s3.url("psg")
    s3.fs.put(str(psg.root) + "/", root + "/", recursive=True)
    signals = read_signals(f"{root}/signals.arrow", reroot={str(psg.root): root})
    remote = label(psg, signals)
    kw = dict(missing="zero-fill", batch_size=6, batch_duration=60 * S)
    for resample in (None, {"rate": 128}):
        local_scheme = scheme(psg_labeled, resample=resample, **kw)
        remote_scheme = scheme(remote, resample=resample, **kw)
        local_batch, _ = local_scheme.iterate_batch(local_scheme.initial_state(seed=7))
        remote_batch, _ = remote_scheme.iterate_batch(remote_scheme.initial_state(seed=7))
        assert all(p.file_path.startswith("s3://") for it in remote_batch for p in it.parts
                   if not isinstance(p, MissingModality))  # fmt: skip
        if resample:
            groups = [list(range(len(local_batch)))]
        else:
            recs = [it.recording for it in local_batch]
            groups = [[i for i, r in enumerate(recs) if r == rec] for rec in dict.fromkeys(recs)]
        for idx in groups:
            xl, yl = materialize_batch([local_batch[i] for i in idx])
            xr, yr = materialize_batch([remote_batch[i] for i in idx])
            for name in MONTAGE:
                np.testing.assert_array_equal(xl[name], xr[name])
                np.testing.assert_array_equal(xl["mask"][name], xr["mask"][name])
            np.testing.assert_array_equal(yl, yr)


def test_stored_labels_and_predicates(psg, tmp_path):
    from ondabatches.labels import sort_and_trim_spans
    from tests.psg import EPOCH, STAGE_ENCODING

    annotations = sort_and_trim_spans(psg.annotations, epoch=EPOCH, by="recording")
    lazy = label_signals(psg.signals, annotations, labels_column="stage", epoch=EPOCH,
                         encoding=STAGE_ENCODING, partial_signals=True,
                         store=tmp_path / "labels")  # fmt: skip
    eager = label(psg)
    montage = {"chin": (lambda row: row["sensor_label"] == "emg", ["chin"]), "eog": "eog"}
    kw = dict(modalities=montage, batch_size=5, batch_duration=60 * S)
    a, b = RandomBatches(lazy, **kw), RandomBatches(eager, **kw)
    batch_a, _ = a.iterate_batch(a.initial_state(seed=3))
    batch_b, _ = b.iterate_batch(b.initial_state(seed=3))
    assert type(batch_a[0].labels).__name__ == "StoredLabels"
    xa, ya = materialize_batch(batch_a)
    xb, yb = materialize_batch(batch_b)
    np.testing.assert_array_equal(ya, yb)
    for name in montage:
        np.testing.assert_array_equal(xa[name], xb[name])
    for i, item in enumerate(batch_b):
        np.testing.assert_allclose(xb["chin"][i], expected_part(item.part("chin")), rtol=1e-6,
                                   atol=1e-3)  # fmt: skip


def test_missing_scipy_names_the_extra(psg_labeled, monkeypatch):
    import sys

    from ondabatches.errors import MissingDependencyError

    batches = scheme(psg_labeled, resample={"rate": 128}, batch_size=2, batch_duration=60 * S)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=3))
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ondabatches\[resample\]'"):
        materialize_batch(batch)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**64 - 1),
    index=st.integers(0, 2**40),
    epochs=st.integers(1, 4),
    missing=st.sampled_from(["exclude", "zero-fill"]),
)
def test_any_item_equals_the_direct_decode(psg_labeled, seed, index, epochs, missing):
    batches = scheme(psg_labeled, missing=missing, batch_size=1, batch_duration=epochs * 30 * S)
    item, _ = batches.iterate_batch_item(batches.initial_state(seed=seed).advance(index))
    x, y = materialize_batch_item(item, np.float64)
    np.testing.assert_array_equal(y[0], item.label_codes())
    for name in MONTAGE:
        part = item.part(name)
        if isinstance(part, MissingModality):
            assert x["mask"][name] == False  # noqa: E712 (a numpy bool)
            assert not x[name].any()
            continue
        if missing == "zero-fill":
            assert x["mask"][name] == True  # noqa: E712
        np.testing.assert_allclose(x[name], expected_part(part), rtol=1e-12, atol=1e-9)
