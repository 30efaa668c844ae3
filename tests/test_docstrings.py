"""The examples in the package's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import ondabatches

# Modules whose examples need an optional extra; each is checked only if it imports.
OPTIONAL = {"ondabatches.torch": "torch", "ondabatches.plot": "matplotlib",
            "ondabatches.edf": "pyedflib", "ondabatches.importing._mne": "mne",
            "ondabatches.importing._edf": "pyedflib", "ondabatches.importing._single": "pyedflib",
            "ondabatches.importing._dataset": "pyedflib"}  # fmt: skip


def _extra(name: str) -> str | None:
    """The extra that module ``name`` needs (a package's extra covers its modules)."""
    for module, extra in OPTIONAL.items():
        if name == module or name.startswith(module + "."):
            return extra
    return None


def _modules() -> list[str]:
    names = ["ondabatches"]
    # ondabatches.bench is the deprecated stand-in for the repository's benchmarks/.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for info in pkgutil.walk_packages(ondabatches.__path__, "ondabatches."):
            if info.name.endswith("__main__") or info.name.startswith("ondabatches.bench"):
                continue
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str, tmp_path, monkeypatch) -> None:
    extra = _extra(name)
    if extra is not None:
        pytest.importorskip(extra, reason=f"{name} needs its extra")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def test_most_public_functions_have_examples(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write files
    runnable = sum(
        doctest.testmod(importlib.import_module(n), verbose=False, report=False).attempted
        for n in _modules()
        if _extra(n) is None
    )
    assert runnable >= 60
