"""Cache benchmarks: S3 bytes of a second epoch, hit rate of a small cache, cost of a hit.

Runs against a local S3 server (moto, ``pip install 'ondabatches[test]'``) behind
:class:`~benchmarks._proxy.FaultyProxy`, which counts the bytes it sends back. An epoch
is every batch of :class:`~ondabatches.batches.SequentialBatches` over the EEG rows
(``lpcm``), materialized in this process:

- ``second epoch``: S3 body bytes of a second epoch with a cache that holds the whole
  dataset, against the first epoch's (goal: at most 0.05);
- ``hit rate``: with a cache of half the first epoch's bytes, the share of ranges of a
  second epoch served from the cache (reported);
- ``hit cost``: reading the ranges of one epoch from a warm cache against reading the
  same ranges of a local ``lpcm`` copy with :func:`~ondabatches.onda._lpcm.read_range`,
  interleaved A, B, A, B, median ratio (goal 1.2).

Run ``python -m benchmarks.cache [--quick]``.
"""

from __future__ import annotations

import statistics
import time

from ondabatches.batches import SequentialBatches
from ondabatches.materialize import materialize_batch
from ondabatches.onda import cache_stats, filesystem_for, set_cache, set_storage_options
from ondabatches.onda._lpcm import read_range

from ._proxy import Faults, FaultyProxy
from ._report import Result, script_main
from .s3 import _at_rate, _upload_and_label, s3_behind_proxy

__all__ = ["run"]

_BUCKET = "ondabatches-bench"


def run(quick: bool) -> list[Result]:
    """The cache benchmark rows (see the module documentation)."""
    with s3_behind_proxy() as (proxy, tmp):
        try:
            return _run(proxy, tmp, quick)
        finally:
            set_cache(None)


def _epoch(batches: SequentialBatches) -> None:
    state = batches.initial_state(0)
    while (step := batches.iterate_batch(state)) is not None:
        batch, state = step
        materialize_batch(batch)


def _ranges(batches: SequentialBatches) -> list[tuple[str, int, int]]:
    """The (url, start, stop) of every window's sample read in one epoch."""
    out = []
    state = batches.initial_state(0)
    while (step := batches.iterate_batch(state)) is not None:
        batch, state = step
        for item in batch:
            bps = item.info.bytes_per_sample
            rate = item.info.sample_rate
            first = int((item.window.start - item.signal_span.start) * rate // 10**9)
            n = int(item.window.duration * rate // 10**9)
            out.append((item.file_path, first * bps, (first + n) * bps))
    return out


def _run(proxy: FaultyProxy, tmp: str, quick: bool) -> list[Result]:
    set_storage_options("s3", client_kwargs={"endpoint_url": proxy.endpoint})
    fs, _ = filesystem_for(f"s3://{_BUCKET}/")
    fs.makedirs(_BUCKET, exist_ok=True)
    table = _at_rate(_upload_and_label(fs, tmp, "dataset", quick), "lpcm")
    batches = SequentialBatches(table, batch_size=16, batch_duration=60 * 10**9)
    proxy.faults = Faults()
    results = []

    set_cache(f"{tmp}/cache-full", 1 << 34)
    proxy.reset_counts()
    _epoch(batches)
    first = proxy.counts.body_bytes
    proxy.reset_counts()
    _epoch(batches)
    second = proxy.counts.body_bytes
    results.append(
        Result(
            "S3 body bytes of a second epoch, cache holds the dataset",
            second,
            first,
            "B",
            goal=0.05,
            floor_is="S3 body bytes of the first epoch",
        )
    )

    set_cache(f"{tmp}/cache-half", first // 2)
    _epoch(batches)
    cache_stats(reset=True)
    _epoch(batches)
    stats = cache_stats()
    results.append(
        Result(
            f"cache hit rate, cache of half the dataset ({first // 2} B)",
            stats.hit_rate,
            None,
            "hits/reads",
        )
    )

    # A warm cache against a local copy of the same files, same ranges.
    set_cache(f"{tmp}/cache-full", 1 << 34)
    ranges = _ranges(batches)[: 64 if quick else 256]
    local_root = f"{tmp}/dataset"
    remote = [(*filesystem_for(u), a, b) for u, a, b in ranges]
    local = [
        (*filesystem_for(u.replace(f"s3://{_BUCKET}/dataset", local_root)), a, b)
        for u, a, b in ranges
    ]
    for fs_, p, a, b in remote + local:  # warm: metadata, entries, page cache
        read_range(fs_, p, a, b)
    hit, floor = [], []
    for _ in range(5 if quick else 15):
        for reads, out in ((remote, hit), (local, floor)):
            t = time.perf_counter()
            for fs_, p, a, b in reads:
                read_range(fs_, p, a, b)
            out.append((time.perf_counter() - t) / len(reads))
    ratio = statistics.median(h / f for h, f in zip(hit, floor, strict=True))
    median_floor = statistics.median(floor)
    results.append(
        Result(
            f"s per range read, cache hit ({len(ranges)} windows)",
            median_floor * ratio,
            median_floor,
            "s",
            goal=1.2,
            floor_is="the same ranges read from a local lpcm copy (median of interleaved ratios)",
        )
    )
    set_cache(None)
    set_storage_options("s3")
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__))
