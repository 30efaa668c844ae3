"""``python -m benchmarks.train --quick`` runs and reports its figures against floors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.torch


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_benchmark_reports_wait_and_bandwidth():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--quick"],
        capture_output=True, text=True, timeout=850, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for feed in ("DataLoader, 0 workers", "DataLoader, 2 workers", "Batcher, 2 processes"):
        assert re.search(rf"figure: {feed}: waiting for data [0-9.]+% of the step time", out)
        assert f"train step, {feed}" in out and f"data wait, {feed}" in out
    assert "host-to-device" in out or "CPU path" in out


def test_the_benchmark_dataset_has_19_channels_and_30_s_items(tmp_path):
    from benchmarks.train import CHANNELS, write_dataset
    from ondabatches import RandomBatches, materialize_batch
    from ondabatches.synthetic import EPOCH

    table = write_dataset(tmp_path, 2, 3)
    batches = RandomBatches(table, batch_size=2, batch_duration=EPOCH)
    x, y = materialize_batch(batches.iterate_batch(batches.initial_state())[0])
    assert len(CHANNELS) == 19 and x.shape == (2, 19, 3840) and y.shape == (2, 1, 1)
