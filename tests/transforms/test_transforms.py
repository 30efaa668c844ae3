"""Transforms: filters equal to the whole recording's at any start, spectrograms equal to
scipy's, augmentations deterministic on every backend and across resumes, pipelines in
the state's config, bad parameters refused before any worker starts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

scipy_signal = pytest.importorskip("scipy.signal")

from ondabatches import Batcher, BatchState, RandomBatches, StateError, materialize_batch  # noqa: E402
from ondabatches.errors import BatchSpecError  # noqa: E402
from ondabatches.materialize import FunctionMaterializer  # noqa: E402
from ondabatches.onda import iter_signals, load  # noqa: E402
from ondabatches.onda._timespan import TimeSpan, window_sample_range  # noqa: E402
from ondabatches.transforms import (  # noqa: E402
    AmplitudeScale,
    Bandpass,
    ChannelDropout,
    GaussianNoise,
    Highpass,
    KeyedBatch,
    Lowpass,
    Mixup,
    Normalize,
    Notch,
    Pipeline,
    SignFlip,
    Spectrogram,
    TimeReverse,
    Transform,
    TransformedBatches,
    register_transform,
    transform_from_dict,
)
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: E402, F401

S = 10**9
FILTERS = [
    Bandpass(0.3, 25.0),
    Highpass(0.5),
    Lowpass(20.0),
    Notch(25.0),
]  # all below 32 Hz (EOG at 64 Hz)


def _scheme(labeled, rate=None, batch_size=4, seconds=30):  # noqa: F811
    table = labeled if rate is None else eeg_rows_at(labeled, rate)
    return RandomBatches(table, n_channels=2, batch_size=batch_size,
                         batch_duration=seconds * S)  # fmt: skip


def _whole(item):
    """The item's whole signal decoded as the window is (float32), its channels picked."""
    data = load(item.signal()).data.astype(np.float32)
    index = [item.info.channels.index(c) if isinstance(c, str) else c for c in item.channels]
    return data[index]


def _items_at_random_starts(labeled, n=24, seed=0):  # noqa: F811
    """Items of every layout at random nanosecond starts, both ends of the signals among them."""
    rng = np.random.default_rng(seed)
    scheme = _scheme(labeled, batch_size=n)
    items, _ = scheme.iterate_batch(scheme.initial_state(seed=seed))
    out = []
    for k, item in enumerate(items):
        span, duration = item.signal_span, item.window.duration
        low, high = span.start, span.stop - duration
        start = {0: low, 1: high, 2: low + 1_234_567}.get(k % 8, int(rng.integers(low, high)))
        out.append(dataclasses.replace(item, window=TimeSpan(start, start + duration)))
    return out


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f.name)
def test_filtered_window_at_any_start_equals_whole_recording_filtered(labeled, f):  # noqa: F811
    items = _items_at_random_starts(labeled)
    rates = {it.info.sample_rate for it in items}
    assert len(rates) >= 2  # several layouts: several rates
    worst = 0.0
    for i, item in enumerate(items):
        x, _ = materialize_batch([item], transforms=[f])
        whole = scipy_signal.sosfiltfilt(
            f._design(item.info.sample_rate), _whole(item).astype(np.float64), axis=-1
        )
        rows = window_sample_range(
            item.window.translate(-item.signal_span.start), item.info.sample_rate
        )
        expected = whole[:, rows.start : rows.stop]
        rms = np.sqrt(np.mean(expected**2))
        err = np.max(np.abs(x[0] - expected)) / rms
        worst = max(worst, err)
        assert err <= 1e-3, (i, item.window, item.signal_span, err)
    assert worst > 0  # float32 decode: not trivially equal


@pytest.mark.parametrize("rate", [64.0, 128.0, 256.0, 512.0])
@pytest.mark.parametrize(
    "f", [*FILTERS, Bandpass(0.3, 30.0), Bandpass(0.1, 30.0, order=6)], ids=repr
)
def test_filter_margin_leaves_out_at_most_the_tail_allowed(f, rate):
    # What the margin leaves out of the impulse response, measured on a response
    # computed far longer (10 minutes) than the margin, is at most MARGIN_TAIL of its
    # absolute sum: the margin is not cut short by how long a response it measured.
    from ondabatches.transforms._builtins import MARGIN_TAIL, _padlen

    sos = f._design(rate)
    impulse = np.zeros(int(600 * rate))
    impulse[0] = 1.0
    h = np.abs(scipy_signal.sosfilt(sos, impulse))
    kept = f.margin(rate) - _padlen(sos)
    assert 0 < kept < h.size // 4
    assert h[kept:].sum() <= MARGIN_TAIL * h.sum()
    # ...and it is not far longer than needed: a tenth less would leave out too much.
    assert h[int(kept * 0.9) :].sum() > MARGIN_TAIL * h.sum()


def test_filter_margin_is_read_from_the_recording(labeled):  # noqa: F811
    # Without the margin (a filter over the window alone) the error is far above 1e-3.
    item = _items_at_random_starts(labeled)[5]
    f = Highpass(0.5)
    rate = item.info.sample_rate
    assert f.margin(rate) > 5 * rate  # seconds of context for a 0.5 Hz high-pass
    x, _ = materialize_batch([item], transforms=[f])
    alone = scipy_signal.sosfiltfilt(f._design(rate), materialize_batch([item])[0][0], axis=-1)
    assert np.max(np.abs(alone - x[0])) > 1e-2 * np.sqrt(np.mean(x[0] ** 2))


def test_spectrogram_equals_scipy_stft(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=3))
    raw, _ = materialize_batch(batch)
    for log in (True, False):
        x, _ = materialize_batch(batch, transforms=[Spectrogram(2.0, 0.5, log=log)])
        _, _, z = scipy_signal.stft(raw.astype(np.float64), fs=128.0, nperseg=256,
                                    noverlap=192, boundary=None, padded=False)  # fmt: skip
        expected = np.log(np.abs(z) + 1e-12) if log else np.abs(z)
        assert x.shape == (4, 2, 129, (raw.shape[-1] - 256) // 64 + 1)
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_normalize_window(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=4))
    raw, _ = materialize_batch(batch)
    z, _ = materialize_batch(batch, transforms=[Normalize(method="zscore")])
    expected = (raw - raw.mean(-1, keepdims=True)) / raw.std(-1, keepdims=True)
    np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-5)
    r, _ = materialize_batch(batch, transforms=[Normalize(method="robust")])
    q1, med, q3 = np.percentile(raw.astype(np.float64), (25, 50, 75), axis=-1, keepdims=True)
    np.testing.assert_allclose(r, (raw - med) / (q3 - q1), rtol=1e-4, atol=1e-5)
    with pytest.raises(BatchSpecError, match="needs statistics=recording_statistics"):
        Normalize(scope="recording")
    with pytest.raises(BatchSpecError, match="'window' or 'recording'"):
        Normalize(scope="dataset")


AUGMENT = [Bandpass(0.5, 30.0), AmplitudeScale(0.5, 2.0, p=0.7), SignFlip(p=0.5),
           TimeReverse(p=0.5), ChannelDropout(0.3, p=0.5), GaussianNoise(5.0, p=0.8)]  # fmt: skip


@pytest.mark.timeout(180)
def test_augmented_batches_identical_on_every_backend_and_resume(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0, batch_size=6)
    batches = TransformedBatches(scheme, AUGMENT)
    state = batches.initial_state(seed=11)
    reference, s = [], state
    for _ in range(4):
        batch, s = batches.iterate_batch(s)
        reference.append(materialize_batch(batch))
    assert not np.array_equal(reference[0][0][0], reference[0][0][1])
    for backend, workers in (("inline", 1), ("threads", 2), ("processes", 2)):
        with Batcher(scheme, backend=backend, workers=workers, transforms=AUGMENT) as b:
            s = b.batches.initial_state(seed=11)
            b.start(s)
            for k in range(4):
                (x, y), s = b.take(s)
                np.testing.assert_array_equal(x, reference[k][0], err_msg=f"{backend} {k}")
                np.testing.assert_array_equal(y, reference[k][1])
                if k == 1:  # resume from JSON in the middle
                    s = BatchState.from_json(json.loads(json.dumps(s.to_json())))
                    b.start(s)


def test_same_window_in_two_batches_draws_differently(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    items, _ = scheme.iterate_batch(scheme.initial_state(seed=0))
    pipeline = Pipeline([GaussianNoise(1.0, p=1.0)])
    a, _ = materialize_batch(KeyedBatch([items[0], items[0]], (0, 0), pipeline))
    b, _ = materialize_batch(KeyedBatch([items[0]], (0, 1), pipeline))
    raw, _ = materialize_batch([items[0]])
    assert not np.array_equal(a[0], a[1])  # two positions of one batch
    assert not np.array_equal(a[0], b[0])  # the same position in another batch
    np.testing.assert_allclose((a[0] - raw[0]).std(), 1.0, rtol=0.05)
    with pytest.raises(BatchSpecError, match=r"key=\(state.seed, state.index\)"):
        materialize_batch([items[0]], transforms=pipeline)


def test_time_reverse_moves_labels_and_mixup_targets(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0, seconds=90)
    items, _ = scheme.iterate_batch(scheme.initial_state(seed=5))
    raw, y = materialize_batch(items)
    x, yr = materialize_batch(items, transforms=[TimeReverse(p=1.0)], key=(0, 0))
    np.testing.assert_array_equal(x, raw[..., ::-1])
    np.testing.assert_array_equal(yr, y[..., ::-1])
    assert y.shape[-1] == 3
    xm, ym = materialize_batch(items, transforms=[Mixup(0.4)], key=(1, 2))
    lam = ym["lam"][0]
    perm = [int(np.flatnonzero((y == yb).all(axis=(1, 2)))[0]) for yb in ym["y_b"]]
    assert 0 < lam < 1 and set(ym) == {"y_a", "y_b", "lam"}
    np.testing.assert_array_equal(ym["y_a"], y)
    recon = lam * raw + (1 - lam) * raw[perm]
    np.testing.assert_allclose(xm, recon, rtol=1e-4, atol=1e-3)


def test_state_of_another_pipeline_is_refused(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    a = TransformedBatches(scheme, [Bandpass(0.3, 35.0)])
    b = TransformedBatches(scheme, [Bandpass(0.5, 35.0)])
    _, state = a.iterate_batch(a.initial_state(seed=1))
    restored = BatchState.from_json(json.loads(json.dumps(state.to_json())))
    assert a.iterate_batch(restored) is not None
    with pytest.raises(StateError, match="transforms"):
        b.iterate_batch(restored)
    with pytest.raises(StateError, match="transforms"):
        scheme.iterate_batch(restored)  # the bare scheme: no pipeline
    with pytest.raises(StateError, match="no transform pipeline.*initial_state"):
        a.iterate_batch(scheme.initial_state(seed=1))  # a state without one
    with pytest.raises(StateError):
        TransformedBatches(scheme, [Bandpass(0.3, 35.0)]).iterate_batch(
            scheme.initial_state(seed=1).advance()
        )


def test_state_saved_with_other_draws_is_refused(labeled):  # noqa: F811
    # A random pipeline's config says how its transforms draw: a checkpoint saved by a
    # version that drew otherwise (here: one without the key) is refused, not resumed
    # with other draws. A pipeline that draws nothing has no such key.
    from ondabatches.transforms._scheme import DRAWS_KEY, DRAWS_VERSION

    scheme = _scheme(labeled, rate=128.0)
    random = TransformedBatches(scheme, [Bandpass(0.3, 35.0), SignFlip(p=0.5)])
    assert random.config[DRAWS_KEY] == DRAWS_VERSION
    assert DRAWS_KEY not in TransformedBatches(scheme, [Bandpass(0.3, 35.0)]).config
    _, state = random.iterate_batch(random.initial_state(seed=1))
    saved = state.to_json()
    assert random.iterate_batch(BatchState.from_json(saved)) is not None
    older = json.loads(saved)
    del older["config"][DRAWS_KEY]
    with pytest.raises(StateError, match=DRAWS_KEY):
        random.iterate_batch(BatchState.from_json(json.dumps(older)))


def test_bad_parameters_are_typed_errors_before_workers_start(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    with pytest.raises(BatchSpecError, match=r"Nyquist.*64.0 Hz"):
        Batcher(scheme, backend="processes", workers=2, transforms=[Bandpass(10.0, 70.0)])
    with pytest.raises(BatchSpecError, match="probability"):
        SignFlip(p=-0.1)
    with pytest.raises(BatchSpecError, match="below high_hz"):
        Bandpass(30.0, 1.0)
    with pytest.raises(BatchSpecError, match="windows hold 3840"):
        TransformedBatches(scheme, [Spectrogram(40.0, 1.0)])
    with pytest.raises(StateError, match="unknown transform 'nope'.*bandpass"):
        transform_from_dict({"name": "nope"})
    with pytest.raises(BatchSpecError, match="come first"):
        Pipeline([SignFlip(), Bandpass(0.3, 30.0)])
    with pytest.raises(BatchSpecError, match="before batch transforms"):
        Pipeline([Mixup(), SignFlip()])
    with pytest.raises(BatchSpecError, match="runs_transforms"):
        Batcher(scheme, materialize=FunctionMaterializer(lambda b, d: b), transforms=[SignFlip()])


@register_transform
class _Clip(Transform):
    name = "test_clip"

    def __init__(self, limit: float = 10.0):
        self.limit = float(limit)

    def params(self):
        return {"limit": self.limit}

    def apply(self, x, y, rng, sample_rate):
        return np.clip(x, -self.limit, self.limit), y


def test_custom_transform_registered_by_name(labeled):  # noqa: F811
    scheme = _scheme(labeled, rate=128.0)
    batches = TransformedBatches(scheme, [{"name": "test_clip", "limit": 3.0}])
    assert batches.pipeline.transforms == (_Clip(3.0),)
    batch, _ = batches.iterate_batch(batches.initial_state(seed=2))
    x, _ = materialize_batch(batch)
    raw, _ = materialize_batch(batch.items)
    np.testing.assert_array_equal(x, np.clip(raw, -3, 3))
    assert raw.max() > 3


@pytest.mark.timeout(120)
def test_pytorch_adapters_serve_transformed_batches(labeled):  # noqa: F811
    pytest.importorskip("torch")
    from ondabatches.torch import BatchDataset, BatchMapDataset

    scheme = _scheme(labeled, rate=128.0)
    pipeline = [Highpass(0.5), SignFlip(p=0.5), GaussianNoise(1.0, p=0.5)]
    batches = TransformedBatches(scheme, pipeline)
    state = batches.initial_state(seed=9)
    want = []
    s = state
    for _ in range(3):
        batch, s = batches.iterate_batch(s)
        want.append(materialize_batch(batch)[0])
    mapped = BatchMapDataset(scheme, state, length=3, transforms=pipeline)
    for k in range(3):
        np.testing.assert_array_equal(mapped[k][0].numpy(), want[k])
    streamed = BatchDataset(scheme, state, world_size=1, rank=0, backend="threads", workers=2,
                            transforms=pipeline)  # fmt: skip
    got = [x for (x, _), _ in zip(streamed, range(3), strict=False)]
    for k in range(3):
        np.testing.assert_array_equal(got[k].numpy(), want[k])
    with pytest.raises(StateError, match="transforms: state has '<missing>'"):
        BatchMapDataset(scheme, scheme.initial_state(seed=9), length=3, transforms=pipeline)[0]


def test_recording_statistics_equal_numpy_over_the_whole_recording(dataset, labeled, tmp_path):  # noqa: F811
    from ondabatches.transforms import load_recording_statistics, recording_statistics

    stats = recording_statistics(dataset.signals, str(tmp_path / "stats.json"), block_samples=5000)
    types = set()
    for sig in iter_signals(dataset.signals):
        data = load(sig).data.astype(np.float64)
        got = stats.signals[sig.file_path]
        types.add(sig.info.sample_type)
        step = abs(sig.info.sample_resolution_in_unit)
        np.testing.assert_allclose(got["mean"], data.mean(axis=1), rtol=1e-9, atol=1e-9 * step)
        np.testing.assert_allclose(got["std"], data.std(axis=1), rtol=1e-6)
        q1, med, q3 = np.percentile(data, (25, 50, 75), axis=1)
        # Exact for 8/16-bit samples; within 1/65536 of the range for wider ones.
        tol = 1e-9 if np.dtype(sig.info.sample_type).itemsize <= 2 else np.ptp(data) / 65536
        for name, want in (("q1", q1), ("median", med), ("q3", q3)):
            np.testing.assert_allclose(got[name], want, rtol=0, atol=tol + 1e-9 * step)
    assert len(types) >= 2
    assert load_recording_statistics(stats.path).digest == stats.digest

    scheme = _scheme(labeled, rate=128.0)
    for method in ("robust", "zscore"):
        norm = TransformedBatches(scheme, [Normalize("recording", method, statistics=stats)])
        batch, after = norm.iterate_batch(norm.initial_state(seed=6))
        x, _ = materialize_batch(batch)
        raw, _ = materialize_batch(batch.items)
        for i, item in enumerate(batch):
            s = stats.signals[item.file_path]
            rows = [item.info.channels.index(c) for c in item.channels]
            if method == "robust":
                centre = np.array(s["median"])[rows]
                spread = np.array(s["q3"])[rows] - np.array(s["q1"])[rows]
            else:
                centre, spread = np.array(s["mean"])[rows], np.array(s["std"])[rows]
            want = (raw[i] - centre[:, None]) / spread[:, None]
            np.testing.assert_allclose(x[i], want, rtol=1e-5, atol=1e-5)
    # The statistics are named by digest: a state of other statistics is refused.
    (tmp_path / "other").mkdir()
    other = recording_statistics(dataset.signals.slice(0, 2), str(tmp_path / "other" / "s.json"))
    changed = TransformedBatches(scheme, [Normalize("recording", "zscore", statistics=other)])
    with pytest.raises(StateError, match="transforms"):
        changed.iterate_batch(after)


def test_time_shift_reads_the_moved_window_from_the_recording(labeled):  # noqa: F811
    from ondabatches.transforms import TimeShift

    items = [it for it in _items_at_random_starts(labeled, n=64) if it.info.sample_rate == 128.0]
    shifts = set()
    pipeline = Pipeline([TimeShift(2.0, p=1.0)])
    for k, item in enumerate(items):
        x, _ = materialize_batch([item], transforms=pipeline, key=(0, k))
        whole = _whole(item)
        rows = window_sample_range(item.window.translate(-item.signal_span.start), 128.0)
        found = [s for s in range(-256, 257)
                 if 0 <= rows.start + s and rows.stop + s <= whole.shape[1]
                 and np.array_equal(x[0], whole[:, rows.start + s : rows.stop + s])]  # fmt: skip
        assert len(found) == 1, (k, item.window)  # a window of the recording, no fill
        shifts.add(found[0])
    assert len(shifts) > 3 and any(s < 0 for s in shifts) and any(s > 0 for s in shifts)
