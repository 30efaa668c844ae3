"""Formats MNE reads, each written here by its own writing library or by hand after its
spec (MEF3 by pymef, SNIRF by h5py, ...), read back by MNE to prove the file is real,
and imported with MNE's values, channels, rate and start, and a clean stdout."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from ondabatches.cli import main  # noqa: E402
from ondabatches.importing import import_dataset  # noqa: E402
from ondabatches.onda import iter_annotations, iter_signals, load  # noqa: E402

from .test_dataset import tables  # noqa: E402

START = dt.datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


def _as_ns(when: dt.datetime) -> np.datetime64:
    return np.datetime64(when.astimezone(dt.timezone.utc).replace(tzinfo=None), "ns")


def import_as_mne_reads(tmp_path, capfd, path, names, read=None):
    """Import the folder holding ``path`` (stdout kept clean) and check every channel
    against MNE's own reading of ``path``; ``names`` maps each Onda channel name to
    MNE's; ``read`` is MNE's reader (``mne.io.read_raw``, by suffix, unless given).
    Returns the imported signals by sensor label, and MNE's raw."""
    capfd.readouterr()
    report = import_dataset(path.parent, tmp_path / "out", workers=1, block_bytes=4096)
    assert capfd.readouterr().out == ""  # the readers' notes kept out of the output
    assert [f.source for f in report.files] == [str(path)]
    signals = tables(tmp_path / "out")[0]
    raw = (read or mne.io.read_raw)(path, preload=True, verbose="error")
    rows = {s.sensor_label: s for s in iter_signals(signals)}
    got = [c for s in rows.values() for c in s.channels]
    assert sorted(got) == sorted(names) and sorted(names.values()) == sorted(raw.ch_names)
    for sig in rows.values():
        assert sig.info.sample_rate == raw.info["sfreq"]
        scale = 1e6 if sig.info.sample_unit == "microvolt" else 1.0
        picks = [raw.ch_names.index(names[c]) for c in sig.channels]
        expected = raw.get_data(picks=picks) * scale
        np.testing.assert_allclose(load(sig).data, expected, rtol=1e-12, atol=1e-15)
    starts = signals.column("start_datetime")
    if raw.info["meas_date"] is None:  # the format holds none: none made up
        assert starts.null_count == len(rows)
    else:
        start = int(_as_ns(raw.info["meas_date"]).astype(np.int64))  # ns since the epoch
        assert [t.value for t in starts] == [start] * len(rows)
    return rows, raw


def write_input(tmp_path, kind):
    """The recording of ``kind`` (a key of WRITERS) written into ``tmp_path / "in"``:
    its path, and what its writer returns (the values written)."""
    write, name = WRITERS[kind]
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    return path, write(path)


def _mef_sections(rate: float, n: int) -> tuple[dict, dict]:
    """MEF3 time-series metadata sections 2 and 3, as pymef's own tests fill them."""
    section_2 = {
        "channel_description": "depth contact", "session_description": "written here",
        "recording_duration": int(n * 1e6 / rate), "reference_description": "ref",
        "acquisition_channel_number": 1, "sampling_frequency": rate,
        "notch_filter_frequency_setting": 50.0, "low_frequency_filter_setting": 0.1,
        "high_frequency_filter_setting": 100.0, "AC_line_frequency": 50,
        "units_conversion_factor": 0.5, "units_description": "uV",
        "maximum_native_sample_value": 0.0, "minimum_native_sample_value": 0.0,
        "start_sample": 0, "number_of_blocks": 0, "maximum_block_bytes": 0,
        "maximum_block_samples": 0, "maximum_difference_bytes": 0, "block_interval": 0,
        "number_of_discontinuities": 1, "maximum_contiguous_blocks": 0,
        "maximum_contiguous_block_bytes": 0, "maximum_contiguous_samples": 0,
        "number_of_samples": 0,
    }  # fmt: skip
    section_3 = {
        "recording_time_offset": 0, "DST_start_time": 0, "DST_end_time": 0, "GMT_offset": 0,
        "subject_name_1": "a", "subject_name_2": "b", "subject_ID": "s1",
        "recording_location": "here",
    }  # fmt: skip
    return section_2, section_3


def write_mef(path, channels=("Fp1", "C3", "O1"), rate=256.0, n=2560):
    """A MEF3 session folder written by pymef (MSEL's own writer): one segment per
    channel of int32 samples, 0.5 uV each."""
    pymef = pytest.importorskip("pymef")
    session = pymef.mef_session.MefSession(str(path), "", new_session=True)
    start = int(START.timestamp() * 10**6)  # MEF times are microseconds since the epoch
    end = start + int(n * 1e6 / rate)
    rng = np.random.default_rng(5)
    written = {}
    for name in channels:
        section_2, section_3 = _mef_sections(rate, n)
        session.write_mef_ts_segment_metadata(name, 0, "", "", start, end, section_2, section_3)
        written[name] = rng.integers(-20000, 20000, n).astype(np.int32)
        session.write_mef_ts_segment_data(name, 0, "", "", 256, written[name])
    return written


def test_a_mef3_session_written_by_pymef_imports_its_int32_samples(tmp_path, capfd):
    path, written = write_input(tmp_path, "mef")
    names = {"fp1": "Fp1", "c3": "C3", "o1": "O1"}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    (sig,) = rows.values()
    assert sig.info.sensor_type == "seeg"  # MNE's type for MEF3 channels
    # MEF3 holds int32 samples: stored as they are, 0.5 uV (units_conversion_factor) each.
    assert sig.info.sample_type == "int32" and sig.info.sample_unit == "microvolt"
    assert sig.info.sample_resolution_in_unit == pytest.approx(0.5)
    stored = load(sig, encoded=True).data
    for row, channel in enumerate(sig.channels):
        np.testing.assert_array_equal(stored[row], written[names[channel]])
    assert raw.info["meas_date"] == START


def write_snirf(path, rate=10.0, n=300):
    """A continuous-wave SNIRF file written with h5py after the SNIRF 1.0 spec: two
    sources, two detectors, three pairs at two wavelengths."""
    h5py = pytest.importorskip("h5py")
    pairs = [(1, 1), (1, 2), (2, 1)]
    data = np.random.default_rng(6).uniform(0.5, 2.0, size=(n, 2 * len(pairs)))
    tags = {"SubjectID": "sub01", "MeasurementDate": "2021-03-04",
            "MeasurementTime": "05:06:07.25Z", "LengthUnit": "mm", "TimeUnit": "s",
            "FrequencyUnit": "Hz"}  # fmt: skip
    with h5py.File(path, "w") as f:
        f["formatVersion"] = np.bytes_("1.0")
        for key, value in tags.items():
            f[f"nirs/metaDataTags/{key}"] = np.bytes_(value)
        f["nirs/data1/dataTimeSeries"] = data
        f["nirs/data1/time"] = np.arange(n) / rate
        columns = [(s, d, w) for w in (1, 2) for s, d in pairs]
        for k, (source, detector, wavelength) in enumerate(columns, 1):
            m = f.create_group(f"nirs/data1/measurementList{k}")
            m["sourceIndex"], m["detectorIndex"] = np.int32(source), np.int32(detector)
            m["wavelengthIndex"] = np.int32(wavelength)
            m["dataType"], m["dataTypeIndex"] = np.int32(1), np.int32(1)  # CW amplitude
        f["nirs/probe/wavelengths"] = np.array([760.0, 850.0])
        f["nirs/probe/sourcePos3D"] = np.array([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0]])
        f["nirs/probe/detectorPos3D"] = np.array([[0.0, 30.0, 0.0], [30.0, 30.0, 0.0]])
    return data.T


def test_a_snirf_file_written_after_the_spec_imports_its_float64_values(tmp_path, capfd):
    path, written = write_input(tmp_path, "snirf")
    mne_names = [f"S{s}_D{d} {w}" for w in (760, 850) for s, d in [(1, 1), (1, 2), (2, 1)]]
    names = {c.lower().replace(" ", "_"): c for c in mne_names}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    (sig,) = rows.values()
    assert sig.info.sensor_type == "fnirs_cw_amplitude" and sig.info.sample_rate == 10.0
    assert sig.channels == tuple(names)  # in the file's order
    # Light intensities in the device's units, as the file holds them (MNE calls them
    # volts): not scaled to microvolts.
    assert sig.info.sample_unit == "unknown" and sig.info.sample_type == "float64"
    np.testing.assert_array_equal(load(sig, encoded=True).data, written)
    assert raw.info["meas_date"] == dt.datetime(2021, 3, 4, 5, 6, 7, 250000, dt.timezone.utc)


def write_persyst(lay, names=("Fp1-Ref", "C3-Ref", "O1-Ref", "EKG-Ref"), n=1280):
    """A Persyst recording written by hand after its layout: a ``.lay`` INI header
    (FileInfo, Patient, ChannelMap, Comments) and a ``.dat`` of interleaved int16 samples,
    0.1 uV each. The birth date has a four-digit year, as Persyst writes it, which MNE's
    reader cannot parse: it prints so to stdout."""
    ints = np.random.default_rng(7).integers(-3000, 3000, size=(n, len(names))).astype("<i2")
    ints.tofile(lay.with_suffix(".dat"))
    channel_map = "".join(f"{name}={i}\n" for i, name in enumerate(names, 1))
    lay.write_text(
        f"[FileInfo]\nFile={lay.stem}.dat\nFileType=Interleaved\nSamplingRate=256\n"
        f"HeaderLength=0\nCalibration=0.1\nWaveformCount={len(names)}\nDataType=0\n"
        "[Patient]\nFirst=Ada\nLast=L\nSex=F\nHand=R\nID=s01\nBirthDate=12/10/1815\n"
        "TestDate=01/02/2020\nTestTime=03:04:05\n"
        f"[ChannelMap]\n{channel_map}"
        "[Comments]\n1.5,2.0,0,100,arousal\n3.25,0,0,100,spike\n"
    )
    return ints.T


def test_a_persyst_recording_written_by_hand_imports_its_int16_samples(tmp_path, capfd):
    lay, written = write_input(tmp_path, "persyst")
    mne.io.read_raw(lay, verbose="error")
    assert "Unable to process birthdate" in capfd.readouterr().out  # MNE's own print
    names = {"fp1": "FP1", "c3": "C3", "o1": "O1", "ekg": "EKG"}  # MNE's, upper case
    rows, raw = import_as_mne_reads(tmp_path, capfd, lay, names)
    (sig,) = rows.values()
    assert sig.channels == ("fp1", "c3", "o1", "ekg") and sig.info.sample_rate == 256
    # DataType=0: int16 samples, stored as they are, Calibration=0.1 uV each.
    assert sig.info.sample_type == "int16" and sig.info.sample_unit == "microvolt"
    assert sig.info.sample_resolution_in_unit == pytest.approx(0.1, rel=1e-12)
    np.testing.assert_array_equal(load(sig, encoded=True).data, written)
    assert raw.info["meas_date"] == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    annotations = tables(tmp_path / "out")[1]
    got = [(a.span.start, a.span.stop, a.extra["value"]) for a in iter_annotations(annotations)]
    assert got == [
        (1_500_000_000, 3_500_000_000, "arousal"),
        (3_250_000_000, 3_250_000_001, "spike"),
    ]


# A NIRScout header as NIRStar 15.2 writes it (tabs inside the quoted matrices; the
# "#...#" blocks are what keeps it from being an INI file).
NIRX_HEADER = """[GeneralInfo]
FileName="NIRS-2019-01-02_001"
Date="Wed, Jan 02, 2019"
Time="03:04:05.500"
Device="NIRScout 16x16"
Source="LED"
Mod="Human Subject"
APD="AD1"
NIRStar="15.2"
Subject=1

[ImagingParameters]
Sources=2
Detectors=2
ShortBundles=0
ShortDetIndex="0"
Steps=2
Wavelengths="760\t850"
TrigIns=4
TrigOuts=0
AnIns=0
SamplingRate=7.812500
Mod Amp="0.40\t0.40"
Threshold="0.00\t0.00"

[Paradigm]
StimulusType="None"

[ExperimentNotes]
Notes=""

[GainSettings]
Gains="#
6\t6
6\t6
#"

[Markers]
Events="#
40\t1\t1
#"

[DataStructure]
S-D-Key="1-1:1,1-2:2,2-1:3,2-2:4,"
S-D-Mask="#
1\t1
1\t0
#"
"""


def write_nirx(folder, n=200):
    """A NIRScout recording folder written by hand after NIRStar 15.2's layout: the
    header, the subject's .inf, .set/.tpl/config, the two wavelengths' text tables (one
    column per source-detector pair of the S-D-Key), a trigger (.evt) and the probe
    (_probeInfo.mat, written by scipy's MAT writer), three pairs of four in use."""
    savemat = pytest.importorskip("scipy.io").savemat
    folder.mkdir(parents=True)
    stem = folder / folder.name
    stem.with_suffix(".hdr").write_text(NIRX_HEADER)
    stem.with_suffix(".inf").write_text(
        '[Subject Demographics]\nName="Ada L"\nAge=30\nGender="F"\nContact Information=""\n'
    )
    stem.with_suffix(".set").write_text("6\t6\n6\t6\n")
    stem.with_suffix(".tpl").write_text("1\t1\n1\t0\n")
    (folder / f"{folder.name}_config.txt").write_text("SamplingRate=7.812500\nSources=2\n")
    stem.with_suffix(".dat").write_text("".join(f"{i} 0\n" for i in range(n)))
    stem.with_suffix(".evt").write_text("40\t1\t0\t0\t0\t0\t0\t0\t0\n")  # frame 40, code 1
    rng = np.random.default_rng(8)
    tables_ = {k: rng.uniform(0.01, 2.0, size=(n, 4)).round(6) for k in ("wl1", "wl2")}
    for key, values in tables_.items():
        rows = "".join(" ".join(f"{x:.6f}" for x in row) + "\n" for row in values)
        stem.with_suffix(f".{key}").write_text(rows)
    probes = {
        "index_c": np.array([[1, 1], [1, 2], [2, 1]], float),
        "coords_s3": np.array([[0.0, 5, 6], [3, 5, 6]]),
        "coords_d3": np.array([[0.0, 8, 6], [3, 8, 6]]),
        "coords_c3": np.array([[0.0, 6.5, 6], [1.5, 5, 6], [1.5, 8, 6]]),
    }
    savemat(folder / f"{folder.name}_probeInfo.mat", {"probeInfo": {"probes": probes}})
    # MNE's order: pair by pair, 760 then 850 nm; pairs 1-1, 1-2, 2-1 (columns 0, 1, 2).
    return np.stack([tables_[k][:, c] for c in range(3) for k in ("wl1", "wl2")])


def test_a_nirx_folder_written_by_hand_imports_its_values_and_trigger(tmp_path, capfd):
    folder, written = write_input(tmp_path, "nirx")
    mne_names = [f"S{p} {w}" for p in ("1_D1", "1_D2", "2_D1") for w in (760, 850)]
    names = {c.lower().replace(" ", "_"): c for c in mne_names}
    rows, raw = import_as_mne_reads(tmp_path, capfd, folder, names, mne.io.read_raw_nirx)
    (sig,) = rows.values()
    assert sig.channels == tuple(names) and [names[c] for c in sig.channels] == raw.ch_names
    assert sig.info.sensor_type == "fnirs_cw_amplitude" and sig.info.sample_rate == 7.8125
    assert sig.info.sample_unit == "unknown" and sig.info.sample_type == "float64"
    np.testing.assert_array_equal(load(sig, encoded=True).data, written)
    assert raw.info["meas_date"] == dt.datetime(2019, 1, 2, 3, 4, 5, 500000, dt.timezone.utc)
    # The trigger: frame 40 at 7.8125 Hz, code 1; MNE gives it 1 s.
    (trigger,) = iter_annotations(tables(tmp_path / "out")[1])
    assert (trigger.span.start, trigger.span.stop) == (5_120_000_000, 6_120_000_000)
    assert trigger.extra["value"] == raw.annotations.description[0] == "1.0"


def write_eeglab(path):
    """An EEGLAB ``.set`` written by MNE's exporter (eeglabio): five channels, two
    annotations."""
    pytest.importorskip("eeglabio")
    info = mne.create_info(["Fp1", "Fp2", "C3", "EOG1", "ECG"], 250.0,
                           ["eeg", "eeg", "eeg", "eog", "ecg"])  # fmt: skip
    raw = mne.io.RawArray(
        np.random.default_rng(9).normal(size=(5, 1000)) * 2e-5, info, verbose=False
    )
    raw.set_annotations(mne.Annotations([1.0, 2.5], [0.5, 0.0], ["arousal", "spike"]))
    mne.export.export_raw(path, raw, fmt="eeglab", overwrite=True, verbose="error")
    return raw.get_data()


def test_an_eeglab_set_written_by_mnes_exporter_imports_with_its_events(tmp_path, capfd):
    path, given = write_input(tmp_path, "eeglab")
    names = {"fp1": "Fp1", "fp2": "Fp2", "c3": "C3", "eog1": "EOG1", "ecg": "ECG"}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    (sig,) = rows.values()  # EEGLAB keeps no channel types: all EEG to MNE
    assert sig.info.sensor_type == "eeg" and sig.channels == tuple(names)
    assert sig.info.sample_rate == 250 and sig.info.sample_unit == "microvolt"
    # What MNE was given, to the file's float32 precision.
    np.testing.assert_allclose(load(sig).data, given * 1e6, rtol=1e-6, atol=1e-5)
    got = [
        (a.span.start, a.span.stop, a.extra["value"])
        for a in iter_annotations(tables(tmp_path / "out")[1])
    ]
    assert got == [
        (1_000_000_000, 1_500_000_000, "arousal"),
        (2_500_000_000, 2_500_000_001, "spike"),
    ]


def _curry_header(n: int, names: list[str], positions: list[tuple[float, ...]]) -> str:
    """A Curry 8 ``.cdt.dpa``: the data and device parameters, impedances, labels and
    sensor positions, each a ``NAME START``/``END`` block (the lists ``START_LIST``)."""
    rows = "\n".join("\t".join(["-1"] * len(names)) for _ in range(10))  # none measured
    sensors = "\n".join("\t".join(f"{v:.2f}" for v in p) for p in positions)
    labels = "\n".join(names)
    return (
        f"DATA_PARAMETERS START\nFileVersion\t=  804\nNumSamples\t=  {n}\n"
        f"NumChannels\t=  {len(names)}\nNumTrials\t=  1\nSampleFreqHz\t=  500\n"
        "TriggerOffsetUsec\t=  0\nDataFormat\t=  BINARY\nDataSampOrder\t=  SAMPLE\n"
        "SampleTimeUsec\t=  2000\nStartYear\t=  2020\nStartMonth\t=  1\nStartDay\t=  2\n"
        "StartHour\t=  3\nStartMin\t=  4\nStartSec\t=  5\nStartMillisec\t=  250\n"
        "DataByteOrder\t=  LITTLE_ENDIAN\nAmplifierInfo\t=  SynAmps2 8050\n"
        "DATA_PARAMETERS END\n\n"
        f"DEVICE_PARAMETERS START\nNumChanThisGroup\t=  {len(names)}\nDataUnit\t=  uV\n"
        "DEVICE_PARAMETERS END\n\n"
        f"IMPEDANCE_VALUES START_LIST\n{rows}\nIMPEDANCE_VALUES END_LIST\n\n"
        f"LABELS START\nNumLabels\t=  {len(names)}\nLABELS END\n"
        f"LABELS START_LIST\n{labels}\nLABELS END_LIST\n\n"
        f"SENSORS START\nNumSensorsThisGroup\t=  {len(names)}\nSENSORS END\n"
        f"SENSORS START_LIST\n{sensors}\nSENSORS END_LIST\n"
    )


def write_curry(cdt, n=1000):
    """A Curry 8 recording written by hand after its layout: ``.cdt`` float32 samples
    (sample by sample, in uV), the ``.cdt.dpa`` header, one event in ``.cdt.ceo``."""
    pytest.importorskip("curryreader")  # what MNE reads Curry's header with
    names = ["Fp1", "Fp2", "Cz", "O1"]
    data = (np.random.default_rng(10).normal(size=(n, len(names))) * 20).astype("<f4")
    data.tofile(cdt)
    positions = [(-30, 80, 30), (30, 80, 30), (0, 0, 100), (-30, -80, 30)]
    cdt.with_name(f"{cdt.name}.dpa").write_text(_curry_header(n, names, positions))
    event = "\t".join(["250", "0", "1", "0", "250", "250"] + ["0"] * 5)  # sample 250, type 1
    cdt.with_name(f"{cdt.name}.ceo").write_text(
        f"NUMBER_LIST START_LIST\n{event}\nNUMBER_LIST END_LIST\n\n"
        "REMARK_LIST START_LIST\nspike\nREMARK_LIST END_LIST\n"
    )
    return data.T


def test_a_curry_recording_written_by_hand_imports_its_float32_values(tmp_path, capfd):
    cdt, written = write_input(tmp_path, "curry")
    names = {"fp1": "Fp1", "fp2": "Fp2", "cz": "Cz", "o1": "O1"}
    rows, raw = import_as_mne_reads(tmp_path, capfd, cdt, names)
    (sig,) = rows.values()
    assert sig.channels == tuple(names) and sig.info.sample_rate == 500
    # Curry's float32 samples (MNE says "int", and its calibration is in raw._cals, not
    # in info["chs"]): stored as they are, in the header's uV.
    assert sig.info.sample_type == "float32" and sig.info.sample_unit == "microvolt"
    assert sig.info.sample_resolution_in_unit == pytest.approx(1.0)
    np.testing.assert_array_equal(load(sig, encoded=True).data, written)
    assert raw.info["meas_date"] == dt.datetime(2020, 1, 2, 3, 4, 5, 250000, dt.timezone.utc)
    (event,) = iter_annotations(tables(tmp_path / "out")[1])
    assert (event.span.start, event.extra["value"]) == (500_000_000, "spike")


def _nedf_header(names, n, n_acc):
    """NEDF 1.4's header: XML, null-padded to 10240 bytes."""
    montage = "".join(f"<C{i}>{c}</C{i}>" for i, c in enumerate(names, 1))
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?><Header><NEDFversion>1.4</NEDFversion>"
        f"<NumberOfChannelsOfAccelerometer>{n_acc}</NumberOfChannelsOfAccelerometer>"
        f"<EEGSettings><TotalNumberOfChannels>{len(names)}</TotalNumberOfChannels>"
        f"<EEGSamplingRate>500</EEGSamplingRate><NumberOfRecordsOfEEG>{n}"
        f"</NumberOfRecordsOfEEG><EEGMontage>{montage}</EEGMontage></EEGSettings>"
        "<StepDetails><DeviceClass>ENOBIO</DeviceClass><StartDate_firstEEGTimestamp>"
        f"{int(START.timestamp() * 1000)}</StartDate_firstEEGTimestamp></StepDetails></Header>"
    )
    return xml.encode().ljust(10240, b"\0")


def write_nedf(path, names=("Fp1", "Fp2", "Cz", "O1"), n=1002, n_acc=3):
    """A NeuroElectrics NEDF 1.4 file written by hand after its layout: the XML header,
    then blocks of an accelerometer reading (3 x u16) and five samples of 24-bit
    big-endian EEG and a 32-bit trigger code, the last block short (1002 samples)."""
    pytest.importorskip("defusedxml")  # what MNE parses the header with
    rng = np.random.default_rng(11)
    ints = rng.integers(-(2**23) + 1, 2**23, size=(n, len(names)))
    codes = np.zeros(n, np.int64)
    codes[[100, 600]] = [1, 2]
    sample = np.dtype([("eeg", "B", (len(names), 3)), ("trig", ">i4")])
    blocks = []
    for lo in range(0, n, 5):
        hi = min(lo + 5, n)
        block = np.zeros(1, [("acc", ">u2", (n_acc,)), ("data", sample, (hi - lo,))])
        u = ints[lo:hi] & 0xFFFFFF  # two's complement, 24 bits
        block["data"]["eeg"][0] = np.stack([u >> 16, (u >> 8) & 255, u & 255], axis=-1)
        block["data"]["trig"][0] = codes[lo:hi]
        block["acc"][0] = rng.integers(0, 1000, n_acc)
        blocks.append(block.tobytes())
    path.write_bytes(_nedf_header(names, n, n_acc) + b"".join(blocks))
    return ints.T, codes


def test_a_nedf_file_written_by_hand_imports_its_24_bit_samples_and_codes(tmp_path, capfd):
    path, (ints, codes) = write_input(tmp_path, "nedf")
    names = {"fp1": "Fp1", "fp2": "Fp2", "cz": "Cz", "o1": "O1", "sti_014": "STI 014"}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    assert set(rows) == {"eeg", "stim"} and rows["eeg"].channels == ("fp1", "fp2", "cz", "o1")
    # MNE says "double": the 24-bit integers are stored as int32, 2.4 V / 6 / (2^23 - 1) each.
    eeg, stim = rows["eeg"].info, rows["stim"].info
    assert eeg.sample_type == "int32" and eeg.sample_unit == "microvolt"
    assert eeg.sample_resolution_in_unit == pytest.approx(2.4e6 / 6 / 8388607, rel=1e-12)
    np.testing.assert_array_equal(load(rows["eeg"], encoded=True).data, ints)
    # Trigger codes, not volts (MNE gives them the unit V): 1 and 2 as written.
    assert (stim.sample_type, stim.sample_unit, stim.sample_resolution_in_unit) == (
        "int32",
        "unknown",
        1.0,
    )
    np.testing.assert_array_equal(load(rows["stim"]).data[0], codes)
    assert raw.info["meas_date"] == START.replace(microsecond=123000)  # milliseconds


def test_nedf_windows_inside_its_5_sample_blocks_read_right(tmp_path):
    """MNE's NEDF reader fails on a window from inside one 5-sample block to past the
    next (4..11: an AssertionError); every window reads MNE's values all the same."""
    from ondabatches.importing import MneSource

    path, _ = write_input(tmp_path, "nedf")
    full = mne.io.read_raw(path, preload=True, verbose="error").get_data()
    with pytest.raises(AssertionError):  # MNE's own, without the workaround
        mne.io.read_raw(path, verbose="error").get_data(start=4, stop=11)
    source = MneSource(path)
    try:
        eeg = source.channels[:4]
        for start in [*range(0, 12), 996, 999]:
            for n in (1, 7, 1002 - start):
                got = source.read(eeg, start, min(n, 1002 - start))
                expected = np.rint(full[:4, start : start + len(got[0])] / (2.4 / 6 / 8388607))
                np.testing.assert_array_equal(got, expected)
    finally:
        source.close()


def write_eximia(path, n=2900):
    """A Nexstim eXimia ``.nxe`` written by hand after its layout: no header, 64
    channels of int16 samples interleaved, at the device's fixed 1450 Hz."""
    ints = np.random.default_rng(12).integers(-30000, 30000, size=(n, 64)).astype("<i2")
    ints.tofile(path)
    return ints.T


def test_an_eximia_file_written_by_hand_imports_its_int16_samples(tmp_path, capfd):
    path, ints = write_input(tmp_path, "eximia")
    mne_names = mne.io.read_raw(path, verbose="error").ch_names  # the device's fixed montage
    names = {c.lower(): c for c in mne_names}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    assert set(rows) == {"eeg", "eog", "stim"} and rows["stim"].channels == (
        "gatein",
        "trig1",
        "trig2",
    )
    assert {r.info.sample_type for r in rows.values()} == {"int16"}
    assert rows["stim"].info.sample_unit == "unknown"  # trigger levels, not volts
    for sig in rows.values():
        picks = [mne_names.index(names[c]) for c in sig.channels]
        np.testing.assert_array_equal(load(sig, encoded=True).data, ints[picks])
    assert sig.info.sample_rate == 1450


WRITERS = {
    "mef": (write_mef, "night.mefd"),
    "snirf": (write_snirf, "rec.snirf"),
    "persyst": (write_persyst, "night.lay"),
    "nirx": (write_nirx, "NIRS-2019-01-02_001"),
    "eeglab": (write_eeglab, "rec.set"),
    "curry": (write_curry, "rec.cdt"),
    "nedf": (write_nedf, "rec.nedf"),
    "eximia": (write_eximia, "rec.nxe"),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_the_cli_prints_only_its_report(tmp_path, capfd, kind):
    """``ondabatches import`` prints what the API's report says, and nothing of the
    readers' own (pymef, h5py, MNE)."""
    write_input(tmp_path, kind)
    report = import_dataset(tmp_path / "in", tmp_path / "api" / "out", workers=1)
    capfd.readouterr()
    out = tmp_path / "cli" / "out"
    assert main(["import", str(tmp_path / "in"), "-o", str(out), "-j", "1", "--no-progress"]) == 0
    printed = capfd.readouterr().out

    def same(text: str, folder) -> str:
        return re.sub(r" in [0-9.]+ s\b", " in T s", text.replace(str(folder), "OUT"))

    expected = [
        f"[1/1] {report.files[0]}",
        str(report),
        f"done: inspect the result with `ondabatches inspect {tmp_path / 'api' / 'out'}`",
    ]  # noqa: E501
    assert same(printed, out) == same("\n".join(expected) + "\n", tmp_path / "api" / "out")


def test_a_nan_where_int32_samples_are_stored_is_refused(tmp_path, monkeypatch):
    """A sample MNE reads as NaN (no integer) is refused, not stored as INT32_MIN."""
    from ondabatches.errors import SourceFileError
    from ondabatches.importing import MneSource

    write_mef(tmp_path / "gap.mefd", channels=("Fp1",), n=512)
    source = MneSource(tmp_path / "gap.mefd")
    try:
        (channel,) = source.channels
        assert channel.sample_type == "int32"
        real = source._raw.get_data

        def with_a_gap(*args, **kwargs):
            data = real(*args, **kwargs)
            data[0, 1] = np.nan
            return data

        monkeypatch.setattr(source._raw, "get_data", with_a_gap)
        with pytest.raises(SourceFileError, match=r"gap\.mefd.*'Fp1' sample 1 is nan"):
            source.read([channel], 0, 4)
    finally:
        source.close()
