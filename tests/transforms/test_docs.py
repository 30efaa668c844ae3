"""Every Python block of docs/featurize.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("scipy")

PAGE = ROOT / "docs" / "featurize.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.timeout(240)
def test_featurize_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) == 3
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/featurize.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(
                f"docs/featurize.md python block {i + 1} failed:\n{block}"
            ) from exc
    out = capsys.readouterr().out
    # The shapes the page states in its comments are the ones printed.
    assert "(8, 2, 3840) (8, 1, 1)" in out
    assert "(8, 2, 129, 57)" in out
