"""The EDF, EDF+, BDF and BDF+ files that pyedflib ships, imported by both readers: values
equal to pyedflib's physical values, starts to the nanosecond, annotations kept.

The files come from pyedflib's source distribution (``scripts/test`` downloads them
into ``.cache/pyedflib-data``); no one here wrote them.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

pyedflib = pytest.importorskip("pyedflib")
pytest.importorskip("mne")

from ondabatches.errors import SourceFileError  # noqa: E402
from ondabatches.importing import import_dataset  # noqa: E402
from ondabatches.importing._channels import group_channels  # noqa: E402
from ondabatches.importing._edf import EdfSource  # noqa: E402
from ondabatches.importing._mne import MneSource  # noqa: E402
from ondabatches.importing._tal import parse_tals  # noqa: E402
from ondabatches.onda import iter_annotations, iter_signals, load  # noqa: E402

from .test_dataset import tables  # noqa: E402

DATA = Path(
    os.environ.get("ONDABATCHES_PYEDFLIB_DATA")
    or Path(__file__).resolve().parents[2] / ".cache" / "pyedflib-data"
)
FILES = [
    "test_generator.edf",
    "test_generator.bdf",
    "test_generator_datarec_generator_0_5.bdf",
    "test_generator_datarec_generator_2.bdf",
    "test_legacy.edf",
    "test_subsecond.edf",
    "test_utf8.edf",
]
# The first record's time-keeping TAL of each file, read with a hex editor: the
# sub-second part of the start that pyedflib's getStartdatetime drops.
SUBSECOND = {"test_subsecond.edf": "0.3945312", "test_utf8.edf": "0.3945312"}


@pytest.fixture(scope="module")
def shipped() -> Path:
    if not (DATA / FILES[0]).is_file():
        message = f"pyedflib's test files not found in {DATA} (scripts/test downloads them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DATA


def _pyedflib_physical(path: Path) -> dict[str, tuple[np.ndarray, float]]:
    """Each signal's physical values and physical step, by label."""
    reader = pyedflib.EdfReader(str(path))
    try:
        out = {}
        for i in range(reader.signals_in_file):
            label = reader.getLabel(i).strip()
            if label in ("EDF Annotations", "BDF Annotations"):
                continue
            step = (reader.getPhysicalMaximum(i) - reader.getPhysicalMinimum(i)) / (
                reader.getDigitalMaximum(i) - reader.getDigitalMinimum(i)
            )
            out[label] = (reader.readSignal(i), step)
        return out
    finally:
        reader.close()


def _labels_by_signal(source, raw_labels) -> list[list[str]]:
    """The source labels of each imported signal's rows, in the order they are written."""
    return [[raw_labels[ch.index] for ch in group] for group in group_channels(source.channels)]


@pytest.mark.parametrize("reader", ["edf", "mne"])
@pytest.mark.parametrize("name", FILES)
def test_values_start_and_annotations_equal_pyedflib(shipped, tmp_path, name, reader):
    path = shipped / name
    expected = _pyedflib_physical(path)
    if reader == "mne" and len({len(v) for v, _ in expected.values()}) > 1:
        # MNE reads mixed rates at the highest, interpolating the others: refused.
        with pytest.raises(SourceFileError, match=rf"{name}.*rates.*--reader edf"):
            import_dataset(path, tmp_path / "out", workers=1, reader=reader)
        assert not (tmp_path / "out" / "dataset.onda.signal.arrow").exists()
        return
    report = import_dataset(path, tmp_path / "out", workers=1, reader=reader, block_bytes=4096)
    assert len(report.files) == 1
    signals, annotations = tables(tmp_path / "out")
    if reader == "edf":
        source = EdfSource(path)
        raw_labels = {ch.index: ch.label for ch in source.channels}
    else:
        source = MneSource(path)
        raw_labels = dict(enumerate(source._raw.ch_names))
    try:
        by_signal = _labels_by_signal(source, raw_labels)
    finally:
        source.close()
    rows = list(iter_signals(signals))
    assert len(rows) == len(by_signal)
    checked = 0
    for sig, labels in zip(rows, by_signal, strict=True):
        data = load(sig).data
        for row, label in enumerate(labels):
            values, step = expected[label.strip()]
            assert data.shape[1] == len(values), (name, label)
            # Digital values times the step: equal to pyedflib's physical values to
            # rounding (2e-9 of a step), whichever reader imported them.
            np.testing.assert_allclose(data[row], values, rtol=0, atol=2e-9 * abs(step) + 1e-12)
            checked += 1
    assert checked == len(expected)  # every signal of the file, and no annotation channel

    # The start to the nanosecond: the header's whole seconds plus the first TAL's.
    header = pyedflib.EdfReader(str(path))
    try:
        whole = np.datetime64(header.getStartdatetime().replace(microsecond=0), "ns")
        n_annotations = len(header.readAnnotations()[0])
    finally:
        header.close()
    start = signals.column("start_datetime")[0].value  # ns since the epoch
    fraction = Decimal(SUBSECOND.get(name, "0"))
    assert start == whole.astype(np.int64) + int(fraction * 10**9)

    # Annotations: every one kept (test_legacy.edf's header says "EDF", not "EDF+", yet
    # it holds an annotation channel: pyedflib finds none there).
    n_expected = 2 if name == "test_legacy.edf" else n_annotations
    assert len(list(iter_annotations(annotations))) == n_expected


def test_legacy_annotation_channel_read_as_annotations(shipped):
    source = EdfSource(shipped / "test_legacy.edf")
    try:
        assert [ch.label for ch in source.channels if "Annotations" in ch.label] == []
        assert [(round(o, 6), t) for o, _, t in source.annotations()] == [
            (0.0, "Recording starts"),
            (600.0, "Recording ends"),
        ]
    finally:
        source.close()


def test_tal_parsing_keeps_exact_onsets_and_durations():
    records = [
        b"+0.25\x14\x14\x00+1.5\x1530\x14stage W\x14note\x14\x00\x00\x00",
        b"+1.25\x14\x14\x00+3.125\x14spike\x14\x00",
    ]
    start, annotations = parse_tals(records, "x.edf")
    assert start == Decimal("0.25")
    assert annotations == [
        (Decimal("1.25"), Decimal("30"), "stage W"),
        (Decimal("1.25"), Decimal("30"), "note"),
        (Decimal("2.875"), None, "spike"),
    ]
    with pytest.raises(ValueError, match="x.edf"):
        parse_tals([b"+abc\x14\x14\x00"], "x.edf")
