"""Benchmarks of the batch specification and materialization (a plain script, not a test).

Run ``python benchmarks/bench_batches.py [--quick]``. Each row prints our figure next to
its floor (the goal, or the cost of the bare work it cannot avoid) and their ratio:

- ``spec``: items per second drawn by ``RandomBatches`` over a 10,000-recording
  labeled table (goal: at least 100,000 items/s on one core);
- ``materialize``: seconds per ``materialize_batch`` against the floor of reading and
  decoding the same bytes (``load_rows`` + one decode pass), measured alternately
  (goal: at most 1.3x the floor);
- ``memory``: bytes of the 10,000-recording labeled table, and what ``RandomBatches``
  with uniform weights allocates on top of it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import pyarrow.compute as pc

from ondabatches.batches import BatchState, RandomBatches
from ondabatches.materialize import materialize_batch
from ondabatches.onda import load_rows, window_sample_range
from ondabatches.synthetic import labeled_table, make_dataset

MIN = 60 * 10**9


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_spec(quick: bool) -> list[dict]:
    table = labeled_table(10_000)
    spec = RandomBatches(table, n_channels=2, batch_size=256, batch_duration=MIN)
    n_batches = 40 if quick else 400
    state = spec.initial_state(0)
    t = time.perf_counter()
    for _ in range(n_batches):
        _, state = spec.iterate_batch(state)
    rate = n_batches * 256 / (time.perf_counter() - t)
    return [
        dict(
            name="spec items/s (10,000 recordings)",
            value=rate,
            floor=100_000.0,
            ratio=100_000.0 / rate,
        )
    ]


def bench_materialize(quick: bool) -> list[dict]:
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
                    for it in b:
                        r = window_sample_range(
                            it.window.translate(-it.signal_span.start), it.info.sample_rate
                        )
                        enc = load_rows(it.signal(), r, encoded=True).data
                        out = np.empty(enc.shape, np.float32)
                        np.multiply(
                            enc, it.info.sample_resolution_in_unit, out=out, casting="unsafe"
                        )
                        it.label_codes()

            ours(), floor()  # warm the page cache and allocators
            t_ours, t_floor = float("inf"), float("inf")
            for _ in range(3 if quick else 7):
                t_ours = min(t_ours, _best(ours, 1))
                t_floor = min(t_floor, _best(floor, 1))
            per = len(batches)
            name = f"materialize_batch s/batch (32 x 5 min, {rate:g} Hz, {fmt})"
            rows.append(
                dict(name=name, value=t_ours / per, floor=t_floor / per, ratio=t_ours / t_floor)
            )
        return rows


def bench_memory(quick: bool) -> list[dict]:
    table = labeled_table(10_000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    spec = RandomBatches(table, batch_size=256, batch_duration=MIN)
    extra = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del spec
    return [
        dict(
            name="labeled table bytes (10,000 x 8 h)",
            value=float(table.nbytes),
            floor=None,
            ratio=None,
        ),
        dict(
            name="RandomBatches extra bytes, uniform weights",
            value=float(extra),
            floor=None,
            ratio=None,
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    """All benchmark rows: dicts with ``name``, ``value``, ``floor`` and ``ratio``."""
    return bench_spec(quick) + bench_materialize(quick) + bench_memory(quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller data")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, single-threaded figures")
    for row in run(args.quick):
        floor = (
            "" if row["floor"] is None else f"  floor {row['floor']:.4g}  ratio {row['ratio']:.2f}"
        )
        print(f"{row['name']:<60} {row['value']:.4g}{floor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
