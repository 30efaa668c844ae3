"""With lazy labels, loading the table and drawing specs read no label file; materializing
a batch reads exactly each window's labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ondabatches.onda._lpcm as lpcm
from ondabatches.batches import BatchItem, RandomBatches
from ondabatches.errors import SampleFileNotFoundError
from ondabatches.labels import iter_labeled_signals, read_labeled_signals
from ondabatches.materialize import materialize_batch
from ondabatches.scale import make_scale_dataset
from ondabatches.synthetic import EPOCH


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_scale_dataset(tmp_path_factory.mktemp("lazy"), n_recordings=12, known_recordings=0)


def test_table_and_specs_need_no_label_file(dataset):
    hidden = dataset.labels_root.with_name("labels-hidden")
    dataset.labels_root.rename(hidden)
    try:
        labeled = read_labeled_signals(dataset.labeled_path)
        batches = RandomBatches(labeled, batch_size=8, batch_duration=4 * EPOCH, n_channels=4)
        state = batches.initial_state(seed=3)
        for _ in range(50):
            items, state = batches.iterate_batch(state)
            for item in items:
                assert BatchItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
        # The labels are needed only now, and their absence is named.
        with pytest.raises(SampleFileNotFoundError, match="labels_eeg.lpcm"):
            materialize_batch(items)
    finally:
        hidden.rename(dataset.labels_root)


def test_materializing_reads_only_the_windows_labels(dataset, monkeypatch):
    labeled = read_labeled_signals(dataset.labeled_path)
    batches = RandomBatches(labeled, batch_size=6, batch_duration=4 * EPOCH)
    items, _ = batches.iterate_batch(batches.initial_state(seed=5))
    reads: list[tuple[str, int, int]] = []
    real = lpcm.read_at

    def spy(file, offset, n, url):
        reads.append((url, offset, n))
        return real(file, offset, n, url)

    monkeypatch.setattr(lpcm, "read_at", spy)
    _, y = materialize_batch(items)
    label_reads = [r for r in reads if r[0].startswith(str(dataset.labels_root))]
    expected = [
        (str(dataset.labels_root / str(it.recording) / "labels_eeg.lpcm"),
         it.window.start // EPOCH, 4)  # one uint8 per epoch, from the window's first epoch
        for it in items
    ]  # fmt: skip
    assert sorted(label_reads) == sorted(expected)
    rows = {r.signal.recording: r for r in iter_labeled_signals(labeled)}
    for i, item in enumerate(items):
        np.testing.assert_array_equal(y[i, 0], rows[item.recording].label_codes(item.window))
