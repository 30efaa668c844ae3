"""Every Python block of the README runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_the_tour() -> None:
    text = README.read_text()
    assert len(python_blocks()) >= 10
    # The two commands come first: setup + demo, setup + tests.
    first = text.index("```bash")
    commands = text[first : text.index("```", first + 3)]
    assert "ondabatches demo" in commands and "pytest" in commands
    assert first < text.index("```python")


@pytest.mark.timeout(300)
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"README python block {i + 1} failed:\n{block}") from exc
