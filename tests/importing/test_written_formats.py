"""Formats MNE reads, each written here by its own writing library or by hand after its
spec (MEF3 by pymef, SNIRF by h5py, ...), read back by MNE to prove the file is real,
and imported with MNE's values, channels, rate and start, and a clean stdout."""

from __future__ import annotations

import datetime as dt
import logging
import re

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from ondabatches.cli import main  # noqa: E402
from ondabatches.importing import import_dataset  # noqa: E402
from ondabatches.onda import iter_annotations, iter_signals, load  # noqa: E402

from .test_dataset import tables  # noqa: E402
from .written import START, WRITERS, write_input, write_mef  # noqa: E402


def _as_ns(when: dt.datetime) -> np.datetime64:
    return np.datetime64(when.astimezone(dt.timezone.utc).replace(tzinfo=None), "ns")


def import_as_mne_reads(tmp_path, capfd, path, names, read=None, start=None):
    """Import the folder holding ``path`` (stdout kept clean) and check every channel
    against MNE's own reading of ``path``; ``names`` maps each Onda channel name to
    MNE's; ``read`` is MNE's reader (``mne.io.read_raw``, by suffix, unless given);
    ``start`` the first sample's time where MNE's is wrong (NSx).
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
        first = dt.timedelta(seconds=raw.first_time)  # the first sample's time (NSx)
        start = int(_as_ns(start or raw.info["meas_date"] + first).astype(np.int64))
        assert [t.value for t in starts] == [start] * len(rows)  # ns since the epoch
    return rows, raw


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


def test_a_persyst_recording_written_by_hand_imports_its_int16_samples(tmp_path, capfd):
    lay, written = write_input(tmp_path, "persyst")
    mne.io.read_raw(lay, verbose="error")
    assert "Unable to process birthdate" in capfd.readouterr().out  # MNE's own print
    names = {"fp1": "FP1", "c3": "C3", "o1": "O1", "ekg": "EKG"}  # MNE's, upper case
    rows, raw = import_as_mne_reads(tmp_path, capfd, lay, names)
    # MNE calls every Persyst channel EEG; the label "EKG" says better.
    assert set(raw.get_channel_types()) == {"eeg"}
    assert sorted(rows) == ["ecg", "eeg"]
    assert rows["eeg"].channels == ("fp1", "c3", "o1") and rows["ecg"].channels == ("ekg",)
    for sig, rows_written in ((rows["eeg"], written[:3]), (rows["ecg"], written[3:])):
        assert sig.info.sample_rate == 256
        # DataType=0: int16 samples, stored as they are, Calibration=0.1 uV each.
        assert sig.info.sample_type == "int16" and sig.info.sample_unit == "microvolt"
        assert sig.info.sample_resolution_in_unit == pytest.approx(0.1, rel=1e-12)
        np.testing.assert_array_equal(load(sig, encoded=True).data, rows_written)
    assert raw.info["meas_date"] == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    annotations = tables(tmp_path / "out")[1]
    got = [(a.span.start, a.span.stop, a.extra["value"]) for a in iter_annotations(annotations)]
    assert got == [
        (1_500_000_000, 3_500_000_000, "arousal"),
        (3_250_000_000, 3_250_000_001, "spike"),
    ]


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


def test_an_eeglab_set_written_by_mnes_exporter_imports_with_its_events(tmp_path, capfd):
    path, given = write_input(tmp_path, "eeglab")
    names = {"fp1": "Fp1", "fp2": "Fp2", "c3": "C3", "eog1": "EOG1", "ecg": "ECG"}
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names)
    # EEGLAB keeps no channel types (all EEG to MNE): the labels "EOG1", "ECG" say better.
    assert set(raw.get_channel_types()) == {"eeg"}
    assert {k: s.channels for k, s in rows.items()} == {
        "eeg": ("fp1", "fp2", "c3"),
        "eog": ("eog1",),
        "ecg": ("ecg",),
    }
    for sig, picks in ((rows["eeg"], [0, 1, 2]), (rows["eog"], [3]), (rows["ecg"], [4])):
        assert sig.info.sensor_type == sig.sensor_label
        assert sig.info.sample_rate == 250 and sig.info.sample_unit == "microvolt"
        # What MNE was given, to the file's float32 precision.
        np.testing.assert_allclose(load(sig).data, given[picks] * 1e6, rtol=1e-6, atol=1e-5)
    got = [
        (a.span.start, a.span.stop, a.extra["value"])
        for a in iter_annotations(tables(tmp_path / "out")[1])
    ]
    assert got == [
        (1_000_000_000, 1_500_000_000, "arousal"),
        (2_500_000_000, 2_500_000_001, "spike"),
    ]


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


def test_importing_a_curry_recording_leaves_the_root_logger_as_it_was(tmp_path, monkeypatch):
    # curryreader (what MNE reads Curry's header with) calls logging.basicConfig on
    # every read: with no root handler (a plain program, not pytest) it would add one.
    cdt, _ = write_input(tmp_path, "curry")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    import_dataset(cdt.parent, tmp_path / "out", workers=1)
    assert root.handlers == [] and root.level == logging.WARNING


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


def test_a_blackrock_nsx_file_written_by_hand_imports_its_int16_samples(tmp_path, capfd):
    path, ints = write_input(tmp_path, "nsx")
    names = {"chan1": "chan1", "chan2": "chan2", "chan3": "chan3"}
    # The header's time origin 03:04:05.123, the first sample 0.25 s after it.
    start = START.replace(microsecond=373000)
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, names, start=start)
    (sig,) = rows.values()
    assert sig.info.sample_type == "int16" and sig.info.sample_unit == "microvolt"
    assert sig.info.sample_resolution_in_unit == pytest.approx(10000 / 16382, rel=1e-12)
    np.testing.assert_array_equal(load(sig, encoded=True).data, ints)
    assert sig.info.sample_rate == 1000 and raw.first_samp == 250
    # MNE (1.13) reads the header's 123 ms as 123 us; the import takes the header's own,
    # and stays right once MNE reads them right.
    assert raw.info["meas_date"] in {START.replace(microsecond=us) for us in (123, 123000)}


def test_a_gdf_file_written_by_hand_imports_its_int16_samples_and_events(tmp_path, capfd):
    path, ints = write_input(tmp_path, "gdf")
    rows, raw = import_as_mne_reads(tmp_path, capfd, path, {"fp1": "Fp1", "fp2": "Fp2", "cz": "Cz"})
    (sig,) = rows.values()
    # Through the EDF family's calibration (MNE's cal 1 in info): int16, 0.1 uV a step.
    assert sig.info.sample_type == "int16" and sig.info.sample_unit == "microvolt"
    assert sig.info.sample_resolution_in_unit == pytest.approx(0.1, rel=1e-9)
    np.testing.assert_array_equal(load(sig, encoded=True).data, ints)
    got = [
        (a.span.start, a.span.stop, a.extra["value"])
        for a in iter_annotations(tables(tmp_path / "out")[1])
    ]
    assert got == [(1_000_000_000, 1_004_000_000, "768"), (4_000_000_000, 4_004_000_000, "769")]
    # GDF's start is fixed-point days: to 2^-32 day (20 us) of the one written.
    assert abs(raw.info["meas_date"] - START) < dt.timedelta(microseconds=20)


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


def test_a_fif_trigger_channel_keeps_its_codes(tmp_path, capfd):
    """MNE gives a FIF's trigger channel (STI 014) the unit V: its codes are stored as
    codes (unit "unknown", resolution 1), not as millions of microvolts."""
    info = mne.create_info(["Fz", "STI 014"], 100.0, ["eeg", "stim"])
    codes = np.zeros(500)
    codes[[50, 320]] = [5, 12]
    data = np.vstack([np.random.default_rng(14).normal(size=500) * 1e-5, codes])
    path = tmp_path / "in" / "run_raw.fif"
    path.parent.mkdir()
    mne.io.RawArray(data, info, verbose=False).save(path, verbose=False)
    rows, _ = import_as_mne_reads(tmp_path, capfd, path, {"fz": "Fz", "sti_014": "STI 014"})
    stim = rows["stim"]
    assert (stim.info.sample_unit, stim.info.sample_resolution_in_unit) == ("unknown", 1.0)
    np.testing.assert_array_equal(load(stim).data[0], codes)
    assert rows["eeg"].info.sample_unit == "microvolt"
