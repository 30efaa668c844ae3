"""Recordings of the formats MNE reads, each written by that format's own writing
library (pymef, h5py after the SNIRF spec, MNE's EEGLAB exporter) or by hand after its
layout, for tests/importing/test_written_formats.py. Each writer returns the values it
wrote."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

mne = pytest.importorskip("mne")


START = dt.datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


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


def write_eximia(path, n=2900):
    """A Nexstim eXimia ``.nxe`` written by hand after its layout: no header, 64
    channels of int16 samples interleaved, at the device's fixed 1450 Hz."""
    ints = np.random.default_rng(12).integers(-30000, 30000, size=(n, 64)).astype("<i2")
    ints.tofile(path)
    return ints.T


def write_nsx(path, names=("chan1", "chan2", "chan3"), n=2000, first=250):
    """A Blackrock NSx 2.3 (``.ns3``) file written by hand after its spec (LB-0023): the
    basic header, one 66-byte extended header per channel, one data packet of int16
    samples interleaved; 1 kS/s (period 30 of a 30 kHz clock), the packet's timestamp at
    sample 250, +-8191 digital for +-5000 uV."""
    basic = np.dtype([
        ("file_id", "S8"), ("ver_major", "u1"), ("ver_minor", "u1"),
        ("bytes_in_headers", "<u4"), ("label", "S16"), ("comment", "S256"),
        ("period", "<u4"), ("timestamp_resolution", "<u4"), ("time", "<u2", (8,)),
        ("channel_count", "<u4"),
    ])  # fmt: skip
    extended = np.dtype([
        ("type", "S2"), ("electrode_id", "<u2"), ("electrode_label", "S16"),
        ("physical_connector", "u1"), ("connector_pin", "u1"), ("min_digital_val", "<i2"),
        ("max_digital_val", "<i2"), ("min_analog_val", "<i2"), ("max_analog_val", "<i2"),
        ("units", "S16"), ("hi_freq_corner", "<u4"), ("hi_freq_order", "<u4"),
        ("hi_freq_type", "<u2"), ("lo_freq_corner", "<u4"), ("lo_freq_order", "<u4"),
        ("lo_freq_type", "<u2"),
    ])  # fmt: skip
    head = np.zeros(1, basic)
    head[0] = (b"NEURALCD", 2, 3, basic.itemsize + len(names) * extended.itemsize,
               b"1 kS/s", b"written here", 30, 30000,
               (2020, 1, 4, 2, 3, 4, 5, 123), len(names))  # fmt: skip
    channels = np.zeros(len(names), extended)
    for k, name in enumerate(names):
        channels[k] = (b"CC", k + 1, name.encode(), 1, k + 1, -8191, 8191, -5000, 5000,
                       b"uV", 300, 1, 1, 7500000, 3, 1)  # fmt: skip
    packet = np.zeros(1, [("header", "u1"), ("timestamp", "<u4"), ("n", "<u4")])
    packet[0] = (1, first * 30, n)
    ints = np.random.default_rng(13).integers(-8191, 8192, size=(n, len(names))).astype("<i2")
    path.write_bytes(head.tobytes() + channels.tobytes() + packet.tobytes() + ints.tobytes())
    return ints.T


_GDF_FIXED = np.dtype([
    ("version", "S8"), ("patient", "S66"), ("reserved", "S10"), ("health", "u1", (4,)),
    ("recording", "S64"), ("location", "u1", (16,)), ("start", "<u8"), ("birthday", "<u8"),
    ("header_blocks", "<u2"), ("reserved2", "S6"), ("equipment", "u1", (8,)),
    ("ip", "u1", (6,)), ("head", "<u2", (3,)), ("ref", "<f4", (3,)), ("gnd", "<f4", (3,)),
    ("n_records", "<i8"), ("duration", "<u4", (2,)), ("n_channels", "<u2"),
    ("reserved3", "<u2"),
])  # fmt: skip  # GDF 2.x's fixed header, 256 bytes


def _gdf_channels(names, rate):
    """GDF 2.20's variable header: 256 bytes a channel, field by field (int16 in uV,
    0.1 uV a step)."""
    nch = len(names)

    def each(value, dtype):
        return np.full(nch, value, dtype).tobytes()

    return b"".join([
        b"".join(n.encode().ljust(16, b"\0") for n in names), b"\0" * 80 * nch,
        b"uV".ljust(6, b"\0") * nch, each(4275, "<u2"),  # physical dimension code: uV
        each(-3276.8, "<f8"), each(3276.7, "<f8"), each(-32768, "<f8"), each(32767, "<f8"),
        b"\0" * 68 * nch, each(100, "<f4"), each(0.1, "<f4"), each(50, "<f4"),
        each(rate, "<i4"), each(3, "<i4"),  # samples a record; GDFTYP 3: int16
        np.zeros(3 * nch, "<f4").tobytes(), np.zeros(5 * nch, "<f4").tobytes(),
    ])  # fmt: skip


def write_gdf(path, names=("Fp1", "Fp2", "Cz"), rate=250, n_records=10):
    """A GDF 2.20 file written by hand after its spec: the fixed and variable headers,
    1 s records of int16 samples channel by channel, and an event table (mode 1) of two
    events; the start as GDF's fixed-point days (2^-32 day steps)."""
    head = np.zeros(1, _GDF_FIXED)
    days = (START - dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(days=1)
    fields = {
        "version": b"GDF 2.20", "patient": b"X sub01", "recording": b"written here",
        "start": round((days + 367) * 2**32), "header_blocks": 1 + len(names),
        "n_records": n_records, "duration": (1, 1), "n_channels": len(names),
    }  # fmt: skip
    for key, value in fields.items():
        head[key] = value
    rng = np.random.default_rng(15)
    ints = rng.integers(-32768, 32768, size=(len(names), n_records * rate)).astype("<i2")
    records = ints.reshape(len(names), n_records, rate).transpose(1, 0, 2).tobytes()
    pos, typ = np.array([251, 1001], "<u4"), np.array([0x0300, 0x0301], "<u2")  # 1-based
    events = b"\x01" + (2).to_bytes(3, "little") + np.float32(rate).tobytes()
    path.write_bytes(
        head.tobytes() + _gdf_channels(names, rate) + records + events + pos.tobytes()
        + typ.tobytes()
    )  # fmt: skip
    return ints


WRITERS = {
    "mef": (write_mef, "night.mefd"),
    "snirf": (write_snirf, "rec.snirf"),
    "persyst": (write_persyst, "night.lay"),
    "nirx": (write_nirx, "NIRS-2019-01-02_001"),
    "eeglab": (write_eeglab, "rec.set"),
    "curry": (write_curry, "rec.cdt"),
    "nedf": (write_nedf, "rec.nedf"),
    "eximia": (write_eximia, "rec.nxe"),
    "nsx": (write_nsx, "rec.ns3"),
    "gdf": (write_gdf, "rec.gdf"),
}


def write_input(tmp_path, kind):
    """The recording of ``kind`` (a key of WRITERS) written into ``tmp_path / "in"``:
    its path, and what its writer returns (the values written)."""
    write, name = WRITERS[kind]
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    return path, write(path)
