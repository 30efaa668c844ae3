"""The documentation site builds in strict mode: a broken reference or a renamed name fails."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ondabatches

ROOT = Path(__file__).resolve().parents[1]


# Sphinx cross-reference roles, which mkdocstrings shows as text: as written, or once
# markdown has made the backticks a code span.
RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj):(?:`|<code>)")
# The public modules whose ``__all__`` the API reference documents, name by name.
PUBLIC_MODULES = [
    "ondabatches", "ondabatches.abc", "ondabatches.batches", "ondabatches.edf",
    "ondabatches.importing", "ondabatches.inspection", "ondabatches.labels",
    "ondabatches.materialize", "ondabatches.onda", "ondabatches.plot", "ondabatches.scale",
    "ondabatches.serve", "ondabatches.synthetic", "ondabatches.testing", "ondabatches.torch",
    "ondabatches.transforms",
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests (the build takes a while)."""
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return site


@pytest.mark.timeout(300)
def test_docs_site_builds_strictly(site: Path) -> None:
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


def test_benchmark_page_is_the_generators_output() -> None:
    """docs/benchmarks.md is written by ``ondabatches bench --markdown``, never by hand:
    it renders again, byte for byte, from the data it carries; the site and README link it."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import MARKDOWN_MARKER, format_markdown, parse_markdown

    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert page.startswith(MARKDOWN_MARKER + "\n")
    data = parse_markdown(page)
    assert data["command"].startswith("ondabatches bench") and "--markdown" in data["command"]
    assert format_markdown(**data) == page
    assert data["sections"] and all(results for _, _, results in data["sections"])
    assert "benchmarks.md" in (ROOT / "mkdocs.yml").read_text()
    assert "(docs/benchmarks.md)" in (ROOT / "README.md").read_text()


@pytest.mark.timeout(300)
def test_no_raw_cross_reference_roles_on_the_site(site: Path) -> None:
    """Docstrings link with mkdocs-autorefs (``[name][ondabatches.path]``), never with
    Sphinx roles, which the site would show as raw text."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    raw = {
        str(page.relative_to(site)): RAW_ROLE.findall(page.read_text(encoding="utf-8"))
        for page in pages
    }
    raw = {page: found for page, found in raw.items() if found}
    assert not raw, f"raw roles on the site: {raw}"
    # The links are there instead: an API page links to another page's objects.
    batches = (site / "api" / "batches" / "index.html").read_text(encoding="utf-8")
    assert 'href="../labels/#ondabatches.labels.label_signals"' in batches


@pytest.mark.timeout(300)
def test_every_public_name_has_an_anchor_on_an_api_page(site: Path) -> None:
    anchors: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        anchors |= set(re.findall(r'id="(ondabatches[\w.]*)"', page.read_text(encoding="utf-8")))
    missing = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert module.__all__, name
        absent = [n for n in module.__all__ if f"{name}.{n}" not in anchors]
        if absent:
            missing[name] = absent
    assert not missing, f"public names without an anchor on the API pages: {missing}"


def test_the_top_level_page_lists_exactly_the_top_level_names() -> None:
    """docs/api/index.md has one row per name of ``ondabatches.__all__``, no stale ones."""
    page = (ROOT / "docs" / "api" / "index.md").read_text(encoding="utf-8")
    rows = re.findall(r'^\| <a id="ondabatches\.(\w+)"></a>\[`\1`\]\[([\w.]+)\]', page, re.M)
    assert sorted(name for name, _ in rows) == sorted(ondabatches.__all__)
    for name, target in rows:  # each row links the name where it is documented
        module, attr = target.rsplit(".", 1)
        assert attr == name and getattr(importlib.import_module(module), name) is getattr(
            ondabatches, name
        ), target


def test_codecs_page_is_the_generators_output() -> None:
    """docs/codecs.md is written by ``python -m benchmarks.codecs --markdown``, never by
    hand: it renders again, byte for byte, from the data it carries, holds a row for every
    codec on every signal, and the site links it."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.codecs import PAGE_MARKER, format_page, parse_page

    page = (ROOT / "docs" / "codecs.md").read_text(encoding="utf-8")
    assert page.startswith(PAGE_MARKER + "\n")
    args = parse_page(page)
    assert (
        args["command"].startswith("python -m benchmarks.codecs")
        and "--markdown" in (args["command"])
    )
    assert format_page(**args) == page
    data = args["data"]
    assert data["codecs"][0].startswith("zstd") and len(data["codecs"]) >= 2
    pairs = {(r["codec"], r["signal"]) for r in data["rows"]}
    assert pairs == {(c, s) for c in data["codecs"] for s in data["signals"]}
    assert all(0 < r["ratio"] and r["decode_mbs"] > 0 for r in data["rows"])
    assert "codecs.md" in (ROOT / "mkdocs.yml").read_text()


def test_codecs_benchmark_round_trips_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator itself, on tiny signals: every codec round-trips (it checks), and the
    page it writes parses back to the data it measured."""
    import datetime as dt

    sys.path.insert(0, str(ROOT))
    from benchmarks import codecs as bench

    monkeypatch.setattr(
        bench, "signals", lambda quick: {"noise": bench.pink_noise(3000, 3, 100.0, seed=0)}
    )
    data = bench.measure(quick=True)
    assert {r["signal"] for r in data["rows"]} == {"noise"}
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    page = bench.format_page(
        data, command="python -m benchmarks.codecs --markdown x", machine={"CPU": "x"}, when=when
    )
    assert bench.parse_page(page)["data"] == json.loads(json.dumps(data))
