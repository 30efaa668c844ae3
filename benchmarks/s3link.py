"""S3 over a slow link: a Batcher's throughput with latency and a bandwidth limit.

A local S3 server (moto, ``pip install 'ondabatches[test]'``) sits behind
:class:`~benchmarks._proxy.FaultyProxy`, each in a process of its own (see
:mod:`benchmarks._s3server`: in this one they would compete with the consumer for its
interpreter lock, and together with each other). The proxy adds 20 ms, then 50 ms, to
every request and limits the bytes it sends back to one shared link of ``_BANDWIDTH`` bytes/s. A
:class:`~ondabatches.Batcher` with 2 worker processes, each materializing 2 batches at
once (``worker_tasks=2``), serves batches of ``s3://`` recordings; the figure is the
bytes of S3 response bodies per second while the consumer takes batches, against the
link's limit (goal: at least 0.8 of it, a ratio of at most 1.25). The latencies are
interleaved (A, B, A, B) and each figure is the median of the runs. Every batch is
checked equal to the same batch read by the same Batcher from a local copy of the
dataset.

Run ``python -m benchmarks.s3link [--quick]``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pyarrow as pa

from ondabatches import Batcher
from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals, sort_and_trim_spans, store_labels
from ondabatches.onda import (
    filesystem_for,
    read_annotations,
    read_signals,
    set_storage_options,
    use_settings,
)
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

from ._proxy import Faults
from ._rawget import RawGetter, batch_ranges
from ._report import Result, script_main
from ._s3server import RemoteProxy, s3_behind_proxy_process
from .s3 import _at_rate

__all__ = ["run"]

#: The link's bandwidth, bytes/s: well under what 2 workers decode on 2 cores.
_BANDWIDTH = 20e6
_LATENCIES = (0.02, 0.05)
_WORKERS = 2
_BATCH_SIZE = 32
#: Batches each worker materializes at once (the settings' ``worker_tasks``): while one
#: waits for its last bytes, the next one's reads are already in flight.
_WORKER_TASKS = 2


def _labeled(root: str, reroot: dict[str, str] | None, labels_root: str) -> pa.Table:
    signals = read_signals(f"{root}/signals.arrow", reroot=reroot)
    annotations = sort_and_trim_spans(
        read_annotations(f"{root}/annotations.arrow"), epoch=EPOCH, by="recording"
    )
    labeled = label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    return store_labels(labeled, labels_root)


def _take(batches: RandomBatches, seed: int, n: int, proxy: RemoteProxy | None):
    """``n`` batches from a 2-worker Batcher; ``(batches, seconds, body bytes)`` after 2."""
    out = []
    state = batches.initial_state(seed)
    with use_settings(worker_tasks=_WORKER_TASKS), Batcher(batches, workers=_WORKERS) as batcher:
        batcher.start(state)
        for _ in range(2):  # warm-up: worker start, clients, file sizes
            (x, y), state = batcher.take(state)
            out.append((np.array(x), np.array(y)))
        if proxy is not None:
            proxy.reset_counts()
        t = time.perf_counter()
        for _ in range(n):
            (x, y), state = batcher.take(state)
            out.append((np.array(x), np.array(y)))
        seconds = time.perf_counter() - t
    body = proxy.counts.body_bytes if proxy is not None else 0
    return out, seconds, body


def run(quick: bool) -> list[Result]:
    """The link benchmark rows (see the module documentation)."""
    with s3_behind_proxy_process() as (proxy, tmp):
        set_storage_options("s3", client_kwargs={"endpoint_url": proxy.endpoint})
        try:
            return _run(proxy, tmp, quick)
        finally:
            set_storage_options("s3")


def _specs(batches: RandomBatches, seed: int, n: int) -> list[list]:
    """The specs of the ``n`` timed batches of `_take` (after its 2 warm-up batches)."""
    state = batches.initial_state(seed)
    out = []
    for _ in range(n + 2):
        batch, state = batches.iterate_batch(state)
        out.append(batch)
    return out[2:]


#: Its own bucket: moto keeps buckets per process, and `ondabatches bench` runs cache,
#: s3 and s3link in one.
_BUCKET = "ondabatches-bench-s3link"


def _run(proxy: RemoteProxy, tmp: str, quick: bool) -> list[Result]:
    fs, _ = filesystem_for(f"s3://{_BUCKET}/")
    fs.makedirs(_BUCKET, exist_ok=True)
    local = f"{tmp}/dataset"
    remote = f"s3://{_BUCKET}/dataset"
    make_dataset(local, n_recordings=8, duration=20 * 60 * 10**9)
    fs.put(local + "/", remote + "/", recursive=True)
    tables = {
        "local": _labeled(local, None, f"{tmp}/labels"),
        "s3": _labeled(remote, {local: remote}, f"{remote}/labels"),
    }
    # Fewer batches than 20 time the ramp of the pipeline more than the link (--quick
    # with 10 printed 1.23-1.50 where full runs printed 1.08-1.18).
    n = 20 if quick else 25
    schemes = {
        where: RandomBatches(
            _at_rate(t, "lpcm"), n_channels=2, batch_size=_BATCH_SIZE, batch_duration=60 * 10**9
        )
        for where, t in tables.items()
    }
    figures: dict[str, dict[float, list[float]]] = {
        k: {lat: [] for lat in _LATENCIES} for k in ("ours", "raw", "delivered")
    }
    with RawGetter(proxy.endpoint, _WORKERS, _BATCH_SIZE) as raw:
        for r in range(2 if quick else 3):
            _one_run(proxy, schemes, raw, r, n, figures)
    proxy.faults = Faults()
    return _results(figures)


def _one_run(proxy, schemes, raw: RawGetter, r: int, n: int, figures) -> None:
    """Ours then the raw floor at each latency (interleaved), batches checked."""
    ranges = raw.prepare(batch_ranges(_specs(schemes["s3"], r, n)))
    raw.run(ranges[:2])  # warm-up: processes, connections
    reference = None
    for latency in _LATENCIES:  # interleaved: 20, 50, 20, 50, ...
        proxy.faults = Faults(latency=latency, bandwidth=_BANDWIDTH)
        got, seconds, body = _take(schemes["s3"], r, n, proxy)
        figures["ours"][latency].append(body / seconds)
        figures["delivered"][latency].append(sum(x.nbytes + y.nbytes for x, y in got[2:]) / seconds)
        raw_body, raw_seconds = raw.run(ranges)
        figures["raw"][latency].append(raw_body / raw_seconds)
        if reference is None:
            proxy.faults = Faults()
            reference, _, _ = _take(schemes["local"], r, n, None)
        for (xa, ya), (xb, yb) in zip(got, reference, strict=True):
            assert np.array_equal(xa, xb) and np.array_equal(ya, yb), "S3 batch != local"


def _results(figures: dict[str, dict[float, list[float]]]) -> list[Result]:
    results = []
    for latency in _LATENCIES:
        ms = f"{latency * 1000:.0f} ms"
        ours = statistics.median(figures["ours"][latency])
        raw = statistics.median(figures["raw"][latency])
        results += [
            Result(
                f"S3 body B/s over a {_BANDWIDTH / 1e6:.0f} MB/s link, {ms} per request "
                f"({_WORKERS} process workers x {_WORKER_TASKS} batches, {_BATCH_SIZE} items, "
                "lpcm; batches == local)",
                ours,
                _BANDWIDTH,
                "B/s",
                goal=1.25,
                higher_is_better=True,
                floor_is="the link's bandwidth limit (goal: at least 0.8 of it)",
            ),
            Result(
                f"raw ranged GETs of the same bytes, {ms} per request ({_WORKERS} processes "
                f"x {_BATCH_SIZE} in flight, presigned http.client, a batch at a time)",
                raw,
                _BANDWIDTH,
                "B/s",
                higher_is_better=True,
                floor_is="the link's bandwidth limit: what this machine allows",
            ),
            Result(
                f"S3 body B/s, ours against the raw ranged GETs, {ms} per request",
                ours,
                raw,
                "B/s",
                higher_is_better=True,
                floor_is="the raw ranged GETs of the same bytes (median of each)",
            ),
            Result(
                f"float32 x + y B/s delivered to the consumer, {ms} per request",
                statistics.median(figures["delivered"][latency]),
                None,
                "B/s",
            ),
        ]
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__))
