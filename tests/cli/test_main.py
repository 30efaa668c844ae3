"""The ``ondabatches`` program's start: what it loads, and what it leaves loadable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli._datasets import make_sleep_dataset

pytest.importorskip("pandas")  # nothing to keep out otherwise


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", ["ondabatches", "ondabatches.cli", "ondabatches.__main__"])
def test_import_does_not_load_pandas(module):
    # ondabatches.__main__ runs the CLI on import: give it --version, which exits 0.
    out = run_python(
        "import sys\n"
        "sys.argv = ['ondabatches', '--version']\n"
        "try:\n"
        f"    import {module}\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    assert out.splitlines()[-1] == "[]"


def test_inspect_command_does_not_load_pandas(tmp_path):
    # pyarrow loads pandas on its first array when it can: the program hides it.
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1, minutes=1)
    out = run_python(
        "import sys\n"
        f"sys.argv = ['ondabatches', 'inspect', {str(ds.root)!r}]\n"
        "from ondabatches.cli import main\n"
        "rc = main()\n"
        "print(rc, 'pandas' in sys.modules)\n"
    )
    assert "problems: none" in out
    assert out.splitlines()[-1] == "0 False"


def test_pandas_works_after_a_command(tmp_path):
    # Hidden for the command only: afterwards pyarrow and ondabatches convert to pandas.
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1, minutes=1)
    out = run_python(
        "import sys, uuid\n"
        f"sys.argv = ['ondabatches', 'inspect', {str(ds.root)!r}]\n"
        "from ondabatches.cli import main\n"
        "assert main() == 0\n"
        "from ondabatches.onda import read_signals, to_pandas\n"
        f"df = to_pandas(read_signals({str(ds.signals_path)!r}))\n"
        "same = df['recording'].tolist() == [uuid.UUID(int=1)] * 2\n"
        "print(type(df).__module__.split('.')[0], same)\n"
    )
    assert out.splitlines()[-1] == "pandas True"


def test_a_command_that_imports_pandas_is_told_why(monkeypatch, capsys):
    from ondabatches.cli import _main

    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    with pytest.raises(ModuleNotFoundError, match="ondabatches hides 'pandas' while a command"):
        with _main._pandas_hidden():
            import pandas  # noqa: F401
    assert _main._HidePandas not in {type(f) for f in sys.meta_path}
