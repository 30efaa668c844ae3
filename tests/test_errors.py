"""Every error the package raises on purpose is an ``OndaBatchesError``.

The source is walked: a ``raise`` of a bare built-in exception fails this test unless it
is one of the few protocol signals or OS-error emulations listed below, each with its
reason. The classes mix in the built-in they replaced, so ``except ValueError`` (or
``TypeError``, ``KeyError``, ``IndexError``, ``TimeoutError``) keeps working.
"""

from __future__ import annotations

import ast
import builtins
import datetime
from pathlib import Path

import numpy as np
import pytest

import ondabatches
from ondabatches import _errors
from ondabatches.onda import SamplesInfo, TimeSpan, encode
from tests.serve.toy import ToyScheme

SRC = Path(ondabatches.__file__).resolve().parent

BUILTIN_ERRORS = frozenset(
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type)
    and issubclass(getattr(builtins, name), BaseException)
    and not issubclass(getattr(builtins, name), Warning)  # warnings are another matter
)

# (file, enclosing function or "<module>", built-in): why a built-in is right there.
ALLOWED = {
    ("__init__.py", "<module>", "ImportError"): "refusing to import on a bad Python",
    ("bench/__init__.py", "<module>", "ImportError"): "a moved module refusing to import",
    ("cli/_main.py", "find_spec", "ModuleNotFoundError"): "the import system's protocol",
    ("__init__.py", "__getattr__", "AttributeError"): "a module __getattr__ (moved names)",
    ("batches/_state.py", "__getattr__", "AttributeError"): "a module __getattr__",
    ("transforms/_scheme.py", "__getattr__", "AttributeError"): "a module __getattr__",
    ("onda/_descriptors.py", "_acquire", "IsADirectoryError"): "what open() raises; "
    "the caller wraps it in a StorageError",
    ("onda/_storage.py", "check_regular", "IsADirectoryError"): "what open() raises; "
    "the caller wraps it in a StorageError",
    ("importing/_edf.py", "_quiet_open", "OSError"): "pyedflib's own error, with what it "
    "printed; the caller turns it into a SourceFileError",
}
# Exception classes outside _errors that never reach a caller: they carry a failure
# between a worker and the Batcher, which raises one of ours in its place.
INTERNAL_CLASSES = {"TaskError", "WorkerLostError", "SegmentGoneError"}


def _raises(path: Path):
    """(line, enclosing function, name) of each ``raise NAME`` / ``raise NAME(...)``."""
    found = []

    def walk(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(child, child.name)
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                target = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(target, ast.Name):
                    found.append((child.lineno, function, target.id))
            walk(child, function)

    walk(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


def test_no_bare_builtin_is_raised_on_purpose() -> None:
    offenders, used = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for line, function, name in _raises(path):
            if name not in BUILTIN_ERRORS or name == "NotImplementedError":
                continue  # ours, or an abstract method
            if (rel, function, name) in ALLOWED:
                used.add((rel, function, name))
                continue
            offenders.append(f"{rel}:{line} raises {name} in {function}")
    assert not offenders, "raise an OndaBatchesError subclass instead:\n" + "\n".join(offenders)
    # The allow-list holds nothing stale (each entry still names a raise).
    assert used == set(ALLOWED), set(ALLOWED) - used


def test_the_walker_finds_a_bare_builtin(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f(x):\n    if x:\n        raise ValueError('no')\n    raise KeyError\n"
        "class C:\n    def g(self):\n        raise _errors.SpanError('ours')\n"
    )
    assert _raises(module) == [(3, "f", "ValueError"), (4, "f", "KeyError")]


def test_every_exception_class_is_ours_or_internal() -> None:
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or path.name == "_errors.py":
                continue
            bases = {b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases}
            if bases & BUILTIN_ERRORS and "OndaBatchesError" not in bases:
                assert node.name in INTERNAL_CLASSES, f"{path.name}: {node.name}{bases}"


@pytest.mark.parametrize("name", _errors.__all__)
def test_every_public_class_is_an_ondabatches_error(name: str) -> None:
    cls = getattr(_errors, name)
    assert issubclass(cls, _errors.OndaBatchesError)
    assert getattr(ondabatches.errors, name) is cls
    assert name not in ondabatches.__all__ or getattr(ondabatches, name) is cls


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (_errors.ArgumentError, ValueError),
        (_errors.ArgumentTypeError, TypeError),
        (_errors.UnknownNameError, KeyError),
        (_errors.OutOfRangeError, IndexError),
        (_errors.BatchTimeoutError, TimeoutError),
    ],
)
def test_new_classes_mix_in_the_builtin_they_replace(cls, builtin) -> None:
    assert issubclass(cls, builtin)
    with pytest.raises(builtin, match="named thing"):
        raise cls("the named thing")


def test_unknown_name_error_is_not_quoted() -> None:
    assert str(_errors.UnknownNameError("no channel 'fz'")) == "no channel 'fz'"


def test_raised_where_builtins_were() -> None:
    with pytest.raises(_errors.SpanError, match="before its start"):
        TimeSpan(5, 1)
    with pytest.raises(_errors.ArgumentTypeError, match="bare float"):
        TimeSpan(0.5, 1)
    with pytest.raises(_errors.ArgumentError, match="NaT"):
        TimeSpan(np.timedelta64("NaT", "ns"), 1)
    assert TimeSpan(datetime.timedelta(seconds=1), 2 * 10**9).stop == 2 * 10**9
    info = SamplesInfo("eeg", ("a", "b"), "uV", 1.0, 0.0, "int16", 1.0)
    with pytest.raises(_errors.ArgumentError, match="NaN"):
        encode(np.array([[np.nan], [0.0]]), info)
    with pytest.raises(_errors.ArgumentTypeError, match="must be a batch scheme"):
        ondabatches.Batcher(object())
    with pytest.raises(_errors.ArgumentError, match="workers must be at least 1"):
        ondabatches.Batcher(ToyScheme(), workers=0)
