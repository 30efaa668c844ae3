"""Pythons whose forkserver a local user can use (CVE-2022-42919) are refused at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
FLAWED = [(3, 10, 0), (3, 10, 8), (3, 11, 0)]
FINE = [(3, 10, 9), (3, 11, 1), (3, 12, 0), (3, 13, 2)]


def _import_as(version, platform="linux"):
    """Import ondabatches in a Python that says it is ``version`` on ``platform``.

    Returns ``(refused, stderr)``. The check runs before anything else is imported;
    past it, other libraries may fail on the pretended version, which is not ours to
    judge.
    """
    code = (
        "import sys\n"
        f"sys.version_info = {(*version, 'final', 0)!r}\n"
        f"sys.platform = {platform!r}\n"
        "try:\n"
        "    import ondabatches\n"
        "except ImportError as exc:\n"
        "    if 'refuses to run' in str(exc):\n"
        "        raise\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return run.returncode != 0, run.stderr


@pytest.mark.parametrize("version", FLAWED)
def test_a_python_with_the_forkserver_flaw_is_refused(version):
    refused, stderr = _import_as(version)
    assert refused
    assert "ImportError: ondabatches refuses to run on Python" in stderr
    assert "CVE-2022-42919" in stderr and "3.10.9+" in stderr


@pytest.mark.parametrize("version", FINE)
def test_other_pythons_import(version):
    refused, stderr = _import_as(version)
    assert not refused, stderr


def test_the_flaw_is_linux_only():
    assert not _import_as((3, 10, 8), platform="darwin")[0]


def test_the_floors_exclude_the_flawed_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = SpecifierSet(project["requires-python"])
    assert not any(python.contains(".".join(map(str, v))) for v in FLAWED)
    assert all(python.contains(".".join(map(str, v))) for v in FINE)
    pyarrow = next(d for d in project["dependencies"] if d.startswith("pyarrow"))
    assert not SpecifierSet(pyarrow.removeprefix("pyarrow")).contains("14.0.0")
    assert SpecifierSet(pyarrow.removeprefix("pyarrow")).contains("14.0.1")
