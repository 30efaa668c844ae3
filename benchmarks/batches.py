"""Benchmarks of the batch specification and materialization (a plain script, not a test).

Run ``python -m benchmarks.batches [--quick]`` or ``ondabatches bench batches``.
Each row prints our figure next to its floor (the goal, or the cost of the bare work it
cannot avoid) and their ratio:

- ``spec``: items per second drawn by ``RandomBatches`` over a 10,000-recording
  labeled table (goal: at least 100,000 items/s on one core);
- ``materialize``: seconds per ``materialize_batch`` against the floor of reading and
  decoding the same bytes (``load_rows`` + one decode pass), measured alternately
  (goal: at most 1.3x the floor);
- ``memory``: bytes of the 10,000-recording labeled table, and what ``RandomBatches``
  with uniform weights allocates on top of it.
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc

import numpy as np
import pyarrow.compute as pc
import zstandard

from ondabatches.batches import BatchState, RandomBatches
from ondabatches.materialize import materialize_batch
from ondabatches.onda import window_sample_range
from ondabatches.onda._zst import parse_seek_table
from ondabatches.synthetic import labeled_table, make_dataset

from ._report import Result, script_main

MIN = 60 * 10**9


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_spec(quick: bool) -> list[Result]:
    table = labeled_table(10_000)
    spec = RandomBatches(table, n_channels=2, batch_size=256, batch_duration=MIN)
    n_batches = 40 if quick else 400
    state = spec.initial_state(0)
    t = time.perf_counter()
    for _ in range(n_batches):
        _, state = spec.iterate_batch(state)
    rate = n_batches * 256 / (time.perf_counter() - t)
    return [
        Result(
            "spec generation, 10,000 recordings, batch 256",
            rate,
            100_000.0,
            "items/s",
            goal=1.0,
            higher_is_better=True,
            floor_is="the goal rate (100,000 items/s on one core)",
        )
    ]


def _raw_window(item) -> np.ndarray:
    """The floor: read the window's bytes (and decompress its frames) with no library."""
    info = item.info
    rows = window_sample_range(item.window.translate(-item.signal_span.start), info.sample_rate)
    bps = info.bytes_per_sample
    start, stop = rows.start * bps, rows.stop * bps
    fd = os.open(item.file_path, os.O_RDONLY)
    try:
        if item.file_format == "lpcm":
            buf = np.empty(stop - start, dtype=np.uint8)
            os.preadv(fd, [buf], start)
        else:
            size = os.fstat(fd).st_size
            table = parse_seek_table(size, lambda a, b: os.pread(fd, b - a, a))
            first, last = table.frames_for(start, stop)
            c = table.compressed_offsets
            compressed = os.pread(fd, int(c[last] - c[first]), int(c[first]))
            reader = zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True)
            skip = start - table.frame_start(first)
            buf = np.frombuffer(reader.read(skip + stop - start), dtype=np.uint8)[skip:]
    finally:
        os.close(fd)
    return buf.view(info.dtype).reshape(-1, info.n_channels).T


def bench_materialize(quick: bool) -> list[Result]:
    from ondabatches.labels import label_signals, sort_and_trim_spans
    from ondabatches.synthetic import EPOCH, STAGE_ENCODING

    with tempfile.TemporaryDirectory() as root:
        ds = make_dataset(root, n_recordings=8, duration=(20 if quick else 60) * MIN, eog_every=0)
        ann = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
        labeled = label_signals(
            ds.signals, ann, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
        )
        rows = []
        for rate in (128.0, 256.0):
            table = labeled.filter(pc.equal(labeled.column("sample_rate"), rate))
            fmt = table.column("file_format")[0].as_py()
            spec = RandomBatches(table, batch_size=32, batch_duration=5 * MIN)
            batches = [spec.iterate_batch(BatchState(0, k))[0] for k in range(4 if quick else 16)]

            def ours(batches=batches):
                for b in batches:
                    materialize_batch(b)

            def floor(batches=batches):
                for b in batches:
                    out = None
                    for i, it in enumerate(b):
                        enc = _raw_window(it)
                        if out is None:
                            out = np.empty((len(b), *enc.shape), dtype=np.float32)
                        # Onda's decode, resolution * sample + offset, in float64 and
                        # rounded once to float32: the values materialize_batch returns.
                        np.multiply(enc, it.info.sample_resolution_in_unit, out=out[i],
                                    casting="unsafe")  # fmt: skip
                        if it.info.sample_offset_in_unit:
                            out[i] += np.float32(it.info.sample_offset_in_unit)
                        it.label_codes()
                    yield out

            # The floor computes the very values that materialize_batch returns.
            first = batches[:1]
            assert np.array_equal(next(floor(first)), materialize_batch(first[0])[0])

            def drain(batches=batches):  # each batch dropped before the next, as in ours()
                for _ in floor(batches):
                    pass

            ours(), drain()  # warm the page cache and allocators
            t_ours, t_floor = float("inf"), float("inf")
            for _ in range(3 if quick else 7):
                t_ours = min(t_ours, _best(ours, 1))
                t_floor = min(t_floor, _best(drain, 1))
            per = len(batches)
            rows.append(
                Result(
                    f"materialize_batch, 32 x 5 min, {rate:g} Hz {fmt}",
                    t_ours / per * 1e3,
                    t_floor / per * 1e3,
                    "ms/batch",
                    goal=1.3,
                    floor_is="raw pread (+ zstd of the window's frames) + numpy decode + stack",
                )
            )
        return rows


def bench_memory(quick: bool) -> list[Result]:
    table = labeled_table(10_000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    spec = RandomBatches(table, batch_size=256, batch_duration=MIN)
    extra = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del spec
    return [
        Result("labeled table, 10,000 recordings x 8 h (in-memory labels)", table.nbytes / 1e6,
               None, "MB"),
        Result("RandomBatches on top of it, uniform weights", extra / 1e6, None, "MB"),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    """All benchmark rows."""
    return bench_spec(quick) + bench_materialize(quick) + bench_memory(quick)


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
