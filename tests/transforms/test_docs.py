"""Every Python block of docs/featurize.md runs, in order, in one namespace; so does its
``ondabatches plot`` lines, and the picture the page shows is the one the page draws."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pages import run_page

pytest.importorskip("scipy")

PAGE = ROOT / "docs" / "featurize.md"
PICTURE = ROOT / "docs" / "images" / "featurize-item.png"


@pytest.mark.timeout(240)
def test_featurize_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from ondabatches.cli import main

    monkeypatch.chdir(tmp_path)
    namespace = run_page(PAGE, 5)
    out = capsys.readouterr().out
    # The shapes the page states in its comments are the ones printed.
    assert "(8, 2, 3840) (8, 1, 1)" in out
    assert "(8, 2, 129, 57)" in out
    assert "{'eeg': (4, 2, 3840), 'eog': (4, 2, 1920)} (4, 1, 1)" in out
    assert "['raw', 'bandpass', 'spectrogram c4', 'spectrogram c3']" in out

    # The picture: raw and filtered traces of both channels, a spectrogram of each.
    fig = namespace["fig"]
    assert [len(ax.lines) for ax in fig.axes[:2]] == [2, 2]
    assert all(ax.images for ax in fig.axes[2:4])
    drawn = imread(tmp_path / "featurize-item.png")
    assert drawn.shape[:2] == (760, 1000)
    if os.environ.get("ONDABATCHES_DOCS_PICTURES"):
        shutil.copyfile(tmp_path / "featurize-item.png", PICTURE)
    # The page shows a picture of that size (regenerate it as the page says when the
    # drawing changes).
    assert imread(PICTURE).shape == drawn.shape

    # The shell lines of the page, as written: the CLI's item raw, filtered and as a
    # spectrogram; then two modalities, each raw and transformed.
    line, montage = re.findall(r"^ondabatches plot .*$", PAGE.read_text(), re.MULTILINE)
    assert main(shlex.split(line)[1:]) == 0
    said = capsys.readouterr().out
    assert "· bandpass + spectrogram" in said
    assert imread(tmp_path / "item.png").shape[:2] == (900 + 2 * 120, 1200)
    assert main(shlex.split(montage)[1:]) == 0
    said = capsys.readouterr().out
    assert "· eeg, eog ·" in said and "· bandpass + sign_flip" in said
    assert imread(tmp_path / "montage.png").shape[:2] == (800, 1200)
