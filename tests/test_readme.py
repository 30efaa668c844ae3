"""Every Python block of the README runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_is_short() -> None:
    """The README is the short path in: at most 200 lines; the rest is on the site."""
    n_lines = len(README.read_text().splitlines())
    assert n_lines <= 200, f"README.md has {n_lines} lines"


def test_readme_has_the_tour() -> None:
    text = README.read_text()
    blocks = python_blocks()
    assert blocks and "iterate_batch" in blocks[0] and "Batcher" in blocks[0]
    # The two commands come first: setup + demo, setup + tests.
    first = text.index("```bash")
    commands = text[first : text.index("```", first + 3)]
    assert "ondabatches demo" in commands and "bash scripts/test" in commands
    assert first < text.index("```python")


def test_readme_test_command_is_what_ci_runs() -> None:
    """One command for a user and CI: the README's second command is what .ci/run runs."""
    root = README.parent
    assert _commands()[1] == "bash scripts/test"
    ci = [ln for ln in (root / ".ci" / "run").read_text().splitlines() if ln.startswith("exec")]
    assert ci == ["exec bash scripts/test"]
    script = (root / "scripts" / "test").read_text()
    # torch alone first (the CPU build), then the project with its extras, then pytest.
    assert script.index("torch==") < script.index("-e '.[all,test]'") < script.index("-m pytest")


@pytest.mark.timeout(300)
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"README python block {i + 1} failed:\n{block}") from exc


def _commands() -> list[str]:
    text = README.read_text()
    first = text.index("```bash")
    block = text[first + len("```bash") : text.index("```", first + 3)]
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.slow  # 16-33 s on a 2-core AMD EPYC: CI's default run stays under 15 min
@pytest.mark.timeout(900)
def test_readme_first_command_runs_the_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    """The main job, exactly as the README gives it, in a fresh clone and virtualenv."""
    import subprocess

    root = README.parent
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    command = _commands()[0]
    assert command.endswith("ondabatches demo")
    out = subprocess.run(
        ["bash", "-c", command + " --batches 20 --no-progress"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "20 batches in" in out.stdout and "resume state" in out.stdout
