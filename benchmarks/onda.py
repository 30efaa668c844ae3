"""Benchmark of windowed sample loading against its floor.

Writes a long 19-channel int16 recording (24 h at 256 Hz, ~850 MB; ``--quick``: 1 h
at 128 Hz) as ``lpcm``, seekable ``lpcm.zst`` and single-frame ``lpcm.zst`` (as Onda.jl
writes it), then loads random 5-minute windows decoded to float32:

* ``lpcm``: ``load_rows`` / ``load`` against the floor, a raw ``os.preadv`` of the same
  bytes (file already open) plus one numpy decode. Goal: ratio <= 1.25.
* seekable ``lpcm.zst``: a window at the end of the file over one at the start.
  Goal: ratio <= 1.5 (only the overlapped frames are decompressed). The single-frame
  file is the contrast: it must be decompressed from the start.

Files are read from the page cache (each is read once before timing), so the
numbers measure our overhead, not the disk.

Usage: ``python -m benchmarks.onda [--quick]`` or ``ondabatches bench onda``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from ondabatches.onda import (
    Samples,
    SamplesInfo,
    Signal,
    TimeSpan,
    load,
    load_rows,
    store,
    time_from_index,
)

from ._report import Result, script_main

CHANNELS = tuple(
    "fp1 f3 c3 p3 f7 t3 t5 o1 fz cz pz fp2 f4 c4 p4 f8 t4 t6 o2".split()
)  # 19 channels
WINDOW_S = 300
RESOLUTION = 0.25


def _recording(hours: float, rate: float, seed: int) -> np.ndarray:
    """Stationary EEG-like channels (a slow wave plus noise), channels x time.

    Stationary so that every part of the file compresses alike and a window's cost
    does not depend on where it lies for reasons other than the reader's.
    """
    n = int(hours * 3600 * rate)
    rng = np.random.default_rng(seed)
    out = np.empty((len(CHANNELS), n), dtype=np.int16)
    phase = 2 * np.pi * np.arange(n) / rate
    for i, row in enumerate(out):
        wave = 400 * np.sin(phase * (1 + i / 4) + rng.uniform(0, 2 * np.pi))
        row[:] = wave + rng.integers(-40, 41, size=n, dtype=np.int16)
    return out


def _signal(path: Path, fmt: str, info: SamplesInfo, n: int) -> Signal:
    return Signal(
        uuid.UUID(int=0),
        str(path),
        fmt,
        TimeSpan(0, time_from_index(n, info.sample_rate)),
        "eeg",
        info,
    )


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


def _row(
    name: str, ours: list[float], base: list[float] | None, goal: float | None, what: str
) -> Result:
    return Result(
        name,
        statistics.median(ours) * 1e3,
        statistics.median(base) * 1e3 if base else None,
        "ms",
        goal,
        floor_is=what,
    )


def run(
    quick: bool = False, folder: str | os.PathLike[str] | None = None, seed: int = 0
) -> list[Result]:
    """Run the benchmark; each result row is a dict (``name``, ``ours_ms``, ``ratio``, ...)."""
    hours, rate, n_windows = (1.0, 128.0, 60) if quick else (24.0, 256.0, 200)
    own_folder = folder is None
    root = Path(tempfile.mkdtemp(prefix="bench-onda-") if own_folder else folder)
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _run(root, hours, rate, n_windows, seed)
    finally:
        if own_folder:
            shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, hours: float, rate: float, n_windows: int, seed: int) -> list[Result]:
    info = SamplesInfo("eeg", CHANNELS, "microvolt", RESOLUTION, 0.0, "int16", rate)
    data = _recording(hours, rate, seed)
    n = data.shape[1]
    rows_out: list[Result] = []

    lpcm, zst, single = root / "rec.lpcm", root / "rec.lpcm.zst", root / "rec-single.lpcm.zst"
    t_lpcm = _timed(lambda: store(lpcm, Samples(data, info, encoded=True)))
    t_zst = _timed(lambda: store(zst, Samples(data, info, encoded=True)))
    with open(lpcm, "rb") as src, open(single, "wb") as dst:
        zstandard.ZstdCompressor(write_content_size=False).copy_stream(src, dst)
    print(
        f"recording: {len(CHANNELS)} ch x {n} samples ({hours:g} h at {rate:g} Hz); "
        f"lpcm {lpcm.stat().st_size / 1e6:.0f} MB written in {t_lpcm:.2f} s; "
        f"seekable zst {zst.stat().st_size / 1e6:.0f} MB in {t_zst:.2f} s; "
        f"single-frame zst {single.stat().st_size / 1e6:.0f} MB"
    )
    for path in (lpcm, zst, single):
        _warm(path)

    win = int(WINDOW_S * rate)
    rng = np.random.default_rng(seed + 1)
    starts = rng.integers(0, n - win, size=n_windows)
    bps = info.bytes_per_sample

    # lpcm: ours against the floor, interleaved so that both see the same cache state.
    sig = _signal(lpcm, "lpcm", info, n)
    fd = os.open(lpcm, os.O_RDONLY)
    res = np.float32(RESOLUTION)

    def floor(start: int) -> np.ndarray:
        buf = np.empty(win * bps, dtype=np.uint8)
        os.preadv(fd, [buf], start * bps)
        enc = buf.view("<i2").reshape(win, len(CHANNELS)).T
        return np.multiply(enc, res, dtype=np.float32)

    try:
        expected = floor(int(starts[0]))
        got = load_rows(sig, range(int(starts[0]), int(starts[0]) + win), dtype=np.float32).data
        assert np.array_equal(expected, got), "load_rows disagrees with the floor"
        ours_rows, ours_span, base = [], [], []
        for s in map(int, starts):
            span = TimeSpan(time_from_index(s, rate), time_from_index(s + win, rate))
            base.append(_timed(lambda s=s: floor(s)))
            ours_rows.append(
                _timed(lambda s=s: load_rows(sig, range(s, s + win), dtype=np.float32))
            )
            ours_span.append(_timed(lambda span=span: load(sig, span, dtype=np.float32)))
    finally:
        os.close(fd)
    floor_name = "os.preadv + one numpy decode"
    rows_out.append(
        _row("lpcm 5-min window, load_rows -> float32", ours_rows, base, 1.25, floor_name)
    )
    rows_out.append(
        _row("lpcm 5-min window, load(span) -> float32", ours_span, base, 1.25, floor_name)
    )

    # Seekable zst: windows at the end against windows at the start.
    zsig = _signal(zst, "lpcm.zst", info, n)
    edge = int(600 * rate)
    head = [int(s) for s in rng.integers(0, edge, size=n_windows // 2)]
    tail = [int(s) for s in rng.integers(n - win - edge, n - win, size=n_windows // 2)]
    load_rows(zsig, range(0, 1))  # reads and caches the seek table
    t_head, t_tail = [], []
    for a, b in zip(head, tail, strict=True):
        t_head.append(_timed(lambda a=a: load_rows(zsig, range(a, a + win), dtype=np.float32)))
        t_tail.append(_timed(lambda b=b: load_rows(zsig, range(b, b + win), dtype=np.float32)))
    rows_out.append(
        _row(
            "seekable lpcm.zst window at end / at start",
            t_tail,
            t_head,
            1.5,
            "same, window at start",
        )
    )
    rows_out.append(
        _row("seekable lpcm.zst window vs lpcm", t_tail, ours_rows, None, "lpcm load_rows")
    )

    # Single-frame zst (Onda.jl's layout): the end costs a decompression of everything.
    ssig = _signal(single, "lpcm.zst", info, n)
    reps = 3
    s_head = [_timed(lambda: load_rows(ssig, range(0, win), dtype=np.float32)) for _ in range(reps)]
    s_tail = [
        _timed(lambda: load_rows(ssig, range(n - win, n), dtype=np.float32)) for _ in range(reps)
    ]
    rows_out.append(
        _row(
            "single-frame lpcm.zst window at end / at start",
            s_tail,
            s_head,
            None,
            "same, window at start",
        )
    )
    return rows_out


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.split("\n\n")[0]))
