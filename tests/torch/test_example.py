"""examples/train_sleep_stager.py runs, its loss is finite, and its checkpoint resumes exactly."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.torch

EXAMPLE = ROOT / "examples" / "train_sleep_stager.py"


def run_example(*args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def losses(output: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in re.findall(r"^step (\d+) loss (\S+)$", output, re.M)}


@pytest.mark.slow  # 16-33 s on a 2-core AMD EPYC: CI's default run stays under 15 min
@pytest.mark.timeout(60)
def test_smoke_run_resumes_from_its_checkpoint(tmp_path):
    out = run_example(
        "--steps", "6", "--recordings", "5", "--hours", "0.25", "--batch-size", "8",
        "--log-every", "2", "--workers", "1", "--out", str(tmp_path), timeout=55,
    )  # fmt: skip
    logged = losses(out)
    assert sorted(logged) == [2, 4, 6]
    assert all(math.isfinite(v) for v in logged.values())
    assert "checkpoint at step 3" in out
    assert re.search(r"resume check: steps 4\.\.6 from the checkpoint reproduce", out), out
    assert re.search(r"held-out accuracy [0-9.]+ per 30 s epoch", out)
    assert re.search(r"waiting for data [0-9.]+% of the time", out), out
    assert (tmp_path / "checkpoint.pt").is_file()
    # The example takes class indices from the dataset, not codes it shifts itself.
    source = EXAMPLE.read_text()
    assert 'labels="classes"' in source and ".long() - 1" not in source


@pytest.mark.slow  # 16-33 s on a 2-core AMD EPYC: CI's default run stays under 15 min
@pytest.mark.timeout(60)
def test_two_modalities_train_one_branch_each_and_resume(tmp_path):
    out = run_example(
        "--steps", "4", "--recordings", "5", "--hours", "0.25", "--batch-size", "8",
        "--log-every", "2", "--workers", "1", "--out", str(tmp_path),
        "--modalities", "eeg,eog", timeout=55,
    )  # fmt: skip
    assert "model: MultiModalStager, inputs eeg 6 channel(s), eog 2 channel(s)" in out, out
    assert "1 training and 1 held-out recordings (eeg, eog;" in out
    logged = losses(out)
    assert sorted(logged) == [2, 4] and all(math.isfinite(v) for v in logged.values())
    assert re.search(r"resume check: steps 3\.\.4 from the checkpoint reproduce", out), out
    assert re.search(r"held-out accuracy [0-9.]+ per 30 s epoch", out)
    model = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert {key.split(".")[1] for key in model if key.startswith("branches.")} == {"eeg", "eog"}
    assert model["branches.eog.0.weight"].shape[1] == 2  # the EOG branch takes 2 channels
    assert model["head.weight"].shape[1] == 2 * 64  # both branches' features, concatenated


def test_unknown_modalities_are_refused():
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--modalities", "eeg,resp"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "give distinct ones of eeg, eog, ecg, emg" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_full_run_learns_and_resumes(tmp_path):
    data = tmp_path / "data"
    out = run_example("--steps", "300", "--out", str(tmp_path), "--data", str(data), timeout=850)
    logged = losses(out)
    assert all(math.isfinite(v) for v in logged.values())
    assert logged[300] < 0.5 * logged[25], logged  # the stages are learnable
    accuracy, baseline = map(
        float, re.search(r"held-out accuracy ([0-9.]+) .*stage: ([0-9.]+)\)", out).groups()
    )
    assert accuracy > baseline + 0.2
    assert "resume check: steps 151..155 from the checkpoint reproduce" in out
    # A second invocation continues from the checkpoint file.
    again = run_example(
        "--steps", "160", "--resume", str(tmp_path / "checkpoint.pt"), "--out",
        str(tmp_path / "again"), "--data", str(data), "--log-every", "5", timeout=300,
    )  # fmt: skip
    assert "resumed from" in again and "at step 150" in again
    assert sorted(losses(again)) == [155, 160]
