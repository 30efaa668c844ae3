"""Shared fixtures: the Julia fixture folder, leak checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.s3server", "tests.dataset", "tests.psg"]

ROOT = Path(__file__).resolve().parents[1]
JULIA_FIXTURES = ROOT.parent / "shared" / "fixtures" / "julia-onda"
JULIA_RECORDING = "176ecfcf-d4c7-49ba-adec-f338d0a0c01f"


@pytest.fixture(scope="session")
def julia_dir() -> Path:
    """The folder of Onda files written by Onda.jl (``../shared/fixtures/julia-onda``)."""
    if not JULIA_FIXTURES.is_dir():
        pytest.skip(
            f"Julia fixtures not present at {JULIA_FIXTURES} (a plain clone has no ../shared)"
        )
    return JULIA_FIXTURES


def shm_segments() -> set[str]:
    """Names in /dev/shm, to check that nothing leaks."""
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:  # pragma: no cover - non-Linux
        return set()
