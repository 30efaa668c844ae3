"""The multi-signal benchmark runs and prints its figures (slow: it measures)."""

from __future__ import annotations

import pytest

from benchmarks import multi


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_prints_figures(capsys) -> None:
    results = multi.run(quick=True)
    out = capsys.readouterr().out
    assert "figure: materialize 64 x 30 s EEG+EOG+EMG+ECG: ours" in out
    assert "figure: resampling cost to 128 Hz" in out
    assert "figure: Batcher 2 workers vs 1" in out  # a speed-up, or n/a without the transport
    names = [r.name for r in results]
    assert names[0].startswith("materialize_batch, 64 x 30 s")
    assert all(r.ours > 0 for r in results)
