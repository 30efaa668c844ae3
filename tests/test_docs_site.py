"""The documentation site builds in strict mode: a broken reference or a renamed name fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The API reference is generated from the docstrings of the public names...
    batches = (site / "api" / "batches" / "index.html").read_text()
    for name in ("RandomBatches", "SequentialBatches", "BatchState"):
        assert f'id="ondabatches.batches.{name}"' in batches
    # ...and the tour is the README's, included verbatim.
    tour = (site / "tour" / "index.html").read_text()
    assert "sort_and_trim_spans" in tour and "iterate_batch_item" in tour
    # The import's bookkeeping folder is explained: what it holds, resume, deletion.
    importing = (site / "importing" / "index.html").read_text()
    assert '<h2 id="the-import-folder">The <code>.import/</code> folder</h2>' in importing
    for held in (
        "manifest.json",
        "&lt;key&gt;.done.json",
        "makes a rerun resume",
        "my-onda/.import",
    ):
        assert held in importing, held


def test_version_is_single_sourced() -> None:
    import importlib.metadata

    import ondabatches

    assert ondabatches.__version__ == importlib.metadata.version("ondabatches")
    run = subprocess.run(
        [sys.executable, "-m", "ondabatches", "--version"], capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == f"ondabatches {ondabatches.__version__}"
