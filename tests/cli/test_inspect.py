"""``ondabatches inspect`` and the checks behind it (``ondabatches.inspection``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from ondabatches import SchemaError
from ondabatches.cli import main
from ondabatches.errors import SampleFileNotFoundError
from ondabatches.inspection import find_tables, inspect_dataset, label_durations
from ondabatches.onda import Annotation, TimeSpan, read_annotations, write_annotations
from tests.cli._datasets import NS, make_sleep_dataset
from tests.conftest import JULIA_RECORDING


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ondabatches", *args], capture_output=True, text=True, timeout=120
    )


def test_clean_dataset_summary(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds")
    report = inspect_dataset(ds.root)
    assert report.ok, report.problems
    assert report.recordings == (str(uuid.UUID(int=1)), str(uuid.UUID(int=2)))
    assert (report.n_signals, report.n_annotations) == (4, len(ds.annotations))
    eeg, ecg = sorted(report.sensors, key=lambda s: s.sensor_type != "eeg")
    assert (eeg.channels, eeg.sample_rates, eeg.file_formats) == (("c3", "c4"), (128.0,), ("lpcm",))
    assert (ecg.sample_rates, ecg.file_formats, ecg.sample_types) == (
        (256.0,),
        ("lpcm.zst",),
        ("int16",),
    )
    assert report.recording_duration == 2 * 10 * 60 * NS
    assert report.label_column == "stage"
    expected = Counter(a.extra["stage"] for a in ds.annotations)
    assert report.label_counts == expected
    stages = ("wake", "nrem1", "nrem2", "nrem3", "rem")
    assert list(report.label_counts) == [s for s in stages if s in expected]
    assert sum(report.label_durations.values()) == report.recording_duration

    text = str(report)
    assert "recordings: 2   signals: 4" in text and "problems: none" in text
    assert "eeg: 2 signal(s), 2 channel(s) [c3, c4], 128 Hz, int16, microvolt, lpcm" in text
    # The same dataset seen through each table file alone.
    assert inspect_dataset(ds.signals_path).n_signals == 4
    alone = inspect_dataset(ds.annotations_path)
    assert alone.ok and alone.n_signals == 0 and alone.label_counts == report.label_counts


def test_label_durations_per_recording(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds")
    per = label_durations(read_annotations(ds.annotations_path))
    assert set(per) == {str(uuid.UUID(int=1)), str(uuid.UUID(int=2))}
    assert all(sum(d.values()) == 10 * 60 * NS for d in per.values())


def test_problems_are_found_and_named(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=3)
    ds.file("eeg", 0).unlink()  # missing
    eeg1 = ds.file("eeg", 1)
    eeg1.write_bytes(eeg1.read_bytes()[:-1])  # not a whole number of 2-channel samples
    eeg2 = ds.file("eeg", 2)
    eeg2.write_bytes(eeg2.read_bytes()[: 4 * 1000])  # whole samples, far fewer than the span
    zst = ds.file("ecg", 1)
    zst.write_bytes(zst.read_bytes()[: zst.stat().st_size // 2])  # a truncated zstd stream
    stray = uuid.UUID(int=99)
    extra = [
        Annotation.new(stray, TimeSpan(0, 30 * NS), stage="wake"),
        Annotation.new(uuid.UUID(int=1), TimeSpan(3600 * NS, 3630 * NS), stage="rem"),
    ]
    write_annotations(ds.annotations_path, [*ds.annotations, *extra])

    report = inspect_dataset(ds.root)
    assert not report.ok
    by_kind = {(p.kind, p.recording) for p in report.problems}
    r = [str(uuid.UUID(int=i)) for i in (1, 2, 3)]
    assert by_kind == {
        ("missing_sample_file", r[0]),
        ("sample_file_size", r[1]),  # eeg: partial sample; ecg: truncated stream
        ("sample_file_size", r[2]),
        ("orphan_annotations", str(stray)),
        ("span_out_of_range", r[0]),
    }
    messages = {p.kind: p.message for p in report.problems}
    assert "not a whole number of 4-byte multichannel samples" in str(report)
    assert "holds 1000 samples but its span" in str(report) and "needs 76800" in str(report)
    assert "rec1_ecg.lpcm.zst" in str(report)
    assert str(stray) in messages["orphan_annotations"]
    assert [p.file for p in report.problems if p.kind == "missing_sample_file"] == [
        str(ds.file("eeg", 0))
    ]
    assert "problems: 6" in str(report)

    assert main(["inspect", str(ds.root)]) == 1
    assert main(["inspect", str(ds.root), "--no-check-files"]) == 1  # annotation problems remain


def test_julia_table_with_reroot(julia_dir):
    # Only the first recording's eeg and ecg files ship with the fixtures.
    report = inspect_dataset(julia_dir / "test.onda.signal.arrow", reroot=julia_dir)
    missing = [p for p in report.problems if p.kind == "missing_sample_file"]
    assert len(report.problems) == len(missing) == 4
    assert all(Path(p.file).parent == julia_dir for p in missing)
    assert JULIA_RECORDING in report.recordings and len(report.recordings) == 2
    assert {s.sensor_type for s in report.sensors} == {"eeg", "ecg", "spo2"}


def test_bad_paths(tmp_path):
    with pytest.raises(SampleFileNotFoundError, match="nowhere"):
        inspect_dataset(tmp_path / "nowhere")
    text = tmp_path / "notes.arrow"
    text.write_text("not arrow")
    with pytest.raises(SchemaError, match="notes.arrow"):
        inspect_dataset(text)
    plain = tmp_path / "plain.arrow"
    with pa.OSFile(str(plain), "wb") as f, pa.ipc.new_file(f, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [1, 2]}))
    with pytest.raises(SchemaError, match="neither an onda.signal nor an onda.annotation"):
        inspect_dataset(plain)
    # A folder of such files holds no Onda table: a problem, not a crash.
    assert find_tables(tmp_path) == ([], [])
    assert [p.kind for p in inspect_dataset(tmp_path).problems] == ["no_tables"]


def test_cli_json(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    assert main(["inspect", str(ds.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_signals"] == 2 and out["problems"] == [] and out["label_column"] == "stage"


def test_cli_subprocess(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    ok = run_cli("inspect", str(ds.root))
    assert ok.returncode == 0, ok.stderr
    assert "problems: none" in ok.stdout and "labels (column 'stage')" in ok.stdout

    eeg = ds.file("eeg")
    eeg.write_bytes(eeg.read_bytes()[:-3])
    bad = run_cli("inspect", str(ds.signals_path))
    assert bad.returncode == 1
    assert "[sample_file_size]" in bad.stdout and "rec0_eeg.lpcm" in bad.stdout

    for args, needle in [
        (("inspect", str(tmp_path / "missing")), "missing"),
        (("inspect", str(eeg)), "rec0_eeg.lpcm"),  # a sample file is not an Onda table
    ]:
        done = run_cli(*args)
        assert done.returncode == 1
        assert done.stderr.startswith("ondabatches inspect: error:") and needle in done.stderr
        assert "Traceback" not in done.stderr

    helped = run_cli("inspect", "--help")
    assert helped.returncode == 0 and "--reroot" in helped.stdout


def test_instant_annotations_print_as_instants(tmp_path, capsys):
    # Onda's instant is a 1 ns span (TimeSpans.jl's): "instant", not "1e-09 s".
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1, minutes=2)
    rec = uuid.UUID(int=1)
    instants = [
        Annotation.new(rec, TimeSpan(t * NS, t * NS + 1), stage=stage)
        for t, stage in ((5, "arousal"), (10, "spindle"), (70, "spindle"))
    ]
    mixed = [  # an instant beside a 30 s span keeps a duration
        Annotation.new(rec, TimeSpan(3 * NS, 3 * NS + 1), stage="apnea"),
        Annotation.new(rec, TimeSpan(0, 30 * NS), stage="apnea"),
    ]
    write_annotations(ds.annotations_path, [*ds.annotations, *instants, *mixed])
    assert main(["inspect", str(ds.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  arousal: 1 annotation(s), instant" in lines
    assert "  spindle: 2 annotation(s), instants" in lines
    (apnea,) = [line for line in lines if line.startswith("  apnea:")]
    assert apnea.startswith("  apnea: 2 annotation(s), 30 s (")
    assert "e-09" not in "\n".join(lines)
