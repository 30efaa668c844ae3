"""Running a documentation page's Python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run_page(page: Path, n_blocks: int) -> dict:
    """Execute the page's ``python`` blocks (there must be ``n_blocks``); the namespace."""
    blocks = BLOCK.findall(page.read_text())
    assert len(blocks) == n_blocks, f"{page.name} has {len(blocks)} python blocks"
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page.name} python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} python block {i + 1} failed:\n{block}") from exc
    return namespace
