"""Batches from worker processes sharing the node-local cache equal those without it,
and a second run over the same batches fetches next to nothing from S3."""

from __future__ import annotations

import pytest

from ondabatches import Batcher
from ondabatches.onda import set_cache

from .pipeline import Finite, at_rate, n_identical, reference_batches, scheme, take

pytestmark = [pytest.mark.s3, pytest.mark.timeout(180)]

N_BATCHES = 6


@pytest.mark.parametrize("file_format", ["lpcm", "lpcm.zst"])
def test_batches_with_the_cache_equal_those_without(
    file_format, s3_labeled_table, reference_labeled, faulty_s3, tmp_path, no_leaks
):
    want = reference_batches(at_rate(reference_labeled, file_format), N_BATCHES)
    batches = scheme(at_rate(s3_labeled_table, file_format))
    proxy = faulty_s3.proxy
    set_cache(tmp_path / "cache", "256M")  # before the Batcher: its workers inherit it
    try:
        runs = []
        for _ in range(2):
            proxy.reset_counts()
            # Finite: no batch beyond those taken is fetched (and left uncached) ahead
            with Batcher(Finite(batches, N_BATCHES), workers=2, backend="processes") as batcher:
                got = take(batcher, batches.initial_state(0), N_BATCHES)
            runs.append(proxy.counts.body_bytes)
            assert n_identical(got, want) == N_BATCHES
    finally:
        set_cache(None)
    first, second = runs
    assert first > 0
    # the second run's workers are new processes: they ask for sizes and ETags again,
    # but fetch no sample bytes
    assert second <= 0.05 * first, (first, second)
