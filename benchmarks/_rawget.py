"""The floor of the S3 link benchmark: raw ranged GETs, no client library.

:func:`raw_get_seconds` fetches the byte ranges of given batches through presigned
URLs with ``http.client`` (one kept-alive connection per thread), in worker processes
shaped like the Batcher's: each process takes every ``workers``-th batch and issues
all of a batch's ranges at once with ``concurrency`` threads. Nothing is signed,
decoded or copied into arrays per request, so what it reaches is what the server, the
proxy and the link allow on this machine, whatever our code does.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from urllib.parse import urlsplit

__all__ = ["RawGetter", "batch_ranges"]

#: One ranged GET: (path?query of a presigned URL, first byte, stop byte).
Range = tuple[str, int, int]


def batch_ranges(batches: Sequence[Sequence[object]]) -> list[list[tuple[str, int, int]]]:
    """The ``(url, start, stop)`` of every item's sample window, batch by batch."""
    out = []
    for batch in batches:
        ranges = []
        for item in batch:
            bps = item.info.bytes_per_sample  # type: ignore[attr-defined]
            rate = item.info.sample_rate  # type: ignore[attr-defined]
            first = int((item.window.start - item.signal_span.start) * rate // 10**9)  # type: ignore[attr-defined]
            n = int(item.window.duration * rate // 10**9)  # type: ignore[attr-defined]
            ranges.append((item.file_path, first * bps, (first + n) * bps))  # type: ignore[attr-defined]
        out.append(ranges)
    return out


def presigned(endpoint: str, urls: set[str]) -> dict[str, str]:
    """``s3://bucket/key`` -> ``/bucket/key?signature`` (boto3, signed once each)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    out = {}
    for url in urls:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        signed = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
        )
        parts = urlsplit(signed)
        out[url] = f"{parts.path}?{parts.query}"
    return out


_local = threading.local()


def _get(address: tuple[str, int], target: str, start: int, stop: int) -> int:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = http.client.HTTPConnection(*address, timeout=60)
    conn.request("GET", target, headers={"Range": f"bytes={start}-{stop - 1}"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 206 or len(body) != stop - start:
        raise RuntimeError(f"GET {target} {start}-{stop}: {response.status}, {len(body)} B")
    return len(body)


_pool: ThreadPoolExecutor | None = None


def _fetch(address: tuple[str, int], batches: list[list[Range]], concurrency: int) -> int:
    """In a worker process: every batch's ranges at once, one batch after the other."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(concurrency)
    total = 0
    for ranges in batches:
        total += sum(_pool.map(lambda r: _get(address, *r), ranges))
    return total


class RawGetter:
    """``workers`` spawned processes that fetch batches of ranges (see the module doc)."""

    def __init__(self, endpoint: str, workers: int, concurrency: int):
        parts = urlsplit(endpoint)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._endpoint = endpoint
        self._workers = workers
        self._concurrency = concurrency
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def prepare(self, batches: list[list[tuple[str, int, int]]]) -> list[list[Range]]:
        signed = presigned(self._endpoint, {u for b in batches for u, _, _ in b})
        return [[(signed[u], a, b) for u, a, b in ranges] for ranges in batches]

    def run(self, batches: list[list[Range]]) -> tuple[int, float]:
        """``(body bytes, seconds)`` to fetch ``batches``, batch ``k`` in process ``k % n``."""
        t = time.perf_counter()
        jobs = [
            self._pool.submit(_fetch, self._address, batches[w :: self._workers], self._concurrency)
            for w in range(self._workers)
        ]
        total = sum(job.result() for job in jobs)
        return total, time.perf_counter() - t

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> RawGetter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
