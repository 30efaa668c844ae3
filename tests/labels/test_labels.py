"""label_signals, sort_and_trim_spans: OndaBatches' checks on in-memory and generated tables."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from ondabatches import LabelError
from ondabatches.errors import SpanError
from ondabatches.labels import (
    MissingLabelsWarning,
    iter_labeled_signals,
    label_signals,
    sort_and_trim_spans,
)
from ondabatches.onda import TimeSpan, annotations_table, iter_annotations
from ondabatches.onda._arrow import span_bounds
from ondabatches.synthetic import EPOCH, STAGE_ENCODING
from tests.dataset import dataset, labeled  # noqa: F401

S = 10**9
REC = uuid.UUID(int=7)


SPAN = TimeSpan(0, 600 * S)


def _signal(recording=REC, span=SPAN, **kw):
    row = dict(
        recording=recording, file_path="x.lpcm", file_format="lpcm", span=span, sensor_type="eeg",
        sensor_label="eeg", channels=["c3"], sample_unit="uV", sample_resolution_in_unit=1.0,
        sample_offset_in_unit=0.0, sample_type="int16", sample_rate=128.0,
    )  # fmt: skip
    row.update(kw)
    return row


def _ann(spans, stages, recording=REC):
    return [
        dict(recording=recording, id=uuid.UUID(int=i + 1), span=TimeSpan(a * S, b * S), stage=st)
        for i, ((a, b), st) in enumerate(zip(spans, stages, strict=True))
    ]


def _label(signals, annotations, **kw):
    kw.setdefault("encoding", STAGE_ENCODING)
    return label_signals(signals, annotations, labels_column="stage", epoch=30 * S, **kw)


def test_runs_become_repeated_codes_and_last_span_is_floored():
    table = _label([_signal()], _ann([(30, 90), (90, 120), (120, 200)], ["wake", "rem", "nrem2"]))
    row = next(iter_labeled_signals(table))
    assert row.label_span == TimeSpan(30 * S, 180 * S)  # 170 s floored to 150 s
    assert row.label_codes().tolist() == [1, 1, 5, 3, 3]
    assert row.labels.info.sample_type == "uint8" and row.labels.info.channels == ("label",)
    assert row.labels.info.sample_rate == pytest.approx(1 / 30)
    assert table.schema.metadata[b"legolas_schema_qualified"] == b"labeled.signal@2>onda.signal@2"


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([(0, 30), (60, 90)], "not contiguous"),
        ([(0, 45), (45, 90)], "not a whole number"),
        ([(30, 60), (0, 30)], "not sorted"),
        ([(0, 60), (30, 90)], "overlap"),
    ],
)
def test_bad_annotations_are_label_errors(spans, message):
    with pytest.raises(LabelError, match=message) as info:
        _label([_signal()], _ann(spans, ["wake"] * len(spans)))
    assert str(REC) in str(info.value)


def test_unknown_label_names_it():
    with pytest.raises(LabelError, match="'dreaming'"):
        _label([_signal()], _ann([(0, 30)], ["dreaming"]))


def test_an_encoding_that_is_not_a_mapping_is_a_label_error():
    with pytest.raises(LabelError, match=r"encoding must map each label .* got a list"):
        _label([_signal()], _ann([(0, 30)], ["wake"]), encoding=["wake", "rem"])


def test_label_span_outside_signal_is_an_error_naming_the_recording():
    with pytest.raises(SpanError, match=str(REC)):
        _label([_signal(span=TimeSpan(0, 60 * S))], _ann([(0, 30), (30, 90)], ["wake", "rem"]))


def test_signals_without_labels_are_dropped_with_a_warning_naming_them():
    other = uuid.UUID(int=99)
    with pytest.warns(MissingLabelsWarning, match=str(other)):
        table = _label([_signal(), _signal(recording=other)], _ann([(0, 30)], ["wake"]))
    assert table.num_rows == 1
    assert next(iter_labeled_signals(table)).signal.recording == REC


def test_fill_codes_gaps_and_roundto_absorbs_small_errors():
    table = _label([_signal()], _ann([(0, 30), (90, 120)], ["wake", "rem"]), fill=0)
    assert next(iter_labeled_signals(table)).label_codes().tolist() == [1, 0, 0, 5]
    shaggy = [dict(a, span=TimeSpan(a["span"].start, a["span"].stop + (2 * 10**8 if i == 0 else 0)))
              for i, a in enumerate(_ann([(0, 30), (30, 60)], ["wake", "rem"]))]  # fmt: skip
    shaggy[1]["span"] = TimeSpan(30 * S + 2 * 10**8, 60 * S)
    with pytest.raises(LabelError):
        _label([_signal()], shaggy)
    table = _label([_signal()], shaggy, roundto=S)
    assert next(iter_labeled_signals(table)).label_codes().tolist() == [1, 5]


def test_wide_codes_use_a_wider_type():
    table = _label([_signal()], _ann([(0, 30)], ["wake"]), encoding={"wake": 300})
    row = next(iter_labeled_signals(table))
    assert row.labels.info.sample_type == "uint16" and row.label_codes().tolist() == [300]


def test_sort_and_trim_spans_sorts_per_group_and_trims_last():
    rows = _ann([(60, 100), (0, 30), (30, 60)], ["a", "b", "c"]) + _ann(
        [(0, 20)], ["d"], recording=uuid.UUID(int=8)
    )
    out = sort_and_trim_spans(annotations_table(rows[::-1]), epoch=30 * S, by="recording")
    got = [(a.recording, a.span, a.extra["stage"]) for a in iter_annotations(out)]
    assert got == [
        (REC, TimeSpan(0, 30 * S), "b"),
        (REC, TimeSpan(30 * S, 60 * S), "c"),
        (REC, TimeSpan(60 * S, 90 * S), "a"),
    ]  # recording 8's only span is shorter than an epoch: dropped


def test_generated_dataset_labels_follow_the_annotations(dataset, labeled):  # noqa: F811
    assert labeled.num_rows == dataset.signals.num_rows
    trimmed = sort_and_trim_spans(dataset.annotations, epoch=EPOCH, by="recording")
    starts, stops = span_bounds(trimmed.column("span"))
    by_recording: dict = {}
    for a, start, stop in zip(iter_annotations(trimmed), starts, stops, strict=True):
        by_recording.setdefault(a.recording, []).append((int(start), int(stop), a.extra["stage"]))
    for row in iter_labeled_signals(labeled):
        anns = by_recording[row.signal.recording]
        assert row.label_span.start == anns[0][0]
        assert row.signal.span.contains(row.label_span)
        expected = np.concatenate(
            [np.full((b - a) // EPOCH, STAGE_ENCODING[st]) for a, b, st in anns]
        )
        np.testing.assert_array_equal(row.label_codes(), expected)
        assert row.label_span.duration == len(expected) * EPOCH


def test_empty_annotations_table_drops_everything():
    span_type = pa.struct([("start", pa.int64()), ("stop", pa.int64())])
    columns = {"recording": pa.string(), "id": pa.string(), "span": span_type, "stage": pa.string()}
    empty = annotations_table(pa.table({k: pa.array([], t) for k, t in columns.items()}))
    with pytest.warns(MissingLabelsWarning):
        assert _label([_signal()], empty).num_rows == 0
