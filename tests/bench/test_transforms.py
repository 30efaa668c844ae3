"""The transforms benchmark runs and prints its figures (slow: it measures)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("scipy")

from benchmarks import transforms  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_prints_figures(capsys) -> None:
    results = transforms.run(quick=True)
    out = capsys.readouterr().out
    assert re.search(r"margins: \d+ samples \([0-9.]+ s\) each side", out), out
    for name in ("transform layer: band-pass + notch vs the same scipy calls",
                 "4 augmentations (scale, flip, reverse, channel dropout) vs the plain batch",
                 "Batcher processes, 2 workers, band-pass vs unfiltered"):  # fmt: skip
        assert re.search(re.escape(name) + r".*ours [0-9.]+ vs floor [0-9.]+ -> ratio", out), name
    assert len(results) == 4 and all(r.ours > 0 and r.ratio > 0 for r in results)
