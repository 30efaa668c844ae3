"""The Batcher end to end: batches/s and MB/s reaching the consumer, transport, first batch.

Side by side in one run, on the same synthetic dataset (6-channel EEG at 128 Hz,
int16 LPCM decoded to float32):

- the floor: the same batches materialized in a loop in this process, no Batcher;
- the inline backend (the Batcher's own overhead on top of the floor);
- the processes backend (shared memory) and, if Ray is installed, the Ray backend,
  with 1, 2, 4 workers and more where the machine has the CPUs (up to 16);
- the transport of one ~50 MB batch: a worker's round trip (materialize, hand over,
  consumer's first touch) minus materializing in-process, through shared memory and
  through pickling, against materializing that batch;
- the time from creating a process Batcher to holding its first batch;
- dict batches (a dict of arrays per modality with a mask dict, as multi-signal schemes
  make): the per-batch cost of handing a tiny one over through shared memory next to
  a tiny ``(x, y)``'s, and the transport of a ~50 MB one (goal: as for ``(x, y)``).

- the same scaling for decode-heavy batches (seekable ``lpcm.zst`` at 256 Hz).

Goals: 2 workers at least 1.7x one worker; shared-memory transport under 10% of
materialization time for 50 MB batches; first batch under 2 s with processes.
Throughput is measured in steady state, after the first batch and a second of warm-up
(the time every Ray actor takes to start), so pool start-up is not in it.

Run ``python -m benchmarks.batcher [--quick]``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals, sort_and_trim_spans
from ondabatches.materialize import materialize_batch
from ondabatches.serve import Batcher
from ondabatches.serve._pools import ExecutorPool
from ondabatches.serve._processes import ProcessPool
from ondabatches.serve._shm import SegmentPool
from ondabatches.serve._tasks import run_task, unpack_result
from ondabatches.serve._tree import flatten
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

from ._report import Result, script_main

__all__ = ["run"]

MB = 1e6
RATE = 128.0  # the synthetic layout with six int16 channels
HEAVY_RATE = 256.0  # the one in seekable lpcm.zst: decompression dominates
#: Modalities of the tiny dict batch: names and channels (each its own sample count).
MODALITIES = (("eeg", 6), ("eog", 2), ("emg", 1))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def worker_counts(cpus: int) -> list[int]:
    """1, 2 and 4 always (4 oversubscribes a 2-core machine, which is worth seeing), then
    8 and 16 where there are that many CPUs."""
    return [w for w in (1, 2, 4, 8, 16) if w <= 4 or w <= cpus]


def _labeled(root: Path, quick: bool) -> pa.Table:
    # Recordings 0, 4, 8... use the 128 Hz six-channel int16 lpcm layout, recordings
    # 1, 5, 9... the 256 Hz six-channel float32 lpcm.zst one.
    ds = make_dataset(
        root, n_recordings=5 if quick else 9, duration=(20 if quick else 60) * 60 * 10**9
    )
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    labeled = label_signals(
        ds.signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    return labeled


def _floor(scheme: RandomBatches, n: int) -> tuple[float, int]:
    """Seconds to materialize batches 1..n in this process, and bytes per batch."""
    state = scheme.initial_state().advance(1)
    nbytes = 0
    started = time.perf_counter()
    for _ in range(n):
        batch, state = scheme.iterate_batch(state)
        x, y = materialize_batch(batch)
        nbytes = x.nbytes + y.nbytes
    return time.perf_counter() - started, nbytes


def _materialize_loop(scheme: RandomBatches, start: int, n: int) -> float:
    """Seconds to materialize batches ``start .. start + n`` (run in a child process)."""
    state = scheme.initial_state().advance(start)
    started = time.perf_counter()
    for _ in range(n):
        batch, state = scheme.iterate_batch(state)
        materialize_batch(batch)
    return time.perf_counter() - started


def _machine_scaling(scheme: RandomBatches, n: int, repeat: int) -> float:
    """What the machine itself gives: batches/s of 2 independent processes over 1.

    Each process materializes its own batches in a loop, with no Batcher and nothing
    shared: the ceiling for "2 workers vs 1" on this machine (cores that share caches,
    memory bandwidth or a hypervisor's time give less than 2x).
    """
    context = multiprocessing.get_context("fork")  # before Ray starts any thread
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(_materialize_loop, [scheme] * 2, [0, n], [2, 2]))  # warm-up
        one = min(pool.submit(_materialize_loop, scheme, 0, n).result() for _ in range(repeat))

        def both() -> float:
            started = time.perf_counter()
            list(pool.map(_materialize_loop, [scheme] * 2, [0, n], [n, n]))
            return time.perf_counter() - started

        two = _best(both, repeat)
    return (2 * n / two) / (n / one)


def _throughput(
    scheme: RandomBatches, n: int, warm_up: float = 0.0, **options
) -> tuple[float, float]:
    """(seconds for n batches in steady state, seconds to the first) through a Batcher.

    The n batches are timed after the first one and after ``warm_up`` seconds from the
    start, by which every worker has started (a Ray actor takes about a second).
    """
    state = scheme.initial_state()
    started = time.perf_counter()
    with Batcher(scheme, **options) as batcher:
        batcher.start(state)
        _, state = batcher.take(state)
        first = time.perf_counter() - started
        while time.perf_counter() - started < warm_up:
            _, state = batcher.take(state)
        started = time.perf_counter()
        for _ in range(n):
            _, state = batcher.take(state)
        return time.perf_counter() - started, first


def _best(f, repeat: int) -> float:
    return min(f() for _ in range(repeat))


def _timed(f, *args) -> float:
    started = time.perf_counter()
    f(*args)
    return time.perf_counter() - started


def _transport(pool, batch, materialize=materialize_batch) -> float:
    """Seconds per batch through ``pool`` in steady state, the consumer touching every page.

    One batch at a time, so that the figure is the round trip of a single batch: the
    worker's materialization plus everything it takes to put the arrays in the
    consumer's hands (and, for shared memory, to recycle the segment afterwards).
    """

    def once() -> None:
        x, y = pool.submit(materialize, batch, np.float32).result()
        for array in flatten(x)[0]:
            array.reshape(-1).view(np.uint8)[::4096].sum()  # the consumer's first touch

    once()  # worker start-up, first mapping of the segment
    return _best(lambda: _timed(once), 5)


def as_modalities(batch, dtype, allocate=None):
    """A dict batch of the same bytes as ``materialize_batch(batch)``: the items' halves
    as two modalities, with a mask dict, each array decoded through ``allocate`` (as a
    multi-signal materializer does, one call per array)."""
    items = list(batch)
    half = len(items) // 2
    first, _ = materialize_batch(items[:half], dtype, allocate=allocate)
    second, y = materialize_batch(items[half:], dtype, allocate=allocate)
    allocate = allocate or np.empty
    mask = {"a": allocate((half,), np.bool_), "b": allocate((len(items) - half,), np.bool_)}
    for m in mask.values():
        m[...] = True
    return {"a": first, "b": second, "mask": mask}, y


def _hand_over(materialize, segments: SegmentPool, repeat: int, n: int = 2000) -> float:
    """Seconds per batch to hand a tiny batch over through shared memory, in this
    process: the worker's side (``run_task``), the result pickled both ways, the
    manager's (``unpack_result``): what a batch costs besides its bytes."""
    result = None

    def once() -> None:
        nonlocal result
        result = run_task(materialize, None, np.float32, segments.lease())
        result = unpack_result(pickle.loads(ForkingPickler.dumps(result)), segments)
        result = None  # the consumer lets go: the segment is recycled

    def loop() -> float:
        started = time.perf_counter()
        for _ in range(n):
            once()
        return (time.perf_counter() - started) / n

    loop()  # first mappings
    return _best(loop, repeat)


def _tiny(batch, dtype, allocate=np.empty):
    x = allocate((4, 2, 64), dtype)
    x[...] = 1
    y = allocate((4, 1, 2), np.uint8)
    y[...] = 2
    return x, y


def _tiny_modalities(batch, dtype, allocate=np.empty):
    x = {name: allocate((4, channels, 32 * channels), dtype) for name, channels in MODALITIES}
    x["mask"] = {name: allocate((4,), np.bool_) for name, _ in MODALITIES}
    for leaf in (*x["mask"].values(), *(x[name] for name, _ in MODALITIES)):
        leaf[...] = 1
    y = allocate((4, 1, 2), np.uint8)
    y[...] = 2
    return x, y


def _tree_figures(labeled: pa.Table, repeat: int) -> list[Result]:
    """Dict batches (one array per modality) against single-array batches."""
    results = []
    segments = SegmentPool(keep=4)
    try:
        # Interleaved, so that a busy machine slows both alike.
        single, tree = [], []
        for _ in range(repeat):
            single.append(_hand_over(_tiny, segments, 1))
            tree.append(_hand_over(_tiny_modalities, segments, 1))
    finally:
        segments.close()
    results.append(
        Result(
            f"hand-over of a tiny dict batch ({len(MODALITIES)} modalities + mask dict)",
            min(tree) * 1e6,
            min(single) * 1e6,
            "us",
            floor_is="the same of a tiny (x, y) batch: run_task, pickling, unpack_result",
        )
    )
    # Transport of a ~50 MB dict batch, as for the single-array one below.
    big = RandomBatches(labeled, batch_size=54, batch_duration=10 * EPOCH)
    batch, _ = big.iterate_batch(big.initial_state())
    as_modalities(batch, np.float32)  # warms the page cache
    materialize_s = _best(lambda: _timed(as_modalities, batch, np.float32), repeat + 2)
    pool = ProcessPool(1)
    try:
        round_trip = _transport(pool, batch, as_modalities)
    finally:
        pool.close()
    results.append(
        Result(
            "transport of a 50 MB dict batch (2 modalities + mask): shared memory",
            max(round_trip - materialize_s, 0.0) * 1e3,
            materialize_s * 1e3,
            "ms",
            goal=0.1,
            floor_is="materializing that batch in-process; ours is a worker's round trip "
            "minus that (goal: under 10% of it)",
        )
    )
    return results


def _rates(name: str, seconds: float, n: int, nbytes: int, floor: tuple[float, float], **extra):
    batches, mbs = n / seconds, n * nbytes / MB / seconds
    return [
        Result(f"{name}: batches/s", batches, floor[0], "batch/s", higher_is_better=True, **extra),
        Result(f"{name}: MB/s", mbs, floor[1], "MB/s", higher_is_better=True),
    ]


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    cpus = _usable_cpus()
    n = 24 if quick else 192
    warm_up = 0.0 if quick else 1.0
    repeat = 2 if quick else 3
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        every = _labeled(Path(tmp), quick)
        labeled = every.filter(pc.equal(every.column("sample_rate"), RATE))
        heavy = every.filter(pc.equal(every.column("sample_rate"), HEAVY_RATE))
        # ~5.9 MB per batch: 32 windows of 60 s, 6 channels, float32.
        scheme = RandomBatches(labeled, batch_size=32, batch_duration=2 * EPOCH)
        floor_s, nbytes = _floor(scheme, n)  # the first pass also warms the page cache
        floor_s = min(floor_s, _best(lambda: _floor(scheme, n)[0], repeat))
        floor = (n / floor_s, n * nbytes / MB / floor_s)
        floor_is = f"materialize_batch in a loop in-process ({nbytes / MB:.1f} MB batches)"
        results += _rates("floor: materialization alone", floor_s, n, nbytes, floor)
        inline = _best(lambda: _throughput(scheme, n, backend="inline")[0], repeat)
        results += _rates("inline backend", inline, n, nbytes, floor, floor_is=floor_is)
        ceiling = _machine_scaling(scheme, n, repeat)
        results.append(
            Result(
                "machine: 2 independent processes vs 1, materializing in a loop",
                ceiling,
                None,
                "x",
                floor_is="the ceiling of any '2 workers vs 1' figure on this machine",
            )
        )

        backends = ["processes"]
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            backends.append("ray")
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
        try:
            for backend in backends:
                one_worker = None
                for workers in worker_counts(cpus):
                    options = {"backend": backend, "workers": workers}
                    seconds = _best(
                        lambda o=options: _throughput(scheme, n, warm_up, **o)[0], repeat
                    )
                    name = f"{backend}, {workers} worker{'s' if workers > 1 else ''}"
                    results += _rates(name, seconds, n, nbytes, floor)
                    if workers == 1:
                        one_worker = n / seconds
                    elif workers == 2 and one_worker is not None:
                        results.append(
                            Result(
                                f"{backend}, 2 workers vs 1 (goal >= 1.7x)",
                                n / seconds,
                                one_worker,
                                "batch/s",
                                goal=1 / 1.7,
                                higher_is_better=True,
                                floor_is=f"the {backend} backend with 1 worker",
                            )
                        )
            # Decode-heavy batches (seekable lpcm.zst): where the materialization, not
            # the manager, is most of the work per batch, as it is for real recordings.
            heavy_scheme = RandomBatches(heavy, batch_size=32, batch_duration=2 * EPOCH)
            heavy_n = n // 2  # a quarter as many batches per second
            heavy_floor = heavy_n / min(_floor(heavy_scheme, heavy_n)[0] for _ in range(2))
            for backend in backends:

                def heavy_seconds(workers: int, backend: str = backend) -> float:
                    options = {"backend": backend, "workers": workers}
                    return _throughput(heavy_scheme, heavy_n, warm_up, **options)[0]

                rates = {w: heavy_n / _best(lambda w=w: heavy_seconds(w), repeat) for w in (1, 2)}
                results.append(
                    Result(
                        f"lpcm.zst batches, {backend}, 1 worker: batches/s",
                        rates[1],
                        heavy_floor,
                        "batch/s",
                        higher_is_better=True,
                        floor_is="materialize_batch of those batches in a loop in-process",
                    )
                )
                results.append(
                    Result(
                        f"lpcm.zst batches, {backend}, 2 workers vs 1 (goal >= 1.7x)",
                        rates[2],
                        rates[1],
                        "batch/s",
                        goal=1 / 1.7,
                        higher_is_better=True,
                        floor_is=f"the {backend} backend with 1 worker",
                    )
                )
        finally:
            if ray is not None:
                ray.shutdown()

        # Transport of one ~50 MB batch: 54 windows of 5 min, 6 channels, float32.
        big = RandomBatches(labeled, batch_size=54, batch_duration=10 * EPOCH)
        batch, _ = big.iterate_batch(big.initial_state())
        x, y = materialize_batch(batch)  # warms the page cache
        materialize_s = _best(lambda: _timed(materialize_batch, batch), repeat + 2)
        size = f"{(x.nbytes + y.nbytes) / MB:.0f} MB batch"
        pools = (
            ("shared memory (processes backend)", lambda: ProcessPool(1), 0.1),
            (
                "pickled through a pipe (ProcessPoolExecutor)",
                lambda: ExecutorPool(ProcessPoolExecutor(1), owned=True),
                None,
            ),
        )
        for how, make_pool, goal in pools:
            pool = make_pool()
            try:
                round_trip = _transport(pool, batch)
            finally:
                pool.close()
            results.append(
                Result(
                    f"transport of a {size}: {how}",
                    max(round_trip - materialize_s, 0.0) * 1e3,
                    materialize_s * 1e3,
                    "ms",
                    goal=goal,
                    floor_is="materializing that batch in-process; ours is a worker's round "
                    "trip minus that (goal: under 10% of it)",
                )
            )

        results += _tree_figures(labeled, repeat + 1)

        # Time to first batch: creating the Batcher, starting its processes, one batch.
        workers = min(2, cpus)
        inline_first = _best(lambda: _throughput(scheme, 0, backend="inline")[1], repeat)
        first = _best(lambda: _throughput(scheme, 0, backend="processes", workers=workers)[1], 1)
        results.append(
            Result(
                f"time to first batch, processes, {workers} workers (goal < 2 s)",
                first,
                inline_first,
                "s",
                goal=2.0 / inline_first,
                floor_is="the inline backend's first batch; the goal ratio stands for 2 s",
            )
        )
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__))
