"""The tour's Python blocks run, in order, in one namespace; so do the pages that continue
from it (importing, extending, S3 and Ray), as the README once ran them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pages import ROOT, page_blocks, page_text, run_blocks

DOCS = ROOT / "docs"
# Each page: how many python blocks it has (the tour counts the README's), how many run.
# The last block of importing.md is an illustration on a clinic's paths (/data/psg, s3://).
CHAIN = {
    "tour.md": (14, 14),
    "importing.md": (3, 2),
    "extending.md": (3, 3),
    "distributed.md": (4, 3),  # the fourth, the cache, needs S3: not in the chain
}


def test_the_tour_includes_the_readme_tour_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    tour = page_text(DOCS / "tour.md")
    readme_tour = readme[readme.index("[start:tour]") : readme.index("[end:tour]")]
    body = readme_tour.split("\n", 1)[1].rsplit("\n", 1)[0]
    assert body.strip() and body in tour
    assert "sort_and_trim_spans" in body and "iterate_batch_item" in body


@pytest.mark.slow  # 16-33 s on a 2-core AMD EPYC: CI's default run stays under 15 min
@pytest.mark.timeout(400)
def test_the_tour_and_the_pages_that_continue_it_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for name, (n_blocks, n_run) in CHAIN.items():
        blocks = page_blocks(DOCS / name)
        assert len(blocks) == n_blocks, f"{name} has {len(blocks)} python blocks"
        run_blocks(DOCS / name, blocks[:n_run], namespace)
    # What the blocks computed, checked here too: PyTorch, EDF, a finite scheme and Ray.
    assert tuple(namespace["x4"].shape) == (3, 1, 7680)
    assert namespace["edf_xs"].shape == (4, 2, 6000)
    assert namespace["got"][2] is None and namespace["x_ray"].shape == (3, 1, 7680)
    assert namespace["auto_stats"]["worker_changes"][0]["reason"] == "resize() was called"
