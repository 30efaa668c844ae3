"""Transforms on multi-signal items: each modality filtered as its whole signal is, the
draws shared by an item's modalities, missing modalities zeros, the same batches on
every backend and after a resume, and bad modality names refused."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import signal as scipy_signal

from ondabatches import Batcher, BatchState, RandomBatches, StateError, materialize_batch
from ondabatches.batches import ExcludedRecordingsWarning, MissingModality
from ondabatches.batches._montage import resample_ratio
from ondabatches.errors import BatchShapeError, BatchSpecError
from ondabatches.onda import TimeSpan
from ondabatches.transforms import (
    AmplitudeScale,
    Bandpass,
    ChannelDropout,
    GaussianNoise,
    Highpass,
    KeyedBatch,
    Mixup,
    Pipeline,
    SignFlip,
    Spectrogram,
    TimeReverse,
    TimeShift,
    Transform,
    TransformedBatches,
    register_transform,
    registered_transforms,
    transform_from_dict,
)
from tests.psg import MONTAGE, S, decode_file, select, window_rows

NAMES = tuple(MONTAGE)


def _scheme(labeled, **kwargs):
    kwargs.setdefault("batch_size", 6)
    kwargs.setdefault("batch_duration", 60 * S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        return RandomBatches(labeled, modalities=MONTAGE, **kwargs)


def _first_batch(batches, seed=0):
    return batches.iterate_batch(batches.initial_state(seed=seed))[0]


def _alone(item, name, window):
    """A one-modality item of ``item``'s modality ``name`` over ``window``."""
    k = item.names.index(name)
    part = replace(item.parts[k], window=window)
    rates = None if item.rates is None else (item.rates[k],)
    return replace(item, window=window, names=(name,), parts=(part,), rates=rates)


def _random_windows(part, rng, n=6, seconds=30):
    span, duration = part.signal_span, seconds * S
    last = span.stop - duration
    starts = [span.start, last, span.start + 1_234_567, *rng.integers(span.start, last, n)]
    return [TimeSpan(int(a), int(a) + duration) for a in starts]


def _one_per_recording(batch):
    return list({item.recording: item for item in batch}.values())


def _error(got, want):
    rms = np.sqrt(np.mean(want**2))
    return float(np.max(np.abs(got - want)) / rms)


def test_modalities_round_trip_in_the_config():
    f = Bandpass(0.3, 35.0, modalities=["eeg"])
    assert f.to_dict() == {
        "name": "bandpass", "low_hz": 0.3, "high_hz": 35.0, "order": 4, "modalities": ["eeg"],
    }  # fmt: skip
    assert transform_from_dict(json.loads(json.dumps(f.to_dict()))) == f
    assert f != Bandpass(0.3, 35.0) and "modalities" not in Bandpass(0.3, 35.0).to_dict()
    assert Pipeline(Pipeline([f, TimeReverse(p=1.0)]).config) == Pipeline([f, TimeReverse(p=1.0)])
    assert "modalities=['eeg']" in repr(f)
    assert SignFlip(modalities="eog").modalities == ("eog",)
    for bad in ([], [""], ["eeg", "eeg"], [3]):
        with pytest.raises(BatchSpecError, match="modalities"):
            Highpass(0.5, modalities=bad)


@pytest.mark.parametrize("name", ["eeg", "eog", "emg", "ecg"])
def test_filtered_modality_at_any_start_equals_its_whole_signal_filtered(psg_labeled, name):
    # Each modality at its own rate (EEG has 4 layouts: 128, 256, 143.5 and 200 Hz),
    # with a band-pass from 0.3 Hz (the edge that needs the longest context) to 30 Hz
    # (below the 32 Hz Nyquist frequency of the 64 Hz EOG).
    f = Bandpass(0.3, 30.0, modalities=[name])
    rng = np.random.default_rng(len(name))
    checked, worst = set(), 0.0
    for item in _one_per_recording(
        _first_batch(_scheme(psg_labeled, batch_size=32, missing="zero-fill"), seed=2)
    ):
        part = item.part(name)
        if isinstance(part, MissingModality):
            continue
        rate = part.info.sample_rate
        whole = scipy_signal.sosfiltfilt(
            f._design(rate), select(part, decode_file(part)).astype(np.float32), axis=-1
        )
        for window in _random_windows(part, rng):
            one = _alone(item, name, window)
            x, _ = materialize_batch([one], transforms=[f])
            first, count = window_rows(one.parts[0])
            err = _error(x[name][0], whole[:, first : first + count])
            worst = max(worst, err)
            assert err <= 1e-3, (name, rate, window, err)
        checked.add(rate)
    assert checked and worst > 0
    if name == "eeg":
        assert len(checked) == 4


def test_resampled_modality_is_filtered_after_resampling(psg_labeled):
    # The filter runs at the target rate, on the whole signal resampled: a window of it
    # at any start equals resample_poly then sosfiltfilt over the whole signal, sliced.
    target = 128
    f = Bandpass(0.5, 35.0)
    rng = np.random.default_rng(7)
    batches = _scheme(psg_labeled, resample={"rate": target}, batch_size=32, missing="zero-fill")
    seen = set()
    for item in _one_per_recording(_first_batch(batches, seed=3)):
        for name in ("eeg", "eog", "emg"):
            part = item.part(name)
            if isinstance(part, MissingModality):
                continue
            up, down = resample_ratio(part.info.sample_rate, float(target))
            resampled = scipy_signal.resample_poly(
                select(part, decode_file(part)), up, down, axis=-1
            )
            whole = scipy_signal.sosfiltfilt(f._design(float(target)), resampled, axis=-1)
            for window in _random_windows(part, rng, n=3):
                one = _alone(item, name, window)
                x, _ = materialize_batch([one], np.float64, transforms=[f])
                j0 = (window.start - part.signal_span.start) * target // S
                want = whole[:, j0 : j0 + 30 * target]
                assert _error(x[name][0], want) <= 1e-3, (name, part.info.sample_rate, window)
            seen.add(part.info.sample_rate)
    assert {64.0, 512.0} <= seen and len(seen) >= 3  # up- and downsampled


def test_modalities_left_out_are_untouched_and_missing_ones_stay_zeros(psg_labeled):
    batches = _scheme(psg_labeled, missing="zero-fill", resample={"rate": 128}, batch_size=16)
    batch = _first_batch(batches, seed=8)
    raw, y = materialize_batch(batch)
    pipeline = [Bandpass(0.3, 35.0, modalities=["eeg", "ecg"]), GaussianNoise(1.0, p=1.0)]
    x, yt = materialize_batch(batch, transforms=pipeline, key=(1, 2))
    np.testing.assert_array_equal(yt, y)
    assert not x["mask"]["ecg"].all()  # some items lack ECG
    for name in NAMES:
        mask = x["mask"][name]
        np.testing.assert_array_equal(mask, raw["mask"][name])
        assert not np.any(x[name][~mask])
        assert not np.allclose(x[name][mask], raw[name][mask])
    # Without the noise: the modalities the filter was not given are as read.
    x, _ = materialize_batch(batch, transforms=pipeline[:1])
    for name in ("eog", "emg"):
        np.testing.assert_array_equal(x[name], raw[name])
    assert not np.allclose(x["eeg"], raw["eeg"])


def test_an_items_modalities_share_the_draws_and_labels_move_with_them(psg_labeled):
    batches = _scheme(psg_labeled, resample={"rate": 128}, batch_size=24, batch_duration=90 * S)
    batch = _first_batch(batches, seed=4)
    raw, y = materialize_batch(batch)
    x, yr = materialize_batch(batch, transforms=[TimeReverse(p=0.5)], key=(3, 9))
    flipped = []
    for i in range(len(batch)):
        rev = [np.array_equal(x[n][i], raw[n][i][..., ::-1]) for n in NAMES]
        same = [np.array_equal(x[n][i], raw[n][i]) for n in NAMES]
        assert all(rev) or all(same), (i, rev, same)  # all modalities or none
        flipped.append(all(rev) and not all(same))
        np.testing.assert_array_equal(yr[i], y[i][..., ::-1] if flipped[-1] else y[i])
    assert 0 < sum(flipped) < len(batch)
    assert y.shape[-1] == 3 and not all(np.array_equal(a, a[..., ::-1]) for a in y)
    # A sign flip on every modality: one coin per item, shared by its modalities.
    x, _ = materialize_batch(batch, transforms=[SignFlip(p=0.5)], key=(3, 10))
    signs = [[np.array_equal(x[n][i], -raw[n][i]) for n in NAMES] for i in range(len(batch))]
    assert all(len(set(s)) == 1 for s in signs) and 0 < sum(s[0] for s in signs) < len(batch)


def test_batch_transforms_run_on_each_modality(psg_labeled):
    batch = _first_batch(_scheme(psg_labeled, resample={"rate": 128}, batch_size=4), seed=1)
    raw, y = materialize_batch(batch)
    x, _ = materialize_batch(batch, transforms=[Spectrogram(2.0, 1.0, modalities=["eeg", "eog"])])
    for name in ("eeg", "eog"):
        want, _ = Spectrogram(2.0, 1.0).apply(raw[name].copy(), y, None, 128.0)
        np.testing.assert_allclose(x[name], want, rtol=1e-6)
        assert x[name].ndim == 4
    np.testing.assert_array_equal(x["emg"], raw["emg"])
    xm, ym = materialize_batch(batch, transforms=[Mixup(0.4)], key=(5, 6))
    lam = ym["lam"][0]
    assert 0 < lam < 1 and set(ym) == {"y_a", "y_b", "lam"}
    # The pairing read off the EEG (the partner whose mix it is) holds for every
    # modality: one permutation and one lam per batch.
    n = len(batch)
    perm = [
        min(range(n), key=lambda j: np.abs(xm["eeg"][i] - lam * raw["eeg"][i]
                                           - (1 - lam) * raw["eeg"][j]).max())
        for i in range(n)
    ]  # fmt: skip
    assert perm != list(range(n))
    np.testing.assert_array_equal(ym["y_b"], y[perm])
    for name in NAMES:
        want = lam * raw[name] + (1 - lam) * raw[name][perm]
        np.testing.assert_allclose(xm[name], want, rtol=1e-4, atol=1e-3, err_msg=name)


def test_bad_modalities_are_typed_errors_before_workers_start(psg_labeled):
    batches = _scheme(psg_labeled)
    with pytest.raises(
        BatchSpecError, match=r"\['eog-x'\].*allowed: \['eeg', 'eog', 'emg', 'ecg'\]"
    ):
        Batcher(batches, backend="processes", workers=2,
                transforms=[Highpass(0.5, modalities=["eog-x"])])  # fmt: skip
    with pytest.raises(BatchSpecError, match="moves time on some modalities"):
        TransformedBatches(batches, [TimeReverse(modalities=["eeg"])])
    with pytest.raises(BatchSpecError, match="moves time on some modalities"):
        TransformedBatches(batches, [TimeShift(1.0, modalities=["eeg", "eog"])])
    with pytest.raises(BatchSpecError, match="draws across the items"):
        TransformedBatches(batches, [Mixup(0.4, modalities=["eeg"])])
    # A band edge above one modality's Nyquist frequency (EOG at 64 Hz), and not when
    # the filter is given only the modalities it fits.
    with pytest.raises(BatchSpecError, match=r"Nyquist frequency of modality 'eog'"):
        TransformedBatches(batches, [Bandpass(0.3, 40.0)])
    TransformedBatches(batches, [Bandpass(0.3, 40.0, modalities=["eeg", "emg"])])
    joined = _scheme(psg_labeled, resample={"rate": 128, "concatenate": True}, batch_size=2)
    with pytest.raises(BatchSpecError, match="concatenates"):
        TransformedBatches(joined, [Spectrogram(2.0, 1.0, modalities=["eeg"])])
    batch = _first_batch(joined)
    x, _ = materialize_batch(batch, transforms=[Spectrogram(2.0, 1.0)])
    assert x.shape[:2] == (2, 5) and x.ndim == 4


def test_shapes_that_cannot_be_concatenated_are_named(psg_labeled):
    from ondabatches.transforms import Transform, register_transform

    @register_transform
    class _Halve(Transform):
        name = "test-multi-halve"

        def params(self):
            return {}

        def apply(self, x, y, rng, sample_rate):
            return x[..., ::2].copy(), y

    joined = _scheme(psg_labeled, resample={"rate": 128, "concatenate": True}, batch_size=2)
    with pytest.raises(BatchShapeError, match=r"eeg \(1, 3840\).*eog \(2, 7680\)"):
        materialize_batch(_first_batch(joined), transforms=[_Halve(modalities=["eeg"])])


def test_batches_identical_inline_in_processes_and_after_a_json_resume(psg_labeled):
    batches = _scheme(psg_labeled, missing="zero-fill", resample={"rate": 100}, batch_size=4)
    pipeline = [Bandpass(0.3, 35.0, modalities=["eeg"]), Highpass(0.5, modalities=["eog"]),
                TimeReverse(p=0.5), GaussianNoise(0.5, p=0.5, modalities=["emg"])]  # fmt: skip
    wrapped = TransformedBatches(batches, pipeline)
    reference, s = [], wrapped.initial_state(seed=11)
    for _ in range(3):
        batch, s = wrapped.iterate_batch(s)
        assert isinstance(batch, KeyedBatch)
        reference.append(materialize_batch(batch))
    for backend in ("inline", "processes"):
        with Batcher(batches, backend=backend, workers=2, transforms=pipeline) as b:
            s = b.batches.initial_state(seed=11)
            b.start(s)
            for k in range(3):
                (x, y), s = b.take(s)
                for name in NAMES:
                    np.testing.assert_array_equal(x[name], reference[k][0][name], f"{backend} {k}")
                    np.testing.assert_array_equal(x["mask"][name], reference[k][0]["mask"][name])
                np.testing.assert_array_equal(y, reference[k][1])
                if k == 0:
                    s = BatchState.from_json(json.loads(json.dumps(s.to_json())))
                    b.start(s)
    other = TransformedBatches(batches, [Bandpass(0.3, 35.0, modalities=["eog"]), *pipeline[1:]])
    with pytest.raises(StateError, match="transforms"):
        other.iterate_batch(BatchState.from_json(json.loads(json.dumps(s.to_json()))))


@pytest.mark.filterwarnings("ignore::ondabatches.labels.EventsWarning")
def test_filters_on_a_montage_go_with_event_targets(psg, psg_labeled, tmp_path):
    from ondabatches import label_events
    from ondabatches.transforms import EventMask, EventTargets
    from tests.labels.test_events import CLASSES, _events

    events = label_events(psg.signals, _events(psg), column="event", classes=CLASSES,
                          out=str(tmp_path / "e"))  # fmt: skip
    targets = EventTargets({"mask": (events, EventMask(1.0))}, dense="stage")
    batches = _scheme(psg_labeled, resample={"rate": 128}, batch_size=4)
    batch = _first_batch(batches, seed=5)
    only, _ = materialize_batch(batch, transforms=[Highpass(0.5, modalities=["eeg"])])
    x, y = materialize_batch(batch, transforms=[Highpass(0.5, modalities=["eeg"]), targets])
    plain, y_plain = materialize_batch(batch, transforms=[targets])
    np.testing.assert_array_equal(x["eeg"], only["eeg"])
    assert not np.allclose(x["eeg"], plain["eeg"])
    np.testing.assert_array_equal(x["eog"], plain["eog"])
    assert set(y) == {"stage", "mask", "present"}
    np.testing.assert_equal(y, y_plain)  # dicts of arrays, leaf by leaf


def test_time_shift_moves_every_modality_of_an_item_by_the_same_time(psg_labeled):
    batch = _first_batch(_scheme(psg_labeled, resample={"rate": 128}, batch_size=4), seed=1)
    raw, _ = materialize_batch(batch)
    x, _ = materialize_batch(batch, transforms=[TimeShift(2.0, p=1.0)], key=(0, 0))
    m = 300  # more than 2 s at 128 Hz

    def shift_of(a, r):
        return min(
            range(-m, m + 1), key=lambda s: np.abs(a[m:-m] - r[m + s : len(r) - m + s]).mean()
        )

    seen = set()
    for i in range(len(batch)):
        shifts = {shift_of(x[n][i, 0], raw[n][i, 0]) for n in ("eeg", "eog", "emg")}
        assert len(shifts) == 1, (i, shifts)
        seen |= shifts
    assert len(seen) > 1 and 0 not in seen


class _Halve(Transform):
    """A custom item transform that changes an item's shape (every other sample)."""

    name = "test_multi_halve"

    def params(self):
        return {}

    def apply(self, x, y, rng, sample_rate):
        return np.ascontiguousarray(x[..., ::2]), y


if _Halve.name not in registered_transforms():
    register_transform(_Halve)

MONTAGES = {
    "own rates": {},
    "zero-fill": {"missing": "zero-fill"},
    "resampled, zero-fill": {"missing": "zero-fill", "resample": {"rate": 128}},
    "concatenated": {"resample": {"rate": 128, "concatenate": True}},
}


def _same_rates(batch, options):
    """The items of the batch's first recording where the montage keeps each signal's
    own rate (the recordings of this data set differ in rate)."""
    if "resample" in options:
        return list(batch)
    return [it for it in batch if it.recording == batch[0].recording]


def _random_augmentations(rng, concatenate):
    steps = []
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.integers(6)
        some = None if rng.random() < 0.5 else [str(rng.choice(NAMES))]
        p = float(rng.choice([0.5, 1.0]))
        if kind == 0:
            steps.append(AmplitudeScale(0.5, 2.0, p=p, modalities=some))
        elif kind == 1:
            steps.append(SignFlip(p=p, modalities=some))
        elif kind == 2:
            steps.append(TimeReverse(p=p))  # on all modalities (time moves together)
        elif kind == 3:
            steps.append(ChannelDropout(0.4, p=p, modalities=some))
        elif kind == 4:
            steps.append(GaussianNoise(0.5, p=p, modalities=some))  # does not fold
        else:
            steps.append(AmplitudeScale(0.9, 1.1, p=p))
    if not concatenate and rng.random() < 0.3:
        steps.append(Mixup(0.4))
    return steps


def _leaves(x, prefix=""):
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _leaves(x[k], f"{prefix}{k}.")]
    return [(prefix, np.asarray(x))]


@pytest.mark.parametrize("montage", list(MONTAGES))
def test_augmentations_in_place_give_the_bits_of_the_general_path(psg_labeled, montage,
                                                                  monkeypatch):  # fmt: skip
    # Montages without context go through the plain batch, with the augmentations
    # folded per modality for all items at once: the same bits as each part
    # transformed alone (the general path), random pipelines on random batches.
    from ondabatches.materialize import _multi_transformed as _multi

    options = MONTAGES[montage]
    batches = _scheme(psg_labeled, batch_size=9, **options)
    concatenate = options.get("resample", {}).get("concatenate", False)
    general = _multi._in_place
    rng = np.random.default_rng(len(montage))
    taken = 0
    for trial in range(8):
        batch = _same_rates(_first_batch(batches, seed=trial), options)
        steps = _random_augmentations(rng, concatenate)
        key = (trial, int(rng.integers(1000)))
        direct = general(list(batch), np.dtype(np.float32), np.empty, True, Pipeline(steps), key)
        taken += direct is not None
        x, y = materialize_batch(batch, transforms=steps, key=key)
        with monkeypatch.context() as m:
            m.setattr(_multi, "_in_place", lambda *args: None)
            want_x, want_y = materialize_batch(batch, transforms=steps, key=key)
        where = f"{montage}: {steps} key {key}"
        got, want = _leaves(x), _leaves(want_x)
        assert [k for k, _ in got] == [k for k, _ in want], where
        for (name, a), (_, b) in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{where}: {name}"
        for (name, a), (_, b) in zip(_leaves(y), _leaves(want_y), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{where}: y {name}")
    assert taken == 8  # the fast path ran each time
    # A transform that changes the shape: the general path, the same result.
    steps = [SignFlip(p=1.0), _Halve()]
    batch = _same_rates(_first_batch(batches, seed=1), options)
    assert (
        general(list(batch), np.dtype(np.float32), np.empty, True, Pipeline(steps), (0, 0)) is None
    )
    x, _ = materialize_batch(batch, transforms=steps, key=(0, 0))
    raw, _ = materialize_batch(batch)
    for (name, a), (_, b) in zip(_leaves(x), _leaves(raw), strict=True):
        if name.startswith("mask"):
            continue
        np.testing.assert_array_equal(a, -b[..., ::2], err_msg=name)


def test_augmented_montage_batches_identical_inline_in_processes_and_after_a_resume(psg_labeled):
    batches = _scheme(psg_labeled, missing="zero-fill", resample={"rate": 128}, batch_size=5)
    pipeline = [AmplitudeScale(p=0.5), SignFlip(p=0.5, modalities=["eeg"]), TimeReverse(p=0.5),
                ChannelDropout(0.3, p=0.5)]  # fmt: skip
    wrapped = TransformedBatches(batches, pipeline)
    reference, s = [], wrapped.initial_state(seed=3)
    for _ in range(3):
        batch, s = wrapped.iterate_batch(s)
        reference.append(materialize_batch(batch))
    raw = materialize_batch(list(batch))[0]
    assert any(not np.array_equal(reference[-1][0][n], raw[n]) for n in NAMES)
    for backend in ("inline", "processes"):
        with Batcher(batches, backend=backend, workers=2, transforms=pipeline) as b:
            s = b.batches.initial_state(seed=3)
            b.start(s)
            for k in range(3):
                (x, y), s = b.take(s)
                for name in NAMES:
                    assert x[name].tobytes() == reference[k][0][name].tobytes(), (backend, k, name)
                    np.testing.assert_array_equal(x["mask"][name], reference[k][0]["mask"][name])
                np.testing.assert_array_equal(y, reference[k][1])
                if k == 0:
                    s = BatchState.from_json(json.loads(json.dumps(s.to_json())))
                    b.start(s)
