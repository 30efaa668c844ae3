"""The multi-signal benchmark runs and prints its figures (slow: it measures)."""

from __future__ import annotations

import re

import pytest

from benchmarks import multi


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_prints_figures(capsys) -> None:
    results = multi.run(quick=True)
    out = capsys.readouterr().out
    assert "figure: materialize 64 x 30 s EEG+EOG+EMG+ECG: ours" in out
    assert "figure: resampling cost to 128 Hz" in out
    assert "figure: multi layer: materialize_batch vs its parts' single-signal reads" in out
    # Dict batches travel: a measured speed-up, not "n/a".
    assert re.search(r"figure: Batcher processes, 2 workers vs 1 \(batches/s\): ours [0-9.]+ "
                     r"vs floor [0-9.]+ -> ratio [0-9.]+", out), out  # fmt: skip
    assert "figure: Batcher processes, 1 worker vs inline (ms/batch)" in out
    for what in ("4 augmentations", "a no-op transform (SignFlip, p=0)"):
        for rates in ("own rates", "resampled to 128 Hz"):
            assert re.search(
                re.escape(
                    f"figure: {what} on a montage, {rates}, vs the plain batch (ms/batch): ours "
                )
                + r"[0-9.]+ vs floor",
                out,
            )
    names = [r.name for r in results]
    assert names[0].startswith("materialize_batch, 64 x 30 s")
    assert "Batcher processes, 2 workers over 1 (dict batches)" in names
    assert all(r.ours > 0 and (r.ratio is None or r.ratio > 0) for r in results)
