"""make_scale_dataset: production-size apparent data in seconds, almost nothing on disk."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pyarrow as pa
import pytest

from ondabatches.batches import RandomBatches
from ondabatches.labels import iter_labeled_signals, label_signals, read_labeled_signals
from ondabatches.materialize import materialize_batch
from ondabatches.onda import TimeSpan, read_annotations, read_signals
from ondabatches.onda._arrow import timespan_array
from ondabatches.scale import ScaleDataset, known_pattern, make_scale_dataset
from ondabatches.synthetic import EPOCH, STAGE_ENCODING

from .conftest import N_RECORDINGS

SAMPLES = 10**8
FILE_BYTES = SAMPLES * 19 * 2


def test_generator_is_fast_and_files_are_full_size_but_sparse(scale_timed):
    ds, seconds = scale_timed
    assert seconds < 15, f"generating {N_RECORDINGS} recordings took {seconds:.1f} s"
    paths = [ds.sample_path(i) for i in range(N_RECORDINGS)]
    assert {p.stat().st_size for p in paths} == {FILE_BYTES}  # 3.8 GB each
    on_disk = sum(p.stat().st_blocks * 512 for p in paths)
    # Only the known blocks are real: 4 recordings x 2 blocks x 60 s x 19 ch x int16.
    block_bytes = 4 * 2 * 60 * 256 * 19 * 2
    assert block_bytes <= on_disk < block_bytes + 4 * 2**20
    everything = sum(p.stat().st_blocks * 512 for p in ds.root.rglob("*") if p.is_file())
    assert everything < 32 * 2**20 < N_RECORDINGS * FILE_BYTES // 1000


def test_tables_describe_every_recording_end_to_end(scale):
    signals = read_signals(scale.signals_path)
    annotations = read_annotations(scale.annotations_path)
    assert signals.num_rows == N_RECORDINGS
    assert signals.column("recording").to_pylist() == list(scale.recordings)
    n_epochs = SAMPLES // 256 // 30  # 390,625 s of signal
    labeled = read_labeled_signals(scale.labeled_path)
    for row in iter_labeled_signals(labeled):
        assert row.label_span == TimeSpan(0, n_epochs * EPOCH)
        assert row.signal.n_samples == SAMPLES
        assert row.labels.file_path.startswith(str(scale.labels_root))
        assert os.path.getsize(row.labels.file_path) == n_epochs  # one uint8 per epoch
    # Runs of 5 to 60 min, each a change of stage: ~200 per recording, not 13,000.
    per_recording = annotations.num_rows / N_RECORDINGS
    assert n_epochs / 120 <= per_recording <= n_epochs / 10 + 1
    stages = annotations.column("stage").to_pylist()
    recs = annotations.column("recording").to_pylist()
    assert all(
        a != b for a, b, r, s in zip(stages, stages[1:], recs, recs[1:], strict=False) if r == s
    )


def test_stored_labels_equal_labels_computed_from_the_annotations(scale):
    lazy = read_labeled_signals(scale.labeled_path)
    eager = label_signals(
        read_signals(scale.signals_path),
        read_annotations(scale.annotations_path),
        labels_column="stage",
        epoch=EPOCH,
        encoding=STAGE_ENCODING,
    )
    for i in (0, N_RECORDINGS - 1):
        a = next(iter_labeled_signals(lazy.slice(i, 1)))
        b = next(iter_labeled_signals(eager.slice(i, 1)))
        window = TimeSpan(a.label_span.stop - 600 * EPOCH, a.label_span.stop)
        np.testing.assert_array_equal(a.label_codes(window), b.label_codes(window))


def test_known_blocks_hold_the_pattern_and_holes_read_zero(scale):
    info = scale.info
    for index in (0, 3, 4):
        with open(scale.sample_path(index), "rb") as f:
            for span in scale.known_spans:
                rows = range(span.start * 256 // 10**9, span.stop * 256 // 10**9)
                raw = os.pread(f.fileno(), len(rows) * info.bytes_per_sample,
                               rows.start * info.bytes_per_sample)  # fmt: skip
                got = np.frombuffer(raw, dtype="<i2").reshape(-1, 19).T
                expected = known_pattern(index, 19, rows) if index < 4 else 0
                np.testing.assert_array_equal(got, expected)
                np.testing.assert_array_equal(got, scale.expected(index, span))


def _around(span: TimeSpan, n_epochs: int, labeled: TimeSpan) -> TimeSpan:
    # Widen a known block, inside the labels, so that windows straddle it and the holes.
    pad = n_epochs * EPOCH
    return TimeSpan(max(labeled.start, span.start - pad), min(labeled.stop, span.stop + pad))


@pytest.mark.parametrize("block", [0, 1])
def test_batches_materialize_the_known_values_at_known_blocks(scale, block):
    lazy = read_labeled_signals(scale.labeled_path).slice(0, 4)  # the known recordings
    labeled = next(iter_labeled_signals(lazy.slice(0, 1))).label_span
    span = _around(scale.known_spans[block], 2, labeled)
    lazy = lazy.set_column(
        lazy.column_names.index("label_span"),
        "label_span",
        timespan_array([span.start] * 4, [span.stop] * 4),
    )
    batches = RandomBatches(lazy, batch_size=16, batch_duration=2 * EPOCH)
    state = batches.initial_state(seed=block)
    hits = 0
    for _ in range(3):
        items, state = batches.iterate_batch(state)
        x, y = materialize_batch(items)
        assert x.shape == (16, 19, 60 * 256) and y.shape == (16, 1, 2)
        for i, item in enumerate(items):
            expected = scale.expected(item.recording, item.window)
            np.testing.assert_array_equal(x[i], expected * np.float32(0.5))
            hits += int(np.count_nonzero(expected))
            row = next(iter_labeled_signals(lazy.slice(scale.recordings.index(item.recording), 1)))
            np.testing.assert_array_equal(y[i, 0], row.label_codes(item.window))
    assert hits > 0  # the windows did cover known values, not only holes


def test_apparent_size_follows_the_arguments(tmp_path):
    ds = make_scale_dataset(
        tmp_path, n_recordings=3, n_channels=21, n_samples=10**7, sample_rate=200.0,
        sample_type="float32", known_recordings=None,
    )  # fmt: skip
    assert ds.info.channels[-2:] == ("ch19", "ch20") and ds.known_recordings == 3
    assert ds.sample_path(2).stat().st_size == 10**7 * 21 * 4
    assert ScaleDataset.open(tmp_path) == ds
    rows = read_labeled_signals(ds.labeled_path)
    assert rows.num_rows == 3 and rows.column("sample_type").to_pylist() == ["float32"] * 3
    assert isinstance(ds.recordings[0], uuid.UUID) and ds.recordings[0].version == 4
    with pa.memory_map(str(ds.signals_path)) as f:  # the tables are plain Arrow IPC files
        assert pa.ipc.open_file(f).read_all().num_rows == 3
    with pytest.raises(ValueError, match="epochs"):
        make_scale_dataset(tmp_path / "tiny", n_recordings=1, n_samples=1000)
