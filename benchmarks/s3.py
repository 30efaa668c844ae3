"""S3 benchmarks: bytes per batch, and throughput when every request has latency.

Runs the pipeline against a local S3 server (moto, ``pip install 'ondabatches[test]'``)
behind :class:`~benchmarks._proxy.FaultyProxy`, which counts the bytes it sends
and adds latency to each request:

- ``bytes``: response bytes per batch against the bytes of the batch's windows and
  labels (goal for ``lpcm``: at most 1.1x the bodies, plus one request's headers per
  read on the wire); ``lpcm.zst`` reads whole zstd frames: with the default 32 KiB
  frames the same 1.1x goal applies, frames of 1 MiB are reported as a contrast;
- ``latency``: seconds per batch, materialized in one process, with 20 ms added to every
  request, against the floor of the same without latency plus one round trip (the
  ideal of one round trip per batch); the same batch read one item after the other is
  reported next to it;
- ``store_labels``: seconds to write the labels of every recording to S3.

Run ``python -m benchmarks.s3 [--quick]``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc

from ondabatches._errors import require
from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals, sort_and_trim_spans, store_labels
from ondabatches.materialize import materialize_batch, materialize_batch_item
from ondabatches.onda import (
    LPCMZstFormat,
    read_annotations,
    read_signals,
    register_format,
    set_storage_options,
)
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

from ._proxy import Faults, FaultyProxy
from ._report import Result, script_main

__all__ = ["run"]

# Each benchmark its own bucket: moto keeps buckets per process, and `ondabatches bench`
# runs cache, s3 and s3link in one.
_BUCKET = "ondabatches-bench-s3"
_RATES = {"lpcm": 128.0, "lpcm.zst": 256.0}
_LARGE_FRAMES = 1 << 20
_LATENCY = 0.02
# Headers of one S3 response as the proxy sends them (moto's are about 300 bytes).
_REQUEST_OVERHEAD = 1024


def _fake_aws_env(endpoint: str) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


def _per_batch(fn: Callable[[list], object], batches: RandomBatches, n: int) -> float:
    state = batches.initial_state(1)
    batch, state = batches.iterate_batch(state)
    fn(batch)  # warm-up: file sizes and clients are cached per process
    t = time.perf_counter()
    for _ in range(n):
        batch, state = batches.iterate_batch(state)
        fn(batch)
    return (time.perf_counter() - t) / n


def _needed_bytes(batch: list) -> int:
    total = 0
    for item in batch:
        samples = int(item.window.duration * item.info.sample_rate / 10**9)
        labels = item.window.duration // EPOCH
        total += samples * item.info.bytes_per_sample + labels * item.labels.info.bytes_per_sample
    return total


def _at_rate(table: pa.Table, file_format: str) -> pa.Table:
    table = table.filter(pc.equal(table.column("sensor_label"), "eeg"))
    return table.filter(pc.equal(table.column("sample_rate"), _RATES[file_format]))


@contextmanager
def s3_behind_proxy() -> Iterator[tuple[FaultyProxy, str]]:
    """A local S3 server (moto) behind a :class:`FaultyProxy`, the AWS variables
    pointing at the proxy, and a temporary folder: ``(proxy, tmp)``. The environment is
    restored and the server stopped on the way out."""
    moto_server = require("moto.server", "test")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved_env = dict(os.environ)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # fsspec keeps s3fs instances per process by their arguments, not the environment:
    # one made against an earlier benchmark's server would be handed out again.
    s3fs = require("s3fs", "s3")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with FaultyProxy(f"http://{host}:{port}") as proxy, tempfile.TemporaryDirectory() as tmp:
            _fake_aws_env(proxy.endpoint)
            yield proxy, tmp
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.clear()
        os.environ.update(saved_env)


def run(quick: bool) -> list[Result]:
    """The S3 benchmark rows (see the module documentation)."""
    with s3_behind_proxy() as (proxy, tmp):
        return _run(proxy, tmp, quick)


def _upload_and_label(fs, tmp: str, name: str, quick: bool) -> pa.Table:
    """Make the synthetic dataset, upload it, read it back from S3, label, store labels there."""
    root = f"s3://{_BUCKET}/{name}"
    ds = make_dataset(f"{tmp}/{name}", n_recordings=8 if quick else 16, duration=20 * 60 * 10**9)
    fs.put(str(ds.root) + "/", root + "/", recursive=True)
    signals = read_signals(f"{root}/signals.arrow", reroot={str(ds.root): root})
    annotations = sort_and_trim_spans(
        read_annotations(f"{root}/annotations.arrow"), epoch=EPOCH, by="recording"
    )
    labeled = label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    return store_labels(labeled, f"{root}/labels")


def _run(proxy: FaultyProxy, tmp: str, quick: bool) -> list[Result]:
    set_storage_options("s3", client_kwargs={"endpoint_url": proxy.endpoint})
    from ondabatches.onda import filesystem_for

    fs, _ = filesystem_for(f"s3://{_BUCKET}/")
    fs.makedirs(_BUCKET, exist_ok=True)
    t = time.perf_counter()
    lazy = _upload_and_label(fs, tmp, "dataset", quick)
    store_seconds = time.perf_counter() - t
    # The same recordings with lpcm.zst frames of 1 MiB instead of 32 KiB: a window then
    # fetches whole frames much larger than itself.
    register_format("lpcm.zst", LPCMZstFormat(frame_bytes=_LARGE_FRAMES), replace=True)
    try:
        large = _upload_and_label(fs, tmp, "large-frames", quick)
    finally:
        register_format("lpcm.zst", LPCMZstFormat(), replace=True)

    batch_size = 16 if quick else 32
    n = 5 if quick else 20
    results = [
        Result(
            f"upload, label and store_labels to S3 s ({lazy.num_rows} rows)",
            store_seconds,
            None,
            "s",
        ),
    ]
    variants = (
        ("lpcm", lazy, "lpcm", 1.1),
        ("lpcm.zst, 32 KiB frames", lazy, "lpcm.zst", 1.1),
        ("lpcm.zst, 1 MiB frames", large, "lpcm.zst", None),
    )
    for name, table, fmt, goal in variants:
        batches = RandomBatches(
            _at_rate(table, fmt), n_channels=2, batch_size=batch_size, batch_duration=60 * 10**9
        )
        proxy.faults = Faults()
        _per_batch(materialize_batch, batches, 1)  # caches
        proxy.reset_counts()
        state = batches.initial_state(2)
        needed = 0
        for _ in range(n):
            batch, state = batches.iterate_batch(state)
            materialize_batch(batch)
            needed += _needed_bytes(batch)
        counts = proxy.counts
        reads = counts.requests
        results.append(
            Result(
                f"S3 body bytes / needed bytes per batch ({name})",
                counts.body_bytes / n,
                needed / n,
                "B/batch",
                goal=goal,
                floor_is="bytes of the windows (all channels) and their labels",
            )  # fmt: skip
        )
        if name == "lpcm":
            floor = (needed + reads * _REQUEST_OVERHEAD) / n
            results.append(
                Result(
                    f"S3 wire bytes per batch ({fmt}, {reads / n:.0f} requests)",
                    counts.bytes_sent / n,
                    floor,
                    "B/batch",
                    goal=1.1,
                    floor_is="needed bytes + 1 KiB of headers per request",
                )  # fmt: skip
            )
    batches = RandomBatches(
        _at_rate(lazy, "lpcm"), n_channels=2, batch_size=batch_size, batch_duration=60 * 10**9
    )
    proxy.faults = Faults()
    no_latency = _per_batch(materialize_batch, batches, n)
    proxy.faults = Faults(latency=_LATENCY)
    with_latency = _per_batch(materialize_batch, batches, n)
    one_by_one = _per_batch(
        lambda b: [materialize_batch_item(it) for it in b], batches, max(2, n // 4)
    )
    proxy.faults = Faults()
    label = f"{batch_size} items, lpcm, one process"
    results += [
        Result(f"s/batch, no added latency ({label})", no_latency, None, "s"),
        Result(
            f"s/batch, {_LATENCY * 1000:.0f} ms per request ({label})",
            with_latency,
            no_latency + _LATENCY,
            "s",
            goal=1.5,
            floor_is="s/batch without latency + one round trip per batch",
        ),  # fmt: skip
        Result(
            f"s/batch, {_LATENCY * 1000:.0f} ms per request, items one by one",
            one_by_one,
            no_latency + _LATENCY,
            "s",
            floor_is="the same floor: what concurrent reads save",
        ),  # fmt: skip
    ]
    set_storage_options("s3")
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__))
