"""Benchmark of multi-signal (polysomnography) batches: a plain script, not a test.

A batch of 64 items x 30 s of EEG (6 channels, 256 Hz), EOG (2, 128 Hz), chin EMG
(1, 512 Hz) and ECG (1, 512 Hz), int16 ``lpcm``, decoded to float32:

- ``materialize``: ``materialize_batch`` against the floor of reading each window's
  bytes of each signal (``os.preadv``) and decoding them with numpy into the batch's
  arrays, measured interleaved (ours, floor, ours, floor, ...); the median of the
  paired ratios (goal: at most 1.3x);
- ``resample``: the same batches brought to 128 Hz; the extra cost over native rates,
  next to ``scipy.signal.resample_poly`` alone on the same native arrays (no margins);
- ``workers``: batches/s of ``Batcher(workers=2)`` over ``workers=1`` (processes
  backend; goal at least 1.7x), or "n/a" where the Batcher cannot carry dict batches.

Run ``python -m benchmarks.multi [--quick]``.
"""

from __future__ import annotations

import logging
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
        t_ours / n * 1e3, t_floor / n * 1e3, "ms/batch", goal=1.3,
        floor_is="os.preadv of each window's bytes + numpy decode into per-modality arrays",
    )  # fmt: skip
    return [result]


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


def bench_workers(scheme: RandomBatches, n: int) -> list[Result]:
    """2 workers over 1 through the Batcher, or "n/a" if dict batches cannot travel yet."""
    from ondabatches.serve import Batcher

    def rate(workers: int) -> float:
        state = scheme.initial_state(seed=2)
        with Batcher(scheme, workers=workers, backend="processes") as batcher:
            batcher.start(state)
            _, state = batcher.take(state, timeout=120)
            started = time.perf_counter()
            for _ in range(n):
                (x, _), state = batcher.take(state, timeout=120)
                if not isinstance(x, dict):
                    raise TypeError(f"the Batcher returned {type(x).__name__}, not a dict")
            return n / (time.perf_counter() - started)

    logging.disable(logging.WARNING)  # the Batcher's retry lines where dicts cannot travel
    try:
        one, two = rate(1), rate(2)
    except Exception as exc:  # noqa: BLE001 - the transport of dict batches is not there
        print(f"figure: Batcher 2 workers vs 1 with dict batches: n/a ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:160]})")  # fmt: skip
        return []
    finally:
        logging.disable(logging.NOTSET)
    _figure("Batcher 2 workers vs 1 (batches/s)", two, one, one / two, None)
    print(f"    speed-up {two / one:.2f}x (goal at least 1.7x)")
    return [
        Result("Batcher processes, 2 workers over 1 (dict batches)", two, one, "batch/s",
               goal=1 / 1.7, higher_is_better=True, floor_is="the same with 1 worker"),
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
        results += bench_workers(scheme, 4 if quick else 24)
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
