"""RandomBatches: OndaBatches' sampling checks, determinism, resumption and the golden batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ondabatches import StateError
from ondabatches.batches import (
    BatchItem,
    BatchState,
    RandomBatches,
    class_balanced_weights,
    duration_weights,
    inverse_frequency_label_weights,
)
from ondabatches.errors import BatchSpecError
from ondabatches.labels import iter_labeled_signals
from ondabatches.onda import TimeSpan
from ondabatches.synthetic import EPOCH, labeled_table
from tests.dataset import any_labeled, dataset, labeled, lazy_labeled  # noqa: F401

MIN = 60 * 10**9
ROOT = Path(__file__).resolve().parents[2]


def _spec(table, **kw):
    kw.setdefault("n_channels", 1)
    kw.setdefault("batch_size", 10)
    kw.setdefault("batch_duration", MIN)
    return RandomBatches(table, **kw)


def test_items_are_well_formed(any_labeled):  # noqa: F811
    spec = _spec(any_labeled)
    batch, state = spec.iterate_batch(spec.initial_state(1337))
    assert len(batch) == 10 and state.index == 1
    rows = {r.signal.file_path: r for r in iter_labeled_signals(any_labeled)}
    assert len({it.recording for it in batch}) > 1
    for item in batch:
        row = rows[item.file_path]
        assert row.label_span.contains(item.window) and item.window.duration == MIN
        assert (item.window.start - row.label_span.start) % EPOCH == 0
        assert len(item.channels) == 1 and item.channels[0] in row.signal.channels
        np.testing.assert_array_equal(item.label_codes(), row.label_codes(item.window))
        assert len(item.label_codes()) == 2


def test_items_equal_items_made_by_the_dataclass(labeled):  # noqa: F811
    # The layouts set the slots of items and windows directly: the very objects that
    # BatchItem(...) and TimeSpan(...) make, every field set, hashes and pickles alike.
    import pickle
    from dataclasses import fields

    for item in _spec(labeled).iterate_batch(BatchState(3, 5))[0]:
        values = {f.name: getattr(item, f.name) for f in fields(BatchItem)}
        values["window"] = TimeSpan(item.window.start, item.window.stop)
        plain = BatchItem(**values)
        assert item == plain and repr(item) == repr(plain)
        assert hash(item.window) == hash(plain.window) and item.window == plain.window
        assert pickle.loads(pickle.dumps(item)) == plain
        assert item.to_dict() == plain.to_dict()


def test_iterate_batch_item_is_the_first_item_of_the_batch(labeled):  # noqa: F811
    spec = _spec(labeled)
    state = spec.initial_state(1337)
    item, next_state = spec.iterate_batch_item(state)
    batch, batch_next = spec.iterate_batch(state)
    assert item == batch[0] and next_state == batch_next
    assert spec.iterate_batch(next_state)[0] != batch


def test_channels_are_sampled_without_replacement(labeled):  # noqa: F811
    spec = _spec(labeled, n_channels=2)
    state = spec.initial_state(1337)
    for _ in range(100):
        batch, state = spec.iterate_batch(state)
        assert all(len(set(it.channels)) == 2 for it in batch)


def test_n_channels_none_means_all_channels_in_order(labeled):  # noqa: F811
    spec = _spec(labeled, n_channels=None)
    state = spec.initial_state(1337)
    for _ in range(20):
        batch, state = spec.iterate_batch(state)
        assert all(it.channels == it.info.channels for it in batch)


def test_one_hot_signal_weights_give_only_that_recording(labeled):  # noqa: F811
    rows = list(iter_labeled_signals(labeled))
    for i, row in enumerate(rows):
        spec = _spec(labeled, signal_weights=np.arange(len(rows)) == i)
        batch, _ = spec.iterate_batch(BatchState(1337))
        assert all(it.file_path == row.signal.file_path for it in batch)


def test_one_hot_label_weights_with_one_epoch_give_that_epoch(labeled):  # noqa: F811
    rows = list(iter_labeled_signals(labeled))
    label_weights = [np.arange(r.n_labels) == i for i, r in enumerate(rows)]
    for i, row in enumerate(rows):
        spec = _spec(labeled, signal_weights=np.arange(len(rows)) == i, label_weights=label_weights,
                     batch_duration=EPOCH)  # fmt: skip
        item, _ = spec.iterate_batch_item(BatchState(1337))
        t = row.label_span.start + i * EPOCH
        assert item.window == TimeSpan(t, t + EPOCH)


def test_first_and_last_epoch_only_windows_stay_inside_the_label_span(labeled):  # noqa: F811
    row = next(iter_labeled_signals(labeled))
    one = np.arange(labeled.num_rows) == 0
    for pick, expect in ((0, "start"), (row.n_labels - 1, "stop")):
        lw = [
            np.arange(r.n_labels) == (pick if k == 0 else 0)
            for k, r in enumerate(iter_labeled_signals(labeled))
        ]
        spec = _spec(labeled, signal_weights=one, label_weights=lw, batch_duration=2 * MIN)
        batch, _ = spec.iterate_batch(BatchState(5))
        for item in batch:
            assert getattr(item.window, expect) == getattr(row.label_span, expect)


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        (0, "positive"),
        (10**9, "whole number"),
        (31 * 10**9, "whole number"),
        (3000 * 10**10, "longer"),
    ],
)
def test_batch_duration_errors(labeled, duration, message):  # noqa: F811
    with pytest.raises(BatchSpecError, match=message) as info:
        _spec(labeled, batch_duration=duration)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kw",
    [dict(n_channels=0), dict(n_channels=99), dict(batch_size=0), dict(signal_weights=[1.0]),
     dict(signal_weights=np.zeros(6)), dict(label_weights=[[1.0]])],
)  # fmt: skip
def test_bad_parameters(labeled, kw):  # noqa: F811
    with pytest.raises(BatchSpecError):
        _spec(labeled, **kw)


def test_lazy_and_eager_labels_give_the_same_batches(labeled, lazy_labeled):  # noqa: F811
    eager, lazy = _spec(labeled), _spec(lazy_labeled)
    a, _ = eager.iterate_batch(BatchState(9, 3))
    b, _ = lazy.iterate_batch(BatchState(9, 3))
    for x, y in zip(a, b, strict=True):
        assert (x.file_path, x.window, x.channels) == (y.file_path, y.window, y.channels)
        np.testing.assert_array_equal(x.label_codes(), y.label_codes())


def test_batches_depend_only_on_seed_and_index(labeled):  # noqa: F811
    spec = _spec(labeled)
    state = spec.initial_state(42)
    walked = state
    for _ in range(7):
        _, walked = spec.iterate_batch(walked)
    assert spec.iterate_batch(walked)[0] == spec.iterate_batch(state.advance(7))[0]
    far = spec.iterate_batch(state.advance(10**12))[0]
    assert len(far) == 10 and far != spec.iterate_batch(state)[0]
    assert spec.iterate_batch(BatchState(43))[0] != spec.iterate_batch(state)[0]


def test_json_resume_continues_the_sequence_exactly(labeled):  # noqa: F811
    spec = _spec(labeled)
    state = spec.initial_state(7)
    straight = []
    for _ in range(6):
        batch, state = spec.iterate_batch(state)
        straight.append(batch)
    state = spec.initial_state(7)
    resumed = []
    for _ in range(3):
        batch, state = spec.iterate_batch(state)
        resumed.append(batch)
    restored = BatchState.from_json(json.loads(json.dumps(state.to_json())))
    for _ in range(3):
        batch, restored = spec.iterate_batch(restored)
        resumed.append(batch)
    assert resumed == straight


def test_a_state_of_another_configuration_is_refused(labeled):  # noqa: F811
    _, state = _spec(labeled).iterate_batch(BatchState(1))
    with pytest.raises(StateError, match="batch_size: state has 10, scheme has 11"):
        _spec(labeled, batch_size=11).iterate_batch(state)


GOLDEN = [
    [
        (7, 3120, ("o2", "o1")),
        (6, 2280, ("o1", "c4")),
        (2, 1980, ("m2", "m1")),
        (11, 3540, ("o1", "c4")),
    ],
    [
        (17, 2580, ("m2", "c4")),
        (5, 3030, ("m1", "o2")),
        (0, 2610, ("o2", "m2")),
        (5, 1140, ("m2", "o1")),
    ],
]


def _golden_batches():
    spec = RandomBatches(labeled_table(20, duration=3600 * 10**9), n_channels=2, batch_size=4,
                         batch_duration=90 * 10**9)  # fmt: skip
    state, out = BatchState(seed=1234), []
    for _ in range(2):
        batch, state = spec.iterate_batch(state)
        out.append([(it.recording.int - 1, it.window.start // 10**9, it.channels) for it in batch])
    return out


def test_golden_first_batches():
    assert _golden_batches() == GOLDEN


def test_threads_drawing_at_once_get_the_same_batches():
    # Each thread reuses its own Philox generator: concurrent draws must not mix.
    spec = RandomBatches(labeled_table(20, duration=3600 * 10**9), n_channels=2, batch_size=4,
                         batch_duration=90 * 10**9)  # fmt: skip
    expected = [spec.draw(1234, k, 4) for k in range(200)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: spec.draw(1234, k, 4), range(200)))
    assert got == expected


def test_same_state_same_batch_in_a_fresh_subprocess():
    code = textwrap.dedent(
        """
        import json
        from tests.batches.test_random import _golden_batches
        print(json.dumps(_golden_batches()))
        """
    )
    env_seed = {"PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, **env_seed}, cwd=ROOT,
    )  # fmt: skip
    got = [[(r, s, tuple(ch)) for r, s, ch in batch] for batch in json.loads(out.stdout)]
    assert got == GOLDEN


def test_items_are_picklable_and_json_convertible(any_labeled):  # noqa: F811
    import pickle

    batch, _ = _spec(any_labeled, batch_size=4).iterate_batch(BatchState(3))
    for item in batch:
        assert pickle.loads(pickle.dumps(item)) == item
        assert BatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item


def test_uniform_weights_keep_no_per_label_arrays():
    table = labeled_table(50, duration=3600 * 10**9)
    spec = RandomBatches(table, batch_size=4, batch_duration=MIN)
    per_row_objects = [v for v in vars(spec).values() if isinstance(v, list)]
    assert spec._label_cum is None and spec._signal_cum is None and not per_row_objects


def test_weight_helpers(labeled):  # noqa: F811
    rows = list(iter_labeled_signals(labeled))
    dw = duration_weights(labeled)
    np.testing.assert_allclose(dw, [r.label_span.duration / 1e9 for r in rows])
    lw = inverse_frequency_label_weights(labeled)
    counts = Counter(np.concatenate([r.label_codes() for r in rows]).tolist())
    for r, w in zip(rows, lw, strict=True):
        np.testing.assert_allclose(w, [1 / counts[c] for c in r.label_codes().tolist()])
    sw, lw = class_balanced_weights(labeled)
    spec = _spec(labeled, signal_weights=sw, label_weights=lw, batch_duration=EPOCH, batch_size=500)
    drawn = Counter()
    for k in range(8):
        drawn.update(int(it.label_codes()[0]) for it in spec.iterate_batch(BatchState(0, k))[0])
    shares = np.array([drawn[c] for c in counts]) / sum(drawn.values())
    assert np.all(np.abs(shares - 1 / len(counts)) < 0.05), (drawn, counts)


def test_a_fixed_selector_makes_different_montages_stack(labeled) -> None:  # noqa: F811
    from ondabatches.materialize import ZeroFillMontage, materialize_batch
    from tests.dataset import eeg_rows_at

    table = eeg_rows_at(labeled, 128.0)
    montage = ZeroFillMontage(["c3", "c4", "f3", "o2"])
    batches = RandomBatches(table, channels=montage, batch_size=6, batch_duration=EPOCH)
    batch, _ = batches.iterate_batch(batches.initial_state(3))
    assert all(item.channels == montage for item in batch)
    x, y = materialize_batch(batch)
    assert x.shape[:2] == (6, 4) and y.shape[0] == 6
    # The selector is part of the configuration that states are bound to.
    other = RandomBatches(table, channels=["c3"], batch_size=6, batch_duration=EPOCH)
    assert other.config["channels"] == ["c3"]
    assert other.config["channels"] != batches.config["channels"]


def test_n_channels_and_a_selector_together_are_refused(labeled) -> None:  # noqa: F811
    with pytest.raises(BatchSpecError, match="either n_channels"):
        RandomBatches(labeled, n_channels=1, channels=["c3"], batch_size=2, batch_duration=EPOCH)
