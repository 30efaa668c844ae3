"""Every Python block of docs/featurize.md runs, in order, in one namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pages import run_page

pytest.importorskip("scipy")

PAGE = ROOT / "docs" / "featurize.md"


@pytest.mark.timeout(240)
def test_featurize_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    run_page(PAGE, 3)
    out = capsys.readouterr().out
    # The shapes the page states in its comments are the ones printed.
    assert "(8, 2, 3840) (8, 1, 1)" in out
    assert "(8, 2, 129, 57)" in out
