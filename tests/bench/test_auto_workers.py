"""The auto-workers benchmark runs and prints its figures (slow: it measures)."""

from __future__ import annotations

import re

import pytest

from benchmarks import auto_workers


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_prints_figures(capsys) -> None:
    results = auto_workers.run(quick=True)
    out = capsys.readouterr().out
    for case in ("fast consumer", "slow consumer"):
        assert re.search(case + r": batches/s by fixed count 1: [0-9.]+, 2: ", out), out
        assert re.search(case + r".*best fixed / auto per round [0-9.]+", out), out
    assert [r.name.split(":")[0] for r in results] == ["fast consumer", "slow consumer"]
    assert all(r.ours > 0 and r.floor > 0 and r.higher_is_better for r in results)
