"""Every Python block of docs/compose.md runs, in order, in one namespace, and prints
what the page says; its sampler, written against ondabatches.abc, composes with both
layouts and both kinds of sharding."""

from __future__ import annotations

from pathlib import Path

import pytest

from ondabatches.abc import Sampler
from ondabatches.batches import ComposedBatches, InterleavedBatches
from tests.conftest import ROOT
from tests.pages import run_page

PAGE = ROOT / "docs" / "compose.md"


@pytest.mark.timeout(240)
def test_compose_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page(PAGE, 6)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "ComposedBatches(RandomSampler over SignalLayout(4 rows, 60000000000 ns windows))",
        "[0 1 2 3 0 1] ['c3', 'm2'] 1",
        "(6, 2, 7680) (6, 1, 2)",
        "{'eeg': (4, 2, 7680), 'eog': (4, 2, 3840)} (4, 1, 2)",
        "[2, 3]",
        "36 [8] 1",
    ]
    assert issubclass(namespace["RowCycle"], Sampler)
    assert isinstance(namespace["psg_cycle"], ComposedBatches)
    assert all(isinstance(rank, InterleavedBatches) for rank in namespace["ranks"])
    # The page's claims on the configuration: the user's entries, then the data's.
    config = namespace["cycle"].config
    assert list(config)[:4] == ["scheme", "batch_size", "channels", "n_rows"]
    assert config["scheme"] == "RowCycle"
