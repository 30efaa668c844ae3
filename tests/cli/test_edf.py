"""EDF/EDF+/BDF import: samples equal pyedflib's own reading, bit for bit where encoded."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pyedflib = pytest.importorskip("pyedflib")

from ondabatches import SampleFileError  # noqa: E402
from ondabatches.cli import main  # noqa: E402
from ondabatches.edf import import_edf, sensor_type_and_channel  # noqa: E402
from ondabatches.errors import SampleFileNotFoundError  # noqa: E402
from ondabatches.onda import (  # noqa: E402
    iter_annotations,
    iter_signals,
    load,
    read_annotations,
    read_signals,
)
from tests.importing.edffiles import write_edf as write_edf_file  # noqa: E402

# label, rate (Hz), physical min/max, digital min/max, unit, transducer
EDF_CHANNELS = [
    ("EEG Fpz-Cz", 100, -200.0, 200.0, -32768, 32767, "uV", "AgAgCl electrode"),
    ("EEG Pz-Oz", 100, -200.0, 200.0, -32768, 32767, "uV", "AgAgCl electrode"),
    # Same sensor and rate, another physical range: must not share an encoding.
    ("EEG C3-M2", 100, -500.0, 250.0, -2048, 2047, "uV", ""),
    ("EOG horizontal", 100, -1000.0, 1000.0, -32768, 32767, "uV", ""),
    ("EMG submental", 200, -5.0, 5.0, -32768, 32767, "mV", ""),
    ("Resp oro-nasal", 1, -2048.0, 2047.0, -2048, 2047, "", ""),
    ("C4-M1", 100, -200.0, 200.0, -32768, 32767, "uV", "EEG electrode"),
    ("Light", 1, 0.0, 1000.0, 0, 1000, "lux", ""),
]
SECONDS = 60
ANNOTATIONS = [(0.0, 30.0, "Sleep stage W"), (30.0, 30.0, "Sleep stage 1"), (12.5, -1, "Arousal")]


def write_edf(path: Path, channels=EDF_CHANNELS, *, bdf: bool = False, seed: int = 0) -> Path:
    """An EDF+ (or BDF+) file of random digital samples spanning each channel's range."""
    if bdf:  # 24-bit samples: widen the digital range to prove int32 storage
        channels = [
            (label, rate, pmin, pmax, dmin * 256, dmax * 256 + 255, unit, transducer)
            for label, rate, pmin, pmax, dmin, dmax, unit, transducer in channels
        ]
    return write_edf_file(
        path, channels, seconds=SECONDS, annotations=ANNOTATIONS, bdf=bdf, seed=seed
    )


def assert_equals_pyedflib(edf_path: Path, out: Path, name: str) -> int:
    """Every channel of ``edf_path`` imported under ``out``: digital exact, physical close."""
    signals = list(iter_signals(read_signals(out / f"{name}.onda.signal.arrow")))
    reader = pyedflib.EdfReader(str(edf_path))
    try:
        labels = reader.getSignalLabels()
        found = 0
        for signal in signals:
            encoded = load(signal, encoded=True).data
            decoded = load(signal).data
            for row, channel in enumerate(signal.channels):
                # The import keeps channel order, so channel k of the group is its k-th label.
                i = [j for j, lab in enumerate(labels) if _channel_of(lab) == channel][0]
                np.testing.assert_array_equal(encoded[row], reader.readSignal(i, digital=True))
                np.testing.assert_allclose(
                    decoded[row], reader.readSignal(i), rtol=1e-12, atol=1e-9
                )
                assert signal.sample_rate == reader.getSampleFrequency(i)
                found += 1
        assert found == reader.signals_in_file
    finally:
        reader.close()
    return found


def _channel_of(label: str) -> str:
    return sensor_type_and_channel(label)[1]


@pytest.mark.parametrize("bdf", [False, True], ids=["edf", "bdf"])
@pytest.mark.parametrize("file_format", ["lpcm", "lpcm.zst"])
def test_import_equals_pyedflib_reading(tmp_path, bdf, file_format):
    edf = write_edf(tmp_path / ("night.bdf" if bdf else "night.edf"), bdf=bdf)
    recording = uuid.UUID(int=7)
    signals, annotations = import_edf(
        edf, tmp_path / "onda", recording=recording, file_format=file_format
    )
    assert assert_equals_pyedflib(edf, tmp_path / "onda", "night") == len(EDF_CHANNELS)

    rows = {s.sensor_label: s for s in iter_signals(signals)}
    # Grouped by sensor, rate and encoding: the C3-M2 range and the C4-M1 transducer-typed
    # channel (same encoding as Fpz-Cz) decide which EEG channels share a signal.
    assert rows["eeg"].channels == ("fpz-cz", "pz-oz", "c4-m1")
    assert rows["eeg_2"].channels == ("c3-m2",)
    # "Light" names no sensor: the generic type, the signal named after the label.
    assert set(rows) == {"eeg", "eeg_2", "eog", "emg", "resp", "light"}
    assert rows["light"].info.sensor_type == "misc"
    assert rows["emg"].info.sample_unit == "millivolt" and rows["emg"].sample_rate == 200.0
    assert rows["resp"].info.sample_unit == "unknown" and rows["resp"].sample_rate == 1.0
    assert rows["eeg"].info.sample_type == ("int32" if bdf else "int16")
    assert rows["eeg_2"].info.sample_resolution_in_unit == pytest.approx(
        750.0 / (4095 * 256 + 255 if bdf else 4095)
    )
    assert all(s.file_format == file_format for s in rows.values())
    assert all(not Path(s.file_path).is_absolute() for s in rows.values())
    assert all(s.span.stop == SECONDS * 10**9 and s.recording == recording for s in rows.values())

    table = read_annotations(tmp_path / "onda" / "night.onda.annotation.arrow")
    got = sorted((a.span.start, a.span.stop, a.extra["value"]) for a in iter_annotations(table))
    assert got == [
        (0, 30 * 10**9, "Sleep stage W"),
        (12_500_000_000, 12_500_000_001, "Arousal"),
        (30 * 10**9, 60 * 10**9, "Sleep stage 1"),
    ]
    assert annotations.num_rows == 3


def test_import_of_pyedflib_test_file(tmp_path):
    edf = Path(pyedflib.data.get_generator_filename())
    signals, annotations = import_edf(edf, tmp_path, name="generator")
    assert assert_equals_pyedflib(edf, tmp_path, "generator") == 11
    # No label names a sensor, and all share rate, unit and encoding: one generic signal.
    assert signals.num_rows == 1 and signals.column("sensor_type").to_pylist() == ["misc"]
    assert "sine_8.5_hz" in signals.column("channels").to_pylist()[0]
    assert annotations.column("value").to_pylist() == ["Recording starts", "Recording ends"]


def test_sensor_type_and_channel():
    assert sensor_type_and_channel("EEG Fpz-Cz") == ("eeg", "fpz-cz")
    assert sensor_type_and_channel("ECG") == ("ecg", "ecg")
    assert sensor_type_and_channel("EKG II") == ("ecg", "ii")
    assert sensor_type_and_channel("SaO2") == ("spo2", "spo2")
    assert sensor_type_and_channel("F3-M2", "EEG AgCl") == ("eeg", "f3-m2")
    assert sensor_type_and_channel("Body Temp") == ("misc", "body_temp")
    assert sensor_type_and_channel("  ") == ("misc", "channel")
    assert sensor_type_and_channel("C3-M2") == ("eeg", "c3-m2")  # a 10-20 derivation
    assert sensor_type_and_channel("EEG A1+A2") == ("eeg", "a1_a2")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=16), st.text(max_size=8))
def test_names_are_onda_valid(label, transducer):
    # Onda.jl: lowercase snake-case alphanumeric; channel names may also hold "-" and ".".
    sensor, channel = sensor_type_and_channel(label, transducer)
    assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", sensor), sensor
    assert re.fullmatch(r"[a-z0-9.\-]+(_[a-z0-9.\-]+)*", channel), channel


def test_import_errors(tmp_path):
    with pytest.raises(SampleFileNotFoundError, match="missing.edf"):
        import_edf(tmp_path / "missing.edf", tmp_path / "out")
    bogus = tmp_path / "bogus.edf"
    bogus.write_bytes(b"not an edf file at all" * 20)
    with pytest.raises(SampleFileError, match="bogus.edf"):
        import_edf(bogus, tmp_path / "out")
    # The same file, marked discontinuous in its header's reserved field: refused.
    gappy = tmp_path / "gappy.edf"
    raw = bytearray(write_edf(tmp_path / "ok.edf").read_bytes())
    assert raw[192:197] == b"EDF+C"
    raw[192:197] = b"EDF+D"
    gappy.write_bytes(bytes(raw))
    with pytest.raises(SampleFileError, match="discontinuous EDF\\+D"):
        import_edf(gappy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_import_edf_in_process(tmp_path, capsys):
    edf = write_edf(tmp_path / "a.edf")
    bdf = write_edf(tmp_path / "b.bdf", bdf=True, seed=1)
    out = tmp_path / "onda"
    args = ["import-edf", str(edf), str(bdf), "--out", str(out), "--format", "lpcm.zst", "-j", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/2]" in printed and "[2/2]" in printed and "3 annotation(s)" in printed
    # One dataset for both files.
    signals = read_signals(out / "dataset.onda.signal.arrow")
    assert len(set(signals.column("recording").to_pylist())) == 2
    assert signals.num_rows == 12


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ondabatches", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_import_edf_subprocess(tmp_path):
    edf = write_edf(tmp_path / "sub.edf")
    done = run_cli("import", str(edf), "--out", str(tmp_path / "out"), "--name", "sub")
    assert done.returncode == 0, done.stderr
    signals = read_signals(tmp_path / "out" / "sub.onda.signal.arrow")
    assert sum(len(c) for c in signals.column("channels").to_pylist()) == len(EDF_CHANNELS)

    missing = run_cli("import-edf", str(tmp_path / "nope.edf"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-2].startswith("ondabatches import-edf: error:")
    assert "nope.edf" in missing.stderr and "Traceback" not in missing.stderr

    junk = tmp_path / "junk.edf"
    junk.write_text("hello\n" * 100)
    bad = run_cli("import-edf", str(junk), "--out", str(tmp_path / "o"))
    assert bad.returncode == 1 and "junk.edf" in bad.stderr and "Traceback" not in bad.stderr

    helped = run_cli("import-edf", "--help")
    assert helped.returncode == 0 and "re-quantized" in helped.stdout


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the error crosses a process pool
def test_cli_past_end_error_names_the_flag(tmp_path, capsys, workers):
    late = write_edf_file(
        tmp_path / "late.edf",
        EDF_CHANNELS[:1],
        seconds=60,
        annotations=[(50.0, 30.0, "Sleep stage 2")],
    )
    ok = write_edf(tmp_path / "ok.edf")
    out = tmp_path / "onda"
    assert main(["import", str(late), str(ok), "--out", str(out), "-j", workers]) == 1
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert err == (
        f"ondabatches import: error: {late}: annotation 0 ('Sleep stage 2') spans "
        "TimeSpan(50 s, 80 s), past the end of the recording at 60 s (rerun with "
        "--annotations-past-end clip or drop to accept such files, into another --out "
        f"or after deleting {out})"
    )
    # What it suggests works.
    again = ["import", str(late), str(ok), "--out", str(tmp_path / "clipped"), "-j", workers]
    assert main([*again, "--annotations-past-end", "clip"]) == 0
    spans = read_annotations(tmp_path / "clipped" / "dataset.onda.annotation.arrow")
    late_spans = [
        (a.span.start, a.span.stop)
        for a in iter_annotations(spans)
        if a.extra["value"] == "Sleep stage 2"
    ]
    assert late_spans == [(50 * 10**9, 60 * 10**9)]


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the open runs in a worker process
def test_cli_truncated_edf_keeps_stdout_clean(tmp_path, workers):
    # pyedflib's C code prints "filesize ... != ..." to fd 1 when it refuses a file.
    folder = tmp_path / "in"
    folder.mkdir()
    write_edf(folder / "good.edf")
    cut = write_edf(folder / "cut.edf", seed=1)
    cut.write_bytes(cut.read_bytes()[:-100])
    done = run_cli("import", str(folder), "--out", str(tmp_path / "o"), "-j", workers)
    assert done.returncode == 1
    assert done.stdout == ""  # the CLI prints nothing there when the import fails
    error, hint = done.stderr.strip().splitlines()[-2:]
    assert re.fullmatch(
        rf"ondabatches import: error: {re.escape(str(cut))} is not a readable EDF/EDF\+/BDF "
        rf"file: .*\(Filesize\) \(pyedflib printed: filesize \d+ != \d+\*\d+\+\d+\)",
        error,
    ), error
    assert hint == "(run with --debug for the full traceback)"

    # A good file alone: stdout is the CLI's report, and nothing of pyedflib's.
    cut.unlink()
    done = run_cli("import", str(folder), "--out", str(tmp_path / "o2"), "-j", workers)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"[1/1] {folder / 'good.edf'} -> recording ")
    assert lines[-1] == f"done: inspect the result with `ondabatches inspect {tmp_path / 'o2'}`"
    assert "filesize" not in done.stdout
