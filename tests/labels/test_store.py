"""label_signals(store=...): labels written as computed, the table store_labels would give."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches import LabelError
from ondabatches.labels import (
    MissingLabelsWarning,
    StoredLabels,
    _stored,
    iter_labeled_signals,
    label_signals,
    sort_and_trim_spans,
    store_labels,
)
from ondabatches.onda import TimeSpan, annotations_table, signals_table
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, STAGES
from tests.dataset import dataset, labeled  # noqa: F401

S = 10**9


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _label(signals, annotations, **kw) -> pa.Table:
    return label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING, **kw
    )


def _assert_same_as_store_labels(signals, annotations, root: Path, **kw) -> pa.Table:
    """``label_signals(store=root)`` gives ``store_labels(label_signals(...), root)``: the
    same table and the same files, byte for byte."""
    fmt = kw.pop("store_format", "lpcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingLabelsWarning)
        expected = store_labels(_label(signals, annotations, **kw), root, file_format=fmt)
    expected_files = _files(root) if root.exists() else {}
    shutil.rmtree(root, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingLabelsWarning)
        got = _label(signals, annotations, store=root, store_format=fmt, **kw)
    assert got.equals(expected, check_metadata=True)
    assert got.schema == expected.schema
    assert (_files(root) if root.exists() else {}) == expected_files
    return got


@pytest.mark.parametrize("store_format", ["lpcm", "lpcm.zst"])
def test_stored_table_and_files_equal_store_labels(dataset, labeled, tmp_path, store_format):  # noqa: F811
    annotations = sort_and_trim_spans(dataset.annotations, epoch=EPOCH, by="recording")
    root = tmp_path / "labels-é"  # paths are UTF-8 in the column
    got = _assert_same_as_store_labels(
        dataset.signals, annotations, root, store_format=store_format
    )
    assert len(_files(root)) == labeled.num_rows
    for lazy, eager in zip(iter_labeled_signals(got), iter_labeled_signals(labeled), strict=True):
        assert isinstance(lazy.labels, StoredLabels)
        assert lazy.labels.file_path.startswith(str(root))
        assert lazy.labels.file_format == store_format
        np.testing.assert_array_equal(lazy.label_codes(), eager.label_codes())


def test_a_relative_root_is_recorded_absolute(dataset, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    annotations = sort_and_trim_spans(dataset.annotations, epoch=EPOCH, by="recording")
    got = _label(dataset.signals, annotations, store="labels")
    paths = got.column("labels").combine_chunks().field("file_path").to_pylist()
    assert all(p.startswith(str(tmp_path / "labels") + os.sep) for p in paths)
    assert all(Path(p).is_file() for p in paths)


# ----------------------------------------------------------------- generated tables


def _signal(recording: uuid.UUID, name: str, stop: int) -> dict:
    return dict(
        recording=recording, file_path=f"{recording}/{name}.lpcm", file_format="lpcm",
        span=TimeSpan(0, stop), sensor_type=name, sensor_label=name, channels=["c3"],
        sample_unit="uV", sample_resolution_in_unit=1.0, sample_offset_in_unit=0.0,
        sample_type="int16", sample_rate=128.0,
    )  # fmt: skip


@st.composite
def _tables(draw):
    """Signals (1-2 per recording, some recordings unannotated) and annotations whose
    recordings' rows are interleaved, with gaps when a fill code is used."""
    fill = draw(st.sampled_from([None, 0]))
    signals, annotations = [], []
    for r in range(draw(st.integers(1, 5))):
        rec = uuid.UUID(int=r + 1)
        names = draw(st.sampled_from([["eeg"], ["eeg", "eog"]]))
        epochs = draw(st.lists(st.integers(1, 4), max_size=5))  # run lengths
        gaps = [draw(st.integers(0, 2)) if fill is not None else 0 for _ in epochs]
        start = draw(st.integers(0, 3)) * EPOCH
        for i, (n, gap) in enumerate(zip(epochs, gaps, strict=True)):
            annotations.append(dict(
                recording=rec, id=uuid.UUID(int=1000 * r + i),
                span=TimeSpan(start, start + n * EPOCH), stage=draw(st.sampled_from(STAGES)),
            ))  # fmt: skip
            start += (n + gap) * EPOCH
        signals.extend(_signal(rec, name, start + EPOCH) for name in names)
    # Interleave the recordings' rows, each recording's in order (annotations are sorted).
    queues: dict[uuid.UUID, list[dict]] = {}
    for a in annotations:
        queues.setdefault(a["recording"], []).append(a)
    owners = draw(st.permutations([a["recording"] for a in annotations]))
    return signals, [queues[rec].pop(0) for rec in owners], fill


@settings(max_examples=25, deadline=None)
@given(_tables())
def test_stored_labels_equal_store_labels_on_generated_tables(tables):
    signals, annotations, fill = tables
    signals = signals_table(signals)
    columns = {"recording": pa.string(), "id": pa.string(), "stage": pa.string()}
    annotations = annotations_table(
        annotations
        or pa.table({k: pa.array([], t) for k, t in columns.items()}).append_column(
            "span", pa.array([], pa.struct([("start", pa.int64()), ("stop", pa.int64())]))
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        _assert_same_as_store_labels(signals, annotations, Path(tmp) / "labels", fill=fill)


# ----------------------------------------------------------------- nothing written on errors


def test_an_error_in_the_last_recording_writes_nothing(tmp_path):
    recs = [uuid.UUID(int=i + 1) for i in range(3)]
    signals = [_signal(rec, "eeg", 10 * EPOCH) for rec in recs]
    annotations = [
        dict(recording=rec, id=uuid.UUID(int=10 + i), span=TimeSpan(0, 2 * EPOCH), stage=stage)
        for i, (rec, stage) in enumerate(zip(recs, ["wake", "rem", "dreaming"], strict=True))
    ]
    with pytest.raises(LabelError, match="'dreaming'"):
        _label(signals, annotations, store=tmp_path / "labels")
    assert not (tmp_path / "labels").exists()


def test_rows_sharing_a_label_file_are_refused_before_writing(tmp_path):
    rec = uuid.UUID(int=1)
    signals = [_signal(rec, "eeg", 4 * EPOCH), _signal(rec, "eog", 4 * EPOCH)]
    signals[1]["file_path"] = f"elsewhere/{rec}/eeg.lpcm"  # same basename as row 0's
    annotations = [dict(recording=rec, id=uuid.UUID(int=2), span=TimeSpan(0, EPOCH), stage="rem")]
    with pytest.raises(LabelError, match=r"rows 0 and 1 .*labels_eeg\.lpcm"):
        _label(signals, annotations, store=tmp_path / "labels")
    assert not (tmp_path / "labels").exists()
    with pytest.raises(LabelError, match=r"rows 0 and 1 .*labels_eeg\.lpcm"):
        store_labels(_label(signals, annotations), tmp_path / "labels")
    assert not (tmp_path / "labels").exists()


# ----------------------------------------------------------------- S3


@pytest.mark.s3
def test_stored_on_s3_equals_store_labels(dataset, s3):  # noqa: F811
    annotations = sort_and_trim_spans(dataset.annotations, epoch=EPOCH, by="recording")
    root = s3.url("labels")
    expected = store_labels(_label(dataset.signals, annotations), root)
    keys = sorted(s3.fs.find(root))
    expected_files = {k: s3.fs.cat_file(k) for k in keys}
    s3.fs.rm(root, recursive=True)
    assert not s3.fs.find(root)
    got = _label(dataset.signals, annotations, store=root)
    assert got.equals(expected, check_metadata=True)
    assert {k: s3.fs.cat_file(k) for k in sorted(s3.fs.find(root))} == expected_files
    assert len(keys) == got.num_rows
    row = next(iter_labeled_signals(got))
    assert row.labels.file_path.startswith("s3://")
    np.testing.assert_array_equal(row.label_codes(), row.labels.load(row.label_span))


def _counting_writer(monkeypatch, fail_at=None):
    """Replace the single-file writer by one that records what it wrote and how many
    writes were in flight at once."""
    lock = threading.Lock()
    seen = {"now": 0, "max": 0, "written": []}

    def write(path, codes, info):
        with lock:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        time.sleep(0.01)
        with lock:
            seen["now"] -= 1
            if path == fail_at:
                raise OSError(f"cannot write {path}")
            seen["written"].append((path, int(codes[0])))

    monkeypatch.setattr(_stored, "write_label_file", write)
    return seen


def test_label_files_go_to_remote_storage_several_at_once(monkeypatch):
    seen = _counting_writer(monkeypatch)
    files = [(f"s3://bucket/labels/{i}.lpcm", np.array([i]), None) for i in range(40)]
    _stored.write_label_files(iter(files))
    assert sorted(seen["written"]) == sorted((path, int(c[0])) for path, c, _ in files)
    assert 1 < seen["max"] <= _stored.MAX_CONCURRENT_WRITES


def test_label_files_go_to_a_local_disk_one_after_another(monkeypatch, tmp_path):
    seen = _counting_writer(monkeypatch)
    _stored.write_label_files((str(tmp_path / f"{i}.lpcm"), np.array([i]), None) for i in range(5))
    assert seen["max"] == 1 and len(seen["written"]) == 5


def test_a_failed_remote_label_write_is_raised(monkeypatch):
    seen = _counting_writer(monkeypatch, fail_at="s3://bucket/labels/7.lpcm")
    files = [(f"s3://bucket/labels/{i}.lpcm", np.array([i]), None) for i in range(20)]
    with pytest.raises(OSError, match="cannot write s3://bucket/labels/7.lpcm"):
        _stored.write_label_files(files)
    assert seen["now"] == 0  # nothing still in flight once the error is raised
