"""Every Python block of docs/events.md runs, in order, in one namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pages import run_page

# label_events warns, with counts, of the events it clips or ignores (tested below).
pytestmark = pytest.mark.filterwarnings("ignore::ondabatches.EventsWarning")

PAGE = ROOT / "docs" / "events.md"


@pytest.mark.timeout(240)
def test_events_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page(PAGE, 4)
    out = capsys.readouterr().out
    assert "['arousal_epochs', 'arousal_mask', 'detections', 'present', 'stage'] (8, 2, 120)" in out
    assert "(8, 2, 2)" in out and "(8, 16) True" in out
    assert namespace["streamed"].digest == namespace["events"].digest  # from the file
    assert int(namespace["held"].count(True)) >= 4  # about half of 8 hold an apnea
