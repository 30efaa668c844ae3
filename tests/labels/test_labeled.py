"""Labeled rows: loading, sub-spans, stored (lazy) labels and the Arrow round trip."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ondabatches.errors import SpanError
from ondabatches.labels import (
    StoredLabels,
    iter_labeled_signals,
    load_labeled_signal,
    read_labeled_signals,
    store_labels,
    sub_label_span,
    write_labeled_signals,
)
from ondabatches.onda import TimeSpan, load, sample_range
from ondabatches.synthetic import EPOCH
from tests.dataset import dataset, labeled, lazy_labeled  # noqa: F401

MIN = 60 * 10**9


def test_load_labeled_signal_equals_a_slice_of_the_whole_file(labeled):  # noqa: F811
    for row in iter_labeled_signals(labeled):
        samples, labels = load_labeled_signal(row)
        whole = load(row.signal).data
        rows = sample_range(
            row.label_span.translate(-row.signal.span.start), row.signal.sample_rate
        )
        np.testing.assert_array_equal(samples.data, whole[:, rows.start : rows.stop])
        assert labels.data.shape == (1, row.n_labels)
        assert samples.info == row.signal.info


def test_sub_label_span_gives_fewer_samples_and_labels(labeled):  # noqa: F811
    row = next(iter_labeled_signals(labeled))
    start = row.label_span.start
    part = sub_label_span(row, TimeSpan(start + 2 * MIN, start + 4 * MIN))
    samples, labels = load_labeled_signal(part)
    assert labels.data.shape == (1, 4)
    np.testing.assert_array_equal(labels.data[0], row.label_codes()[4:8])
    assert samples.n_samples == 2 * 60 * row.signal.sample_rate
    one_row = sub_label_span(labeled.slice(0, 1), part.label_span)
    assert next(iter_labeled_signals(one_row)) == part
    with pytest.raises(SpanError, match="not inside"):
        sub_label_span(row, TimeSpan(0, row.label_span.stop + EPOCH))
    with pytest.raises(SpanError, match="epochs"):
        sub_label_span(row, TimeSpan(start + 1, start + EPOCH + 1))


def test_stored_labels_load_lazily_and_equal_eager(labeled, lazy_labeled):  # noqa: F811
    for eager, lazy in zip(
        iter_labeled_signals(labeled), iter_labeled_signals(lazy_labeled), strict=True
    ):
        assert isinstance(lazy.labels, StoredLabels)
        assert lazy.labels.file_path.endswith(
            "labels_" + eager.signal.file_path.rsplit("/", 1)[1].split(".")[0] + ".lpcm"
        )
        np.testing.assert_array_equal(lazy.label_codes(), eager.label_codes())
        window = TimeSpan(eager.label_span.start + EPOCH, eager.label_span.start + 3 * EPOCH)
        np.testing.assert_array_equal(lazy.label_codes(window), eager.label_codes()[1:3])
        a, b = load_labeled_signal(eager), load_labeled_signal(lazy)
        assert a[0] == b[0] and a[1] == b[1]


def test_store_labels_twice_keeps_references(lazy_labeled, tmp_path):  # noqa: F811
    again = store_labels(lazy_labeled, tmp_path)
    assert again.column("labels").to_pylist() == lazy_labeled.column("labels").to_pylist()
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("which", ["eager", "lazy"])
def test_write_read_round_trip(which, labeled, lazy_labeled, tmp_path):  # noqa: F811
    table = labeled if which == "eager" else lazy_labeled
    path = tmp_path / "labeled.arrow"
    write_labeled_signals(path, table)
    back = read_labeled_signals(path)
    assert back.schema.metadata[b"legolas_schema_qualified"] == b"labeled.signal@2>onda.signal@2"
    assert list(iter_labeled_signals(back)) == list(iter_labeled_signals(table))


def test_relative_label_paths_resolve_against_the_table(lazy_labeled, tmp_path):  # noqa: F811
    import pyarrow as pa

    from ondabatches.labels._schema import LABELS_TYPE

    labels = lazy_labeled.column("labels").combine_chunks()
    rows = list(iter_labeled_signals(lazy_labeled))
    target = tmp_path / "copied"
    target.mkdir()
    relative = []
    for row in rows:
        name = f"{row.signal.recording}-labels.lpcm"
        shutil.copyfile(row.labels.file_path, target / name)
        relative.append(name)
    fields = [
        pa.array(relative) if f.name == "file_path" else labels.field(f.name) for f in LABELS_TYPE
    ]
    moved = lazy_labeled.set_column(
        lazy_labeled.column_names.index("labels"), "labels",
        pa.StructArray.from_arrays(fields, fields=list(LABELS_TYPE)),
    )  # fmt: skip
    write_labeled_signals(target / "t.arrow", moved)
    back = list(iter_labeled_signals(read_labeled_signals(target / "t.arrow")))
    for a, b in zip(back, rows, strict=True):
        assert a.labels.file_path == str(target / f"{b.signal.recording}-labels.lpcm")
        np.testing.assert_array_equal(a.label_codes(), b.label_codes())


def test_store_labels_with_a_relative_root_survives_a_round_trip(
    labeled,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> None:
    from ondabatches.labels import read_labeled_signals, store_labels, write_labeled_signals

    monkeypatch.chdir(tmp_path)
    lazy = store_labels(labeled, "labels")
    (tmp_path / "out").mkdir()
    write_labeled_signals("out/lazy.arrow", lazy)
    back = read_labeled_signals("out/lazy.arrow")
    assert back.schema.field("file_path").nullable == lazy.schema.field("file_path").nullable
    for a, b in zip(iter_labeled_signals(back), iter_labeled_signals(labeled), strict=True):
        np.testing.assert_array_equal(a.label_codes(), b.label_codes())
