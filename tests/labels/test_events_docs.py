"""Every Python block of docs/events.md runs, in order, in one namespace; so does its
``ondabatches plot`` line, and the picture the page shows is the one the page draws."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pages import run_page

# label_events warns, with counts, of the events it clips or ignores (tested below).
pytestmark = pytest.mark.filterwarnings("ignore::ondabatches.labels.EventsWarning")

PAGE = ROOT / "docs" / "events.md"
PICTURE = ROOT / "docs" / "images" / "events-item.png"


@pytest.mark.timeout(240)
def test_events_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from ondabatches.cli import main

    monkeypatch.chdir(tmp_path)
    namespace = run_page(PAGE, 5)
    out = capsys.readouterr().out
    assert "['arousal_epochs', 'arousal_mask', 'detections', 'present', 'stage'] (8, 2, 120)" in out
    assert "(8, 2, 2)" in out and "(8, 16) True" in out
    assert namespace["streamed"].digest == namespace["events"].digest  # from the file
    assert int(namespace["held"].count(True)) >= 4  # about half of 8 hold an apnea

    # The picture: the item drawn holds events of both classes, each drawn.
    item, events = namespace["item"], namespace["events"]
    _, _, classes = events.window(item.recording, item.window.start, item.window.stop)
    traces = namespace["fig"].axes[0]
    legend = [t.get_text() for t in traces.get_legend().get_texts()]
    assert set(classes.tolist()) == {0, 1} and legend == ["arousal", "apnea"]
    drawn = imread(tmp_path / "events-item.png")
    assert drawn.shape[:2] == (560, 1000)
    if os.environ.get("ONDABATCHES_DOCS_PICTURES"):
        shutil.copyfile(tmp_path / "events-item.png", PICTURE)
    # The page shows a picture of that size (regenerate it as the page says when the
    # drawing changes).
    assert imread(PICTURE).shape == drawn.shape

    # The shell line of the page, as written, draws the CLI's item with its events.
    (line,) = re.findall(r"^ondabatches plot .*$", PAGE.read_text(), re.MULTILINE)
    assert main(shlex.split(line)[1:]) == 0
    said = capsys.readouterr().out
    assert "; events: " in said and imread(tmp_path / "item.png").shape[:2] == (700, 1200)
