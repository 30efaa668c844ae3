"""Onda tables through pandas and polars and back, UUIDs intact."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from ondabatches import SchemaError
from ondabatches.labels import iter_labeled_signals, labeled_signals_table
from ondabatches.onda import annotations_table, signals_table, to_pandas, to_polars
from ondabatches.synthetic import labeled_table, make_dataset

pl = pytest.importorskip("polars")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_recordings=2, duration=120 * 10**9,
                        sample_rate=32.0)  # fmt: skip


def frames(table: pa.Table) -> dict[str, object]:
    return {
        "polars.from_arrow": pl.from_arrow(table),
        "to_polars strings": to_polars(table),
        "to_polars objects": to_polars(table, uuids="uuid"),
        "to_pandas objects": to_pandas(table),
        "to_pandas strings": to_pandas(table, uuids="string"),
    }


def test_signals_and_annotations_round_trip(dataset):
    for table, normalize in ((dataset.signals, signals_table),
                             (dataset.annotations, annotations_table)):  # fmt: skip
        for how, frame in frames(table).items():
            back = normalize(frame)
            assert back.equals(table), how
            assert back.column("recording").to_pylist() == table.column("recording").to_pylist()


def test_labeled_table_round_trip():
    table = labeled_table(2, duration=300 * 10**9)
    for how, frame in frames(table).items():
        back = labeled_signals_table(frame)
        assert back.equals(table), how
        rows = list(iter_labeled_signals(back))
        assert [r.signal.recording for r in rows] == table.column("recording").to_pylist()


def test_uuid_views(dataset):
    recordings = dataset.signals.column("recording").to_pylist()
    assert isinstance(recordings[0], uuid.UUID)
    assert to_polars(dataset.signals)["recording"].to_list() == [str(r) for r in recordings]
    assert to_pandas(dataset.signals)["recording"].tolist() == recordings
    assert to_pandas(dataset.signals, uuids="string")["recording"].tolist() == [
        str(r) for r in recordings
    ]
    with pytest.raises(ValueError, match="uuids must be one of"):
        to_polars(dataset.signals, uuids="bytes")


def test_bad_binary_uuids_name_the_column(dataset):
    df = pl.from_arrow(dataset.annotations)
    # Tagged UUID bytes of the wrong length: a typed error naming the column and row.
    arrow = df.to_arrow()
    short = pa.array([b"x" * 15] * arrow.num_rows, pa.large_binary())
    tagged = pa.ExtensionArray.from_storage(type(arrow.column("id").type)(pa.large_binary()), short)
    with pytest.raises(SchemaError, match=r"column 'id' row 0: a UUID needs 16 bytes, got 15"):
        annotations_table(arrow.set_column(1, "id", tagged))
    # Untagged bytes: the byte order is unknown, refused naming the column.
    plain = pa.array([b"x" * 16] * arrow.num_rows, pa.large_binary())
    with pytest.raises(SchemaError, match=r"column 'id'.*large_binary without the JuliaLang"):
        annotations_table(arrow.set_column(1, "id", plain))
