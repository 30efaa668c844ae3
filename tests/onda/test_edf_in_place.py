"""EDF and BDF served in place (file_format "edf"/"bdf") equal the imported copy, bit for bit.

Every EDF/BDF file that pyedflib ships, and files written here with pyedflib (several
rates, channels of one rate with different gains, BDF), are imported with the existing
importer and served in place; windows at random starts and lengths, record boundaries
and the end included, must give the same encoded and decoded values.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid

import numpy as np
import pyarrow as pa
import pytest

from ondabatches import Batcher, RandomBatches, SampleFileError, label_signals, materialize_batch
from ondabatches.errors import ReadOnlyFormatError, SourceFileError
from ondabatches.importing import edf_signals, import_dataset
from ondabatches.onda import (
    EdfFormat,
    Samples,
    SamplesInfo,
    Signal,
    annotations_table,
    filesystem_for,
    get_format,
    load_rows,
    read_signals,
    store,
)
from ondabatches.onda import _edf as edf_module
from ondabatches.onda._edf import split_edf_path
from ondabatches.onda._io import check_rows

pyedflib = pytest.importorskip("pyedflib")

_PKG = os.path.dirname(pyedflib.__file__)
SHIPPED = sorted(
    {
        os.path.basename(p): p
        for pattern in ("data/*.edf", "data/*.bdf", "tests/data/*.edf", "tests/data/*.bdf")
        for p in glob.glob(os.path.join(_PKG, pattern))
    }.values()
)


def write_synthetic(path: str, *, bdf: bool = False, seed: int = 0) -> str:
    """An EDF+ (or BDF+) file: 19 EEG channels at 256 Hz in two calibrations, an ECG at
    512 Hz, a resp channel at 32 Hz, 37 one-second records, and annotations."""
    rng = np.random.default_rng(seed)
    n_records = 37
    channels, data = [], []
    dig = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    for k in range(19):
        phys = 500.0 if k < 12 else 300.0  # channels 12..18: another gain
        channels.append(
            {"label": f"EEG C{k}", "dimension": "uV", "sample_frequency": 256,
             "physical_max": phys, "physical_min": -phys, "digital_max": dig[1],
             "digital_min": dig[0], "transducer": "", "prefilter": ""}
        )  # fmt: skip
        data.append(rng.uniform(-phys, phys, 256 * n_records))
    for label, rate, phys in (("ECG", 512, 5000.0), ("Resp chest", 32, 100.0)):
        channels.append(
            {"label": label, "dimension": "uV", "sample_frequency": rate,
             "physical_max": phys, "physical_min": -phys, "digital_max": dig[1],
             "digital_min": dig[0], "transducer": "", "prefilter": ""}
        )  # fmt: skip
        data.append(rng.uniform(-phys, phys, rate * n_records))
    filetype = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    writer = pyedflib.EdfWriter(path, len(channels), file_type=filetype)
    try:
        writer.setSignalHeaders(channels)
        writer.writeSamples(data)
        writer.writeAnnotation(3.5, 2.0, "arousal")
        writer.writeAnnotation(20.0, -1, "marker")
    finally:
        writer.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("edf-files")
    out = []
    for path in SHIPPED:
        target = root / os.path.basename(path)
        shutil.copy(path, target)
        out.append(str(target))
    out.append(write_synthetic(str(root / "synthetic.edf")))
    out.append(write_synthetic(str(root / "synthetic.bdf"), bdf=True, seed=1))
    return out


def _imported(path: str, out: str) -> pa.Table:
    report = import_dataset(path, out, workers=1)
    return read_signals(report.signals)


def _pairs(imported: pa.Table, in_place: pa.Table) -> list[tuple[Signal, Signal]]:
    assert imported.num_rows == in_place.num_rows
    pairs = []
    for a, b in zip(imported.to_pylist(), in_place.to_pylist(), strict=True):
        pairs.append((Signal.from_row(a), Signal.from_row(b)))
    return pairs


def test_shipped_files_are_found():
    names = {os.path.basename(p) for p in SHIPPED}
    assert {"test_generator.edf", "test_generator.bdf", "test_legacy.edf"} <= names


@pytest.mark.parametrize("index", range(len(SHIPPED) + 2))
def test_windows_equal_the_imported_copy(files, index, tmp_path):
    path = files[index]
    imported = _imported(path, str(tmp_path / "out"))
    signals, annotations = edf_signals(path)
    with open(path, "rb") as f:
        kind = "bdf" if f.read(1) == b"\xff" else "edf"
    assert set(signals.column("file_format").to_pylist()) == {kind}
    imported_annotations = read_annotations_of(tmp_path / "out")
    assert annotations.column("span").to_pylist() == imported_annotations.column("span").to_pylist()
    assert annotations.column("id").to_pylist() == imported_annotations.column("id").to_pylist()
    rng = np.random.default_rng(index)
    for copy, here in _pairs(imported, signals):
        assert split_edf_path(here.file_path)[0] == path
        assert here.info == copy.info and here.span == copy.span
        assert here.recording == copy.recording
        n = copy.n_samples
        spr = _spr(here)
        ranges = [range(0, n), range(n - 1, n), range(0, 1), range(spr - 1, spr + 1)]
        ranges.append(range(max(0, n - 3 * spr - 7), n))  # reaches the end
        for _ in range(12):
            a = int(rng.integers(0, n))
            ranges.append(range(a, int(rng.integers(a, min(n, a + 5 * spr) + 1))))
        for rows in ranges:
            want = load_rows(copy, rows, encoded=True).data
            got = load_rows(here, rows, encoded=True).data
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"{path} rows {rows}")
            decoded = load_rows(here, rows, dtype=np.float64).data
            assert decoded.tobytes() == load_rows(copy, rows, dtype=np.float64).data.tobytes()


def read_annotations_of(folder) -> pa.Table:
    from ondabatches.onda import read_annotations

    return read_annotations(str(folder / "dataset.onda.annotation.arrow"))


def _spr(sig: Signal) -> int:
    file, numbers = split_edf_path(sig.file_path)
    layout, _ = EdfFormat(sig.file_format).layout(filesystem_for(file)[0], file)
    return layout.samples_per_record[numbers[0]]


def test_channels_of_one_rate_with_other_gains_are_separate_signals(files):
    signals, _ = edf_signals(files[-2])  # synthetic.edf
    rows = signals.to_pylist()
    eeg = [r for r in rows if r["sensor_type"] == "eeg"]
    assert [len(r["channels"]) for r in eeg] == [12, 7]
    assert eeg[0]["sample_resolution_in_unit"] != eeg[1]["sample_resolution_in_unit"]
    assert [split_edf_path(r["file_path"])[1] for r in eeg] == [
        tuple(range(12)),
        tuple(range(12, 19)),
    ]
    assert {r["sample_rate"] for r in rows} == {256.0, 512.0, 32.0}


def test_a_window_reads_only_its_records(files, monkeypatch):
    path = files[-2]
    signals, _ = edf_signals(path)
    sig = Signal.from_row(signals.to_pylist()[1])  # the 7 EEG channels of the second gain
    file, numbers = split_edf_path(sig.file_path)
    layout, _ = EdfFormat().layout(filesystem_for(file)[0], file)
    reads = []
    real = edf_module.read_at

    def counting(fd, offset, n, url):
        reads.append((offset, n))
        return real(fd, offset, n, url)

    monkeypatch.setattr(edf_module, "read_at", counting)
    rows = range(256 * 5 + 100, 256 * 8 + 3)  # records 5..8
    load_rows(sig, rows, encoded=True)
    first = layout.offsets[numbers[0]]
    last = layout.offsets[numbers[-1]] + 256 * 2
    start = layout.header_bytes + 5 * layout.record_bytes + first
    stop = layout.header_bytes + 8 * layout.record_bytes + last
    assert reads == [(start, stop - start)]
    assert stop - start <= 4 * layout.record_bytes


def test_truncated_file_is_refused_naming_sizes(files, tmp_path):
    path = str(tmp_path / "short.edf")
    shutil.copy(files[-2], path)
    signals, _ = edf_signals(path)
    sig = Signal.from_row(signals.to_pylist()[0])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    for attempt in (
        lambda: load_rows(sig, range(0, 10), encoded=True),
        lambda: check_rows(sig, range(0, 10)),
    ):
        with pytest.raises(SampleFileError) as info:
            attempt()
        text = str(info.value)
        assert path in text and str(size - 1000) in text and str(size) in text


def test_discontinuous_file_is_refused(files, tmp_path):
    path = str(tmp_path / "gaps.edf")
    shutil.copy(files[-2], path)
    signals, _ = edf_signals(path)
    sig = Signal.from_row(signals.to_pylist()[0])
    with open(path, "r+b") as f:
        f.seek(192)
        f.write(b"EDF+D")
    with pytest.raises(SampleFileError, match="discontinuous") as info:
        load_rows(sig, range(0, 10), encoded=True)
    assert path in str(info.value)
    with pytest.raises(SourceFileError, match="discontinuous"):
        edf_signals(path)


def test_table_that_disagrees_with_the_header_is_refused(files):
    signals, _ = edf_signals(files[-2])
    row = signals.to_pylist()[0]
    wrong_rate = Signal.from_row({**row, "sample_rate": 128.0})
    with pytest.raises(SampleFileError, match="sample_rate"):
        load_rows(wrong_rate, range(0, 10))
    as_bdf = Signal.from_row({**row, "file_format": "bdf", "sample_type": "int32"})
    with pytest.raises(SampleFileError, match="EDF file"):
        load_rows(as_bdf, range(0, 10))
    notes = row["file_path"].split("#")[0] + "#signals=21"
    annotation = Signal.from_row({**row, "file_path": notes, "channels": ["x"]})
    with pytest.raises(SampleFileError, match="annotation channel"):
        load_rows(annotation, range(0, 10))


def test_write_is_refused(tmp_path):
    info = SamplesInfo("eeg", ("a",), "uV", 1.0, 0.0, "int16", 10.0)
    with pytest.raises(ReadOnlyFormatError):
        store(str(tmp_path / "x.edf"), Samples(np.zeros((1, 4), np.int16), info, encoded=True))
    assert not os.path.exists(tmp_path / "x.edf")
    assert isinstance(get_format("bdf"), EdfFormat)


@pytest.mark.s3
@pytest.mark.parametrize("merge_gap", [None, 0], ids=["one-range", "ranges-per-record"])
def test_s3_window_moves_at_most_its_records(files, s3, merge_gap, monkeypatch):
    from tests.onda.test_s3 import GetObjectBytes

    if merge_gap is not None:  # the other signals of a record are never fetched
        monkeypatch.setattr(edf_module, "_MAX_GAP", merge_gap)
    row = 0 if merge_gap is None else 1
    path = files[-2]
    url = s3.url(f"clinic/synthetic-{merge_gap}.edf")
    s3.fs.put(path, url)
    signals, _ = edf_signals(url)
    local, _ = edf_signals(path)
    fs, _ = filesystem_for(url)
    sig = Signal.from_row(signals.to_pylist()[row])
    assert sig.file_path.startswith(url + "#signals=")
    load_rows(sig, range(0, 1))  # the header, once per process
    counter = GetObjectBytes(fs)
    try:
        rng = np.random.default_rng(3)
        for _ in range(6):
            a = int(rng.integers(0, sig.n_samples - 2000))
            rows = range(a, a + int(rng.integers(1, 2000)))
            before = counter.total
            got = load_rows(sig, rows, encoded=True).data
            moved = counter.total - before
            want = load_rows(Signal.from_row(local.to_pylist()[row]), rows, encoded=True).data
            np.testing.assert_array_equal(got, want)
            n_records = (rows.stop - 1) // 256 - rows.start // 256 + 1
            layout, _ = EdfFormat().layout(fs, split_edf_path(sig.file_path)[0])
            assert 0 < moved <= 1.1 * n_records * layout.record_bytes
            if merge_gap == 0:
                assert moved == n_records * 7 * 256 * 2  # the 7 channels' bytes only
    finally:
        counter.close()


def _labeled(signals: pa.Table):
    rows = []
    stops = {(s.recording, s.span.stop) for s in map(Signal.from_row, signals.to_pylist())}
    for rec, span in stops:
        for k in range(span // (30 * 10**9)):
            span_k = {"start": k * 30 * 10**9, "stop": (k + 1) * 30 * 10**9}
            stage = ["wake", "rem"][k % 2]
            rows.append({"recording": rec, "id": uuid.uuid4(), "stage": stage, "span": span_k})
    anns = annotations_table(rows)
    return label_signals(signals, anns, labels_column="stage", epoch=30 * 10**9,
                         encoding={"wake": 1, "rem": 2})  # fmt: skip


def test_batches_on_worker_processes_equal_the_imported_copy(files, tmp_path):
    (path,) = [f for f in files if f.endswith("test_generator.edf")]  # 600 s
    imported = _imported(path, str(tmp_path / "out"))
    signals, _ = edf_signals(path)
    copy = RandomBatches(_labeled(imported), n_channels=4, batch_size=5,
                         batch_duration=60 * 10**9)  # fmt: skip
    here = RandomBatches(_labeled(signals), n_channels=4, batch_size=5,
                         batch_duration=60 * 10**9)  # fmt: skip
    state = here.initial_state(seed=7)
    want = []
    s = copy.initial_state(seed=7)
    for _ in range(3):
        batch, s = copy.iterate_batch(s)
        want.append(materialize_batch(batch))
    got_inline = materialize_batch(here.iterate_batch(state)[0])
    np.testing.assert_array_equal(got_inline[0], want[0][0])
    with Batcher(here, workers=2, backend="processes") as batcher:
        batcher.start(state)
        for k in range(3):
            (x, y), state = batcher.take(state)
            assert x.tobytes() == want[k][0].tobytes()
            np.testing.assert_array_equal(y, want[k][1])


def test_cli_import_in_place_writes_tables_only(files, tmp_path, capsys):
    from ondabatches.cli import main

    out = tmp_path / "ds"
    assert main(["import", files[-1], "--out", str(out), "--in-place", "--no-progress"]) == 0
    signals = read_signals(str(out / "dataset.onda.signal.arrow"))
    assert set(signals.column("file_format").to_pylist()) == {"bdf"}
    assert not (out / "samples").exists()
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0  # the file before the '#' is found and checked
    assert "problems: none" in capsys.readouterr().out
    sig = Signal.from_row(signals.to_pylist()[0])
    direct, _ = edf_signals(files[-1])
    np.testing.assert_array_equal(
        load_rows(sig, range(10, 700)).data,
        load_rows(Signal.from_row(direct.to_pylist()[0]), range(10, 700)).data,
    )
