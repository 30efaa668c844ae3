"""Folder recordings (EGI .mff, CTF .ds, MEF3 .mefd, NIRx folders) and MNE's other suffixes.

MNE ships no test recording in its package (its readers' files come with
``mne.datasets.testing``, a download), so discovery and the copy of a folder input run on
real folders while MNE's reader is replaced by one reading a ``data.npy`` from the folder
the importer hands it (local, or the copy it made of an ``s3://`` folder).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from ondabatches.errors import MissingDependencyError  # noqa: E402
from ondabatches.importing import (  # noqa: E402
    MneSource,
    SourceChannel,
    _mne,  # noqa: E402
    expand_inputs,
    import_dataset,
    label_prefix,
    signal_names,
)
from ondabatches.importing._discover import _MNE_FOLDER_SUFFIXES, _MNE_SUFFIXES  # noqa: E402
from ondabatches.onda import iter_signals, load  # noqa: E402

from .test_dataset import tables  # noqa: E402

NIRX_HDR = '[GeneralInfo]\nFileName="NIRS-2019-10-02_003"\nDevice="NIRScout"\n'


def make_folder_recording(folder, seed=0, n=600):
    """A folder recording: some files, and the samples our stand-in reader gives."""
    folder.mkdir(parents=True)
    data = np.random.default_rng(seed).normal(size=(3, n)) * 1e-5
    np.save(folder / "data.npy", data)
    (folder / "sub").mkdir()
    (folder / "sub" / "inside.fif").write_bytes(b"not a recording of its own")
    return data


def fake_read_raw(seen):
    def read(mne_module, path, name):
        import os

        assert os.path.isdir(path), path
        seen.append(sorted(os.listdir(path)))
        data = np.load(os.path.join(path, "data.npy"))
        info = mne.create_info(["Fp1", "DC01", "DC02"], 100.0, ["eeg", "misc", "misc"])
        return mne.io.RawArray(data, info, verbose=False)

    return read


def test_discovery_takes_folder_recordings_whole(tmp_path):
    root = tmp_path / "in"
    for name in ("a.mff", "b.ds", "c.mefd", "nirx-night"):
        make_folder_recording(root / name)
    (root / "nirx-night" / "NIRS-2019.hdr").write_text(NIRX_HDR)
    (root / "plain").mkdir()
    (root / "plain" / "brain.hdr").write_text("an Analyze image header")
    single = ["d.ahdr", "e.sqd", "f.con", "g.lay", "h.nedf", "i.snirf", "j.cdt", "k.edf"]
    for name in (*single, "g.dat", "j.cdt.dpa", "notes.txt", "rec.eeg"):
        (root / name).write_bytes(b"")
    found = expand_inputs(root, (".edf", *_MNE_SUFFIXES), folders=_MNE_FOLDER_SUFFIXES)
    names = [p[len(str(root)) + 1 :] for p in found]
    assert names == sorted(["a.mff", "b.ds", "c.mefd", "nirx-night", *single])
    # Without folder suffixes (no MNE), the folders are searched like any other.
    plain = expand_inputs(root, (".edf", ".fif"))
    assert str(root / "a.mff" / "sub" / "inside.fif") in plain
    # Named, or matched by a glob, a folder recording is one input too.
    assert expand_inputs(root / "nirx-night", (".fif",), folders=(".mff",)) == [
        str(root / "nirx-night")
    ]
    assert expand_inputs(str(root / "*.mff"), (".fif",), folders=(".mff",)) == [str(root / "a.mff")]


def test_every_discovered_suffix_is_one_mne_reads():
    from mne.io._read_raw import _get_supported

    supported = set(_get_supported())
    assert set(_MNE_SUFFIXES) <= supported and set(_MNE_FOLDER_SUFFIXES) <= supported


def test_folder_recording_imports_with_mne_values(tmp_path, monkeypatch):
    seen: list[list[str]] = []
    monkeypatch.setattr(_mne, "_read_raw", fake_read_raw(seen))
    data = make_folder_recording(tmp_path / "in" / "night.mff")
    report = import_dataset(tmp_path / "in", tmp_path / "out", workers=1, block_bytes=256)
    assert [f.source for f in report.files] == [str(tmp_path / "in" / "night.mff")]
    assert seen == [["data.npy", "sub"]]
    rows = {s.sensor_label: s for s in iter_signals(tables(tmp_path / "out")[0])}
    assert set(rows) == {"eeg", "dc"} and rows["dc"].info.sensor_type == "misc"
    np.testing.assert_array_equal(load(rows["eeg"]).data[0], data[0] * 1e6)
    np.testing.assert_array_equal(load(rows["dc"], encoded=True).data, data[1:])
    # A rerun keeps it; a changed file inside the folder makes it another recording.
    rerun = import_dataset(tmp_path / "in", tmp_path / "out", workers=1, block_bytes=256)
    assert rerun.n_imported == 0
    first = report.files[0].recording
    (tmp_path / "in" / "night.mff" / "sub" / "inside.fif").write_bytes(b"changed")
    again = import_dataset(tmp_path / "in", tmp_path / "out2", workers=1)
    assert again.files[0].recording != first


@pytest.mark.s3
def test_folder_recording_from_s3_is_copied_whole(s3, tmp_path, monkeypatch):
    seen: list[list[str]] = []
    monkeypatch.setattr(_mne, "_read_raw", fake_read_raw(seen))
    data = make_folder_recording(tmp_path / "rec.ds", seed=3)
    for f in sorted((tmp_path / "rec.ds").rglob("*")):
        if f.is_file():
            s3.fs.put_file(str(f), s3.url(f"study/rec.ds/{f.relative_to(tmp_path / 'rec.ds')}"))
    s3.fs.put_file(str(tmp_path / "rec.ds" / "data.npy"), s3.url("study/other.npy"))
    report = import_dataset(s3.url("study"), tmp_path / "out", workers=1)
    assert [f.source for f in report.files] == [s3.url("study/rec.ds")]
    assert seen == [["data.npy", "sub"]]
    rows = {s.sensor_label: s for s in iter_signals(tables(tmp_path / "out")[0])}
    np.testing.assert_array_equal(load(rows["dc"], encoded=True).data, data[1:])
    local = import_dataset(tmp_path / "rec.ds", tmp_path / "out-local", workers=1)
    assert local.files[0].recording == report.files[0].recording  # same bytes, same id
    assert import_dataset(s3.url("study"), tmp_path / "out", workers=1).n_imported == 0


def test_mef3_without_pymef_is_refused(tmp_path, monkeypatch):
    make_folder_recording(tmp_path / "session.mefd")
    monkeypatch.setitem(sys.modules, "pymef", None)  # import pymef fails, installed or not
    with pytest.raises(MissingDependencyError, match=r"session\.mefd.*pymef"):
        MneSource(tmp_path / "session.mefd")


def test_nirx_folder_goes_to_read_raw_nirx(tmp_path, monkeypatch):
    make_folder_recording(tmp_path / "nirx")
    calls = []

    def nirx(path, **kwargs):
        calls.append(path)
        raise RuntimeError("Need one inf file, got 0")

    monkeypatch.setattr(mne.io, "read_raw_nirx", nirx)
    from ondabatches.errors import SourceFileError

    with pytest.raises(SourceFileError, match=r"nirx is not a folder MNE can read.*inf file"):
        MneSource(tmp_path / "nirx")
    assert calls == [str(tmp_path / "nirx")]


def _ch(label, sensor="misc", rate=256.0, kind="", guessed=True):
    return SourceChannel(0, label, sensor, label.lower(), "unknown", rate, 1.0, 0.0, "int16", 10,
                         guessed, kind)  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["DC01", "DC02"], "dc"),
        (["DC01"], "dc"),
        (["Light L", "Light R"], "light"),
        (["aux_1", "aux_2", "aux_10"], "aux"),
        (["Pulse rate", "Pulse rats"], "pulse"),
        (["squarewave", "ramp", "pulse"], ""),
        (["x1", "x2"], ""),
        (["01", "02"], ""),
        ([], ""),
    ],
)
def test_label_prefix(labels, expected):
    assert label_prefix(labels) == expected


def test_signal_names_from_types_then_labels_unique():
    groups = [
        [_ch("C3", "eeg", guessed=False), _ch("C4", "eeg", guessed=False)],
        [_ch("DC01"), _ch("DC02")],
        [_ch("DC03", rate=1.0)],  # another rate: another signal, still "dc"
        [_ch("squarewave"), _ch("ramp")],  # no common prefix
        [_ch("trig", kind="stim")],  # the file's own type first
        [_ch("a", kind="bio"), _ch("b", kind="resp")],  # types differ: labels, none: misc
        [_ch("Marker L", sensor="misc", guessed=False)],  # the user's map said misc
        [_ch("eeg x", "eeg", guessed=False, rate=2.0)],
    ]
    assert signal_names(groups) == ["eeg", "dc", "dc_2", "misc", "stim", "misc_2", "misc_3",
                                    "eeg_2"]  # fmt: skip


def write_persyst(folder, ints, rate=256, cal=0.5):
    """A Persyst recording as Persyst writes it: a ``.lay`` (INI) and interleaved int16 ``.dat``."""
    folder.mkdir(parents=True, exist_ok=True)
    ints.T.astype("<i2").tofile(folder / "night.dat")
    names = ["Fp1-Ref", "Fp2-Ref", "DC01-Ref"]
    lines = [
        "[FileInfo]", "File=night.dat", "FileType=Interleaved", f"SamplingRate={rate}",
        "HeaderLength=0", f"Calibration={cal}", f"WaveformCount={len(names)}", "DataType=0",
        "[Patient]", "First=A", "Last=B", "Sex=F", "Hand=R", "BirthDate=01/02/80",
        "TestDate=03/04/2021", "TestTime=22:15:30",
        "[ChannelMap]", *(f"{n}={i + 1}" for i, n in enumerate(names)),
    ]  # fmt: skip
    (folder / "night.lay").write_text("\n".join(lines) + "\n")
    return folder / "night.lay"


def test_persyst_lay_imports_with_mne_values(tmp_path):
    ints = np.random.default_rng(4).integers(-2000, 2000, size=(3, 1024))
    lay = write_persyst(tmp_path / "in", ints)
    (tmp_path / "in" / "other.dat").write_bytes(b"")  # a .dat alone is no input
    report = import_dataset(tmp_path / "in", tmp_path / "out", workers=1, block_bytes=300)
    assert [f.source for f in report.files] == [str(lay)]
    raw = mne.io.read_raw(lay, preload=True, verbose="error")
    (sig,) = iter_signals(tables(tmp_path / "out")[0])
    assert sig.sensor_label == "eeg" and sig.channels == ("fp1", "fp2", "dc01")
    np.testing.assert_allclose(load(sig).data, raw.get_data() * 1e6, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(load(sig).data, ints * 0.5, rtol=1e-12)
    assert sig.extra["start_datetime"] == np.datetime64("2021-03-04T22:15:30", "ns")


@pytest.mark.s3
def test_persyst_from_s3_brings_its_dat(s3, tmp_path):
    ints = np.random.default_rng(5).integers(-2000, 2000, size=(3, 512))
    lay = write_persyst(tmp_path / "p", ints)
    for f in sorted((tmp_path / "p").iterdir()):
        s3.fs.put_file(str(f), s3.url(f"p/{f.name}"))
    import_dataset(s3.url("p"), tmp_path / "out", workers=1)
    (sig,) = iter_signals(tables(tmp_path / "out")[0])
    raw = mne.io.read_raw(lay, preload=True, verbose="error")
    np.testing.assert_allclose(load(sig).data, raw.get_data() * 1e6, rtol=1e-12, atol=1e-12)
