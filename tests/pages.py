"""Running a documentation page's Python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A pymdownx.snippets line: ``--8<-- "FILE"`` or ``--8<-- "FILE:SECTION"``.
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$', re.MULTILINE)
ROOT = Path(__file__).resolve().parents[1]


def page_text(page: Path) -> str:
    """The page as the site shows it: its snippet lines replaced by what they include."""

    def include(match: re.Match[str]) -> str:
        text = (ROOT / match[1]).read_text()
        if match[2] is None:
            return text
        start = f"--8<-- [start:{match[2]}]"
        end = f"--8<-- [end:{match[2]}]"
        assert start in text and end in text, f"{match[1]} has no section {match[2]!r}"
        section = text[text.index(start) : text.index(end)]
        return section.split("\n", 1)[1].rsplit("\n", 1)[0]

    return SNIPPET.sub(include, page.read_text())


def page_blocks(page: Path) -> list[str]:
    """The ``python`` blocks of the page, included snippets among them, in order."""
    return BLOCK.findall(page_text(page))


def run_blocks(page: Path, blocks: list[str], namespace: dict) -> dict:
    """Execute ``blocks`` of ``page`` in ``namespace``; a failure names the page and block."""
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page.name} python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} python block {i + 1} failed:\n{block}") from exc
    return namespace


def run_page(page: Path, n_blocks: int) -> dict:
    """Execute the page's ``python`` blocks (there must be ``n_blocks``); the namespace."""
    blocks = page_blocks(page)
    assert len(blocks) == n_blocks, f"{page.name} has {len(blocks)} python blocks"
    return run_blocks(page, blocks, {"__name__": "__docs__"})
