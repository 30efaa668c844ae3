"""Every Python block of docs/pytorch.md runs, in order, in one namespace (Lightning included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.torch,
    # torchdata 0.11's StatefulDataLoader calls torch.set_vital, deprecated in torch 2.13;
    pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning"),
    # lightning 2.6 calls a torch pytree API that torch 2.13 deprecates.
    pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec.*:FutureWarning"),
]

PAGE = ROOT / "docs" / "pytorch.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.timeout(240)
def test_pytorch_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lightning", reason="the Lightning section needs ondabatches[lightning]")
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 6 and "LightningDataModule" in blocks[-1]
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/pytorch.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"docs/pytorch.md python block {i + 1} failed:\n{block}") from exc
    # The Lightning run resumed exactly: the same 6 batches, in order, across the resume.
    assert len(namespace["uninterrupted"].seen) == 6
    assert len(namespace["second_half"].seen) == 3
