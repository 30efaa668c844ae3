"""Sparse event labels: stored per recording, read per window, as masks, multi-hot epochs
and event lists equal to brute-force references; served as dict targets by every path."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ondabatches import (
    Batcher,
    BatchState,
    LabelError,
    RandomBatches,
    StateError,
    label_events,
    materialize_batch,
)
from ondabatches.batches import event_weights
from ondabatches.labels import (
    EventsWarning,
    event_list,
    event_lists,
    event_mask,
    event_masks,
    multi_hot,
    multi_hots,
)
from ondabatches.onda import annotations_table, iter_signals
from ondabatches.transforms import (
    EventList,
    EventMask,
    EventTargets,
    MultiHot,
    Pipeline,
    TimeReverse,
    TransformedBatches,
)
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401
from tests.psg import MONTAGE

# label_events warns, with counts, of the events it clips or ignores (tested below).
pytestmark = pytest.mark.filterwarnings("ignore::ondabatches.labels.EventsWarning")

S = 10**9
CLASSES = ("arousal", "apnea", "spindle")


def _events(dataset, seed=0, skip=None):  # noqa: F811
    """Random overlapping events of 3 classes per recording: long and short ones,
    instants, one past the recording's end; ``skip``: a recording given none."""
    rng = np.random.default_rng(seed)
    rows = []
    for sig in iter_signals(dataset.signals):
        if sig.recording == skip or any(r["recording"] == sig.recording for r in rows):
            continue
        stop = sig.span.stop
        for k in range(60):
            a = int(rng.integers(0, stop))
            length = int(rng.choice([0, rng.integers(1, 3 * S), rng.integers(S, 60 * S)]))
            rows.append(dict(recording=sig.recording, id=uuid.uuid4(),
                             span=(a, a + length), event=CLASSES[k % 3]))  # fmt: skip
        rows.append(dict(recording=sig.recording, id=uuid.uuid4(),
                         span=(stop - S, stop + 5 * S), event="apnea"))  # fmt: skip
        rows.append(dict(recording=sig.recording, id=uuid.uuid4(), span=(0, S), event="other"))
    return annotations_table(rows)


def _brute(events_rows, recording, start, stop):
    """The events of a window by testing every event: (onset, offset, class) lists."""
    out = []
    for on, off, c in events_rows[recording]:
        if (off > start and on < stop) or (on == off and start <= on < stop):
            out.append((on, off, c))
    return out


def _stored(dataset, annotations):  # noqa: F811
    """Every recording's events as label_events stores them (clipped to the recording)."""
    spans = {}
    for sig in iter_signals(dataset.signals):
        lo, hi = spans.get(sig.recording, (sig.span.start, sig.span.stop))
        spans[sig.recording] = (min(lo, sig.span.start), max(hi, sig.span.stop))
    out = {str(r): [] for r in spans}
    table = annotations.to_pylist()
    for row in table:
        if row["event"] not in CLASSES:
            continue
        lo, hi = spans[row["recording"]]
        a, b = row["span"].start, row["span"].stop
        if a >= hi or b < lo or (b == lo and a != b):  # wholly outside the recording
            continue
        out[str(row["recording"])].append((max(a, lo), min(b, hi), CLASSES.index(row["event"])))
    return out


@pytest.fixture(scope="module")
def stored(dataset, tmp_path_factory):  # noqa: F811
    annotations = _events(dataset)
    labels = label_events(dataset.signals, annotations, column="event", classes=CLASSES,
                          out=str(tmp_path_factory.mktemp("events")))  # fmt: skip
    return labels, _stored(dataset, annotations)


def test_windows_read_exactly_the_overlapping_events(stored):
    labels, rows = stored
    rng = np.random.default_rng(1)
    for recording in rows:
        for _ in range(40):
            start = int(rng.integers(-10 * S, 13 * 60 * S))
            stop = start + int(rng.integers(1, 120 * S))
            on, off, cl = labels.window(recording, start, stop)
            got = sorted(zip(on.tolist(), off.tolist(), cl.tolist(), strict=True))
            assert got == sorted(_brute(rows, recording, start, stop))
        # The edges: windows starting or ending at an event's bounds, instants included.
        for a, b, _ in rows[recording]:
            for start, stop in ((a, a + S), (b, b + S), (a - S, a), (b - S, b)):
                on, off, cl = labels.window(recording, start, stop)
                got = sorted(zip(on.tolist(), off.tolist(), cl.tolist(), strict=True))
                assert got == sorted(_brute(rows, recording, start, stop)), (a, b, start, stop)


def test_masks_multi_hot_and_lists_equal_brute_force(stored):
    labels, rows = stored
    rng = np.random.default_rng(2)
    n_checked = 0
    for recording in rows:
        for _ in range(15):
            start = int(rng.integers(0, 11 * 60 * S))
            duration = 90 * S
            stop = start + duration
            found = labels.window(recording, start, stop)
            ev = _brute(rows, recording, start, stop)
            # Mask at 4 Hz: each label sample's centre tested against every event.
            rate = 4.0
            mask = event_mask(found, start, stop, 3, rate)
            want = np.zeros_like(mask)
            for j in range(mask.shape[1]):
                lo, hi = start + j * S / rate, start + (j + 1) * S / rate
                centre = (lo + hi) / 2
                for on, off, c in ev:
                    if (on == off and lo <= on < hi) or (on <= centre < off):
                        want[c, j] = 1
            np.testing.assert_array_equal(mask, want)
            # Half-overlap mask: covered length of each label sample.
            half = event_mask(found, start, stop, 3, rate, min_overlap=0.5)
            want = np.zeros_like(half)
            for j in range(half.shape[1]):
                lo, hi = start + j * S / rate, start + (j + 1) * S / rate
                for c in range(3):
                    covered = _union_length([(on, off) for on, off, k in ev if k == c], lo, hi)
                    instant = any(k == c and on == off and lo <= on < hi for on, off, k in ev)
                    want[c, j] = covered >= 0.5 * (hi - lo) - 1e-6 or instant
            np.testing.assert_array_equal(half, want)
            # Multi-hot epochs of 30 s at 0.3 of the epoch.
            hot = multi_hot(found, start, stop, 3, 30 * S, 0.3)
            want = np.zeros_like(hot)
            for k in range(3):
                lo, hi = start + k * 30 * S, start + (k + 1) * 30 * S
                for c in range(3):
                    covered = _union_length([(on, off) for on, off, q in ev if q == c], lo, hi)
                    instant = any(q == c and on == off and lo <= on < hi for on, off, q in ev)
                    want[k, c] = covered >= 0.3 * 30 * S or instant
            np.testing.assert_array_equal(hot, want)
            # Event lists: onset order, clipped, padded, counted.
            lst = event_list(found, start, stop, 4)
            order = sorted(ev, key=lambda e: (e[0], e[2]))
            assert int(lst["count"]) == len(ev)
            assert lst["valid"].sum() == min(4, len(ev))
            for i, (on, off, c) in enumerate(order[:4]):
                assert lst["class"][i] == c
                assert lst["onset"][i] == pytest.approx((max(on, start) - start) / S, abs=1e-6)
                assert lst["offset"][i] == pytest.approx((min(off, stop) - start) / S, abs=1e-6)
            assert (lst["class"][len(order[:4]) :] == -1).all()
            n_checked += 1
    assert n_checked >= 15


def _union_length(intervals, lo, hi):
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total, reach = 0.0, -np.inf
    for a, b in clipped:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _want_mask(ev, start, stop, rate, min_overlap=None):
    """A mask by testing every label sample against every event (centre, or covered
    fraction with ``min_overlap``)."""
    n = round((stop - start) * rate / S)
    want = np.zeros((3, n), dtype=bool)
    for j in range(n):
        lo, hi = start + j * S / rate, start + (j + 1) * S / rate
        for c in range(3):
            instant = any(k == c and on == off and lo <= on < hi for on, off, k in ev)
            if min_overlap is None:
                hit = any(k == c and on <= (lo + hi) / 2 < off for on, off, k in ev)
            else:
                covered = _union_length([(on, off) for on, off, k in ev if k == c], lo, hi)
                hit = covered >= min_overlap * (hi - lo) - 1e-6
            want[c, j] = hit or instant
    return want


def _want_hot(ev, start, stop, epoch, min_overlap):
    n = (stop - start) // epoch
    want = np.zeros((n, 3), dtype=bool)
    for k in range(n):
        lo, hi = start + k * epoch, start + (k + 1) * epoch
        for c in range(3):
            covered = _union_length([(on, off) for on, off, q in ev if q == c], lo, hi)
            instant = any(q == c and on == off and lo <= on < hi for on, off, q in ev)
            want[k, c] = covered >= min_overlap * epoch or instant
    return want


def test_batch_targets_at_random_starts_equal_brute_force(stored):
    """The batch forms (every window of a batch in one pass, as EventTargets computes
    them) against brute force, windows of many recordings at random starts, some
    sharing a recording, some starting before or ending past its events."""
    labels, rows = stored
    rng = np.random.default_rng(7)
    recordings = list(rows)
    picks = [recordings[i] for i in rng.integers(0, len(recordings), 24)] + [uuid.uuid4()]
    starts = rng.integers(-20 * S, 12 * 60 * S, len(picks))
    stops = starts + 60 * S
    found, present = labels.windows(picks, starts, stops)
    assert present.tolist() == [str(r) in rows for r in picks]
    masks = event_masks(found, starts, stops, 3, 2.0)
    halves = event_masks(found, starts, stops, 3, 2.0, min_overlap=0.25)
    hots = multi_hots(found, starts, stops, 3, 20 * S, 0.4)
    lists = event_lists(found, starts, stops, 5)
    assert masks.shape == (len(picks), 3, 120) and hots.shape == (len(picks), 3, 3)
    for i, (rec, a, b) in enumerate(zip(picks, starts.tolist(), stops.tolist(), strict=True)):
        ev = _brute(rows, str(rec), a, b) if str(rec) in rows else []
        np.testing.assert_array_equal(masks[i], _want_mask(ev, a, b, 2.0))
        np.testing.assert_array_equal(halves[i], _want_mask(ev, a, b, 2.0, 0.25))
        np.testing.assert_array_equal(hots[i], _want_hot(ev, a, b, 20 * S, 0.4))
        order = sorted(ev, key=lambda e: (e[0], e[2]))[:5]
        assert int(lists["count"][i]) == len(ev)
        assert lists["class"][i, : len(order)].tolist() == [c for _, _, c in order]
        onsets = [(max(on, a) - a) / S for on, _, _ in order]
        np.testing.assert_allclose(lists["onset"][i, : len(order)], onsets, atol=1e-6)
    with pytest.raises(LabelError, match="one mask length"):
        event_masks(found, starts, stops + np.arange(len(picks)) * S, 3, 2.0)


def _work_dirs():
    return set(Path(tempfile.gettempdir()).glob("ondabatches-events-*"))


def _contents(labels):
    """Every recording's stored events, as lists."""
    out = {}
    for rec in labels.files:
        on, off, cl = labels.window(rec, -(10**15), 10**15)
        out[rec] = list(zip(on.tolist(), off.tolist(), cl.tolist(), strict=True))
    return out


def test_streamed_annotations_file_and_batches_equal_the_table(dataset, tmp_path, monkeypatch):  # noqa: F811
    """An Arrow file (Onda's, both IPC forms) or record batches, classified a few rows at
    a time across many chunks and work files, store the same label set (same digest)
    as the whole table, and its events as brute force has them."""
    from ondabatches.labels import _events as module
    from ondabatches.onda import write_annotations

    annotations = _events(dataset, seed=3)
    whole = label_events(dataset.signals, annotations, column="event", classes=CLASSES,
                         out=str(tmp_path / "whole"))  # fmt: skip
    assert _contents(whole) == {
        r: sorted(e, key=lambda t: (t[0], t[1], t[2]))
        for r, e in _stored(dataset, annotations).items()
    }
    monkeypatch.setattr(module, "_CHUNK_ROWS", 7)
    path = tmp_path / "annotations.arrow"
    write_annotations(path, annotations)
    stream = tmp_path / "stream.arrow"
    with pa.ipc.new_stream(stream, annotations.schema) as writer:
        writer.write_table(annotations, max_chunksize=50)
    before = _work_dirs()
    for source in (str(path), stream, annotations.to_reader(max_chunksize=30), annotations):
        with pytest.warns(EventsWarning, match=r"clipped.*'other': [1-9]"):
            got = label_events(dataset.signals, source, column="event", classes=CLASSES,
                               out=str(tmp_path / "s"))  # fmt: skip
        assert got.digest == whole.digest
        assert _contents(got) == _contents(whole)
    assert _work_dirs() == before  # the work files are gone


def test_streamed_annotations_bad_input(dataset, tmp_path):  # noqa: F811
    annotations = _events(dataset)
    before = _work_dirs()
    from ondabatches.onda._arrow import span_bounds, timespan_array

    starts, stops = (v.copy() for v in span_bounds(annotations.column("span")))
    starts[5] = stops[5] + S  # a negative duration, as a file could hold it
    index = annotations.schema.get_field_index("span")
    backwards = annotations.set_column(index, "span", timespan_array(starts, stops))
    with pytest.raises(LabelError, match=r"annotation 5: span \[\d+, \d+\) ns ends before"):
        label_events(dataset.signals, backwards, column="event", classes=CLASSES,
                     out=str(tmp_path / "n"))  # fmt: skip
    (tmp_path / "junk.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(LabelError, match=r"junk.arrow: not an Arrow IPC"):
        label_events(dataset.signals, str(tmp_path / "junk.arrow"), column="event",
                     classes=CLASSES, out=str(tmp_path / "j"))  # fmt: skip
    with pytest.raises(Exception, match=r"missing.arrow"):
        label_events(dataset.signals, str(tmp_path / "missing.arrow"), column="event",
                     classes=CLASSES, out=str(tmp_path / "m"))  # fmt: skip
    with pytest.raises(LabelError, match=r"no column 'nope'"):
        label_events(dataset.signals, annotations.to_reader(), column="nope",
                     classes=CLASSES, out=str(tmp_path / "c"))  # fmt: skip
    assert not (tmp_path / "n").exists() and not (tmp_path / "j").exists()
    assert _work_dirs() == before


def test_past_end_clipped_or_refused(dataset, tmp_path):  # noqa: F811
    annotations = _events(dataset)
    with pytest.raises(LabelError, match=r"past the recording's span.*past_end='clip'"):
        label_events(dataset.signals, annotations, column="event", classes=CLASSES,
                     out=str(tmp_path / "e"), past_end="error")  # fmt: skip
    with pytest.warns(EventsWarning, match=r"[1-9]\d* event\(s\) clipped.*'other': [1-9]"):
        label_events(dataset.signals, annotations, column="event", classes=CLASSES,
                     out=str(tmp_path / "w"))  # fmt: skip
    with pytest.raises(LabelError, match="no column 'nope'"):
        label_events(dataset.signals, annotations, column="nope", classes=CLASSES,
                     out=str(tmp_path / "e"))  # fmt: skip


def test_event_targets_through_materialize_batcher_and_state(dataset, labeled, tmp_path):  # noqa: F811
    table = eeg_rows_at(labeled, 128.0)
    skip = next(iter_signals(dataset.signals)).recording
    annotations = _events(dataset, skip=skip)
    stored = {r: e for r, e in _stored(dataset, annotations).items() if r != str(skip)}
    others = pa.array([s.recording != skip for s in iter_signals(dataset.signals)])
    arousal = label_events(dataset.signals.filter(others), annotations, column="event",
                           classes=CLASSES, out=str(tmp_path / "a"))  # fmt: skip
    assert not arousal.has(skip)
    targets = EventTargets({"events": (arousal, EventMask(2.0)),
                            "epochs": (arousal, MultiHot(30.0)),
                            "list": (arousal, EventList(8))}, dense="stage")  # fmt: skip
    scheme = RandomBatches(table, n_channels=2, batch_size=16, batch_duration=60 * S)
    batches = TransformedBatches(scheme, [targets])
    state = batches.initial_state(seed=4)
    batch, after = batches.iterate_batch(state)
    x, y = materialize_batch(batch)
    assert set(y) == {"stage", "events", "epochs", "list", "present"}
    assert y["events"].shape == (16, 3, 120) and y["epochs"].shape == (16, 2, 3)
    assert y["list"]["class"].shape == (16, 8) and y["stage"].shape == (16, 1, 2)
    present = y["present"]["events"]
    assert present.dtype == bool and (~present).any() and present.any()
    for i, item in enumerate(batch):
        if not present[i]:
            assert item.recording == skip and not y["events"][i].any()
            continue
        ev = _brute(stored, str(item.recording), item.window.start, item.window.stop)
        assert int(y["list"]["count"][i]) == len(ev)
    # The same on worker processes, and after a JSON resume.
    with Batcher(scheme, backend="processes", workers=2, transforms=[targets]) as b:
        b.start(BatchState.from_json(state.to_json()))
        (bx, by), _ = b.take(state)
    np.testing.assert_array_equal(bx, x)
    np.testing.assert_array_equal(by["events"], y["events"])
    np.testing.assert_array_equal(by["list"]["onset"], y["list"]["onset"])
    # The state names the events by digest: other events are refused.
    config = json.loads(after.to_json())["config"]["transforms"][0]
    assert config["targets"]["events"]["events"]["digest"] == arousal.digest
    other = label_events(dataset.signals, _events(dataset, seed=9), column="event",
                         classes=CLASSES, out=str(tmp_path / "b"))  # fmt: skip
    relabeled = TransformedBatches(scheme, [EventTargets({"events": (other, EventMask(2.0)),
                                   "epochs": (other, MultiHot(30.0)),
                                   "list": (other, EventList(8))}, dense="stage")])  # fmt: skip
    with pytest.raises(StateError, match="transforms"):
        relabeled.iterate_batch(after)


def test_event_targets_on_multi_signal_items_and_one_targets_transform(psg, psg_labeled, tmp_path):
    """A montage's items get the same targets (the recording's timeline), inline and on
    worker processes; a pipeline takes one targets transform."""
    annotations = _events(psg)
    events = label_events(psg.signals, annotations, column="event", classes=CLASSES,
                          out=str(tmp_path / "e"))  # fmt: skip
    rows = _stored(psg, annotations)
    targets = EventTargets({"mask": (events, EventMask(1.0)), "list": (events, EventList(6))},
                           dense="stage")  # fmt: skip
    with pytest.warns(Warning):  # the recordings without ecg are excluded
        scheme = RandomBatches(psg_labeled, modalities=MONTAGE, batch_size=6,
                               batch_duration=60 * S, resample={"rate": 128})  # fmt: skip
    batches = TransformedBatches(scheme, [targets])
    state = batches.initial_state(seed=1)
    batch, _ = batches.iterate_batch(state)
    x, y = materialize_batch(batch)
    plain, dense = materialize_batch(list(batch))
    assert set(x) == set(MONTAGE) and set(y) == {"stage", "mask", "list", "present"}
    for name in MONTAGE:
        np.testing.assert_array_equal(x[name], plain[name])
    np.testing.assert_array_equal(y["stage"], dense)
    assert y["present"]["mask"].all()
    for i, item in enumerate(batch):
        a, b = item.window.start, item.window.stop
        ev = _brute(rows, str(item.recording), a, b)
        np.testing.assert_array_equal(y["mask"][i], _want_mask(ev, a, b, 1.0))
        assert int(y["list"]["count"][i]) == len(ev)
    with Batcher(scheme, backend="processes", workers=2, transforms=[targets]) as b:
        b.start(state)
        (_, by), _ = b.take(state)
    np.testing.assert_array_equal(by["mask"], y["mask"])
    with pytest.raises(Exception, match="one targets transform"):
        Pipeline([targets, EventTargets({"m": (events, MultiHot(30.0))})])


def test_event_target_bad_input(stored):
    labels, _ = stored
    with pytest.raises(Exception, match="cannot go with"):
        Pipeline([EventTargets({"e": (labels, EventMask(2.0))}), TimeReverse()])
    with pytest.raises(Exception, match="rate_hz must be in"):
        EventMask(500.0).check(128.0, "x")
    changed = dict(labels.to_dict(), digest="0" * 16)
    with pytest.raises(LabelError, match="changed"):
        EventTargets({"e": {"events": changed, "target": {"kind": "mask", "rate_hz": 2.0}}})


def test_event_aware_sampling_draws_the_chosen_fraction(dataset, labeled, tmp_path):  # noqa: F811
    table = eeg_rows_at(labeled, 128.0)
    # Rare events: one short apnea per recording.
    rows, rng = [], np.random.default_rng(5)
    recordings = {s.recording: s.span for s in iter_signals(dataset.signals)}
    for rec, span in recordings.items():
        for _ in range(1):
            a = int(rng.integers(span.start + 60 * S, span.stop - 60 * S))
            rows.append(dict(recording=rec, id=uuid.uuid4(), span=(a, a + 10 * S),
                             event="apnea"))  # fmt: skip
    events = label_events(dataset.signals, annotations_table(rows), column="event",
                          classes=["apnea"], out=str(tmp_path / "ev"))  # fmt: skip
    sw, lw = event_weights(table, events, fraction=0.5)
    scheme = RandomBatches(table, n_channels=1, batch_size=64, batch_duration=90 * S,
                           signal_weights=sw, label_weights=lw)  # fmt: skip
    plain = RandomBatches(table, n_channels=1, batch_size=64, batch_duration=90 * S)
    held, positions, held_plain = [], set(), []
    state, other = scheme.initial_state(seed=3), plain.initial_state(seed=3)
    for _ in range(20):
        batch, state = scheme.iterate_batch(state)
        pbatch, other = plain.iterate_batch(other)
        for item in batch:
            on, _, _ = events.window(item.recording, item.window.start, item.window.stop)
            held.append(len(on) > 0)
            if len(on):
                positions.add(int((max(on[0], item.window.start) - item.window.start) // (30 * S)))
        held_plain += [len(events.window(i.recording, i.window.start, i.window.stop)[0]) > 0
                       for i in pbatch]  # fmt: skip
    share = np.mean(held)
    assert 0.47 <= share <= 0.62, share  # at least the fraction (windows of 3 epochs)
    assert np.mean(held_plain) < 0.2  # rare without the weights
    assert positions == {0, 1, 2}  # the event at any position in its window
    # Deterministic and resumable like any RandomBatches stream.
    again, _ = scheme.iterate_batch(scheme.initial_state(seed=3).advance(19))
    assert again == batch
    with pytest.raises(Exception, match="fraction must be in"):
        event_weights(table, events, fraction=1.5)
    with pytest.raises(Exception, match="unknown event classes"):
        event_weights(table, events, classes=["spindle"])


def test_event_summary_and_inspect(stored, dataset, capsys):  # noqa: F811
    from ondabatches.cli import main
    from ondabatches.labels import event_summary

    labels, rows = stored
    summary = event_summary(labels)
    for code, cls in enumerate(CLASSES):
        mine = [(a, b) for events in rows.values() for a, b, c in events if c == code]
        assert summary[cls]["events"] == len(mine)
        assert summary[cls]["instants"] == sum(a == b for a, b in mine)
        assert summary[cls]["seconds"] == pytest.approx(sum(b - a for a, b in mine) / S)
        overlapping = 0
        for events in rows.values():
            same = sorted((a, b) for a, b, c in events if c == code)
            for i, (a, b) in enumerate(same):
                overlapping += any(j != i and a2 < b and a < b2 for j, (a2, b2) in enumerate(same))
        assert summary[cls]["overlapping"] == overlapping
    folder = str(dataset.signals.column("file_path")[0]).rsplit("/", 2)[0]
    main(["inspect", folder, "--no-check-files", "--events", labels.manifest])
    out = capsys.readouterr().out
    assert f"events of {labels.manifest}:" in out
    assert f"  arousal: {summary['arousal']['events']} events in" in out


def test_recording_ids_ending_in_zero_bytes(tmp_path):
    from benchmarks.events import _tables

    signals, annotations = _tables(300, 4, seconds=600)  # UUID(int=256) ends in a 0 byte
    labels = label_events(signals, annotations, column="event",
                          classes=["arousal", "apnea", "spindle"], out=str(tmp_path))  # fmt: skip
    assert len(labels.files) == 300
    for n in (1, 256, 300):
        on, _, _ = labels.window(uuid.UUID(int=n), 0, 600 * S)
        assert len(on) == 4
