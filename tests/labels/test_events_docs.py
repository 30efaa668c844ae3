"""Every Python block of docs/events.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

# label_events warns, with counts, of the events it clips or ignores (tested below).
pytestmark = pytest.mark.filterwarnings("ignore::ondabatches.EventsWarning")

PAGE = ROOT / "docs" / "events.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.timeout(240)
def test_events_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) == 3
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/events.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"docs/events.md python block {i + 1} failed") from exc
    out = capsys.readouterr().out
    assert "['arousal_epochs', 'arousal_mask', 'detections', 'present', 'stage'] (8, 2, 120)" in out
    assert "(8, 2, 2)" in out and "(8, 16) True" in out
    assert int(namespace["held"].count(True)) >= 4  # about half of 8 hold an apnea
