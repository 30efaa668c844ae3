"""Training: how long a small 1-D CNN waits for batches, and how fast they reach the device.

A small 1-D CNN trains on 30 s x 19-channel EEG windows (128 Hz, int16 LPCM decoded to
float32, 16 windows per batch, about 4.7 MB) fed in several ways. Each one runs side
by side with the floor, interleaved A, B, A, B...: the same training steps on batches
already in memory. The figures are

- **step time** (ms per step) against the floor. Goal: within 2% of it.
- **data wait**, the share of the step time the training loop spent waiting for the
  next batch (:meth:`DeviceFeed.stats <ondabatches.torch.DeviceFeed.stats>`), as the
  wait against the whole step. Goal: under 2% with enough workers.
- **host-to-device bandwidth** of :class:`~ondabatches.torch.DeviceFeed` (pinned
  memory, side stream, ``non_blocking``) against torch's own pinned
  ``tensor.to(device, non_blocking=True)`` of the same bytes, on a CUDA device. Without
  CUDA this says n/a and reports the CPU path instead: what the feed adds per batch
  when it passes batches through, against iterating them bare.

The feeds are a ``BatchMapDataset`` under a ``DataLoader`` with 0, 1, 2... worker
processes (``persistent_workers``; ``pin_memory`` on CUDA), and a ``BatchDataset`` whose
Batcher has 2 worker processes. All data work competes with training for the same
CPUs, so with few cores the wait cannot vanish.

Run ``python -m benchmarks.train [--quick]`` (needs ``ondabatches[torch]``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ondabatches._errors import require

from ._report import Result, script_main

__all__ = ["run"]

CHANNELS = tuple(
    "fp1 fp2 f7 f3 fz f4 f8 t3 c3 cz c4 t4 t5 p3 pz p4 t6 o1 o2".split()
)  # the 10-20 montage: 19 channels
RATE = 128.0
BATCH_SIZE = 16
N_STAGES = 6


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def write_dataset(root: Path, n_recordings: int, minutes: int) -> pa.Table:
    """A labeled table of ``n_recordings`` 19-channel int16 EEG signals, files written."""
    from ondabatches.onda._io import store
    from ondabatches.onda._samples import Samples
    from ondabatches.synthetic import labeled_table

    table = labeled_table(
        n_recordings, duration=minutes * 60 * 10**9, channels=CHANNELS, sample_rate=RATE
    )
    paths = []
    rng = np.random.default_rng(0)
    infos = table.select(
        [
            "sensor_type", "channels", "sample_unit", "sample_resolution_in_unit",
            "sample_offset_in_unit", "sample_type", "sample_rate",
        ]
    ).to_pylist()  # fmt: skip
    from ondabatches.onda._samples import SamplesInfo

    for i, (relative, span) in enumerate(
        zip(table.column("file_path").to_pylist(), table.column("span").to_pylist(), strict=True)
    ):
        info = SamplesInfo(**infos[i])
        n = int(span.duration * RATE // 10**9)
        data = rng.integers(-2000, 2000, size=(len(CHANNELS), n), dtype=np.int16)
        path = root / relative
        store(path, Samples(data, info, encoded=True))
        paths.append(str(path))
    return table.set_column(table.schema.get_field_index("file_path"), "file_path", pa.array(paths))


def _model(torch):
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(len(CHANNELS), 32, 9, stride=4, padding=4), nn.ReLU(),
        nn.Conv1d(32, 64, 9, stride=4, padding=4), nn.ReLU(),
        nn.Conv1d(64, 64, 9, stride=4, padding=4), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Conv1d(64, N_STAGES, 1),
    )  # fmt: skip


class _Trainer:
    def __init__(self, torch, device):
        self.torch = torch
        self.device = device
        self.model = _model(torch).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)

    def step(self, x, y) -> None:
        loss = self.torch.nn.functional.cross_entropy(self.model(x / 200.0), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


def _steps(trainer: _Trainer, batches, n: int) -> float:
    """Seconds per step over ``n`` steps drawn from the iterator ``batches``."""
    trainer.sync()
    started = time.perf_counter()
    for _ in range(n):
        x, y = next(batches)
        trainer.step(x, y)
    trainer.sync()
    return (time.perf_counter() - started) / n


def _feeds(torch, scheme, device, worker_counts: list[int], length: int) -> dict[str, Any]:
    """Name -> (DeviceFeed, closer) for each way of feeding the training loop."""
    from torch.utils.data import DataLoader

    from ondabatches.torch import BatchDataset, BatchMapDataset, DeviceFeed

    cuda = device.type == "cuda"
    feeds: dict[str, Any] = {}
    for workers in worker_counts:
        dataset = BatchMapDataset(
            scheme, scheme.initial_state(seed=workers), length=length, labels="classes"
        )
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )
        label = f"DataLoader, {workers} worker{'s' if workers != 1 else ''}"
        feeds[label] = (DeviceFeed(loader, device, ahead=2), lambda: None)
    dataset = BatchDataset(
        scheme, scheme.initial_state(seed=99), backend="processes", workers=2, labels="classes"
    )
    feeds["Batcher, 2 processes"] = (
        DeviceFeed(torch.utils.data.DataLoader(dataset, batch_size=None), device, ahead=2),
        dataset.close,
    )
    return feeds


def _bandwidth(torch, device, batches: list, rounds: int) -> list[Result]:
    from ondabatches.torch import DeviceFeed

    nbytes = sum(x.nbytes + y.nbytes for x, y in batches)
    if device.type != "cuda":
        ours, floor = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            for _batch in DeviceFeed(batches, device, ahead=2):
                pass
            ours.append((time.perf_counter() - started) / len(batches))
            started = time.perf_counter()
            for _batch in iter(batches):
                pass
            floor.append((time.perf_counter() - started) / len(batches))
        print("host-to-device bandwidth: n/a (no CUDA device); the CPU path is reported")
        return [
            Result(
                "CPU path: DeviceFeed pass-through (no CUDA: no H2D copy)",
                1e6 * statistics.median(ours), 1e6 * statistics.median(floor), "us/batch",
                floor_is="iterating the same in-memory batches bare",
            )
        ]  # fmt: skip
    pinned = [(x.pin_memory(), y.pin_memory()) for x, y in batches]
    ours, floor = [], []
    for _ in range(rounds):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _batch in DeviceFeed(pinned, device, ahead=2):
            pass
        torch.cuda.synchronize(device)
        ours.append(nbytes / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        for x, y in pinned:
            x.to(device, non_blocking=True)
            y.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        floor.append(nbytes / (time.perf_counter() - started) / 1e9)
    return [
        Result(
            f"host-to-device copy, DeviceFeed to {device}", statistics.median(ours),
            statistics.median(floor), "GB/s", goal=1.1, higher_is_better=True,
            floor_is="torch's pinned tensor.to(device, non_blocking=True) of the same bytes",
        )
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    torch = require("torch", "torch")
    from ondabatches.batches import RandomBatches
    from ondabatches.materialize import materialize_batch
    from ondabatches.synthetic import EPOCH

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rounds, steps = (3, 8) if quick else (5, 20)
    cpus = _usable_cpus()
    worker_counts = [0, 2] if quick else sorted({0, 1, 2, 4, min(8, cpus)})
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-train-") as tmp:
        table = write_dataset(Path(tmp), 3 if quick else 6, 30 if quick else 120)
        scheme = RandomBatches(table, batch_size=BATCH_SIZE, batch_duration=EPOCH)
        # The floor's batches, made once: training on them does no data work at all.
        in_memory = []
        state = scheme.initial_state(seed=12345)
        for _ in range(8):
            batch, state = scheme.iterate_batch(state)
            x, y = materialize_batch(batch)
            in_memory.append((torch.from_numpy(x), torch.from_numpy(y[:, 0, :] - 1).long()))
        on_device = [(x.to(device), y.to(device)) for x, y in in_memory]
        mb = (in_memory[0][0].nbytes + in_memory[0][1].nbytes) / 1e6
        print(
            f"batches of {tuple(in_memory[0][0].shape)} float32 ({mb:.1f} MB), device {device}, "
            f"{cpus} cpus; {rounds} rounds of {steps} steps per feed",
            flush=True,
        )

        def floor_batches():
            while True:
                yield from on_device

        trainer = _Trainer(torch, device)
        floor_iter = floor_batches()
        _steps(trainer, floor_iter, 3)  # warm up the model
        length = (rounds + 1) * steps + 8
        results = []
        feeds = _feeds(torch, scheme, device, worker_counts, length)
        try:
            for name, (feed, _close) in feeds.items():
                batches = iter(feed)
                _steps(trainer, batches, 2)  # workers started, first batches in
                ours, floor, waits = [], [], []
                for _ in range(rounds):
                    before = feed.stats()
                    ours.append(_steps(trainer, batches, steps))
                    after = feed.stats()
                    waits.append(
                        (after["wait_s"] - before["wait_s"]) / (after["wall_s"] - before["wall_s"])
                    )
                    floor.append(_steps(trainer, floor_iter, steps))
                step, base = statistics.median(ours), statistics.median(floor)
                wait = statistics.median(waits)
                results.append(
                    Result(
                        f"train step, {name}", 1e3 * step, 1e3 * base, "ms/step", goal=1.02,
                        floor_is="the same steps on batches already on the device",
                    )
                )  # fmt: skip
                results.append(
                    Result(
                        f"data wait, {name}", 1e3 * wait * step, 1e3 * step, "ms/step",
                        goal=0.02, floor_is="the whole step: the ratio is the wait fraction",
                    )
                )  # fmt: skip
                print(
                    f"figure: {name}: waiting for data {100 * wait:.1f}% of the step time "
                    f"(goal < 2%); step {1e3 * step:.1f} ms vs {1e3 * base:.1f} ms on "
                    f"in-memory batches -> ratio {step / base:.3f}",
                    flush=True,
                )
                del batches
        finally:
            for _feed, close in feeds.values():
                close()
        results.extend(_bandwidth(torch, device, in_memory, rounds))
    return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, (__doc__ or "").splitlines()[0]))
