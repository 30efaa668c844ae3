"""The everyday workload: 32 random 30 s windows of 19 int16 channels at 256 Hz.

Many small windows, where the cost per item rather than the bytes decides the speed.
Side by side in one run, on the same synthetic recordings (written once as ``lpcm`` and
once as seekable ``lpcm.zst``), interleaved ours, floor, ours, floor, ... and reporting
the median ratio:

- inline, one core, no pool: ``iterate_batch`` + ``materialize_batch`` (exact values:
  Onda's decode in float64 rounded once to float32) against the floor of the same
  windows' bytes read with ``os.preadv`` from descriptors opened beforehand (for
  ``lpcm.zst``: the window's frames read and decompressed, each to its end, where zstd
  checks its checksum) plus one float32 multiply
  into ``(batch, channels, time)``; goal at most 1.15x;
- the same with ``exact=False`` (float32 arithmetic, the floor's own operation, within
  ``2**-21`` relative of the exact values): the exact values need float64 arithmetic
  (for a resolution such as 0.1 no float32 arithmetic gives them), which numpy alone
  (``ONDABATCHES_KERNELS=numpy``, or no numba) runs about 1.4x slower than the floor;
- the overhead per item, in microseconds: (ours - floor) / 32; goal at most 15 us. With
  the compiled kernels (the ``fast`` extra: one pass selects, transposes and decodes a
  window, where the floor's strided multiply is slower), ours can beat the floor and
  hide its own costs there, so a second figure holds ours against the same reads and
  the same kernel called directly: what the library adds per item (the batch's spec
  included);
- two worker processes (a ``Batcher``, shared memory) against the inline figure; goal
  at least 1.7x its batches/s;
- the first 10 batches after ``Batcher.start``, each against the steady state; goal:
  none after the first slower than 1.5x;
- what the machine itself gives: two independent processes running the inline loop
  against one (no Batcher, nothing shared), the ceiling of any "2 workers" figure here:
  two cores that share memory bandwidth (a batch writes 19 MB and reads 9 MB) give
  less than 2x.

Run ``python -m benchmarks.windows [--quick]`` or ``ondabatches bench windows``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals
from ondabatches.materialize import materialize_batch
from ondabatches.onda import (
    Samples,
    SamplesInfo,
    TimeSpan,
    _kernels,
    annotations_table,
    signals_table,
    store,
    window_sample_range,
)
from ondabatches.onda._decoding import FAST_MAX_ERROR
from ondabatches.onda._zst import parse_seek_table

from ._report import Result, script_main

__all__ = ["make_recordings", "run"]

NS = 10**9
EPOCH = 30 * NS
RATE = 256.0
CHANNELS = tuple(
    "fp1 fp2 f7 f3 fz f4 f8 t3 c3 cz c4 t4 t5 p3 pz p4 t6 o1 o2".split()
)  # the 10-20 system's 19 EEG electrodes
BATCH = 32
STAGES = {"wake": 1, "nrem1": 2, "nrem2": 3, "nrem3": 4, "rem": 5}


def make_recordings(
    root: str | os.PathLike[str], n_recordings: int, minutes: int, *, seed: int = 0
) -> dict[str, pa.Table]:
    """Write ``n_recordings`` of 19 int16 channels at 256 Hz, in ``lpcm`` and ``lpcm.zst``.

    Returns the labeled signals table of each format (one stage label per 30 s epoch).
    The samples are band-limited noise of EEG amplitude (so that zstd compresses them
    about as well as real EEG), resolution 0.1 uV, offset 0 (as EDF's symmetric ranges
    give).
    """
    root = Path(root)
    n = int(minutes * 60 * RATE)
    info = SamplesInfo("eeg", CHANNELS, "microvolt", 0.1, 0.0, "int16", RATE)
    rows, annotations = [], []
    for i in range(n_recordings):
        rng = np.random.default_rng([seed, i])
        recording = uuid.UUID(int=i + 1)
        noise = rng.normal(0, 300, (len(CHANNELS), n + 8))
        smooth = sum(noise[:, k : k + n] for k in range(8)) / 8  # a crude low-pass
        encoded = np.clip(np.rint(smooth), -32768, 32767).astype(np.int16)
        span = TimeSpan(0, minutes * 60 * NS)
        for fmt in ("lpcm", "lpcm.zst"):
            path = root / f"{recording}.{fmt}"
            store(path, Samples(encoded, info, encoded=True))
            rows.append(dict(recording=recording, file_path=str(path), file_format=fmt,
                             span=span, sensor_label="eeg", **info.to_dict()))  # fmt: skip
        stages = list(STAGES)
        for k in range(minutes * 2):
            annotations.append(dict(recording=recording, id=uuid.UUID(int=(i << 32) + k),
                                    span=TimeSpan(k * EPOCH, (k + 1) * EPOCH),
                                    stage=stages[int(rng.integers(len(stages)))]))  # fmt: skip
    signals = signals_table(rows)
    labeled = label_signals(
        signals, annotations_table(annotations), labels_column="stage", epoch=EPOCH,
        encoding=STAGES,
    )  # fmt: skip
    return {
        fmt: labeled.filter(pc.equal(labeled.column("file_format"), fmt))
        for fmt in ("lpcm", "lpcm.zst")
    }


class _RawFloor:
    """The floor: the windows' bytes with no library, then one float32 multiply.

    Descriptors (and, for ``lpcm.zst``, seek tables) are opened beforehand, so the floor
    holds only what no reader of these windows can avoid.
    """

    def __init__(self, batches: list[list]):
        self.fds: dict[str, int] = {}
        self.tables: dict[str, object] = {}
        for batch in batches:
            for it in batch:
                if it.file_path not in self.fds:
                    fd = os.open(it.file_path, os.O_RDONLY)
                    self.fds[it.file_path] = fd
                    if it.file_format == "lpcm.zst":
                        size = os.fstat(fd).st_size
                        self.tables[it.file_path] = parse_seek_table(
                            size, lambda a, b, fd=fd: os.pread(fd, b - a, a)
                        )
        self.dctx = zstandard.ZstdDecompressor()

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)

    def window(self, item) -> np.ndarray:
        info = item.info
        rows = window_sample_range(item.window.translate(-item.signal_span.start), RATE)
        bps = info.bytes_per_sample
        start, stop = rows.start * bps, rows.stop * bps
        fd = self.fds[item.file_path]
        if item.file_format == "lpcm":
            buf = np.empty(stop - start, dtype=np.uint8)
            os.preadv(fd, [buf], start)
        else:
            table = self.tables[item.file_path]
            first, last = table.frames_for(start, stop)
            c = table.compressed_offsets
            compressed = os.pread(fd, int(c[last] - c[first]), int(c[first]))
            skip = start - table.frame_start(first)
            # The frames decompressed whole, as the bytes read are: zstd checks a frame's
            # checksum (which the library's reads check for every frame) at its end.
            whole = table.frame_start(last) - table.frame_start(first)
            reader = self.dctx.stream_reader(compressed, read_across_frames=True)
            buf = np.frombuffer(reader.read(whole), dtype=np.uint8)[skip : skip + stop - start]
        return buf.view(info.dtype).reshape(-1, info.n_channels).T

    def batch(self, batch: list) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((len(batch), len(CHANNELS), int(EPOCH // NS * RATE)), dtype=np.float32)
        for i, it in enumerate(batch):
            np.multiply(self.window(it), np.float32(it.info.sample_resolution_in_unit), out=x[i])
        return x, np.stack([it.labels for it in batch])[:, None]

    def kernel_batch(self, batch: list, exact: bool) -> np.ndarray:
        """The same reads, decoded by the library's compiled kernel called directly."""
        x = np.empty((len(batch), len(CHANNELS), int(EPOCH // NS * RATE)), dtype=np.float32)
        for i, it in enumerate(batch):
            info = it.info
            _kernels.decode_rows(
                self.window(it), slice(None), info.sample_resolution_in_unit,
                info.sample_offset_in_unit, not exact, x[i],
            )  # fmt: skip
        return x


def _interleaved(a: Callable[[], float], b: Callable[[], float], rounds: int) -> list[float]:
    """Ratios a/b of ``rounds`` interleaved runs a, b, a, b, ..."""
    ratios = []
    for _ in range(rounds):
        ratios.append(a() / b())
    return ratios


def _timed(f: Callable[[], object]) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def _inline(
    labeled: pa.Table, fmt: str, n: int, rounds: int, exact: bool = True
) -> tuple[list[Result], float]:
    spec = RandomBatches(labeled, batch_size=BATCH, batch_duration=EPOCH)
    states = [spec.initial_state(seed=1).advance(k) for k in range(n)]
    batches = [spec.iterate_batch(s)[0] for s in states]
    floor = _RawFloor(batches)
    expected = np.empty((BATCH, len(CHANNELS), int(30 * RATE)), dtype=np.float32)
    for it_, row in zip(batches[0], expected, strict=True):  # exact values, float64 then rounded
        w = floor.window(it_)
        row[...] = (w.astype(np.float64) * it_.info.sample_resolution_in_unit).astype(np.float32)
    got = materialize_batch(batches[0], exact=exact)[0]
    bound = FAST_MAX_ERROR * np.abs(expected) if not exact else 0.0
    if not (np.abs(got.astype(np.float64) - expected) <= bound).all():
        raise AssertionError(f"{fmt}: materialize_batch differs from the exact decode")

    def ours() -> float:
        started = time.perf_counter()
        for s in states:
            materialize_batch(spec.iterate_batch(s)[0], exact=exact)
        return (time.perf_counter() - started) / n

    def raw() -> float:
        started = time.perf_counter()
        for b in batches:
            floor.batch(b)
        return (time.perf_counter() - started) / n

    def kernel() -> float:
        started = time.perf_counter()
        for b in batches:
            floor.kernel_batch(b, exact)
        return (time.perf_counter() - started) / n

    kernels = _kernels.available()
    try:
        ours(), raw()  # page cache, allocators, caches
        if kernels:
            kernel()
        t_ours, t_floor, t_kernel = [], [], []
        for _ in range(rounds):
            t_ours.append(ours())
            t_floor.append(raw())
            if kernels:
                t_kernel.append(kernel())
    finally:
        floor.close()
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_floor, strict=True))
    mo, mf = statistics.median(t_ours), statistics.median(t_floor)
    what = "preadv" if fmt == "lpcm" else "preadv of the frames + zstd of each whole"
    how = "exact" if exact else "exact=False"
    own = []
    if kernels:
        own.append(
            _per_item(
                f"inline {fmt} ({how}), what the library adds per item", t_ours, t_kernel,
                "(ours - the same reads decoded by the same compiled kernel, called "
                "directly) / 32, spec included",
            )
        )  # fmt: skip
    return [
        Result(
            f"inline {fmt}, spec + materialize_batch ({how}), 32 x 30 s",
            mf * ratio * 1e3,
            mf * 1e3,
            "ms/batch",
            goal=1.15,
            floor_is=f"{what} (descriptors open) + one float32 multiply; median ratio "
            f"of {rounds} interleaved rounds",
        ),
        _per_item(
            f"inline {fmt} ({how}), overhead per item", t_ours, t_floor, "(ours - floor) / 32"
        ),
        *own,
    ], mo


def _per_item(name: str, ours: list[float], floor: list[float], what: str) -> Result:
    """The median of (ours - floor) per batch, per item, against the goal of 15 us."""
    extra = statistics.median(a - b for a, b in zip(ours, floor, strict=True))
    return Result(
        name,
        max(extra, 0.0) / BATCH * 1e6,
        15.0,
        "us/item",
        goal=1.0,
        floor_is=f"the goal (15 us per item); ours = median of {what}",
    )


def _inline_loop(spec: RandomBatches, seed: int, n: int) -> float:
    """Seconds for ``n`` batches of spec + materialize_batch, inline (in a worker process)."""
    state = spec.initial_state(seed=seed)
    started = time.perf_counter()
    for _ in range(n):
        batch, state = spec.iterate_batch(state)
        materialize_batch(batch)
    return time.perf_counter() - started


def _machine_ceiling(labeled: pa.Table, n: int, rounds: int) -> Result:
    """Batches/s of 2 independent processes running the inline loop, over 1's."""
    spec = RandomBatches(labeled, batch_size=BATCH, batch_duration=EPOCH)
    context = multiprocessing.get_context("fork")
    ratios = []
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(_inline_loop, [spec] * 2, [1, 2], [2, 2]))  # start-up, kernels
        for _ in range(rounds):
            one = pool.submit(_inline_loop, spec, 3, n).result()
            started = time.perf_counter()
            list(pool.map(_inline_loop, [spec] * 2, [4, 5], [n, n]))
            two = time.perf_counter() - started
            ratios.append((2 * n / two) / (n / one))
    return Result(
        "machine: 2 independent processes vs 1, the inline loop",
        statistics.median(ratios),
        None,
        "x",
        floor_is=f"the ceiling of any '2 workers' figure on this machine (median of {rounds})",
    )


def _batcher_times(spec: RandomBatches, n: int, workers: int) -> list[float]:
    from ondabatches.serve import Batcher

    state = spec.initial_state(seed=2)
    times = []
    with Batcher(spec, backend="processes", workers=workers) as batcher:
        batcher.start(state)
        for _ in range(n):
            started = time.perf_counter()
            _, state = batcher.take(state)
            times.append(time.perf_counter() - started)
    return times


def _workers(labeled: pa.Table, inline_s: float, n: int, rounds: int) -> list[Result]:
    spec = RandomBatches(labeled, batch_size=BATCH, batch_duration=EPOCH)
    rates, starts, steadies = [], [], []
    for _ in range(rounds):
        times = _batcher_times(spec, 10 + n, workers=2)
        rates.append(n / sum(times[10:]))
        # Waits for single batches vary in steady state too (two workers finish in
        # turn), so batches 2..10 are held against 9 consecutive batches later on: the
        # slowest of each run of 9, the median of those.
        later = times[10:]
        runs = [max(later[i : i + 9]) for i in range(0, len(later) - 8, 9)]
        starts.append(times[:10])
        steadies.append(statistics.median(runs))
    for first10, steady in zip(starts, steadies, strict=True):
        print(
            "first 10 batches, processes, 2 workers (ms): "
            + " ".join(f"{t * 1e3:.1f}" for t in first10)
            + f"; steady state, slowest of 9: {steady * 1e3:.1f} ms",
            flush=True,
        )
    ratio = statistics.median(max(f[1:]) / s for f, s in zip(starts, steadies, strict=True))
    steady = statistics.median(steadies)
    return [
        Result(
            "processes, 2 workers vs inline (goal >= 1.7x)",
            max(rates),
            1 / inline_s,
            "batch/s",
            goal=1 / 1.7,
            higher_is_better=True,
            floor_is="the inline figure above (spec + materialize_batch in a loop)",
        ),
        Result(
            "first 10 batches: slowest of batches 2..10 vs steady state",
            steady * ratio * 1e3,
            steady * 1e3,
            "ms",
            goal=1.5,
            floor_is="the slowest of 9 consecutive batches in steady state (median over "
            f"runs of 9 and over {rounds} Batchers)",
        ),
    ]


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    n, rounds = (10, 5) if quick else (40, 21)
    results: list[Result] = []
    print(
        "decode: "
        + ("compiled kernels (numba)" if _kernels.available() else "numpy (no compiled kernels)"),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ondabatches-windows-") as tmp:
        tables = make_recordings(tmp, n_recordings=4 if quick else 8, minutes=20 if quick else 60)
        inline_s = {}
        for fmt, table in tables.items():
            rows, inline_s[fmt] = _inline(table, fmt, n, rounds)
            results += rows
            results += _inline(table, fmt, n, rounds, exact=False)[0]
        results += _workers(tables["lpcm"], inline_s["lpcm"], 4 * n, 2 if quick else 3)
        results.append(_machine_ceiling(tables["lpcm"], 4 * n, 2 if quick else 3))
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
