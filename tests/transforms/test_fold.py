"""Gains, sign flips, channel dropout and time reversal folded into the decode give the
bits of the same transforms applied one by one after it: every encoding the decode
plans take, many channels and few (the compiled kernel's two loop orders), kernels on and off,
windows at random starts, random pipelines of these transforms in any order."""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import pytest

from ondabatches import RandomBatches, label_signals, materialize_batch
from ondabatches.batches import BatchState
from ondabatches.onda import (
    Samples,
    SamplesInfo,
    TimeSpan,
    _kernels,
    annotations_table,
    signals_table,
    store,
)
from ondabatches.onda._decoding import post_decode
from ondabatches.serve import Batcher
from ondabatches.transforms import (
    AmplitudeScale,
    BatchDraws,
    ChannelDropout,
    GaussianNoise,
    KeyedDraws,
    Pipeline,
    SignFlip,
    TimeReverse,
    TransformedBatches,
    keyed_uniforms,
)
from ondabatches.transforms._folds import Fold

S = 10**9
EPOCH = 30 * S
# (sample type, resolution, offset): decode in float64, in float32 (exact), a plain cast.
ENCODINGS = [("int16", 0.1, 0.0), ("int16", 0.25, -8.0), ("int32", 0.05, 1.0), ("uint8", 1.0, 0.0)]
CODES = {"wake": 1, "nrem2": 2}
FOLDING = [AmplitudeScale, SignFlip, TimeReverse, ChannelDropout]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("fold")
    rng = np.random.default_rng(0)
    out = {}
    for n_channels in (12, 3):
        for k, (sample_type, res, off) in enumerate(ENCODINGS):
            recording = uuid.uuid4()
            info = SamplesInfo("eeg", tuple(f"c{i}" for i in range(n_channels)), "microvolt",
                               res, off, sample_type, 64.0)  # fmt: skip
            lim = np.iinfo(sample_type)
            n = 10 * 60 * 64
            encoded = rng.integers(lim.min, lim.max, (n_channels, n), endpoint=True)
            path = root / f"{n_channels}-{k}.lpcm"
            store(path, Samples(encoded.astype(sample_type), info, encoded=True))
            signals = signals_table([dict(recording=recording, file_path=str(path),
                                          file_format="lpcm", span=TimeSpan(0, 600 * S),
                                          sensor_label="eeg", **info.to_dict())])  # fmt: skip
            stages = annotations_table([dict(recording=recording, id=uuid.uuid4(),
                                             span=TimeSpan(e * EPOCH, (e + 1) * EPOCH),
                                             stage=["wake", "nrem2"][e % 2])
                                        for e in range(20)])  # fmt: skip
            out[n_channels, sample_type, res] = label_signals(
                signals, stages, labels_column="stage", epoch=EPOCH, encoding=CODES
            )
    return out


def _items(table, seed, n=6, epochs=2):
    scheme = RandomBatches(table, batch_size=n, batch_duration=epochs * EPOCH)
    items, _ = scheme.iterate_batch(scheme.initial_state(seed=seed))
    rng = np.random.default_rng(seed)
    out = []
    for item in items:  # random nanosecond starts inside the labels, not epoch-aligned
        span, duration = item.signal_span, item.window.duration
        start = int(rng.integers(span.start, span.stop - duration))
        out.append(dataclasses.replace(item, window=TimeSpan(start, start + duration)))
    return out


def _one_by_one(items, pipeline, key):
    """The reference: the plain batch, then each transform's apply, item by item."""
    x, y = materialize_batch(items)
    for i in range(len(items)):
        xi, yi = x[i].copy(), y[i].copy()
        for position, t in enumerate(pipeline.transforms):
            rng = pipeline._rng(t, key, i, position)  # a KeyedDraws for augmentations
            xi, yi = t.apply(xi, yi, rng, items[i].info.sample_rate)
        x[i], y[i] = xi, yi
    return x, y


def _random_pipeline(rng):
    steps = []
    for _ in range(int(rng.integers(1, 7))):
        kind = FOLDING[int(rng.integers(len(FOLDING)))]
        p = float(rng.choice([0.5, 1.0]))
        steps.append(kind(p_channel=0.4, p=p) if kind is ChannelDropout else kind(p=p))
    if rng.random() < 0.3:
        steps.append(GaussianNoise(2.0, p=1.0))  # a transform that does not fold, after
    return Pipeline(steps)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernel", "numpy"])
def test_folded_transforms_give_the_bits_of_applying_them_one_by_one(tables, kernels, monkeypatch):
    monkeypatch.setattr(_kernels, "ENABLED", kernels)
    rng = np.random.default_rng(1)
    folded = 0
    for (n_channels, sample_type, res), table in tables.items():
        for trial in range(8):
            pipeline = _random_pipeline(rng)
            items = _items(table, seed=trial)
            key = (trial, int(rng.integers(0, 1000)))
            x, y = materialize_batch(items, transforms=pipeline, key=key)
            want_x, want_y = _one_by_one(items, pipeline, key)
            where = f"{n_channels} ch {sample_type} res {res}: {pipeline!r} key {key}"
            assert x.tobytes() == want_x.tobytes(), where  # bit for bit, signed zeros too
            np.testing.assert_array_equal(y, want_y, err_msg=where)
            fold, _ = pipeline.fold_item(key, 0, n_channels, np.dtype(np.float32))
            folded += fold is not None and not fold.trivial
    assert folded > 20  # the folds did something: reversals, gains, zeroed rows


def test_fold_stops_where_folding_would_round_differently():
    two_scales = Pipeline([AmplitudeScale(p=1.0), SignFlip(p=1.0), AmplitudeScale(p=1.0)])
    fold, done = two_scales.fold_item((0, 0), 0, 4, np.dtype(np.float32))
    assert done == 2 and fold.scaled and fold.gain < 0  # the second scale runs after
    noise_first = Pipeline([GaussianNoise(1.0), SignFlip(p=1.0)])
    assert noise_first.fold_item((0, 0), 0, 4, np.dtype(np.float32)) == (None, 0)


def test_dropped_rows_keep_the_sign_of_the_flips_after_them(monkeypatch):
    n = _kernels._FEW + 2  # enough rows for the kernel's many-channel loops
    fold = Fold(n, np.dtype(np.float32))
    fold.drop(np.arange(n) >= 1)
    fold.negate()  # a flip after the dropout: -0.0
    fold.drop(np.arange(n) >= 2)  # dropped again after it: +0.0
    fill = fold.fill
    assert np.isnan(fill[0]) and (fill[1:] == 0).all()
    assert np.signbit(fill[1]) and not np.signbit(fill[2:]).any()
    src = np.full((4, n), 3, np.int16)  # time x channels, as read
    # The same values by the kernel, in both of its loop orders, and by numpy.
    for kernels in ("rows", "steps", None):
        out = np.empty((n, 4), np.float32)
        if kernels:
            monkeypatch.setattr(_kernels, "FORCED", kernels)
            assert _kernels.decode_rows(src.T, slice(None), 0.5, 0.0, True, out, fold.gain,
                                        False, fill)  # fmt: skip
        else:
            post_decode(np.multiply(src.T, 0.5, out=out), fold.gain, False, fill)
        assert (out[0] == -1.5).all() and (out[1:] == 0).all()
        assert np.signbit(out[1]).all() and not np.signbit(out[2:]).any()


def test_keyed_uniforms_are_pinned_and_pure_functions_of_their_key():
    # Golden values: a change of what the augmentations draw must be deliberate (and
    # bump DRAWS_VERSION, so that older checkpoints are refused).
    assert float(keyed_uniforms(0, 0, 0, 0, 0)[0]).hex() == "0x1.1c42f96a1ded0p-5"
    np.testing.assert_array_equal(
        keyed_uniforms(7, 3, np.arange(3), 2, 1),
        [0.5725567943337664, 0.7257866601512473, 0.14638824005450513],
    )
    np.testing.assert_array_equal(
        keyed_uniforms(1, 2, None, 0, np.arange(2)), [0.8171551493519023, 0.8040339453499576]
    )
    # A batch's block of items is each key alone, whatever block asked for it.
    draws = BatchDraws(5, 9)
    block = draws.uniforms(3, 4, 200)  # more items than one block: it grows
    assert block.shape == (200, 4)
    for i in (0, 1, 63, 64, 199):
        for c in range(4):
            assert block[i, c] == keyed_uniforms(5, 9, i, 3, c)[0], (i, c)
    assert (draws.uniforms(3, 2, 10) == block[:10, :2]).all()
    draws.prefetch([0, 3, 8], 6, 300)  # positions at once: the same values
    assert (draws.uniforms(3, 4, 200) == block).all()
    for p in (0, 8):
        assert (draws.uniforms(p, 6, 300) == keyed_uniforms(5, 9, np.arange(300)[:, None], p,
                                                             np.arange(6))).all()  # fmt: skip
    # An item's draws through KeyedDraws: the same with or without the batch's block,
    # the first of them the same however many are asked.
    for batch in (None, draws):
        keyed = KeyedDraws(5, 9, 70, 3, batch=batch)
        assert keyed.coin() == block[70, 0]
        np.testing.assert_array_equal(keyed.uniforms(3), block[70, 1:])
        np.testing.assert_array_equal(keyed.uniforms(1), block[70, 1:2])
    assert KeyedDraws(5, 10, 70, 3, batch=draws).coin() != block[70, 0]  # other key: no block


def test_keyed_uniforms_look_uniform_and_independent():
    items, positions, counters = np.ogrid[:4096, :4, :8]
    u = keyed_uniforms(0, 0, items, positions, counters)
    assert u.shape == (4096, 4, 8) and len(np.unique(u)) == u.size
    assert ((u >= 0) & (u < 1)).all()
    flat = u.ravel()
    assert abs(flat.mean() - 0.5) < 0.005 and abs(flat.var() - 1 / 12) < 0.002
    counts, _ = np.histogram(flat, bins=16, range=(0, 1))
    assert counts.min() > 0.95 * flat.size / 16  # no bin far from its share
    # Neighbouring items, positions, counters and batches are uncorrelated.
    for a, b in ((u[:-1], u[1:]), (u[:, :-1], u[:, 1:]), (u[..., :-1], u[..., 1:]),
                 (u, keyed_uniforms(0, 1, items, positions, counters))):  # fmt: skip
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02


@pytest.mark.parametrize("seed", range(6))
def test_batch_folds_equal_each_items_fold(seed):
    rng = np.random.default_rng(100 + seed)
    for trial in range(10):
        pipeline = _random_pipeline(rng)
        key, n, rows = (seed, trial), int(rng.integers(1, 80)), int(rng.integers(1, 24))
        folds = pipeline.fold_batch(key, n, rows, np.dtype(np.float32))
        for i in range(n):
            fold, done = pipeline.fold_item(key, i, rows, np.dtype(np.float32))
            where = f"{pipeline!r} key {key} item {i}"
            if folds is None:  # nothing folds (noise first)
                assert fold is None, where
                continue
            gain, reverse, fill, got = folds.item(i)
            assert got == done, where
            if fold is None:
                assert (gain, reverse, fill) == (None, False, None), where
                continue
            want_gain = None if fold.gain == 1 else fold.gain
            assert (gain is None) == (want_gain is None), where
            if gain is not None:
                assert np.float32(gain).tobytes() == want_gain.tobytes(), where
            assert reverse == fold.reverse, where
            want_fill = fold.fill
            assert (fill is None) == (want_fill is None), where
            if fill is not None:
                assert fill.tobytes() == want_fill.tobytes(), where  # signed zeros, NaNs


def _same_folds(a, b, where):
    assert (a is None) == (b is None), where
    if a is None:
        return
    for i in range(len(a.gain)):
        (ga, ra, fa, da), (gb, rb, fb, db) = a.item(i), b.item(i)
        assert (ra, da) == (rb, db), where
        assert (ga is None) == (gb is None) and (ga is None or ga.tobytes() == gb.tobytes())
        assert (fa is None) == (fb is None) and (fa is None or fa.tobytes() == fb.tobytes())


@pytest.mark.parametrize("seed", range(4))
def test_montage_folds_equal_each_modalitys_folds(seed):
    # The modalities that the same transforms apply to share the folds of the one with
    # the most rows: the same values as each modality's own.
    rng = np.random.default_rng(200 + seed)
    names = ("eeg", "eog", "emg", "ecg")
    for trial in range(10):
        steps = list(_random_pipeline(rng).transforms)
        if rng.random() < 0.5:  # some transforms on some modalities only
            k = int(rng.integers(len(steps)))
            t = steps[k]
            steps[k] = type(t)(**t.params(), modalities=["eog", "ecg"])
        pipeline = Pipeline(steps)
        key, n = (seed, trial), int(rng.integers(1, 70))
        rows = [int(rng.integers(1, 12)), int(rng.integers(1, 4)), 1, None]
        got = pipeline.fold_montage(key, n, rows, np.dtype(np.float32), names)
        for r, name, folds in zip(rows, names, got, strict=True):
            want = None if r is None else pipeline.fold_batch(key, n, r, np.float32, name)
            _same_folds(folds, want, f"{pipeline!r} key {key} {name} ({r} rows)")


@pytest.mark.timeout(180)
def test_folded_batches_identical_on_every_backend_and_resume(tables):
    # Augmentations only (all folded into the decode, drawn for the batch at once): the
    # same bits inline, on threads and processes and after a JSON resume.
    table = tables[12, "int16", 0.1]
    scheme = RandomBatches(table, batch_size=7, batch_duration=2 * EPOCH)
    steps = [AmplitudeScale(p=0.6), SignFlip(), ChannelDropout(0.3), TimeReverse(),
             AmplitudeScale(p=0.6)]  # fmt: skip
    batches = TransformedBatches(scheme, steps)
    reference, s = [], batches.initial_state(seed=4)
    for _ in range(4):
        batch, s = batches.iterate_batch(s)
        reference.append(materialize_batch(batch))
        want = _one_by_one(list(batch), batch.pipeline, batch.key)
        assert reference[-1][0].tobytes() == want[0].tobytes()
    assert len({x[0].tobytes() for x, _ in reference}) == 4  # batches draw apart
    for backend, workers in (("inline", 1), ("threads", 2), ("processes", 2)):
        with Batcher(scheme, backend=backend, workers=workers, transforms=steps) as b:
            s = b.batches.initial_state(seed=4)
            b.start(s)
            for k in range(4):
                (x, y), s = b.take(s)
                assert x.tobytes() == reference[k][0].tobytes(), f"{backend} batch {k}"
                np.testing.assert_array_equal(y, reference[k][1])
                if k == 1:  # resume from JSON in the middle
                    s = BatchState.from_json(json.loads(json.dumps(s.to_json())))
                    b.start(s)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernel", "numpy"])
def test_a_batchs_hashed_block_is_keyed_uniforms_of_each_key(kernels, monkeypatch):
    """`BatchDraws`' block (a compiled loop where numba runs) against `keyed_uniforms`
    of the same keys in numpy, bit for bit."""
    from ondabatches.transforms import _draws

    monkeypatch.setattr(_kernels, "ENABLED", kernels)
    if kernels:  # numba is installed here: the compiled loop runs
        assert _kernels.available() and _draws._block_kernel() is not None
    rng = np.random.default_rng(3)
    for _ in range(20):
        key = (int(rng.integers(0, 2**62)), int(rng.integers(0, 2**40)))
        positions = sorted({int(p) for p in rng.integers(0, 50, 4)})
        size, count = int(rng.integers(1, 70)), int(rng.integers(1, 25))
        got = _draws._hashed_block(key, positions, size, count)
        want = keyed_uniforms(*key, np.arange(size)[None, :, None],
                              np.asarray(positions)[:, None, None],
                              np.arange(count)[None, None, :])  # fmt: skip
        assert got.shape == (len(positions), size, count)
        assert got.tobytes() == want.tobytes(), (key, positions, size, count)
        draws = BatchDraws(*key)
        block = draws.uniforms(positions[0], count, size)
        np.testing.assert_array_equal(block, want[0])
