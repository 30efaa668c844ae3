"""A 50-recording x 19-channel x 10^8-sample sparse dataset (190 GB apparent), made once."""

from __future__ import annotations

import time

import pytest

from ondabatches.scale import ScaleDataset, make_scale_dataset

N_RECORDINGS = 50


@pytest.fixture(scope="package")
def scale_timed(tmp_path_factory) -> tuple[ScaleDataset, float]:
    root = tmp_path_factory.mktemp("scale") / "ds"
    start = time.perf_counter()
    ds = make_scale_dataset(root, n_recordings=N_RECORDINGS, known_recordings=4)
    return ds, time.perf_counter() - start


@pytest.fixture(scope="package")
def scale(scale_timed) -> ScaleDataset:
    return scale_timed[0]
