"""The pipeline's stages import downward only, and no two modules import each other.

``lint-imports`` checks the ``layers`` contract in ``pyproject.toml``
(format <- labels <- spec <- materialize <- serve <- adapters/CLI). Run either check
by hand: ``lint-imports``, or ``python -m pytest tests/test_layers.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    pyproject = (ROOT / "pyproject.toml").read_text()
    contracts = re.findall(r"^\[\[tool\.importlinter\.contracts\]\]$", pyproject, re.M)
    assert len(contracts) >= 2  # the pipeline's, and the PyTorch adapter's
    assert f"{len(contracts)} kept, 0 broken" in run.stdout


def test_no_two_modules_import_each_other() -> None:
    graph = grimp.build_graph("ondabatches")
    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph.modules
            for b in graph.find_modules_directly_imported_by(a)
            if graph.find_shortest_chain(importer=b, imported=a)
        }
    )
    assert cycles == [], f"modules that import each other (directly or not): {cycles}"
