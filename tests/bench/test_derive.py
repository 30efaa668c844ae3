"""The derive benchmark runs and prints its figures (slow: it measures)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("scipy")

from benchmarks import derive  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_prints_figures(capsys) -> None:
    results = derive.run(quick=True)
    out = capsys.readouterr().out
    assert re.search(r"figure: derive 60 min of 19 ch at 256 Hz \(s\): ours [0-9.]+ vs floor", out)
    assert re.search(r"figure: derive peak RSS, 60 min vs 10 min recording \(MB\): ours", out)
    assert len(results) == 2 and all(r.ours > 0 and r.floor > 0 for r in results)
