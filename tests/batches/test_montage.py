"""Schemes with a montage of modalities: what they draw, exclusions, errors, states."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ondabatches import (
    BatchState,
    Modality,
    MultiBatchItem,
    RandomBatches,
    SequentialBatches,
    StateError,
    label_signals,
)
from ondabatches.batches import ExcludedRecordingsWarning, MissingModality, class_balanced_weights
from ondabatches.errors import BatchSpecError, SpanError
from ondabatches.labels import sort_and_trim_spans
from ondabatches.materialize import Bipolar
from ondabatches.synthetic import EPOCH, STAGE_ENCODING
from tests.batches.config_keys import RANDOM_KEYS
from tests.psg import MONTAGE, S

ROOT = Path(__file__).resolve().parents[2]


def quiet(scheme, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        return scheme(*args, **kwargs)


def signal_spans(labeled) -> dict:
    """(recording, sensor type) -> signal span, label span."""
    out = {}
    for row in labeled.drop_columns(["labels"]).to_pylist():
        out[(row["recording"], row["sensor_type"])] = (row["span"], row["label_span"])
    return out


def test_label_signals_keeps_partial_signals_only_when_asked(psg):
    annotations = sort_and_trim_spans(psg.annotations, epoch=EPOCH, by="recording")
    with pytest.raises(SpanError, match="label span not inside the signal span"):
        label_signals(psg.signals, annotations, labels_column="stage", epoch=EPOCH,
                      encoding=STAGE_ENCODING)  # fmt: skip


def test_single_signal_schemes_refuse_partial_signals(psg_labeled):
    with pytest.raises(BatchSpecError, match="only a scheme with modalities"):
        RandomBatches(psg_labeled, batch_size=2, batch_duration=60 * S)
    with pytest.raises(BatchSpecError, match="only a scheme with modalities"):
        SequentialBatches(psg_labeled, batch_size=2, batch_duration=60 * S)


def test_exclude_draws_windows_inside_every_signal_and_warns_once(psg_labeled):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = RandomBatches(psg_labeled, modalities=MONTAGE, batch_size=16,
                                batch_duration=60 * S)  # fmt: skip
    excluded = [w for w in caught if issubclass(w.category, ExcludedRecordingsWarning)]
    assert len(excluded) == 1
    assert "2 of 4 recordings" in str(excluded[0].message)
    assert "lacks modality 'ecg'" in str(excluded[0].message)
    assert excluded[0].filename == __file__
    spans = signal_spans(psg_labeled)
    with_ecg = {rec for rec, kind in spans if kind == "ecg"}
    state, seen = batches.initial_state(seed=3), set()
    for _ in range(20):
        batch, state = batches.iterate_batch(state)
        for item in batch:
            assert isinstance(item, MultiBatchItem) and item.names == tuple(MONTAGE)
            assert item.recording in with_ecg
            seen.add(item.recording)
            label_span = spans[(item.recording, "eeg")][1]
            assert label_span.contains(item.window)
            assert (item.window.start - label_span.start) % EPOCH == 0
            assert len(item.labels) == 2
            for name, part in zip(item.names, item.parts, strict=True):
                assert part.window == item.window and len(part.labels) == 0
                assert part.signal_span.contains(item.window), name
                assert part.info.sensor_type == MONTAGE[name][0] if name != "ecg" else "ecg"
            assert item.part("emg").signal_span.start - item.part("eeg").signal_span.start == 70 * S
    assert seen == with_ecg


def test_zero_fill_keeps_recordings_and_marks_missing_parts(psg_labeled):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is excluded: no warning
        batches = RandomBatches(psg_labeled, modalities=MONTAGE, missing="zero-fill",
                                batch_size=32, batch_duration=60 * S)  # fmt: skip
    spans = signal_spans(psg_labeled)
    missing_emg = missing_ecg = 0
    state = batches.initial_state(seed=5)
    for _ in range(8):
        batch, state = batches.iterate_batch(state)
        for item in batch:
            assert item.mask
            for name, part in zip(item.names, item.parts, strict=True):
                kind = MONTAGE[name][0] if isinstance(MONTAGE[name], tuple) else MONTAGE[name]
                span = spans.get((item.recording, kind), (None,))[0]
                present = span is not None and span.contains(item.window)
                assert isinstance(part, MissingModality) != present
            missing_emg += isinstance(item.part("emg"), MissingModality)
            missing_ecg += isinstance(item.part("ecg"), MissingModality)
    assert missing_emg > 0 and missing_ecg > 0
    assert item.part("eeg").channels == Bipolar(("c3-m2",))
    ecg = next(it.part("ecg") for it in batch if isinstance(it.part("ecg"), MissingModality))
    assert ecg == MissingModality((1,), 256.0)


def test_sequential_ranks_cover_every_window_once(psg_labeled):
    kwargs = dict(modalities=MONTAGE, batch_size=3, batch_duration=60 * S, stride=30 * S)
    spans = signal_spans(psg_labeled)
    # Independently: per recording with every modality, the 30 s steps whose 60 s
    # window lies in the label span and in every signal's span.
    expected = set()
    for rec in {r for r, _ in spans}:
        kinds = {k for r, k in spans if r == rec}
        if "ecg" not in kinds:
            continue
        label_span = spans[(rec, "eeg")][1]
        lo = max(spans[(rec, k)][0].start for k in kinds)
        hi = min(spans[(rec, k)][0].stop for k in kinds)
        start = label_span.start
        while start + 60 * S <= label_span.stop:
            if lo <= start and start + 60 * S <= hi:
                expected.add((rec, start))
            start += 30 * S
    for world_size in (1, 3):
        got, lengths = [], set()
        for rank in range(world_size):
            seq = quiet(SequentialBatches, psg_labeled, world_size=world_size, rank=rank, **kwargs)
            lengths.add(len(seq))
            state = seq.initial_state()
            while (out := seq.iterate_batch(state)) is not None:
                batch, state = out
                got += [(it.recording, it.window.start) for it in batch if not it.padding]
                assert seq.next_state(state.advance(-1)) == state
        assert len(lengths) == 1
        assert sorted(got) == sorted(expected), world_size


def test_bad_montages_name_the_recording_and_signal(psg_labeled):
    def make(modalities, **kw):
        return quiet(RandomBatches, psg_labeled, modalities=modalities, batch_size=2,
                     batch_duration=60 * S, **kw)  # fmt: skip

    with pytest.raises(BatchSpecError, match=r"no signal of the table has sensor type 'resp'"):
        make({"eeg": "eeg", "resp": "resp"})
    with pytest.raises(BatchSpecError, match=r"modality 'eeg' of recording .* signal .*eeg\.lpcm"):
        make({"eeg": ("eeg", ["c3", "fz"])})
    with pytest.raises(BatchSpecError, match=r"modality 'eog' .*eog\.lpcm.*index 5 out of range"):
        make({"eog": ("eog", [0, 5])})
    assert make({"eog": ("eog", [1, 0])}).draw(0, 0, 1)[0].part("eog").channels == (1, 0)
    with pytest.raises(BatchSpecError, match=r"derivation 'c3-fz'"):
        make({"eeg": ("eeg", Bipolar(["c3-fz"]))})
    with pytest.raises(BatchSpecError, match=r"matches 2 signals of recording .*eeg.*eog"):
        make({"exg": (lambda row: row["sensor_type"] in ("eeg", "eog"), None)})
    with pytest.raises(BatchSpecError, match=r"predicate matches no signal"):
        make({"x": (lambda row: False, None)})
    with pytest.raises(
        BatchSpecError, match=r"recording .*: 128 Hz cannot be resampled exactly to 100.3 Hz"
    ):
        make({"eeg": "eeg"}, resample={"rate": 100.3})
    with pytest.raises(BatchSpecError, match=r"not a whole number of samples at 142.857"):
        make({"eeg": "eeg"}, resample={"rate": 1000 / 7})
    with pytest.raises(BatchSpecError, match="one rate for every modality"):
        make({"eeg": "eeg", "eog": "eog"}, resample={"rate": {"eeg": 128}, "concatenate": True})
    with pytest.raises(BatchSpecError, match="missing must be one of"):
        make({"eeg": "eeg"}, missing="drop")
    with pytest.raises(BatchSpecError, match="give modalities= too"):
        RandomBatches(psg_labeled, missing="zero-fill", batch_size=2, batch_duration=60 * S)
    with pytest.raises(BatchSpecError, match="neither channels"):
        make({"eeg": "eeg"}, n_channels=1)
    with pytest.raises(BatchSpecError, match="other than 'mask'"):
        make({"mask": "eeg"})
    with pytest.raises(BatchSpecError, match="one weight per recording"):
        make({"eeg": "eeg"}, signal_weights=[1.0] * 13)


def test_predicate_picks_one_signal():
    mod = Modality(lambda row: row["sensor_label"] == "emg", ["chin"])
    assert mod.channels == ("chin",)
    assert mod.fingerprint()[0].startswith("predicate:tests.batches.test_montage.")


def test_class_balanced_weights_by_recording(psg_labeled):
    sw, lw = class_balanced_weights(psg_labeled, by_recording=True)
    assert len(sw) == len(lw) == 4
    batches = quiet(RandomBatches, psg_labeled, modalities=MONTAGE, signal_weights=sw,
                    label_weights=lw, batch_size=64, batch_duration=30 * S)  # fmt: skip
    batch, _ = batches.iterate_batch(batches.initial_state(seed=0))
    assert {len(it.labels) for it in batch} == {1}
    # A zero weight on all but one epoch: only that epoch is drawn.
    spans = signal_spans(psg_labeled)
    recordings = list(dict.fromkeys(psg_labeled.column("recording").to_pylist()))
    rec = recordings[0]
    lw = [np.ones_like(w) for w in lw]
    lw[0][:] = 0.0
    lw[0][5] = 1.0
    batches = quiet(RandomBatches, psg_labeled, modalities=MONTAGE, signal_weights=[1, 0, 0, 0],
                    label_weights=lw, batch_size=8, batch_duration=30 * S)  # fmt: skip
    batch, _ = batches.iterate_batch(batches.initial_state(seed=1))
    start = spans[(rec, "eeg")][1].start + 5 * EPOCH
    assert {(it.recording, it.window.start) for it in batch} == {(rec, start)}


def test_items_round_trip_and_single_signal_config_is_unchanged(psg_labeled):
    batches = RandomBatches(
        psg_labeled,
        modalities=MONTAGE,
        missing="zero-fill",
        resample={"rate": 128},
        batch_size=4,
        batch_duration=60 * S,
    )
    batch, _ = batches.iterate_batch(batches.initial_state(seed=2))
    for item in batch:
        assert pickle.loads(pickle.dumps(item)) == item
        assert MultiBatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
        assert repr(item).startswith(f"MultiBatchItem(recording={item.recording}")
    assert batch[0] != batch[1]
    config = batches.config
    assert config["missing"] == "zero-fill" and config["resample"]["rates"] == [128.0] * 4
    single = RandomBatches(psg_labeled.filter(psg_labeled.column("sensor_type").to_numpy(
        zero_copy_only=False) == "eeg"), batch_size=4, batch_duration=60 * S)  # fmt: skip
    assert set(single.config) == set(RANDOM_KEYS)  # no montage keys for a single signal
    assert {"modalities", "missing", "resample", "digest.montage"} <= set(config)
    with pytest.raises(StateError, match="missing"):
        single.iterate_batch(batches.initial_state(seed=2))


def test_batches_are_pure_functions_of_the_state(psg_labeled):
    batches = quiet(RandomBatches, psg_labeled, modalities=MONTAGE, batch_size=5,
                    batch_duration=90 * S)  # fmt: skip
    again = quiet(RandomBatches, psg_labeled, modalities=MONTAGE, batch_size=5,
                  batch_duration=90 * S)  # fmt: skip
    state = batches.initial_state(seed=11).advance(7)
    a, next_a = batches.iterate_batch(state)
    b, next_b = again.iterate_batch(BatchState.from_json(state.to_json()))
    assert a == b and next_a == next_b == batches.next_state(state)
    item, _ = batches.iterate_batch_item(state)
    assert item == a[0]


RESUME = """
import json, sys, warnings
warnings.simplefilter("ignore")
from ondabatches import BatchState, RandomBatches, SequentialBatches, read_signals
from ondabatches.synthetic import SyntheticDataset
from tests.psg import MONTAGE, label
from ondabatches.onda import read_annotations
root, state = sys.argv[1], BatchState.from_json(sys.argv[2])
ds = SyntheticDataset(root, None, None, read_signals(root + "/signals.arrow"),
                      read_annotations(root + "/annotations.arrow"))
labeled = label(ds)
out = []
for scheme in (RandomBatches(labeled, modalities=MONTAGE, missing="zero-fill", batch_size=3,
                             batch_duration=60 * 10**9),
               SequentialBatches(labeled, modalities=MONTAGE, batch_size=3,
                                 batch_duration=60 * 10**9)):
    batch, nxt = scheme.iterate_batch(state)
    out.append([[it.to_dict() for it in batch], nxt.to_json()])
print(json.dumps(out))
"""


def test_json_resume_in_a_fresh_process(psg, psg_labeled):
    schemes = (
        RandomBatches(psg_labeled, modalities=MONTAGE, missing="zero-fill", batch_size=3,
                      batch_duration=60 * S),
        quiet(SequentialBatches, psg_labeled, modalities=MONTAGE, batch_size=3,
              batch_duration=60 * S),
    )  # fmt: skip
    state = BatchState(seed=9, index=1)
    proc = subprocess.run(
        [sys.executable, "-c", RESUME, str(psg.root), state.to_json()],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    theirs = json.loads(proc.stdout)
    for scheme, (items, nxt) in zip(schemes, theirs, strict=True):
        batch, mine = scheme.iterate_batch(state)
        assert [MultiBatchItem.from_dict(d) for d in items] == batch
        assert BatchState.from_json(nxt) == mine
