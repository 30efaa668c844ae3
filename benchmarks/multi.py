"""Benchmark of multi-signal (polysomnography) batches: a plain script, not a test.

A batch of 64 items x 30 s of EEG (6 channels, 256 Hz), EOG (2, 128 Hz), chin EMG
(1, 512 Hz) and ECG (1, 512 Hz), int16 ``lpcm``, decoded to float32:

- ``materialize``: ``materialize_batch`` against the floor of reading each window's
  bytes of each signal (``os.preadv``) and decoding them with numpy into the batch's
  arrays, measured interleaved (ours, floor, ours, floor, ...); the median of the
  paired ratios (goal: at most 1.3x);
- ``layer``: ``materialize_batch`` against the single-signal reads of its parts into
  the same arrays: what the multi-signal layer itself adds (goal: at most 1.05x);
- ``resample``: the same batches brought to 128 Hz; the extra cost over native rates,
  next to ``scipy.signal.resample_poly`` alone on the same native arrays (no margins);
- ``transforms``: the four augmentations of ``benchmarks.transforms`` (AmplitudeScale,
  SignFlip, TimeReverse, ChannelDropout, each p=0.5) on every modality, against the
  plain montage batch, at the modalities' own rates and resampled to 128 Hz (goal:
  at most 1.1x, as for single-signal batches), and a no-op transform (what the
  transform path itself adds), interleaved, median ratio;
- ``workers``: batches/s of ``Batcher(workers=2)`` over ``workers=1`` (processes
  backend, dict batches through shared memory), runs interleaved 1, 2, 1, 2, ...;
  the median of the paired speed-ups (goal at least 1.7x with 2 free cores), next to
  what the machine gives at that moment: 2 independent processes materializing in a
  loop over 1 (a busy or shared machine gives less than 2x to anyone).

The table's ratio of an interleaved figure is the printed line's, the median of the
paired ratios. Run ``python -m benchmarks.multi [--quick]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals, sort_and_trim_spans
from ondabatches.materialize import materialize_batch
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

from ._report import Result, script_main
from .batcher import _machine_scaling
from .batches import _raw_window

__all__ = ["run"]

MONTAGE = {"eeg": "eeg", "eog": "eog", "emg": "emg", "ecg": "ecg"}
BATCH = 64


def _labeled(root: Path, quick: bool):
    ds = make_dataset(
        root, n_recordings=2 if quick else 6, duration=(10 if quick else 40) * 60 * 10**9,
        eog_every=1, emg_every=1, ecg_every=1, sample_rate=256.0, eeg_layout=0,
        rates={"eog": 128.0, "emg": 512.0, "ecg": 512.0}, formats={"ecg": "lpcm"},
    )  # fmt: skip
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    return label_signals(
        ds.signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )


def _floor(batch) -> dict[str, np.ndarray]:
    """Read and decode each window's bytes into per-modality arrays, with no library."""
    out: dict[str, np.ndarray] = {}
    names = batch[0].names
    for i, item in enumerate(batch):
        for name, part in zip(names, item.parts, strict=True):
            enc = _raw_window(part)
            if name not in out:
                out[name] = np.empty((len(batch), *enc.shape), dtype=np.float32)
            np.multiply(enc, part.info.sample_resolution_in_unit, out=out[name][i],
                        casting="unsafe")  # fmt: skip
            if part.info.sample_offset_in_unit:
                out[name][i] += np.float32(part.info.sample_offset_in_unit)
        item.label_codes()
    return out


def _timed(f, *args) -> float:
    started = time.perf_counter()
    f(*args)
    return time.perf_counter() - started


def _interleaved(ours, floor, rounds: int) -> tuple[float, float, float]:
    """Median seconds of each, and the median of the paired ratios, run A, B, A, B..."""
    ours(), floor()  # page cache and allocators
    a, b = [], []
    for _ in range(rounds):
        a.append(_timed(ours))
        b.append(_timed(floor))
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    return statistics.median(a), statistics.median(b), ratio


def _figure(name: str, ours: float, floor: float, ratio: float, goal: float | None) -> None:
    goal_text = "" if goal is None else f" (goal {goal:g})"
    print(f"figure: {name}: ours {ours:.4g} vs floor {floor:.4g} -> ratio {ratio:.3f}{goal_text}")


def bench_materialize(scheme: RandomBatches, n: int, rounds: int) -> list[Result]:
    batches = [scheme.iterate_batch(scheme.initial_state(seed=0).advance(k))[0] for k in range(n)]
    x, _ = materialize_batch(batches[0])
    want = _floor(batches[0])
    for name in MONTAGE:  # the floor computes the very values that we return
        assert np.array_equal(x[name], want[name]), name

    def ours():
        for b in batches:
            materialize_batch(b)

    def floor():
        for b in batches:
            _floor(b)

    t_ours, t_floor, ratio = _interleaved(ours, floor, rounds)
    _figure("materialize 64 x 30 s EEG+EOG+EMG+ECG", t_ours / n * 1e3, t_floor / n * 1e3,
            ratio, 1.3)  # fmt: skip
    result = Result(
        "materialize_batch, 64 x 30 s, EEG 6@256 + EOG 2@128 + EMG + ECG 1@512",
        t_ours / n * 1e3, t_floor / n * 1e3, "ms/batch", goal=1.3, paired=ratio,
        floor_is="os.preadv of each window's bytes + numpy decode into per-modality arrays",
    )  # fmt: skip
    return [result, *bench_layer(batches, rounds)]


def bench_layer(batches, rounds: int) -> list[Result]:
    """The multi-signal layer alone: ``materialize_batch`` against the single-signal
    reads of its parts (``_x`` of each part, and each item's labels), both into the
    same preallocated arrays, so that only the layer's own work differs."""
    from ondabatches.materialize._materialize import _x

    first, _ = materialize_batch(batches[0])
    arrays = {name: np.empty_like(a) for name, a in first.items()}
    lent = iter(())

    def allocate(shape, dtype):
        out = next(lent)
        assert out.shape == shape and out.dtype == dtype
        return out

    def ours():
        nonlocal lent
        for b in batches:
            lent = iter(arrays.values())
            materialize_batch(b, allocate=allocate)

    dtype = np.dtype(np.float32)

    def parts():
        outs = list(arrays.values())
        for b in batches:
            for i, item in enumerate(b):
                for out, part in zip(outs, item.parts, strict=True):
                    _x(part, dtype, out=out[i])
                item.label_codes()

    n = len(batches)
    t_ours, t_parts, ratio = _interleaved(ours, parts, rounds)
    _figure("multi layer: materialize_batch vs its parts' single-signal reads (ms/batch)",
            t_ours / n * 1e3, t_parts / n * 1e3, ratio, 1.05)  # fmt: skip
    return [
        Result("multi-signal layer over its parts' reads (64 x 4 signals)", t_ours / n * 1e3,
               t_parts / n * 1e3, "ms/batch", goal=1.05, paired=ratio,
               floor_is="the single-signal read (_x) of each part into the same arrays"),
    ]  # fmt: skip


def bench_resample(labeled, n: int, rounds: int) -> list[Result]:
    from scipy.signal import resample_poly

    native = RandomBatches(labeled, modalities=MONTAGE, batch_size=BATCH, batch_duration=EPOCH)
    to128 = RandomBatches(labeled, modalities=MONTAGE, batch_size=BATCH, batch_duration=EPOCH,
                          resample={"rate": 128})  # fmt: skip
    states = [native.initial_state(seed=1).advance(k) for k in range(n)]
    plain = [native.iterate_batch(s)[0] for s in states]
    resampled = [to128.iterate_batch(to128.initial_state(seed=1).advance(k))[0] for k in range(n)]
    arrays = [materialize_batch(b)[0] for b in plain]
    ratios = {"eeg": (1, 2), "eog": (1, 1), "emg": (1, 4), "ecg": (1, 4)}

    def ours_native():
        for b in plain:
            materialize_batch(b)

    def ours_resampled():
        for b in resampled:
            materialize_batch(b)

    def scipy_alone():
        for x in arrays:
            for name, (up, down) in ratios.items():
                if up != down:
                    resample_poly(x[name], up, down, axis=-1)

    ours_resampled(), ours_native(), scipy_alone()
    with_rs, without, alone = [], [], []
    for _ in range(rounds):
        with_rs.append(_timed(ours_resampled))
        without.append(_timed(ours_native))
        alone.append(_timed(scipy_alone))
    cost = statistics.median(a - b for a, b in zip(with_rs, without, strict=True)) / n * 1e3
    floor = statistics.median(alone) / n * 1e3
    _figure("resampling cost to 128 Hz (ms/batch)", cost, floor, cost / floor, None)
    return [
        Result(
            "resampling to 128 Hz: extra cost over native rates", cost, floor, "ms/batch",
            floor_is="scipy.signal.resample_poly alone on the same native arrays (no margins)",
        ),
        Result("materialize_batch with resample={'rate': 128}",
               statistics.median(with_rs) / n * 1e3, None, "ms/batch"),
    ]  # fmt: skip


def bench_transforms(labeled, n: int, rounds: int) -> list[Result]:
    from ondabatches.transforms import (
        AmplitudeScale,
        ChannelDropout,
        Pipeline,
        SignFlip,
        TimeReverse,
    )

    augment = Pipeline([AmplitudeScale(0.5, 2.0), SignFlip(), TimeReverse(), ChannelDropout(0.2)])
    out = []
    for name, resample in (("own rates", None), ("resampled to 128 Hz", {"rate": 128})):
        scheme = RandomBatches(labeled, modalities=MONTAGE, batch_size=BATCH,
                               batch_duration=EPOCH, resample=resample)  # fmt: skip
        batches = [scheme.iterate_batch(scheme.initial_state(seed=2).advance(k))[0]
                   for k in range(n)]  # fmt: skip
        for what, pipeline, goal in (("4 augmentations", augment, 1.1),
                                     ("a no-op transform (SignFlip, p=0)",
                                      Pipeline([SignFlip(p=0.0)]), None)):  # fmt: skip

            def ours(batches=batches, pipeline=pipeline):
                for k, b in enumerate(batches):
                    materialize_batch(b, transforms=pipeline, key=(0, k))

            def floor(batches=batches):
                for b in batches:
                    materialize_batch(b)

            t_ours, t_floor, ratio = _interleaved(ours, floor, rounds)
            _figure(f"{what} on a montage, {name}, vs the plain batch (ms/batch)",
                    t_ours / n * 1e3, t_floor / n * 1e3, ratio, goal)  # fmt: skip
            out.append(
                Result(f"{what}, 64 x 30 s EEG+EOG+EMG+ECG, {name}", t_ours / n * 1e3,
                       t_floor / n * 1e3, "ms/batch", goal=goal, paired=ratio,
                       floor_is="materialize_batch of the same batches without them")
            )  # fmt: skip
    return out


def bench_workers(scheme: RandomBatches, n: int, rounds: int) -> list[Result]:
    """Batches/s of the processes Batcher with 2 workers over 1, interleaved 1, 2, 1, 2...

    Each run starts a Batcher (not timed), takes one batch (workers started, scheme
    sent), then times the next ``n`` takes; both worker counts keep the same number of
    batches in flight (``buffer=4``), so neither gets more read-ahead. The consumer
    only checks each batch's structure, as a trainer that hands it on would.
    """
    from ondabatches.serve import Batcher

    def rate(workers: int, seed: int) -> float:
        state = scheme.initial_state(seed=seed)
        with Batcher(scheme, workers=workers, backend="processes", buffer=4) as batcher:
            batcher.start(state)
            _, state = batcher.take(state, timeout=120)
            started = time.perf_counter()
            for _ in range(n):
                (x, _), state = batcher.take(state, timeout=120)
                if not isinstance(x, dict) or set(x) != set(MONTAGE):
                    raise TypeError(f"the Batcher returned {type(x).__name__}, not the montage")
            return n / (time.perf_counter() - started)

    def inline(seed: int) -> float:
        state = scheme.initial_state(seed=seed)
        started = time.perf_counter()
        for _ in range(n):
            batch, state = scheme.iterate_batch(state)
            materialize_batch(batch)
        return n / (time.perf_counter() - started)

    ones, twos, inlines, ceilings = [], [], [], []
    for k in range(rounds):  # another seed per run: no batch is read twice from the cache
        ones.append(rate(1, seed=100 + k))
        twos.append(rate(2, seed=200 + k))
        inlines.append(inline(seed=300 + k))
        ceilings.append(_machine_scaling(scheme, n, 1))
    speedup = statistics.median(b / a for a, b in zip(ones, twos, strict=True))
    one, two = statistics.median(ones), statistics.median(twos)
    _figure("Batcher processes, 2 workers vs 1 (batches/s)", two, one, speedup, None)
    ceiling = statistics.median(ceilings)
    print(f"    speed-up {speedup:.2f}x (goal at least 1.7x); what this machine gives now: "
          f"{ceiling:.2f}x (2 independent processes materializing vs 1, no Batcher)")  # fmt: skip
    # What one worker process costs over drawing and materializing in this process.
    slower = statistics.median(c / a for a, c in zip(ones, inlines, strict=True))
    _figure("Batcher processes, 1 worker vs inline (ms/batch)", 1e3 / one,
            1e3 / statistics.median(inlines), slower, None)  # fmt: skip
    return [
        Result("Batcher processes, 2 workers over 1 (dict batches)", two, one, "batch/s",
               goal=1 / 1.7, higher_is_better=True, floor_is="the same with 1 worker"),
        Result("machine now: 2 independent processes vs 1, materializing in a loop",
               ceiling, None, "x", floor_is="the ceiling of the '2 workers vs 1' figure"),
        Result("Batcher processes, 1 worker (dict batches)", 1e3 / one,
               1e3 / statistics.median(inlines), "ms/batch",
               floor_is="iterate_batch + materialize_batch in the calling process"),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    n = 2 if quick else 6
    rounds = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labeled = _labeled(Path(tmp), quick)
        scheme = RandomBatches(labeled, modalities=MONTAGE, batch_size=BATCH,
                               batch_duration=EPOCH)  # fmt: skip
        results = bench_materialize(scheme, n, rounds)
        results += bench_resample(labeled, n, rounds)
        results += bench_transforms(labeled, n, rounds)
        results += bench_workers(scheme, 6 if quick else 24, 2 if quick else 5)
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
