"""The Sleep-EDF Expanded recipe: PSG files paired with hypnograms, stages mapped."""

from __future__ import annotations

import pytest

pytest.importorskip("pyedflib")

from ondabatches.cli import main  # noqa: E402
from ondabatches.errors import SourceFileError  # noqa: E402
from ondabatches.importing import SLEEP_EDF_STAGES, import_dataset, pair_sleep_edf  # noqa: E402
from ondabatches.labels import label_signals  # noqa: E402
from ondabatches.onda import iter_annotations, read_annotations, read_signals  # noqa: E402

from .edffiles import PSG_CHANNELS, write_edf, write_hypnogram  # noqa: E402

S = 10**9
STAGES = [
    (0.0, 30.0, "Sleep stage W"),
    (30.0, 60.0, "Sleep stage 1"),
    (90.0, 30.0, "Sleep stage 2"),
    (120.0, 30.0, "Sleep stage 3"),
    (150.0, 30.0, "Sleep stage 4"),
    (180.0, 30.0, "Sleep stage R"),
    (210.0, 30.0, "Movement time"),
    # Sleep-EDF hypnograms end with an unscored stretch running past the recording.
    (240.0, 600.0, "Sleep stage ?"),
]


def sleep_edf_folder(folder):
    folder.mkdir()
    for night, (psg, hyp) in enumerate([("SC4001E0", "SC4001EC"), ("SC4012E0", "SC4012EC")]):
        # The PSG's own annotations are not the stages: the hypnogram's are.
        write_edf(folder / f"{psg}-PSG.edf", PSG_CHANNELS, seconds=270, seed=night,
                  annotations=[(1.0, -1, "Lights off")])  # fmt: skip
        write_hypnogram(folder / f"{hyp}-Hypnogram.edf", STAGES[: len(STAGES) - night])
    return folder


def test_pairing_follows_sleep_edf_names():
    pairs = pair_sleep_edf(
        ["a/SC4001E0-PSG.edf", "a/SC4001EC-Hypnogram.edf", "a/ST7011J0-PSG.edf",
         "a/ST7011JP-Hypnogram.edf", "a/SC4002E0-PSG.edf"]
    )  # fmt: skip
    assert pairs == [
        ("a/SC4001E0-PSG.edf", "a/SC4001EC-Hypnogram.edf"),
        ("a/ST7011J0-PSG.edf", "a/ST7011JP-Hypnogram.edf"),
        ("a/SC4002E0-PSG.edf", None),
    ]
    with pytest.raises(SourceFileError, match="SC4009EC-Hypnogram.edf: a hypnogram without"):
        pair_sleep_edf(["a/SC4001E0-PSG.edf", "a/SC4009EC-Hypnogram.edf"])


def test_sleep_edf_dataset_with_stages(tmp_path, capsys):
    folder = sleep_edf_folder(tmp_path / "sleep-edf")
    out = tmp_path / "out"
    assert main(["import", str(folder), "-o", str(out), "--sleep-edf", "-j", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert "SC4001EC-Hypnogram.edf" in capsys.readouterr().out
    signals = read_signals(out / "dataset.onda.signal.arrow")
    annotations = read_annotations(out / "dataset.onda.annotation.arrow")
    assert len(set(signals.column("recording").to_pylist())) == 2
    by_rec: dict = {}
    for a in iter_annotations(annotations):
        by_rec.setdefault(a.recording, []).append((a.span.start, a.span.stop, a.extra["stage"]))
    first = sorted(by_rec.values(), key=len)[-1]
    assert [s for *_, s in first] == [
        "wake", "nrem1", "nrem2", "nrem3", "nrem3", "rem", "no_stage", "no_stage"
    ]  # fmt: skip
    assert first[-1][:2] == (240 * S, 270 * S)  # clipped at the end of the PSG
    assert "Lights off" not in annotations.column("value").to_pylist()
    assert set(SLEEP_EDF_STAGES.values()) == {"wake", "nrem1", "nrem2", "nrem3", "rem", "no_stage"}

    # The stages label the recordings directly (the tour's encoding).
    encoding = {s: i for i, s in enumerate(["wake", "nrem1", "nrem2", "nrem3", "rem",
                                             "no_stage"], 1)}  # fmt: skip
    eeg = signals.filter(signals.column("sensor_type").to_numpy(zero_copy_only=False) == "eeg")
    labeled = label_signals(eeg, annotations, labels_column="stage", encoding=encoding,
                            epoch=30 * S)  # fmt: skip
    assert labeled.num_rows == 2

    # Without the recipe, a past-the-end hypnogram stage is refused.
    with pytest.raises(
        SourceFileError, match=r"SC4001EC-Hypnogram.edf: annotation 7 .*past the end"
    ):
        import_dataset([folder / "SC4001E0-PSG.edf", folder / "SC4001EC-Hypnogram.edf"],
                       tmp_path / "plain", workers=1, annotations_past_end="error",
                       sleep_edf=True)  # fmt: skip
