"""Interchange with Onda.jl: its tables read to the right values and write back identically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from ondabatches.onda import (
    JuliaUUIDType,
    TimeSpan,
    TimeSpanType,
    iter_signals,
    read_signals,
    signals_from_table,
    signals_table,
    write_signals,
)
from tests.conftest import JULIA_RECORDING

S = 1_000_000_000
OTHER_RECORDING = uuid.UUID("bf11f8f0-36a4-4ef6-b339-9b4f98f72af2")
UUID4 = uuid.UUID("094e4b16-21cd-4acc-b5a7-e16096cdc069")
UUID5 = uuid.UUID("0c4718ca-6f46-51a0-91c6-a0d671972447")
EEG_CHANNELS = [
    "fp1", "f3", "c3", "p3", "f7", "t3", "t5", "o1", "fz", "cz",
    "pz", "fp2", "f4", "c4", "p4", "f8", "t4", "t6", "o2",
]  # fmt: skip


def describe(schema: pa.Schema) -> dict:
    """What Julia sees of a schema: names, types, nullability, extension tags, metadata."""

    def dtype(t: pa.DataType):
        if isinstance(t, pa.ExtensionType):
            return ("ext", t.extension_name, t.__arrow_ext_serialize__(), dtype(t.storage_type))
        if pa.types.is_struct(t) or pa.types.is_list(t):
            return (str(t.id), [fld(t.field(i)) for i in range(t.num_fields)])
        return str(t)

    def fld(f: pa.Field):
        return (f.name, dtype(f.type), f.nullable, dict(f.metadata or {}))

    return {"fields": sorted(fld(f) for f in schema), "metadata": dict(schema.metadata or {})}


def raw_table(path: Path) -> pa.Table:
    with ipc.open_file(path) as reader:
        return reader.read_all()


@pytest.fixture(scope="module")
def julia_signals(julia_dir: Path) -> pa.Table:
    return read_signals(
        julia_dir / "test.onda.signal.arrow", reroot=lambda p: str(julia_dir / os.path.basename(p))
    )


def test_fixture_is_the_arrow_file_format_with_the_julia_schema_name(julia_dir):
    raw = raw_table(julia_dir / "test.onda.signal.arrow")
    assert raw.schema.metadata[b"legolas_schema_qualified"] == b"onda.signal@2>onda.samples-info@2"
    assert isinstance(raw.schema.field("recording").type, JuliaUUIDType)
    assert isinstance(raw.schema.field("span").type, TimeSpanType)


def test_julia_table_reads_to_six_signals(julia_signals):
    signals = signals_from_table(julia_signals)
    assert len(signals) == 6
    assert [s.recording for s in signals] == [uuid.UUID(JULIA_RECORDING)] * 3 + [
        OTHER_RECORDING
    ] * 3
    assert [s.sensor_label for s in signals] == ["eeg", "ecg", "spo2"] * 2
    eeg, ecg = signals[0], signals[1]
    assert eeg.span == TimeSpan(20 * S, 260 * S)
    assert ecg.span == TimeSpan(8 * S, 548 * S)
    assert list(eeg.channels) == EEG_CHANNELS
    assert list(ecg.channels) == ["avl", "avr"]
    assert (eeg.info.sample_type, eeg.sample_rate, eeg.n_samples) == ("float32", 128.0, 30720)
    assert (ecg.info.sample_type, ecg.sample_rate, ecg.n_samples) == ("int16", 143.5, 77490)
    assert (ecg.info.sample_resolution_in_unit, ecg.info.sample_offset_in_unit) == (0.25, 0.0)
    assert (eeg.info.sample_resolution_in_unit, eeg.info.sample_offset_in_unit) == (1.0, -1.0)
    assert [s.file_format for s in signals[:2]] == ["lpcm", "lpcm.zst"]
    assert all(s.extra == {} for s in signals)


def test_reroot_makes_julia_paths_point_at_the_fixture_files(julia_dir, julia_signals):
    signals = signals_from_table(julia_signals)
    for s in signals[:2]:
        assert Path(s.file_path).parent == julia_dir
        assert Path(s.file_path).is_file()


def test_reroot_mapping_and_raw_paths(julia_dir):
    path = julia_dir / "test.onda.signal.arrow"
    raw = read_signals(path, resolve_paths=False)
    first = raw.column("file_path")[0].as_py()
    assert first == f"/home/ubuntu/repositories/data/onda_tour_data/{JULIA_RECORDING}_eeg.lpcm"
    mapped = read_signals(
        path, reroot={"/home/ubuntu/repositories/data/onda_tour_data": str(julia_dir)}
    )
    assert mapped.column("file_path")[0].as_py() == str(julia_dir / f"{JULIA_RECORDING}_eeg.lpcm")
    # Absolute paths are not touched by resolution alone.
    assert read_signals(path).column("file_path").equals(raw.column("file_path"))


def test_columns_are_typed_and_to_pylist_gives_python_values(julia_signals):
    assert julia_signals.column("recording").to_pylist()[:1] == [uuid.UUID(JULIA_RECORDING)]
    assert julia_signals.column("span").to_pylist()[1] == TimeSpan(8 * S, 548 * S)
    assert julia_signals.column("recording")[3].as_py() == OTHER_RECORDING


@pytest.mark.parametrize(
    ("name", "expected"), [("uuid4", [UUID4]), ("uuid5", [UUID5]), ("uuid45", [UUID4, UUID5])]
)
def test_julia_uuid_files(julia_dir, name, expected):
    col = raw_table(julia_dir / f"{name}.arrow").column("col1")
    assert isinstance(col.type, JuliaUUIDType)
    assert col.to_pylist() == expected
    assert [u.version for u in col.to_pylist()] == [e.version for e in expected]
    # Julia's little-endian UInt128 is the reverse of the canonical bytes.
    stored = col.combine_chunks().storage.to_pylist()
    assert [b[::-1] for b in stored] == [u.bytes for u in expected]


def test_recording_bytes_are_reversed_canonical_bytes(julia_dir):
    raw = raw_table(julia_dir / "test.onda.signal.arrow")
    stored = raw.column("recording").chunk(0).storage[0].as_py()
    assert stored[:2] == b"\x1f\xc0" and stored[-2:] == b"\x6e\x17"
    assert stored == uuid.UUID(JULIA_RECORDING).bytes[::-1]


def test_write_back_gives_julias_schema_and_uuid_bytes(julia_dir, tmp_path):
    original = julia_dir / "test.onda.signal.arrow"
    out = tmp_path / "signals.arrow"
    write_signals(out, read_signals(original, resolve_paths=False))
    theirs, ours = raw_table(original), raw_table(out)
    assert describe(ours.schema) == describe(theirs.schema)
    assert ours.schema.equals(theirs.schema, check_metadata=True)
    assert ours.schema.names == theirs.schema.names
    for name in ("recording", "span", "channels", "file_path"):
        assert ours.column(name).equals(theirs.column(name))
    assert ours.column("recording").combine_chunks().storage.buffers()[1].to_pybytes() == (
        theirs.column("recording").combine_chunks().storage.buffers()[1].to_pybytes()
    )


@pytest.mark.parametrize("via", ["signals", "rows", "pandas"])
def test_julia_table_rebuilt_from_python_values_has_julias_schema(julia_dir, julia_signals, via):
    """Tables built from Signals, dicts or pandas are laid out like Julia's, in its column order."""
    signals = signals_from_table(julia_signals)
    source = {
        "signals": signals,
        "rows": [s.to_row() for s in signals],
        "pandas": __import__("pandas").DataFrame([s.to_row() for s in signals]),
    }[via]
    rebuilt = signals_table(source)
    theirs = raw_table(julia_dir / "test.onda.signal.arrow")
    assert describe(rebuilt.schema) == describe(theirs.schema)
    assert rebuilt.schema.names == theirs.schema.names
    assert list(iter_signals(rebuilt)) == signals
