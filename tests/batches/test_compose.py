"""Composed schemes (a sampler, a layout, sharding options): RandomBatches and
SequentialBatches are compositions with unchanged configurations and batches; composed
schemes, a user's sampler among them, pass the scheme conformance suite."""

from __future__ import annotations

import pickle
import uuid
import warnings

import numpy as np
import pytest

from ondabatches.abc import BatchScheme, Layout, Sampler
from ondabatches.batches import (
    BatchState,
    ComposedBatches,
    EventSampler,
    ExcludedRecordingsWarning,
    InterleavedBatches,
    MontageLayout,
    RandomBatches,
    RandomSampler,
    SequentialBatches,
    SequentialSampler,
    Sharding,
    SignalLayout,
    Windows,
    class_balanced_weights,
    compose,
    event_weights,
    shard_batches,
)
from ondabatches.errors import ArgumentTypeError, BatchSpecError, StateError
from ondabatches.labels import label_events
from ondabatches.onda import annotations_table, iter_signals
from ondabatches.testing import ConformanceError, check_batch_scheme, labeled_table
from tests.batches.config_keys import RANDOM_KEYS, SEQUENTIAL_KEYS
from tests.dataset import dataset, labeled  # noqa: F401
from tests.psg import MONTAGE

S = 10**9
EPOCH = 30 * S


def _same_scheme(composed: BatchScheme, existing: BatchScheme, seed: int, n: int = 6) -> None:
    """The same configuration (key order included), states and batches."""
    assert list(composed.config.items()) == list(existing.config.items())
    assert composed.initial_state(seed) == existing.initial_state(seed)
    state = existing.initial_state(seed)
    for _ in range(n):
        mine, theirs = composed.iterate_batch(state), existing.iterate_batch(state)
        if theirs is None:
            assert mine is None
            return
        assert mine[0] == theirs[0] and mine[1] == theirs[1]
        assert composed.next_state(state) == existing.next_state(state)
        assert composed.remaining(state) == existing.remaining(state)
        state = theirs[1]


def _random_kwargs(rng: np.random.Generator, table, n_epochs: int) -> dict:
    kwargs: dict = {"batch_size": int(rng.integers(1, 9))}
    choice = rng.integers(0, 3)
    if choice == 1:
        kwargs["n_channels"] = int(rng.integers(1, 3))
    elif choice == 2:
        kwargs["channels"] = list(rng.permutation(["c3", "c4", "m1", "m2"])[:2])
    if rng.random() < 0.5:
        sw, lw = class_balanced_weights(table)
        kwargs.update(signal_weights=sw * rng.random(len(sw)), label_weights=lw)
    return kwargs


@pytest.mark.parametrize("case", range(8))
def test_random_batches_are_a_random_sampler_over_a_signal_layout(case):
    rng = np.random.default_rng(case)
    n_epochs = int(rng.integers(4, 20))
    table = labeled_table(int(rng.integers(1, 5)), duration=n_epochs * EPOCH)
    duration = int(rng.integers(1, n_epochs + 1)) * EPOCH
    kwargs = _random_kwargs(rng, table, n_epochs)
    existing = RandomBatches(table, batch_duration=duration, **kwargs)
    composed = compose(RandomSampler(**kwargs), SignalLayout(table, duration))
    _same_scheme(composed, existing, seed=int(rng.integers(0, 2**63)))
    assert existing.draw(5, 3, 2) == composed.layout.items(composed.sampler.draw(5, 3, 2))
    # The scheme does not check the random draws' windows: they fit by construction.
    assert existing._unchecked and composed._unchecked
    for index in rng.integers(0, 2**62, size=20).tolist():
        existing.layout.check(existing.sampler.windows(case, index), "draw")


class _OwnDraws(RandomSampler):
    """Random windows, then the first ones moved past the end of their row."""

    def draw(self, seed, index, size):
        windows = super().draw(seed, index, size)
        return Windows(windows.rows, windows.firsts + 100, windows.channels)


def test_a_random_sampler_that_draws_its_own_windows_is_checked():
    table = labeled_table(2, duration=300 * S)
    scheme = compose(_OwnDraws(batch_size=2), SignalLayout(table, 60 * S))
    assert not scheme._unchecked
    with pytest.raises(BatchSpecError, match="_OwnDraws batch 0: item 0 starts at epoch 1"):
        scheme.iterate_batch(scheme.initial_state())


@pytest.mark.parametrize("case", range(8))
def test_sequential_batches_are_a_sequential_sampler_sharded_round_robin(case):
    rng = np.random.default_rng(100 + case)
    n_epochs = int(rng.integers(4, 16))
    table = labeled_table(int(rng.integers(1, 4)), duration=n_epochs * EPOCH)
    duration = int(rng.integers(1, n_epochs + 1)) * EPOCH
    stride = None if rng.random() < 0.5 else int(rng.integers(1, 4)) * EPOCH
    world_size = int(rng.integers(1, 4))
    rank, drop_last = int(rng.integers(0, world_size)), bool(rng.random() < 0.3)
    channels = None if rng.random() < 0.5 else ["c4", 0]
    batch_size = int(rng.integers(1, 6))
    existing = SequentialBatches(
        table, batch_size=batch_size, batch_duration=duration, stride=stride, channels=channels,
        world_size=world_size, rank=rank, drop_last=drop_last,
    )  # fmt: skip
    sampler = SequentialSampler(batch_size=batch_size, stride=stride, channels=channels)
    share = Sharding(world_size, rank, mode="round-robin", drop_last=drop_last)
    composed = compose(sampler, SignalLayout(table, duration), share)
    _same_scheme(composed, existing, seed=case, n=existing.n_batches + 1)
    assert len(composed) == len(existing) and (composed.world_size, composed.rank) == (
        world_size, rank,
    )  # fmt: skip


@pytest.mark.parametrize("missing", ["exclude", "zero-fill"])
def test_montage_schemes_are_compositions_with_a_montage_layout(psg_labeled, missing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        layout = MontageLayout(psg_labeled, MONTAGE, batch_duration=60 * S, missing=missing)
        sw, lw = class_balanced_weights(psg_labeled, by_recording=True)
        random = RandomBatches(
            psg_labeled, modalities=MONTAGE, missing=missing, batch_size=3,
            batch_duration=60 * S, signal_weights=sw, label_weights=lw,
        )  # fmt: skip
        seq = SequentialBatches(psg_labeled, modalities=MONTAGE, missing=missing, batch_size=2,
                                batch_duration=60 * S, world_size=2, rank=1)  # fmt: skip
    sampler = RandomSampler(batch_size=3, signal_weights=sw, label_weights=lw)
    _same_scheme(compose(sampler, layout), random, seed=11)
    share = Sharding(2, 1, mode="round-robin")
    _same_scheme(compose(SequentialSampler(batch_size=2), layout, share), seq, seed=0, n=50)


def test_interleaved_sharding_is_shard_batches():
    table = labeled_table(3, duration=600 * S)
    for scheme, sampler in [
        (RandomBatches(table, batch_size=3, batch_duration=60 * S), RandomSampler(batch_size=3)),
        (SequentialBatches(table, batch_size=3, batch_duration=60 * S),
         SequentialSampler(batch_size=3)),
    ]:  # fmt: skip
        for rank in range(3):
            composed = compose(sampler, SignalLayout(table, 60 * S), Sharding(3, rank))
            assert isinstance(composed, InterleavedBatches)
            _same_scheme(composed, shard_batches(scheme, 3, rank), seed=rank, n=12)
    one = compose(RandomSampler(batch_size=3), SignalLayout(table, 60 * S), Sharding())
    assert type(one) is ComposedBatches and not hasattr(type(one), "__len__")


@pytest.fixture(scope="module")
def events(dataset, tmp_path_factory):  # noqa: F811
    rows, rng = [], np.random.default_rng(5)
    for sig in iter_signals(dataset.signals):
        if any(r["recording"] == sig.recording for r in rows):
            continue
        for _ in range(3):
            a = int(rng.integers(sig.span.start, sig.span.stop - 20 * S))
            rows.append(dict(recording=sig.recording, id=uuid.uuid4(), span=(a, a + 10 * S),
                             event=["apnea", "arousal"][len(rows) % 2]))  # fmt: skip
    out = str(tmp_path_factory.mktemp("ev"))
    return label_events(dataset.signals, annotations_table(rows), column="event",
                        classes=["apnea", "arousal"], out=out)  # fmt: skip


def test_event_sampler_is_random_batches_with_event_weights(labeled, events):  # noqa: F811
    table = labeled.filter(np.array([t == "eeg" for t in labeled["sensor_type"].to_pylist()]))
    for fraction, classes in [(0.5, None), (1.0, ["apnea"]), (0.2, ["arousal", "apnea"])]:
        sw, lw = event_weights(table, events, fraction=fraction, classes=classes)
        existing = RandomBatches(table, batch_size=8, batch_duration=60 * S, n_channels=1,
                                 signal_weights=sw, label_weights=lw)  # fmt: skip
        sampler = EventSampler(events, fraction=fraction, classes=classes, batch_size=8,
                               n_channels=1)  # fmt: skip
        composed = compose(sampler, SignalLayout(table, 60 * S))
        _same_scheme(composed, existing, seed=4)
    with pytest.raises(BatchSpecError, match="fraction must be in"):
        EventSampler(events, fraction=2, batch_size=1)
    with pytest.raises(BatchSpecError, match="unknown event classes"):
        EventSampler(events, classes=["spindle"], batch_size=1)


def test_event_sampler_over_a_montage_draws_only_event_windows(psg, psg_labeled, tmp_path):
    rows = []
    for sig in iter_signals(psg.signals):
        if sig.info.sensor_type == "eeg":
            a = sig.span.start + 200 * S
            rows.append(dict(recording=sig.recording, id=uuid.uuid4(), span=(a, a + 5 * S),
                             event="apnea"))  # fmt: skip
    events = label_events(psg.signals, annotations_table(rows), column="event",
                          classes=["apnea"], out=str(tmp_path / "ev"))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        layout = MontageLayout(psg_labeled, MONTAGE, batch_duration=60 * S)
    scheme = compose(EventSampler(events, fraction=1.0, batch_size=16), layout)
    check_batch_scheme(scheme, steps=2)
    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=2))
    for item in batch:
        on, _, _ = events.window(item.recording, item.window.start, item.window.stop)
        assert len(on) == 1


class EveryOther(Sampler):
    """A user's finite sampler: the first window of every other row, one per batch."""

    finite = True

    def __init__(self, start: int):
        self.start = start

    def n_batches(self):
        return len(range(self.start, self.layout.n_rows, 2))

    def config(self):
        return {"start": self.start}

    def windows(self, seed, index):
        return Windows([self.start + 2 * index], [0])


class OutOfRange(Sampler):
    def windows(self, seed, index):
        return Windows([0], [index])  # past the row's last window soon


@pytest.mark.parametrize("name", ["random", "sequential", "montage", "user", "interleaved"])
def test_composed_schemes_pass_the_scheme_conformance_suite(psg_labeled, name):
    table = labeled_table(5, duration=300 * S)
    layout = SignalLayout(table, 60 * S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        montage = MontageLayout(psg_labeled, MONTAGE, batch_duration=60 * S, missing="zero-fill")
    scheme = {
        "random": lambda: compose(RandomSampler(batch_size=3, n_channels=2), layout),
        "sequential": lambda: compose(SequentialSampler(batch_size=4), layout,
                                      Sharding(2, 1, mode="round-robin")),
        "montage": lambda: compose(RandomSampler(batch_size=2), montage),
        "user": lambda: compose(EveryOther(1), layout),
        "interleaved": lambda: compose(SequentialSampler(batch_size=2), montage, Sharding(3, 2)),
    }[name]()  # fmt: skip
    check_batch_scheme(scheme, steps=6)
    assert scheme.steps_without_drawing  # interleaved too: it steps through the inner states
    assert pickle.loads(pickle.dumps(scheme)).config == scheme.config


def test_a_signal_layout_subclass_makes_items_with_its_own_item():
    # SignalLayout makes a batch's items in one loop of its own, except where a
    # subclass says how to make an item.
    class Padded(SignalLayout):
        def item(self, row, first, count, duration, channels, padding=False):
            return super().item(row, first, count, duration, channels, True)

    table = labeled_table(3, duration=300 * S)
    plain, padded = SignalLayout(table, 60 * S), Padded(table, 60 * S)
    windows = Windows([0, 2, 1], [3, 0, 1], [None, ("c3",), None])
    items = plain.items(windows)
    assert [it.padding for it in items] == [False] * 3
    assert [it.padding for it in padded.items(windows)] == [True] * 3
    assert items == [plain.item(r, f, 2, 60 * S, ch) for r, f, ch in [(0, 3, None),
                     (2, 0, ("c3",)), (1, 1, None)]]  # fmt: skip


def test_a_users_sampler_declares_its_length_config_and_state_binding():
    table = labeled_table(5, duration=300 * S)
    scheme = compose(EveryOther(0), SignalLayout(table, 60 * S))
    assert len(scheme) == 3 and scheme.remaining(scheme.initial_state()) == 3
    assert list(scheme.config)[:3] == ["scheme", "start", "n_rows"]
    assert scheme.config["scheme"] == "EveryOther"
    batches = []
    state = scheme.initial_state()
    while (step := scheme.iterate_batch(state)) is not None:
        batch, state = step
        batches.append([(item.recording.int, item.window.start) for item in batch])
    assert batches == [[(1, 30 * S)], [(3, 30 * S)], [(5, 30 * S)]]
    other = compose(EveryOther(1), SignalLayout(table, 60 * S))
    with pytest.raises(StateError, match="start: state has 0, scheme has 1"):
        other.iterate_batch(scheme.initial_state())


def test_windows_outside_the_layout_and_bad_parts_are_refused(psg_labeled):
    table = labeled_table(2, duration=300 * S)
    layout = SignalLayout(table, 60 * S)
    scheme = compose(OutOfRange(), layout)
    assert scheme.iterate_batch(scheme.initial_state().advance(8)) is not None
    with pytest.raises(BatchSpecError, match="item 0 starts at epoch 9 of row 0 .*0 to 8"):
        scheme.iterate_batch(scheme.initial_state().advance(9))
    with pytest.raises(BatchSpecError, match="Windows has 1 rows but 2 firsts"):
        Windows([0], [0, 1])
    with pytest.raises(BatchSpecError, match="does not give round-robin shares"):
        compose(RandomSampler(batch_size=1), layout, Sharding(2, 0, mode="round-robin"))
    with pytest.raises(BatchSpecError, match="ComposedBatches gives round-robin shares only"):
        ComposedBatches(RandomSampler(batch_size=1), layout, Sharding(2, 0))
    with pytest.raises(ArgumentTypeError, match="the layout must subclass .*Layout"):
        compose(RandomSampler(batch_size=1), table)
    with pytest.raises(ArgumentTypeError, match="the sampler must subclass .*Sampler"):
        compose(object(), layout)
    with pytest.raises(BatchSpecError, match="Sharding mode must be one of"):
        Sharding(mode="blocks")
    with pytest.raises(BatchSpecError, match="drop_last applies to round-robin"):
        Sharding(2, 0, drop_last=True)
    with pytest.raises(BatchSpecError, match="need 0 <= rank < world_size"):
        Sharding(2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        montage = MontageLayout(psg_labeled, MONTAGE, batch_duration=60 * S)
    with pytest.raises(BatchSpecError, match="selects the channels itself"):
        compose(RandomSampler(batch_size=1, n_channels=1), montage)
    with pytest.raises(BatchSpecError, match="selects the channels itself"):
        compose(SequentialSampler(batch_size=1, channels=["c3"]), montage)
    with pytest.raises(BatchSpecError, match="windows take no channels"):
        montage.check(Windows([0], [0], [["c3"]]), "a sampler")


def test_a_sampler_is_left_as_it_is_and_composes_again():
    table = labeled_table(3, duration=300 * S)
    sampler = RandomSampler(batch_size=2)
    a = compose(sampler, SignalLayout(table, 60 * S))
    b = compose(sampler, SignalLayout(table, 90 * S))
    assert sampler.layout is None and a.sampler.layout is a.layout
    assert a.config["batch_duration_ns"] == 60 * S and b.config["batch_duration_ns"] == 90 * S
    assert isinstance(a.layout, Layout) and isinstance(a.sampler, Sampler)
    with pytest.raises(ConformanceError):
        check_batch_scheme(object())  # type: ignore[arg-type]


# States saved by RandomBatches and SequentialBatches before they were compositions
# (ondabatches at 0296e80); their configurations' keys in order are in config_keys.
# What both share: the state, the batch's size and the table's digests.
SAVED_AT = {"seed": 5, "index": 2, "version": 1}
SAVED_CONFIG = {
    "batch_duration_ns": 60000000000,
    "batch_size": 4,
    "digest.channels": "84870acb2df8b7b7",
    "digest.encodings": "9ac2181c243a3cab",
    "digest.labels": "2e58e860ac6ac3e9",
    "digest.rates": "9590713154b8534c",
    "digest.recordings": "0b64f478d99c825f",
    "digest.spans": "d8afb3dc40537aab",
}
SAVED_RANDOM = {
    **SAVED_AT,
    "config": {
        **SAVED_CONFIG,
        "channels": None,
        "digest.weights": "b30dd736627e3e25",
        "n_channels": 2,
        "n_rows": 3,
        "scheme": "RandomBatches",
    },
}
SAVED_SEQUENTIAL = {
    **SAVED_AT,
    "config": {
        **SAVED_CONFIG,
        "channels": "('c3',)",
        "digest.weights": "e3b0c44298fc1c14",
        "drop_last": False,
        "n_rows": 3,
        "scheme": "SequentialBatches",
        "stride_ns": 30000000000,
        "world_size": 2,
    },
}


def test_states_saved_before_the_composition_still_bind_and_resume():
    table = labeled_table(3, duration=600 * S)
    sw, lw = class_balanced_weights(table)
    layout = SignalLayout(table, 60 * S)
    random = RandomBatches(table, batch_size=4, batch_duration=60 * S, n_channels=2,
                           signal_weights=sw, label_weights=lw)  # fmt: skip
    composed = compose(
        RandomSampler(batch_size=4, n_channels=2, signal_weights=sw, label_weights=lw), layout
    )
    seq = SequentialBatches(table, batch_size=4, batch_duration=60 * S, stride=30 * S,
                            world_size=2, rank=1, channels=["c3"])  # fmt: skip
    share = Sharding(2, 1, mode="round-robin")
    composed_seq = compose(SequentialSampler(batch_size=4, stride=30 * S, channels=["c3"]),
                           layout, share)  # fmt: skip
    for schemes, saved, keys in [
        ((random, composed), SAVED_RANDOM, RANDOM_KEYS),
        ((seq, composed_seq), SAVED_SEQUENTIAL, SEQUENTIAL_KEYS),
    ]:
        state = BatchState.from_dict(saved)
        for scheme in schemes:
            assert list(scheme.config) == keys
            assert scheme.initial_state(5).advance(2) == state
        assert schemes[0].iterate_batch(state) == schemes[1].iterate_batch(state)


@pytest.mark.timeout(120)
def test_a_users_sampler_works_on_every_backend(labeled):  # noqa: F811
    """A sampler written against ondabatches.abc, composed with a built-in layout, on
    inline, threads and worker processes: the same arrays as materialized inline."""
    from ondabatches.materialize import materialize_batch
    from ondabatches.serve import Batcher
    from tests.dataset import eeg_rows_at

    scheme = compose(EveryOther(0), SignalLayout(eeg_rows_at(labeled, 128.0), 60 * S))
    check_batch_scheme(scheme)
    start = scheme.initial_state(seed=3)
    n = len(scheme)
    want = [materialize_batch(scheme.iterate_batch(start.advance(k))[0]) for k in range(n)]
    assert n >= 1
    for backend in ("inline", "threads", "processes"):
        with Batcher(scheme, backend=backend, workers=1) as batcher:
            batcher.start(start)
            state = start
            for k in range(n):
                (x, y), state = batcher.take(state)
                np.testing.assert_array_equal(x, want[k][0], err_msg=f"{backend} batch {k}")
                np.testing.assert_array_equal(y, want[k][1])
            assert batcher.take(state) is None
