"""The whole pipeline on S3 (moto behind a proxy), through worker processes and Ray.

Tables are read from s3://, labels are written to S3 by ``store_labels`` and read back
lazily, batches are materialized by the Batcher's workers; every batch must equal the
one materialized from local disk. The proxy counts what crosses the wire.
"""

from __future__ import annotations

import pytest

from ondabatches import Batcher
from ondabatches.batches import BatchState

from .pipeline import Finite, at_rate, n_identical, reference_batches, scheme, take

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]

N_BATCHES = 6


def _bytes_needed(batches_scheme, n: int) -> int:
    """Bytes of the windows and labels of the first ``n`` batches (all channels are read)."""
    state = batches_scheme.initial_state(0)
    total = 0
    for _ in range(n):
        batch, state = batches_scheme.iterate_batch(state)
        for item in batch:
            samples = int(item.window.duration * item.info.sample_rate / 10**9)
            labels = item.window.duration // item.labels.epoch
            total += (
                samples * item.info.bytes_per_sample + labels * item.labels.info.bytes_per_sample
            )
    return total


@pytest.mark.parametrize("file_format", ["lpcm", "lpcm.zst"])
def test_tables_labels_and_batches_from_s3_equal_local(
    file_format, s3_labeled_table, reference_labeled, faulty_s3, no_leaks
):
    table = at_rate(s3_labeled_table, file_format)
    assert table.column("file_path").to_pylist()[0].startswith("s3://")
    assert table.column("labels").to_pylist()[0]["file_path"].startswith("s3://")
    want = reference_batches(at_rate(reference_labeled, file_format), N_BATCHES)
    batches = scheme(table)
    faulty_s3.proxy.reset_counts()
    # Finite: no batch beyond those taken is prefetched, so the bytes are theirs alone.
    with Batcher(Finite(batches, N_BATCHES), workers=2, backend="processes") as batcher:
        got = take(batcher, batches.initial_state(0), N_BATCHES)
    assert n_identical(got, want) == N_BATCHES
    counts = faulty_s3.proxy.counts
    needed = _bytes_needed(batches, N_BATCHES)
    print(
        f"\n{file_format}: {N_BATCHES} batches, {counts.requests} requests {counts.by_method}, "
        f"{counts.body_bytes} body bytes for {needed} needed "
        f"({counts.body_bytes / needed:.3f}x), {counts.bytes_sent} bytes on the wire"
    )
    if file_format == "lpcm":
        # Each item's window and labels, one ranged GET each, and a HEAD per file per worker.
        items = N_BATCHES * batches.batch_size
        assert counts.by_method.get("GET", 0) <= 2 * items
        assert counts.body_bytes <= 1.1 * needed
        assert counts.bytes_sent <= 1.1 * needed + 2 * items * 1024


@pytest.mark.ray
def test_ray_workers_read_s3(s3_labeled_table, reference_labeled, ray_through_proxy, faulty_s3):
    table = at_rate(s3_labeled_table, "lpcm")
    want = reference_batches(at_rate(reference_labeled, "lpcm"), N_BATCHES, seed=3)
    batches = scheme(table)
    with Batcher(batches, workers=2, backend="ray") as batcher:
        got = take(batcher, BatchState(3, 0), N_BATCHES)
    assert n_identical(got, want) == N_BATCHES
    assert faulty_s3.proxy.counts.by_method.get("GET", 0) >= N_BATCHES * batches.batch_size
