"""Benchmark of transforms on the data path: a plain script, not a test.

The everyday workload of ``benchmarks.windows`` (32 random 30 s windows of 19 int16
channels at 256 Hz, ``lpcm``), decoded to float32 and:

- ``layer``: filtered by ``Bandpass(0.3, 35) + Notch(50)`` through
  ``materialize_batch(transforms=...)``, against the same reads of the windows with
  their margins (the library's own read of those rows) followed by the same scipy
  ``sosfiltfilt`` calls, cut and stacked by hand: what the transform layer adds
  (goal at most 1.05x). The extra bytes the margins read are printed. With numba the
  library's filters run a compiled ``sosfiltfilt`` that gives scipy's bits (checked
  here), so the ratio then falls well below 1: it is the kernel against scipy;
- ``augment``: four random augmentations (AmplitudeScale, SignFlip, TimeReverse,
  ChannelDropout, each p=0.5) against the plain batch: their cost as a share of the
  batch's materialize time (goal at most 1.10x); GaussianNoise alone is reported
  beside it (its 4.7 M normal draws per batch cost more than the read);
- ``workers``: batches/s of a 2-worker processes ``Batcher`` with the band-pass
  against one without (goal at most 1.5x the unfiltered time per batch).

Each pair is measured interleaved (ours, floor, ours, floor, ...); the figure is the
median of the paired ratios, in the printed line and in the table alike. Run
``python -m benchmarks.transforms [--quick]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import sosfiltfilt

from ondabatches import Batcher, RandomBatches, materialize_batch
from ondabatches.materialize._materialize import _n_total, _rows, _x_at
from ondabatches.transforms import (
    AmplitudeScale,
    Bandpass,
    ChannelDropout,
    GaussianNoise,
    Notch,
    Pipeline,
    SignFlip,
    TimeReverse,
)

from ._report import Result, script_main
from .windows import BATCH, EPOCH, RATE, make_recordings

__all__ = ["run"]

FILTERS = [Bandpass(0.3, 35.0), Notch(50.0)]
AUGMENT = [AmplitudeScale(0.5, 2.0), SignFlip(), TimeReverse(), ChannelDropout(0.2)]


def _timed(f) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def _interleaved(ours, floor, rounds: int) -> tuple[float, float, float]:
    ours(), floor()
    a, b = [], []
    for _ in range(rounds):
        a.append(_timed(ours))
        b.append(_timed(floor))
    return (
        statistics.median(a),
        statistics.median(b),
        statistics.median(x / y for x, y in zip(a, b, strict=True)),
    )


def _figure(name: str, ours: float, floor: float, ratio: float, goal: float | None) -> None:
    goal_text = "" if goal is None else f" (goal {goal:g})"
    print(f"figure: {name}: ours {ours:.4g} vs floor {floor:.4g} -> ratio {ratio:.3f}{goal_text}")


def _direct_filtered(batch, pipeline: Pipeline) -> np.ndarray:
    """The floor of the layer: each window's rows with the same margins read by the
    library's own row reader, then the same scipy calls, cut and stacked by hand."""
    sos = [f._design(RATE) for f in FILTERS]
    margin = pipeline.margin(RATE)
    dtype = np.dtype(np.float32)
    out = []
    for item in batch:
        rows = _rows(item)
        first, stop = max(rows.start - margin, 0), min(rows.stop + margin, _n_total(item))
        x = _x_at(item, range(first, stop), slice(None), dtype, None)
        for s in sos:  # each filter in float64, its result in the batch's dtype
            x = sosfiltfilt(s, x.astype(np.float64), axis=-1).astype(np.float32)
        out.append(x[:, rows.start - first : rows.start - first + len(rows)])
    return np.stack(out)


def bench_layer(batches, rounds: int) -> list[Result]:
    pipeline = Pipeline(FILTERS)
    x, _ = materialize_batch(batches[0], transforms=pipeline)
    np.testing.assert_array_equal(x, _direct_filtered(batches[0], pipeline))
    margin = pipeline.margin(RATE)
    window = int(EPOCH // 10**9 * RATE)
    print(f"margins: {margin} samples ({margin / RATE:.2f} s) each side of a {window}-sample "
          f"window: {2 * margin / window:.2f}x the window's bytes read again")  # fmt: skip

    def ours():
        for b in batches:
            materialize_batch(b, transforms=pipeline)

    def floor():
        for b in batches:
            _direct_filtered(b, pipeline)

    n = len(batches)
    t_ours, t_floor, ratio = _interleaved(ours, floor, rounds)
    _figure("transform layer: band-pass + notch vs the same scipy calls (ms/batch)",
            t_ours / n * 1e3, t_floor / n * 1e3, ratio, 1.05)  # fmt: skip
    return [
        Result("transform layer, Bandpass(0.3, 35) + Notch(50), 32 x 30 s x 19 ch",
               t_ours / n * 1e3, t_floor / n * 1e3, "ms/batch", goal=1.05, paired=ratio,
               floor_is="the same rows read with their margins, sosfiltfilt by hand, stacked"),
    ]  # fmt: skip


def bench_augment(batches, rounds: int) -> list[Result]:
    n = len(batches)
    out = []
    for name, transforms, goal in (
        ("4 augmentations (scale, flip, reverse, channel dropout)", AUGMENT, 1.10),
        ("GaussianNoise(p=0.5)", [GaussianNoise(1.0)], None),
    ):
        pipeline = Pipeline(transforms)

        def ours(pipeline=pipeline):
            for k, b in enumerate(batches):
                materialize_batch(b, transforms=pipeline, key=(0, k))

        def floor():
            for b in batches:
                materialize_batch(b)

        t_ours, t_floor, ratio = _interleaved(ours, floor, rounds)
        _figure(f"{name} vs the plain batch (ms/batch)", t_ours / n * 1e3, t_floor / n * 1e3,
                ratio, goal)  # fmt: skip
        out.append(
            Result(f"{name}, 32 x 30 s x 19 ch", t_ours / n * 1e3, t_floor / n * 1e3,
                   "ms/batch", goal=goal, floor_is="materialize_batch without them",
                   paired=ratio)
        )  # fmt: skip
    return out


def _per_batch(scheme, n: int, **options) -> float:
    with Batcher(scheme, backend="processes", workers=2, **options) as batcher:
        state = batcher.batches.initial_state()
        batcher.start(state)
        _, state = batcher.take(state)  # workers started
        for _ in range(4):
            _, state = batcher.take(state)
        started = time.perf_counter()
        for _ in range(n):
            _, state = batcher.take(state)
        return (time.perf_counter() - started) / n


def bench_workers(scheme, n: int, rounds: int) -> list[Result]:
    filtered, plain = [], []
    for _ in range(rounds):
        filtered.append(_per_batch(scheme, n, transforms=[FILTERS[0]]))
        plain.append(_per_batch(scheme, n))
    ratio = statistics.median(a / b for a, b in zip(filtered, plain, strict=True))
    t_f, t_p = statistics.median(filtered) * 1e3, statistics.median(plain) * 1e3
    _figure("Batcher processes, 2 workers, band-pass vs unfiltered (ms/batch)", t_f, t_p,
            ratio, 1.5)  # fmt: skip
    return [
        Result("2 workers: Bandpass(0.3, 35) with margins vs unfiltered batches", t_f, t_p,
               "ms/batch", goal=1.5, floor_is="the same Batcher without transforms",
               paired=ratio),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        tables = make_recordings(Path(tmp), n_recordings=2 if quick else 4,
                                 minutes=20 if quick else 60)  # fmt: skip
        scheme = RandomBatches(tables["lpcm"], batch_size=BATCH, batch_duration=EPOCH)
        n = 4 if quick else 16
        rounds = 5 if quick else 11
        batches = [scheme.iterate_batch(scheme.initial_state(seed=3).advance(k))[0]
                   for k in range(n)]  # fmt: skip
        results = bench_layer(batches, rounds)
        results += bench_augment(batches, rounds)
        results += bench_workers(scheme, 8 if quick else 32, 3 if quick else 5)
        return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
