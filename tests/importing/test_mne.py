"""MNE-readable formats: FIF written by MNE, BrainVision (float32 via MNE's export, int16
via pybv), imported with their stored values kept exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from ondabatches.importing import import_dataset  # noqa: E402
from ondabatches.onda import iter_annotations, iter_signals, load  # noqa: E402

from .test_dataset import tables  # noqa: E402

RATE = 100.0


def make_raw(n: int = 1000):
    info = mne.create_info(["Fp1", "Fp2", "C3", "EOG1", "aux0"], RATE,
                           ["eeg", "eeg", "eeg", "eog", "misc"])  # fmt: skip
    data = np.random.default_rng(0).normal(size=(5, n)) * 2e-5
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_annotations(mne.Annotations([1.0, 3.5], [2.0, 0.0], ["arousal", "spike"]))
    return raw


def assert_same_values(signals, path):
    """Each imported channel decodes to MNE's own reading of the file (in microvolts)."""
    raw = mne.io.read_raw(path, preload=True, verbose="error")
    n = 0
    for sig in iter_signals(signals):
        decoded = load(sig).data
        for row, channel in enumerate(sig.channels):
            i = [c.lower() for c in raw.ch_names].index(channel)
            expected = raw.get_data(picks=[i])[0]
            scale = 1e6 if sig.info.sample_unit == "microvolt" else 1.0
            np.testing.assert_allclose(decoded[row], expected * scale, rtol=1e-12, atol=1e-15)
            n += 1
    return n, raw


def test_fif_written_by_mne(tmp_path):
    raw = make_raw()
    path = tmp_path / "night_raw.fif"
    raw.save(path, verbose=False)
    report = import_dataset(tmp_path, tmp_path / "out", workers=1, block_bytes=512)
    signals, annotations = tables(tmp_path / "out")
    assert [f.source for f in report.files] == [str(path)]
    rows = {s.sensor_label: s for s in iter_signals(signals)}
    # MNE's "misc" channel aux0: the generic type, the signal named by its label.
    assert set(rows) == {"eeg", "eog", "aux"} and rows["aux"].info.sensor_type == "misc"
    assert rows["eeg"].channels == ("fp1", "fp2", "c3")
    # FIF holds float32: stored as float32, the file's own values.
    assert {s.info.sample_type for s in rows.values()} == {"float32"}
    stored = load(rows["eeg"], encoded=True).data
    original = raw.get_data(picks=[0, 1, 2]).astype(np.float32)
    np.testing.assert_array_equal(stored, original)
    assert assert_same_values(signals, path)[0] == 5
    got = [(a.span.start, a.span.stop, a.extra["value"]) for a in iter_annotations(annotations)]
    assert got == [(10**9, 3 * 10**9, "arousal"), (3_500_000_000, 3_500_000_001, "spike")]


def test_brainvision_float32_export(tmp_path):
    pytest.importorskip("pybv")
    vhdr = tmp_path / "rec.vhdr"
    with warnings.catch_warnings():
        # The writer's own notes (float64 data written as float32, non-voltage units).
        warnings.simplefilter("ignore")
        mne.export.export_raw(vhdr, make_raw(), fmt="brainvision", overwrite=True, verbose=False)
    import_dataset(vhdr, tmp_path / "out", workers=1, block_bytes=512)
    signals, annotations = tables(tmp_path / "out")
    assert {s.info.sample_type for s in iter_signals(signals)} == {"float32"}
    assert assert_same_values(signals, vhdr)[0] == 5
    assert annotations.num_rows == 2


def test_brainvision_int16_keeps_integers(tmp_path):
    pybv = pytest.importorskip("pybv")
    ints = np.random.default_rng(1).integers(-3000, 3000, size=(3, 800)).astype(np.int16)
    resolution = 0.1  # microvolts per count (pybv takes the data in volts)
    pybv.write_brainvision(
        data=ints.astype(np.float64) * resolution * 1e-6, sfreq=RATE, ch_names=["Fz", "Cz", "Pz"],
        fname_base="int", folder_out=str(tmp_path / "bv"), fmt="binary_int16",
        resolution=resolution, unit="µV", overwrite=True,
    )  # fmt: skip
    vhdr = tmp_path / "bv" / "int.vhdr"
    import_dataset(vhdr, tmp_path / "out", workers=1, block_bytes=256)
    (sig,) = iter_signals(tables(tmp_path / "out")[0])
    assert sig.info.sample_type == "int16" and sig.channels == ("fz", "cz", "pz")
    assert sig.info.sample_resolution_in_unit == pytest.approx(resolution)
    # The integers the file holds (pybv rounds its input its own way): read them raw.
    in_file = np.fromfile(tmp_path / "bv" / "int.eeg", dtype="<i2").reshape(-1, 3).T
    assert np.abs(in_file.astype(int) - ints).max() <= 1
    np.testing.assert_array_equal(load(sig, encoded=True).data, in_file)
    assert assert_same_values(tables(tmp_path / "out")[0], vhdr)[0] == 3


@pytest.mark.s3
def test_brainvision_from_s3_brings_its_sidecar_files(s3, tmp_path):
    pybv = pytest.importorskip("pybv")
    data = np.random.default_rng(2).integers(-100, 100, size=(2, 300)) * 1e-7
    pybv.write_brainvision(data=data, sfreq=RATE, ch_names=["Fz", "Cz"], fname_base="rec",
                           folder_out=str(tmp_path / "bv"), fmt="binary_int16",
                           resolution=0.1, unit="µV")  # fmt: skip
    for f in sorted((tmp_path / "bv").iterdir()):  # rec.vhdr, rec.vmrk, rec.eeg
        s3.fs.put_file(str(f), s3.url(f"bv/{f.name}"))
    import_dataset(s3.url("bv/rec.vhdr"), tmp_path / "out", workers=1)
    (sig,) = iter_signals(tables(tmp_path / "out")[0])
    in_file = np.fromfile(tmp_path / "bv" / "rec.eeg", dtype="<i2").reshape(-1, 2).T
    np.testing.assert_array_equal(load(sig, encoded=True).data, in_file)
    # Inside an input folder, the output's own files are not taken for inputs.
    report = import_dataset(tmp_path / "bv", tmp_path / "bv" / "onda", workers=1)
    assert [f.source for f in report.files] == [str(tmp_path / "bv" / "rec.vhdr")]
    again = import_dataset(tmp_path / "bv", tmp_path / "bv" / "onda", workers=1)
    assert again.n_imported == 0 and len(again.files) == 1


def _write_bv(folder, seed):
    pybv = pytest.importorskip("pybv")
    data = np.random.default_rng(seed).integers(-100, 100, size=(2, 300)) * 1e-7
    pybv.write_brainvision(data=data, sfreq=RATE, ch_names=["Fz", "Cz"], fname_base="rec",
                           folder_out=str(folder), fmt="binary_int16", resolution=0.1,
                           unit="µV", overwrite=True)  # fmt: skip
    return folder / "rec.vhdr"


def test_a_brainvision_recording_is_its_header_and_its_data(tmp_path):
    """Two recordings with byte-identical headers (a template) are two recordings, and
    new data under an unchanged header is imported again on a rerun."""
    a, b = _write_bv(tmp_path / "in" / "a", 1), _write_bv(tmp_path / "in" / "b", 2)
    assert a.read_bytes() == b.read_bytes()  # the headers alike, the .eeg files not
    import_dataset(tmp_path / "in", tmp_path / "out", workers=1)
    signals = tables(tmp_path / "out")[0]
    assert len(set(signals.column("recording").to_pylist())) == 2
    first = {str(s.recording): load(s, encoded=True).data for s in iter_signals(signals)}
    again = import_dataset(tmp_path / "in", tmp_path / "out", workers=1)
    assert again.n_imported == 0  # nothing changed: nothing to do
    _write_bv(tmp_path / "in" / "a", 3)  # new data, the same header
    assert a.read_bytes() == b.read_bytes()
    rerun = import_dataset(tmp_path / "in", tmp_path / "out", workers=1)
    assert rerun.n_imported == 1
    signals = tables(tmp_path / "out")[0]
    now = {str(s.recording): load(s, encoded=True).data for s in iter_signals(signals)}
    in_file = np.fromfile(tmp_path / "in" / "a" / "rec.eeg", dtype="<i2").reshape(-1, 2).T
    assert any(np.array_equal(d, in_file) for d in now.values())
    assert not any(np.array_equal(d, in_file) for d in first.values())


def _write_mff(path, n_channels=33, n=2500, rate=250):
    """An EGI MFF folder written by mffpy (the EGI package's own writer), read by MNE."""
    import datetime

    mffpy = pytest.importorskip("mffpy")
    from mffpy.writer import BinWriter

    writer = mffpy.Writer(str(path))
    start = datetime.datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc)
    writer.addxml("fileInfo", recordTime=start)
    writer.add_coordinates_and_sensor_layout("HydroCel GSN 32 1.0")
    data = np.random.default_rng(4).normal(size=(n_channels, n)).astype(np.float32) * 20
    block = BinWriter(sampling_rate=rate, data_type="EEG")
    block.add_block(data, offset_us=0)
    writer.addbin(block)
    writer.write()
    return data


def test_an_egi_mff_folder_imports_with_mnes_values_and_a_clean_output(tmp_path, capfd):
    data = _write_mff(tmp_path / "in" / "night.mff")
    capfd.readouterr()
    report = import_dataset(tmp_path / "in", tmp_path / "out", workers=1, block_bytes=4096)
    assert capfd.readouterr().out == ""  # mffpy's notes ("categories.xml ...") kept out
    assert [f.source for f in report.files] == [str(tmp_path / "in" / "night.mff")]
    signals = tables(tmp_path / "out")[0]
    (sig,) = iter_signals(signals)
    raw = mne.io.read_raw(tmp_path / "in" / "night.mff", preload=True, verbose="error")
    # MNE's names, in Onda's form (lower case, "Vertex Reference" as vertex_reference)
    assert sig.channels == tuple(c.lower().replace(" ", "_") for c in raw.ch_names)
    assert sig.info.sample_rate == 250 and sig.info.sample_unit == "microvolt"
    decoded = load(sig).data  # MNE's values (volts) in the file's microvolts
    np.testing.assert_allclose(decoded, raw.get_data() * 1e6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(decoded, data, rtol=1e-6)  # and what mffpy was given
    # The folder named directly: the same recording (its id is its files' digest).
    import_dataset(tmp_path / "in" / "night.mff", tmp_path / "out2", workers=1)
    again = tables(tmp_path / "out2")[0]
    assert again.column("recording").to_pylist() == signals.column("recording").to_pylist()
