"""The README's main job (``ondabatches demo``) and ``ondabatches bench``, run as a user would."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ondabatches.batches import BatchState


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ondabatches", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(180)
def test_demo_runs_to_completion_and_prints_a_resumable_state(tmp_path: Path) -> None:
    out = _cli(
        "demo", "--dir", str(tmp_path), "--recordings", "3", "--hours", "0.25",
        "--batches", "6", "--batch-size", "4",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "6 batches in" in out.stdout
    # The progress bar (on stderr) and the summary show how long the consumer waited.
    assert re.search(r"waited \d+%, 2 workers busy \d+%", out.stderr), out.stderr
    assert re.search(r"waiting for data [0-9.]+% of the time, workers busy", out.stdout)
    # The montage: EEG C3-M2 at 128 Hz, both EOG channels at 64 Hz, the ECG at 256 Hz.
    x_line = "x: eeg (4, 1, 7680) float32, eog (4, 2, 3840) float32, ecg (4, 1, 15360) float32 "
    assert re.search(re.escape(x_line) + r"\(batch, channels, time at each signal's rate\); "
                     r"y: \(4, 1, 2\) uint8", out.stdout), out.stdout  # fmt: skip
    for name in ("signals.arrow", "annotations.arrow", "labeled.arrow"):
        assert (tmp_path / name).is_file()
    assert list((tmp_path / "labels").rglob("labels_*.lpcm"))
    line = next(ln for ln in out.stdout.splitlines() if "resume state" in ln)
    state = BatchState.from_json(line.split(": ", 1)[1])
    assert state.index == 6 and state.seed == 0
    assert [m[0] for m in dict(state.config)["modalities"]] == ["eeg", "eog", "ecg"]
    # The dataset the demo wrote passes inspection.
    checked = _cli("inspect", str(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "problems: none" in checked.stdout


def test_demo_rejects_bad_sizes_with_one_line() -> None:
    out = _cli("demo", "--recordings", "0")
    assert out.returncode == 1
    assert out.stderr.startswith("ondabatches demo: error:")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["demo", "bench", "inspect", "plot", "import", "import-edf"])
def test_every_command_has_help(command: str) -> None:
    out = _cli(command, "--help")
    assert out.returncode == 0
    assert "usage: ondabatches" in out.stdout


def test_bench_runs_one_benchmark_and_prints_ratios() -> None:
    out = _cli("bench", "onda", "--quick", timeout=180)
    assert out.returncode == 0, out.stderr
    assert "lpcm 5-min window, load_rows -> float32" in out.stdout
    lines = out.stdout.splitlines()
    row = next(ln for ln in lines if ln.startswith("lpcm 5-min window, load_rows"))
    ratio = float(row.split()[-3])  # ours, floor, unit, ratio, goal, verdict
    assert ratio > 0


def test_bench_unknown_name_is_an_error() -> None:
    out = _cli("bench", "nonesuch")
    assert out.returncode == 1
    assert "unknown benchmark" in out.stderr
    assert "available" in out.stderr and "onda" in out.stderr


def test_the_old_bench_package_is_a_deprecated_stand_in_for_benchmarks() -> None:
    warned = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import ondabatches.bench"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert warned.returncode == 1 and "python -m benchmarks.NAME" in warned.stderr
    code = "import ondabatches.bench.onda as o, benchmarks.onda; print(o.run.__doc__ is not None)"
    old = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert old.returncode == 0 and old.stdout.strip() == "True", old.stderr


def _fake_benchmarks(tmp_path: Path) -> dict[str, str]:
    """A benchmarks folder of two sections: ``pid`` (a figure named by its process id) and
    ``boom`` (raises), on the real folder's report helpers."""
    root = Path(__file__).resolve().parents[2]
    folder = tmp_path / "fakebench"
    folder.mkdir()
    (folder / "__init__.py").write_text(
        f"import sys\nsys.path.insert(0, {str(root)!r})\n"
        "from benchmarks import Result, format_results, machine_line, write_markdown\n"
    )
    (folder / "pid.py").write_text(
        '"""Process id."""\nimport os\nfrom . import Result\n\n\n'
        "def run(quick=False):\n"
        '    return [Result(f"process {os.getpid()}", 1.0, 1.0, "x")]\n'
    )
    (folder / "boom.py").write_text(
        '"""Fails."""\n\n\ndef run(quick=False):\n    raise RuntimeError("boom here")\n'
    )
    return {"ONDABATCHES_BENCHMARKS": str(folder)}


def _pids(stdout: str) -> list[str]:
    # The id in the figure's name: its value would print to 4 digits only.
    return [ln.split()[1] for ln in stdout.splitlines() if ln.startswith("process ")]


@pytest.mark.timeout(120)
def test_bench_runs_each_benchmark_in_a_fresh_process_unless_told(tmp_path: Path) -> None:
    env = {**os.environ, **_fake_benchmarks(tmp_path)}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env)
    apart = run([sys.executable, "-m", "ondabatches", "bench", "pid", "pid"])
    assert apart.returncode == 0, apart.stderr
    pids = _pids(apart.stdout)
    assert len(pids) == 2 and pids[0] != pids[1], apart.stdout
    together = run([sys.executable, "-m", "ondabatches", "bench", "pid", "pid", "--same-process"])
    assert together.returncode == 0, together.stderr
    pids = _pids(together.stdout)
    assert len(pids) == 2 and pids[0] == pids[1], together.stdout
    # A section that fails: its traceback (the child's stderr), then one line naming it.
    failed = run([sys.executable, "-m", "ondabatches", "bench", "boom"])
    assert failed.returncode == 1
    assert "boom here" in failed.stderr
    assert "benchmark 'boom' failed in its own process (exit status 1" in failed.stderr
