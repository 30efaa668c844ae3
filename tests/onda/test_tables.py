"""Onda signal and annotation tables: normalizing, round trips, path resolution and errors."""

from __future__ import annotations

import pickle
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from ondabatches import SchemaError
from ondabatches.errors import SampleFileNotFoundError
from ondabatches.onda import (
    Annotation,
    JuliaUUIDType,
    SamplesInfo,
    Signal,
    TimeSpan,
    TimeSpanType,
    annotations_table,
    iter_annotations,
    iter_signals,
    read_annotations,
    read_signals,
    signals_from_table,
    signals_table,
    to_pandas,
    write_annotations,
    write_signals,
)

S = 1_000_000_000
REC_A = uuid.UUID("176ecfcf-d4c7-49ba-adec-f338d0a0c01f")
REC_B = uuid.UUID("bf11f8f0-36a4-4ef6-b339-9b4f98f72af2")


def make_signals(file_paths=("a_eeg.lpcm", "b_ecg.lpcm.zst")) -> list[Signal]:
    eeg = SamplesInfo("eeg", ("c3", "c4", "o1"), "microvolt", 0.5, -1.0, "int16", 128.0)
    ecg = SamplesInfo("ecg", ("avl",), "microvolt", 0.25, 0.0, "float32", 143.5)
    return [
        Signal(REC_A, file_paths[0], "lpcm", TimeSpan(20 * S, 260 * S), "eeg", eeg,
               {"site": "lab-1", "quality": 0.9, "montage": uuid.UUID(int=7),
                "label_span": TimeSpan(30 * S, 90 * S)}),
        Signal(REC_B, file_paths[1], "lpcm.zst", TimeSpan(8 * S, 548 * S), "ecg", ecg,
               {"site": "lab-2", "quality": None, "montage": None, "label_span": None}),
    ]  # fmt: skip


def make_annotations() -> list[Annotation]:
    return [
        Annotation(REC_A, uuid.UUID(int=101), TimeSpan(0, 30 * S), {"stage": "wake"}),
        Annotation(REC_A, uuid.UUID(int=102), TimeSpan(30 * S, 90 * S), {"stage": "nrem1"}),
        Annotation(REC_B, uuid.UUID(int=103), TimeSpan(0, 30 * S), {"stage": "rem"}),
    ]


def signal_rows() -> list[dict]:
    return [s.to_row() for s in make_signals()]


SIGNAL_SOURCES = {
    "signals": make_signals,
    "rows": signal_rows,
    "pandas": lambda: pd.DataFrame(signal_rows()),
    "arrow": lambda: signals_table(make_signals()),
    "arrow_from_to_pandas": lambda: signals_table(to_pandas(signals_table(make_signals()))),
}


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("source", sorted(SIGNAL_SOURCES))
def test_signals_round_trip(tmp_path, source):
    path = tmp_path / "signals.arrow"
    write_signals(path, SIGNAL_SOURCES[source]())
    back = signals_from_table(read_signals(path, resolve_paths=False))
    assert back == make_signals()
    assert back[0].extra == {"site": "lab-1", "quality": 0.9, "montage": uuid.UUID(int=7),
                             "label_span": TimeSpan(30 * S, 90 * S)}  # fmt: skip


def test_signals_table_layout():
    table = signals_table(make_signals())
    assert table.schema.metadata == {
        b"legolas_schema_qualified": b"onda.signal@2>onda.samples-info@2"
    }
    assert table.column_names[-4:] == ["site", "quality", "montage", "label_span"]
    assert all(not table.schema.field(n).nullable for n in table.column_names[:-4])
    assert isinstance(table.schema.field("montage").type, JuliaUUIDType)
    assert isinstance(table.schema.field("label_span").type, TimeSpanType)
    assert table.schema.field("channels").type == pa.list_(
        pa.field("", pa.string(), nullable=False)
    )
    assert table.column("montage").to_pylist() == [uuid.UUID(int=7), None]


ANNOTATION_SOURCES = {
    "annotations": make_annotations,
    "rows": lambda: [a.to_row() for a in make_annotations()],
    "pandas": lambda: pd.DataFrame([a.to_row() for a in make_annotations()]),
    "arrow": lambda: annotations_table(make_annotations()),
    "to_pandas": lambda: to_pandas(annotations_table(make_annotations())),
}


@pytest.mark.parametrize("source", sorted(ANNOTATION_SOURCES))
def test_annotations_round_trip(tmp_path, source):
    path = tmp_path / "stages.arrow"
    write_annotations(path, ANNOTATION_SOURCES[source]())
    table = read_annotations(path)
    assert table.column_names == ["recording", "id", "span", "stage"]
    assert table.schema.field("stage").type == pa.string()
    assert list(iter_annotations(table)) == make_annotations()


def test_annotation_new_gives_fresh_version_4_ids():
    annotations = [
        Annotation.new(str(REC_A), (i * 30 * S, (i + 1) * 30 * S), stage="wake") for i in range(3)
    ]
    assert len({a.id for a in annotations}) == 3
    assert all(a.id.version == 4 and a.recording == REC_A for a in annotations)
    assert annotations[1].extra == {"stage": "wake"}
    assert annotations[1].to_row()["span"] == TimeSpan(30 * S, 60 * S)
    assert Annotation.from_row(annotations[1].to_row()) == annotations[1]
    assert list(iter_annotations(annotations)) == annotations


def test_extension_schema_name_is_kept(tmp_path):
    table = annotations_table(make_annotations())
    table = table.replace_schema_metadata(
        {"legolas_schema_qualified": "sleep.stage@1>onda.annotation@1"}
    )
    write_annotations(tmp_path / "a.arrow", table)
    back = read_annotations(tmp_path / "a.arrow")
    assert back.schema.metadata[b"legolas_schema_qualified"] == b"sleep.stage@1>onda.annotation@1"


def test_flexible_arrow_inputs_are_converted():
    """UUID strings, arrow.uuid, durations in other units and int64 ns all become Julia's layout."""
    ids = [uuid.UUID(int=1), uuid.UUID(int=2)]
    table = pa.table(
        {
            "recording": pa.array([str(REC_A), str(REC_B)]),
            "id": pa.array([u.bytes for u in ids], type=pa.uuid()),
            "span": pa.StructArray.from_arrays(
                [
                    pa.array([0, 30_000_000], pa.duration("us")),
                    pa.array([30 * S, 60 * S], pa.int64()),
                ],
                names=["start", "stop"],
            ),
            "stage": pa.array(["wake", "rem"], pa.large_string()),
        }
    )
    normalized = annotations_table(table)
    assert [(a.recording, a.id, a.span) for a in iter_annotations(normalized)] == [
        (REC_A, ids[0], TimeSpan(0, 30 * S)),
        (REC_B, ids[1], TimeSpan(30 * S, 60 * S)),
    ]
    assert normalized.schema.field("span").type.storage_type.equals(
        annotations_table(make_annotations()).schema.field("span").type.storage_type,
        check_metadata=True,
    )
    # Extra columns from an Arrow table keep their own type.
    assert normalized.schema.field("stage").type == pa.large_string()


def test_empty_inputs_give_empty_tables():
    assert signals_table([]).num_rows == 0
    assert signals_table([]).schema.names[-1] == "sensor_label"
    assert annotations_table([]).column_names == ["recording", "id", "span"]


def test_tables_pickle_with_their_extension_types():
    table = signals_table(make_signals())
    assert pickle.loads(pickle.dumps(table)).equals(table)


def test_ten_thousand_rows_convert_quickly():
    base = signals_table(make_signals())
    big = pa.concat_tables([base] * 5000)
    start = time.perf_counter()
    signals = signals_from_table(big)
    annotations = list(iter_annotations(annotations_table(make_annotations() * 3334)))
    elapsed = time.perf_counter() - start
    assert len(signals) == 10_000 and len(annotations) == 10_002
    assert signals[9_999] == make_signals()[1]
    assert elapsed < 5.0, f"10,000 rows took {elapsed:.2f} s"


# ----------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_table_folder(tmp_path):
    folder = tmp_path / "dataset"
    write_signals(folder / "signals.arrow", make_signals(("a_eeg.lpcm", "../other/b_ecg.lpcm.zst")))
    paths = [s.file_path for s in iter_signals(read_signals(folder / "signals.arrow"))]
    assert paths == [str(folder / "a_eeg.lpcm"), str(tmp_path / "other" / "b_ecg.lpcm.zst")]
    raw = [
        s.file_path
        for s in iter_signals(read_signals(folder / "signals.arrow", resolve_paths=False))
    ]
    assert raw == ["a_eeg.lpcm", "../other/b_ecg.lpcm.zst"]


def test_relative_paths_resolve_against_a_url_prefix():
    url = "memory://ondabatches-test-tables/run/signals.arrow"
    try:
        write_signals(url, make_signals(("a_eeg.lpcm", "s3://bucket/b_ecg.lpcm.zst")))
        table = read_signals(url)
    finally:
        fsspec.filesystem("memory").rm("/ondabatches-test-tables", recursive=True)
    assert table.column("file_path").to_pylist() == [
        "memory://ondabatches-test-tables/run/a_eeg.lpcm",
        "s3://bucket/b_ecg.lpcm.zst",
    ]


def test_reroot_mapping_matches_whole_segments_longest_first(tmp_path):
    paths = ("/old/data/a_eeg.lpcm", "/old/data2/b_ecg.lpcm.zst")
    write_signals(tmp_path / "s.arrow", make_signals(paths))
    reroot = {"/old": "/x", "/old/data/": "/new/data"}
    table = read_signals(tmp_path / "s.arrow", reroot=reroot)
    assert table.column("file_path").to_pylist() == [
        "/new/data/a_eeg.lpcm",
        "/x/data2/b_ecg.lpcm.zst",
    ]


def test_reroot_runs_before_resolution(tmp_path):
    write_signals(tmp_path / "s.arrow", make_signals(("/elsewhere/a_eeg.lpcm", "b_ecg.lpcm.zst")))
    table = read_signals(tmp_path / "s.arrow", reroot=lambda p: p.rsplit("/", 1)[-1])
    assert table.column("file_path").to_pylist() == [
        str(tmp_path / "a_eeg.lpcm"),
        str(tmp_path / "b_ecg.lpcm.zst"),
    ]


# ----------------------------------------------------------------------------- errors


def test_missing_column_is_named():
    rows = [{k: v for k, v in row.items() if k != "sample_rate"} for row in signal_rows()]
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['sample_rate'\]"):
        signals_table(rows)
    table = annotations_table(make_annotations()).drop_columns(["id"])
    with pytest.raises(SchemaError, match=r"\['id'\]"):
        annotations_table(table)


def test_missing_key_in_one_row_is_named():
    rows = signal_rows()
    del rows[1]["span"]
    with pytest.raises(SchemaError, match=r"row 1 has no 'span'"):
        signals_table(rows)


def test_mistyped_column_names_expected_and_actual_types():
    table = signals_table(make_signals())
    i = table.schema.get_field_index("sample_rate")
    bad = table.set_column(i, "sample_rate", pa.array(["128", "143.5"]))
    with pytest.raises(
        SchemaError, match=r"column 'sample_rate': expected float64 \(double\), got string"
    ):
        signals_table(bad)
    bad = table.set_column(table.schema.get_field_index("channels"), "channels", pa.array([1, 2]))
    with pytest.raises(SchemaError, match=r"column 'channels': expected list<string>, got int64"):
        signals_table(bad)


def test_python_value_of_wrong_type_names_row():
    rows = signal_rows()
    rows[1]["sample_rate"] = "fast"
    with pytest.raises(
        SchemaError, match=r"column 'sample_rate' row 1: expected a number, got str 'fast'"
    ):
        signals_table(rows)
    rows = signal_rows()
    rows[0]["channels"] = "c3"
    with pytest.raises(SchemaError, match=r"column 'channels' row 0"):
        signals_table(rows)


def test_bad_sample_type_names_row():
    rows = signal_rows()
    rows[1]["sample_type"] = "float16"
    with pytest.raises(
        SchemaError, match=r"column 'sample_type' row 1: unknown sample_type 'float16'"
    ):
        signals_table(rows)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("sample_rate", 0.0, "positive finite rate"),
        ("sample_resolution_in_unit", 0.0, "non-zero resolution"),
        ("sample_offset_in_unit", float("nan"), "finite offset"),
        ("channels", [], "at least one channel"),
        ("file_path", None, "missing value"),
    ],
)
def test_bad_values_name_column_and_row(column, value, message):
    rows = signal_rows()
    rows[1][column] = value
    with pytest.raises(SchemaError, match=rf"column '{column}' row 1: .*{message}"):
        signals_table(rows)


def test_span_stop_before_start_names_row():
    rows = [a.to_row() for a in make_annotations()]
    rows[2]["span"] = {"start": 10 * S, "stop": 5 * S}
    with pytest.raises(
        SchemaError, match=r"column 'span' row 2: span stop \(5000000000 ns\) is before"
    ):
        annotations_table(rows)
    table = annotations_table(make_annotations())
    backwards = pa.StructArray.from_arrays(
        [pa.array([0, 5, 0], pa.int64()), pa.array([1, 4, 1], pa.int64())], names=["start", "stop"]
    )
    with pytest.raises(SchemaError, match=r"column 'span' row 1"):
        annotations_table(table.set_column(2, "span", backwards))


def test_float_span_is_refused():
    rows = [a.to_row() for a in make_annotations()]
    rows[0]["span"] = (0.0, 30.0)
    with pytest.raises(SchemaError, match=r"column 'span' row 0: .*float"):
        annotations_table(rows)


def test_non_uuid_recording_names_row():
    rows = signal_rows()
    rows[1]["recording"] = "not-a-uuid"
    with pytest.raises(SchemaError, match=r"column 'recording' row 1"):
        signals_table(rows)


def test_ambiguous_uuid_bytes_are_refused():
    rows = signal_rows()
    rows[0]["recording"] = REC_A.bytes
    with pytest.raises(SchemaError, match=r"column 'recording' row 0: 16 raw bytes .* ambiguous"):
        signals_table(rows)
    table = annotations_table(make_annotations())
    plain = pa.array([a.id.bytes for a in make_annotations()], pa.binary(16))
    with pytest.raises(SchemaError, match=r"column 'id': expected JuliaLang.UUID.*ambiguous"):
        annotations_table(table.set_column(1, "id", plain))


def test_wrong_input_type():
    with pytest.raises(SchemaError, match=r"got dict"):
        signals_table({"recording": []})
    with pytest.raises(SchemaError, match=r"row 0 is a int"):
        signals_table([1, 2])


def write_plain_arrow(path: Path, table: pa.Table) -> None:
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def test_non_onda_arrow_file_names_file_and_schemas(tmp_path):
    path = tmp_path / "plain.arrow"
    write_plain_arrow(path, pa.table({"x": [1, 2]}))
    with pytest.raises(
        SchemaError,
        match=rf"{path}: not an Onda signals table: expected .*'onda.signal@2'.*found none",
    ):
        read_signals(path)


def test_annotation_file_read_as_signals_names_both_schemas(tmp_path):
    path = tmp_path / "stages.arrow"
    write_annotations(path, make_annotations())
    with pytest.raises(
        SchemaError,
        match=r"expected schema 'onda.signal@2'.*legolas_schema_qualified='onda.annotation@1'",
    ):
        read_signals(path)
    with pytest.raises(SchemaError, match=r"expected schema 'onda.signal@2'"):
        signals_table(read_annotations(path))


def test_signal_file_with_a_bad_column_names_file(tmp_path):
    table = signals_table(make_signals()).drop_columns(["file_format"])
    path = tmp_path / "broken.arrow"
    write_plain_arrow(path, table)
    with pytest.raises(SchemaError, match=rf"{path}: missing column\(s\) \['file_format'\]"):
        read_signals(path)


def test_non_arrow_file(tmp_path):
    path = tmp_path / "notes.arrow"
    path.write_text("these are not the bytes you are looking for")
    with pytest.raises(SchemaError, match=rf"{path}: not an Arrow IPC file or stream"):
        read_signals(path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.arrow"
    with pytest.raises(SampleFileNotFoundError, match=str(path)) as info:
        read_annotations(path)
    assert isinstance(info.value, FileNotFoundError)


def test_arrow_stream_format_is_read(tmp_path):
    table = annotations_table(make_annotations())
    path = tmp_path / "stream.arrow"
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert read_annotations(path).equals(table)


def test_pandas_typed_columns_and_numpy_channels():
    df = to_pandas(signals_table(make_signals()))
    assert isinstance(df["channels"][0], np.ndarray)  # what pyarrow's to_pandas gives lists
    assert df["recording"].tolist() == [REC_A, REC_B]
    assert signals_from_table(df) == make_signals()


def test_untagged_julia_uuid_storage_is_read_by_its_field_tag():
    """A Julia file read by a process without our extension types keeps only the field tag."""
    tag = {b"ARROW:extension:name": b"JuliaLang.UUID", b"ARROW:extension:metadata": b""}
    storage = pa.array([a.recording.bytes[::-1] for a in make_annotations()], pa.binary(16))
    table = annotations_table(make_annotations())
    table = table.set_column(0, pa.field("recording", pa.binary(16), metadata=tag), storage)
    assert [a.recording for a in iter_annotations(table)] == [REC_A, REC_A, REC_B]


def test_pandas_timedelta_spans_keep_nanoseconds():
    df = pd.DataFrame(
        {
            "recording": [str(REC_A)],
            "id": [str(uuid.UUID(int=5))],
            "span": [{"start": pd.Timedelta(1), "stop": pd.Timedelta("1.000000001s")}],
        }
    )
    (annotation,) = iter_annotations(df)
    assert annotation.span == TimeSpan(1, S + 1)
