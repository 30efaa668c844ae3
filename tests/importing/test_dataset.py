"""``import_dataset`` / ``ondabatches import``: many files into one dataset, resumable."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pyedflib = pytest.importorskip("pyedflib")

from ondabatches.cli import main  # noqa: E402
from ondabatches.errors import DatasetExistsError, SourceFileError  # noqa: E402
from ondabatches.importing import ChannelMap, import_dataset  # noqa: E402
from ondabatches.onda import (  # noqa: E402
    iter_annotations,
    iter_signals,
    load,
    read_annotations,
    read_signals,
    write_signals,
)

from .edffiles import PSG_CHANNELS, generic_channels, write_edf  # noqa: E402


def make_folder(folder: Path, n: int = 3, **kwargs) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_edf(folder / f"night{i}.edf", seed=i, **kwargs) for i in range(n)]
    (folder / "notes.txt").write_text("not an EDF")
    return files


def tables(out: Path) -> tuple[pa.Table, pa.Table]:
    return (
        read_signals(out / "dataset.onda.signal.arrow"),
        read_annotations(out / "dataset.onda.annotation.arrow"),
    )


def assert_samples_equal_pyedflib(signals: pa.Table) -> int:
    checked = 0
    for sig in iter_signals(signals):
        reader = pyedflib.EdfReader(sig.extra["source_file"])
        try:
            labels = reader.getSignalLabels()
            encoded = load(sig, encoded=True).data
            for row, channel in enumerate(sig.channels):
                i = [j for j, lab in enumerate(labels) if lab.lower().endswith(channel)][0]
                np.testing.assert_array_equal(encoded[row], reader.readSignal(i, digital=True))
                checked += 1
        finally:
            reader.close()
    return checked


def test_folder_to_one_dataset_in_parallel_and_deterministic(tmp_path):
    files = make_folder(tmp_path / "edf")
    report = import_dataset(tmp_path / "edf", tmp_path / "a", workers=2, block_bytes=1000)
    assert multiprocessing.active_children() == []
    signals, annotations = tables(tmp_path / "a")
    assert [f.source for f in report.files] == [str(f) for f in files]
    # One table for every file: 3 recordings x (eeg, eog, resp).
    assert signals.num_rows == 9 and annotations.num_rows == 3
    assert len(set(signals.column("recording").to_pylist())) == 3
    assert assert_samples_equal_pyedflib(signals) == 3 * len(PSG_CHANNELS)
    assert all(
        not p.startswith("/")
        for p in read_signals(tmp_path / "a" / "dataset.onda.signal.arrow", resolve_paths=False)
        .column("file_path")
        .to_pylist()
    )
    # The extra columns: the source file and the EDF start date and time.
    assert signals.column("source_file").to_pylist()[0] == str(files[0])
    assert signals.schema.field("start_datetime").type == pa.timestamp("ns")
    assert signals.column("start_datetime")[0].as_py() is not None
    write_signals(tmp_path / "copy.arrow", signals)
    again = read_signals(tmp_path / "copy.arrow")
    assert again.column("start_datetime").equals(signals.column("start_datetime"))
    assert again.column("source_file").equals(signals.column("source_file"))

    # Deterministic ids: another import (inline, other blocks) gives equal tables.
    import_dataset([str(f) for f in reversed(files)], tmp_path / "b", workers=1)
    for x, y in zip(tables(tmp_path / "a"), tables(tmp_path / "b"), strict=True):
        x = x.drop_columns(["file_path"]) if "file_path" in x.column_names else x
        y = y.drop_columns(["file_path"]) if "file_path" in y.column_names else y
        assert x.equals(y)


def test_resume_skips_finished_files(tmp_path):
    make_folder(tmp_path / "edf")
    out = tmp_path / "out"
    first = import_dataset(tmp_path / "edf", out, workers=1)
    before = tables(out)
    assert first.n_imported == 3
    # Forget one file's marker, as if the import had been killed while converting it.
    markers = sorted((out / ".import" / "parts").glob("*.done.json"))
    markers[1].unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "samples").iterdir()}
    second = import_dataset(tmp_path / "edf", out, workers=1)
    assert second.n_imported == 1 and sum(f.skipped for f in second.files) == 2
    changed = [p for p in (out / "samples").iterdir() if p.stat().st_mtime_ns != mtimes[p]]
    assert len(changed) == 3  # the one file's three signals, nothing else rewritten
    for x, y in zip(before, tables(out), strict=True):
        assert x.equals(y)


def test_failure_leaves_no_partial_files_and_rerun_finishes(tmp_path):
    files = make_folder(tmp_path / "edf", n=2)
    bad = tmp_path / "edf" / "zz_truncated.edf"
    bad.write_bytes(files[0].read_bytes()[:3000])
    out = tmp_path / "out"
    # In parallel first: the failure stops the pool, no worker process is left behind.
    with pytest.raises(SourceFileError, match="zz_truncated.edf"):
        import_dataset(tmp_path / "edf", tmp_path / "parallel", workers=2)
    assert multiprocessing.active_children() == []
    assert not list((tmp_path / "parallel").glob("*.arrow"))
    with pytest.raises(SourceFileError, match="zz_truncated.edf"):
        import_dataset(tmp_path / "edf", out, workers=1)
    assert not list(out.glob("*.arrow"))  # no dataset tables
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []
    assert (
        sorted(p.name.split("_")[0] for p in (out / "samples").iterdir())
        == ["night0"] * 3 + ["night1"] * 3
    )
    bad.unlink()
    report = import_dataset(tmp_path / "edf", out, workers=1)
    assert report.n_imported == 0 and len(report.files) == 2
    assert tables(out)[0].num_rows == 6


@pytest.mark.timeout(120)
def test_killed_import_resumes(tmp_path):
    make_folder(tmp_path / "edf", n=4, seconds=600)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ondabatches", "import", str(tmp_path / "edf"), "-o", str(out),
         "-j", "1", "--no-progress", "--format", "lpcm.zst"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list((out / ".import" / "parts").glob("*.done.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not list(out.glob("*.arrow"))
    n_done = len(list((out / ".import" / "parts").glob("*.done.json")))
    # The rerun as users run it: the CLI, which prints the report (its groupings of the
    # files kept from the killed run crashed on lists read back from JSON).
    rerun = subprocess.run(
        [sys.executable, "-m", "ondabatches", "import", str(tmp_path / "edf"), "-o", str(out),
         "-j", "2", "--no-progress", "--format", "lpcm.zst"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n_done} kept from an earlier run" in rerun.stdout
    assert "4 file(s): " in rerun.stdout  # one channel grouping for the four files
    report = import_dataset(tmp_path / "edf", out, workers=2, file_format="lpcm.zst")
    assert sum(f.skipped for f in report.files) == 4
    assert len(report.groupings()) == 1 and "channel groupings" in str(report)
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
    fresh = import_dataset(tmp_path / "edf", tmp_path / "fresh", workers=1, file_format="lpcm.zst")
    assert fresh.n_imported == 4
    for resumed, uninterrupted in zip(tables(out), tables(tmp_path / "fresh"), strict=True):
        if "file_path" in resumed.column_names:
            resumed = resumed.drop_columns(["file_path"])
            uninterrupted = uninterrupted.drop_columns(["file_path"])
        assert resumed.equals(uninterrupted)
    # The sample files, byte for byte.
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "fresh" / "samples").iterdir())
    for name in names:
        assert (out / "samples" / name).read_bytes() == (
            tmp_path / "fresh" / "samples" / name
        ).read_bytes(), name
    assert assert_samples_equal_pyedflib(tables(out)[0]) == 4 * len(PSG_CHANNELS)


def test_output_holding_another_dataset_is_refused(tmp_path):
    make_folder(tmp_path / "edf", n=1)
    import_dataset(tmp_path / "edf", tmp_path / "out", workers=1)
    with pytest.raises(DatasetExistsError, match=r"file_format: 'lpcm' there vs 'lpcm.zst' now"):
        import_dataset(tmp_path / "edf", tmp_path / "out", workers=1, file_format="lpcm.zst")
    other = write_edf(tmp_path / "other.edf", seed=9)
    with pytest.raises(DatasetExistsError, match="not among the inputs"):
        import_dataset(other, tmp_path / "out", workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    write_signals(foreign / "signals.arrow", tables(tmp_path / "out")[0])
    with pytest.raises(DatasetExistsError, match="not written by an import"):
        import_dataset(tmp_path / "edf", foreign, workers=1)


def test_bad_files_are_typed_errors_naming_them(tmp_path):
    ok = write_edf(tmp_path / "ok.edf")
    raw = bytearray(ok.read_bytes())
    raw[192:197] = b"EDF+D"
    (tmp_path / "gappy.edf").write_bytes(bytes(raw))
    with pytest.raises(SourceFileError, match=r"gappy.edf is a discontinuous EDF\+D"):
        import_dataset(tmp_path / "gappy.edf", tmp_path / "o1", workers=1)
    (tmp_path / "junk.edf").write_bytes(b"hello" * 10)
    with pytest.raises(SourceFileError, match="junk.edf"):
        import_dataset(tmp_path / "junk.edf", tmp_path / "o2", workers=1)

    neg = write_edf(tmp_path / "neg.edf", annotations=[(5.0, 1.0, "Arousal")])
    neg.write_bytes(neg.read_bytes().replace(b"+5\x15", b"-5\x15"))
    with pytest.raises(
        SourceFileError, match=r"neg.edf: annotation 0 \('Arousal'\) has a negative"
    ):
        import_dataset(neg, tmp_path / "o3", workers=1)

    late = write_edf(tmp_path / "late.edf", annotations=[(50.0, 30.0, "Sleep stage 2")])
    with pytest.raises(SourceFileError, match=r"late.edf: annotation 0 .* past the end .* 60 s"):
        import_dataset(late, tmp_path / "o4", workers=2)
    # Found after its samples were written: they are removed again, nothing half-done stays.
    assert not list((tmp_path / "o4").glob("*.arrow"))
    assert [
        p for p in (tmp_path / "o4").rglob("*") if p.is_file() and ".import" not in str(p)
    ] == []
    import_dataset(late, tmp_path / "o5", workers=1, annotations_past_end="clip")
    ann = next(iter_annotations(tables(tmp_path / "o5")[1]))
    assert (ann.span.start, ann.span.stop) == (50 * 10**9, 60 * 10**9)


def test_unknown_labels_grouped_and_channel_map(tmp_path, capsys):
    edf = write_edf(tmp_path / "cap.edf", generic_channels(19) + PSG_CHANNELS[:1])
    import_dataset(edf, tmp_path / "guess", workers=1)
    rows = {s.sensor_label: s for s in iter_signals(tables(tmp_path / "guess")[0])}
    # ch0 ... ch18 name no sensor: the generic type, the signal named by the labels' prefix.
    assert set(rows) == {"ch", "eeg"} and rows["ch"].info.sensor_type == "misc"
    assert rows["ch"].channels == tuple(f"ch{i}" for i in range(19))

    cmap = {f"ch{i}": ["eeg", name] for i, name in enumerate(["fp1", "fp2", "c3"])}
    cmap["ch3"] = {"sensor_type": "eog", "channel": "left"}
    path = tmp_path / "map.json"
    path.write_text(json.dumps(cmap))
    assert main(["import", str(edf), "-o", str(tmp_path / "mapped"), "--channel-map", str(path),
                 "-j", "1", "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "ch (15 ch @ 50 Hz) [unrecognised labels grouped: ch4, ch5, ch6, ch7, ...]" in printed
    rows = {s.sensor_label: s for s in iter_signals(tables(tmp_path / "mapped")[0])}
    assert rows["eeg"].channels == ("fp1", "fp2", "c3")  # rate 50 Hz: not with Fpz-Cz
    assert rows["eeg_2"].channels == ("fpz-cz",) and rows["eog"].channels == ("left",)
    csv = tmp_path / "map.csv"
    csv.write_text("label,sensor_type,channel\nch0,eeg,fp1\nch1,eeg,\n")
    assert ChannelMap.from_file(csv).lookup("CH1") == ("eeg", "ch1")


def test_inputs_globs_and_list_files(tmp_path, capsys):
    files = make_folder(tmp_path / "edf", n=3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# nights\n{files[2]}\n{files[0]}\n")
    report = import_dataset([f"@{listing}", str(tmp_path / "edf" / "night1*")], tmp_path / "o",
                            workers=1)  # fmt: skip
    assert [Path(f.source).name for f in report.files] == ["night0.edf", "night1.edf", "night2.edf"]
    # The alias of the original command still works, with --out as before.
    assert main(["import-edf", str(files[0]), "--out", str(tmp_path / "o2"), "--no-progress"]) == 0
    assert "1 file(s) (1 imported" in capsys.readouterr().out


@pytest.mark.s3
def test_import_from_and_to_s3(s3, tmp_path):
    files = make_folder(tmp_path / "edf", n=2)
    for f in files:
        s3.fs.put_file(str(f), s3.url(f"in/{f.name}"))
    out = s3.url("dataset")
    report = import_dataset(s3.url("in/"), out, workers=1, file_format="lpcm.zst")
    assert [f.source for f in report.files] == [s3.url(f"in/{f.name}") for f in files]
    signals = read_signals(f"{out}/dataset.onda.signal.arrow")
    local = import_dataset(tmp_path / "edf", tmp_path / "local", workers=1, file_format="lpcm.zst")
    assert local.files[0].recording == report.files[0].recording
    for remote, here in zip(iter_signals(signals), iter_signals(tables(tmp_path / "local")[0]),
                            strict=True):  # fmt: skip
        assert remote.file_path.startswith("s3://")
        np.testing.assert_array_equal(load(remote).data, load(here).data)
    again = import_dataset(s3.url("in/"), out, workers=1, file_format="lpcm.zst")
    assert again.n_imported == 0


def test_identical_files_are_one_recording(tmp_path):
    (first,) = make_folder(tmp_path / "edf", n=1)
    copy = tmp_path / "edf" / "copy.edf"
    copy.write_bytes(first.read_bytes())
    with pytest.warns(UserWarning, match=r"night0.edf has the same content as .*copy.edf"):
        report = import_dataset(tmp_path / "edf", tmp_path / "out", workers=1)
    assert report.files[0].recording == report.files[1].recording
    signals, annotations = tables(tmp_path / "out")
    assert signals.num_rows == 3 and annotations.num_rows == 1
