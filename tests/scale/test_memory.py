"""Peak memory stays flat as recordings grow: each step runs in a fresh process."""

from __future__ import annotations

import pytest

from benchmarks.scale import measure
from ondabatches.scale import make_scale_dataset

#: Arrow's allocator (mimalloc) maps transparent huge pages where the system allows:
#: the same run's peak moves by a few MB with path lengths and the machine's state.
ALLOCATOR_SLACK_MB = 8


def _figures(root, n: int) -> dict:
    make_scale_dataset(root / str(n), n_recordings=n)
    return {step: measure(root / str(n), step, n_batches=4) for step in ("label", "stream")}


def _check_flat(small: dict, large: dict, n_large: int) -> None:
    s, big = small["stream"], large["stream"]
    assert big["rows"] == n_large and big["correct"]
    assert big["label_files_opened"] == 0 and s["label_files_opened"] == 0
    # Trainer: the lazy table, the specs and the Batcher's buffer; workers: one batch.
    assert big["peak_rss_mb"] <= 1.5 * s["peak_rss_mb"], (s, big)
    assert big["processes"] >= 2
    assert big["worker_peak_rss_mb"] <= 1.5 * s["worker_peak_rss_mb"], (s, big)
    assert big["first_batch_seconds"] < 10 and large["label"]["seconds"] < 10, (large, small)


def test_peak_rss_is_flat_from_20_to_200_recordings(tmp_path):
    small, large = _figures(tmp_path, 20), _figures(tmp_path, 200)
    _check_flat(small, large, 200)
    # Labeling holds the annotations and the labels themselves: small at this size.
    assert large["label"]["peak_rss_mb"] <= 1.5 * small["label"]["peak_rss_mb"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_peak_rss_is_flat_from_20_to_2000_recordings(tmp_path):
    small, large = _figures(tmp_path, 20), _figures(tmp_path, 2000)
    _check_flat(small, large, 2000)
    # Labeling holds what it must (~400k annotation rows, ~22 MB; the 26 M one-byte
    # labels are written recording by recording, never all held) and little more,
    # never samples (7.6 TB here).
    assert large["label"]["annotations"] > 350_000
    assert large["label"]["peak_rss_mb"] <= 1.5 * small["label"]["peak_rss_mb"], (small, large)
    growth = large["label"]["peak_rss_mb"] - small["label"]["peak_rss_mb"]
    held = large["label"]["held_mb"] - small["label"]["held_mb"]
    assert growth <= 1.5 * held + ALLOCATOR_SLACK_MB, (small, large)
