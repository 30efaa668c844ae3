"""``workers="auto"`` against the best fixed worker count, for a fast and a slow consumer.

Side by side in one run, interleaved (every configuration once per round, rounds
repeated, the median kept), on batches whose making waits on storage (a sleep of
``LATENCY`` per batch, as a remote read does, plus a little numpy work):

- a fast consumer (it takes each batch at once): the workers are the bottleneck, the
  best fixed count is the largest, and "auto" has to get there from one worker;
- a slow consumer (it spends ``CONSUMER`` seconds on each batch, more than one worker
  needs): every count gives the consumer's own rate, and "auto" should get it without
  holding more workers than that needs;
- with ``--full`` too: CPU-bound batches on worker processes with the default
  ``AutoWorkers()`` (which adds workers only while CPUs are idle).

Each figure is batches/s reaching the consumer over a few seconds of steady state,
after a warm-up of a second or two that every configuration gets (in which "auto"
climbs: when it last changed its count is printed); the floor is the best fixed
count's. Goal: "auto" within 10% of the best fixed count (ratio <= 1.1) in both
cases. "auto" is run with ``cpu_check=False``, as documented for work that waits on
storage: this machine's 2 cores are shared, so its idle CPUs say little.

Run ``python -m benchmarks.auto_workers [--quick] [--full]``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ondabatches.abc import BatchScheme
from ondabatches.materialize import FunctionMaterializer
from ondabatches.serve import AutoWorkers, Batcher

from ._report import Result, script_main

__all__ = ["run"]

#: Seconds a batch waits for its (simulated) storage.
LATENCY = 0.02
#: Seconds the slow consumer spends on each batch.
CONSUMER = 0.03
#: The fixed counts compared; "auto" may use up to the largest.
COUNTS = (1, 2, 4, 8)


class Counting(BatchScheme):
    """Batch k is the int k; the state is k."""

    def iterate_batch(self, state):
        return state, state + 1


def waiting_materialize(batch, dtype):
    """A batch that waits on storage, then decodes a little."""
    time.sleep(LATENCY)
    rng = np.random.Generator(np.random.Philox(key=batch))
    return rng.standard_normal((4, 2, 256)).astype(dtype), np.full((4, 1, 1), batch % 6)


def cpu_materialize(batch, dtype):
    """A batch that is all CPU (about 10 ms of numpy in one thread)."""
    rng = np.random.Generator(np.random.Philox(key=batch))
    x = rng.standard_normal((8, 2, 4096)).astype(dtype)
    for _ in range(6):
        x = np.sort(x, axis=-1)[..., ::-1].copy()
    return x, np.full((8, 1, 1), batch % 6)


def _rate(
    workers, warm: float, seconds: float, pause: float, backend: str, materialize
) -> tuple[float, int, float]:
    """Batches/s reaching a consumer that pauses ``pause`` s per batch, after ``warm``
    seconds; the final count, and when (seconds from start) it last changed."""
    with Batcher(
        Counting(), backend=backend, workers=workers, materialize=FunctionMaterializer(materialize)
    ) as b:
        b.start(0)
        _, state = b.take(0)
        began = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - began < warm + seconds:
            if n == 0 and now - began >= warm:
                n, measured_from = 1, now
            _, state = b.take(state)
            if n:
                n += 1
            if pause:
                time.sleep(pause)
        changes = b.stats()["worker_changes"]
        settled = changes[-1]["at_s"] if changes else 0.0
        return (n - 1) / (time.perf_counter() - measured_from), b.workers, settled


def _case(
    name: str, pause: float, rounds: int, times: tuple[float, float], backend: str, materialize,
    auto, counts,
) -> Result:  # fmt: skip
    configs = [*counts, "auto"]
    rates: dict = {c: [] for c in configs}
    chosen, settled = [], []
    for _ in range(rounds):  # interleaved: A, B, C, auto, A, B, C, auto...
        for config in configs:
            workers = auto if config == "auto" else config
            rate, final, last_change = _rate(workers, *times, pause, backend, materialize)
            rates[config].append(rate)
            if config == "auto":
                chosen.append(final)
                settled.append(last_change)
    medians = {c: statistics.median(r) for c, r in rates.items()}
    best = max(counts, key=lambda c: medians[c])
    per_round = [max(rates[c][i] for c in counts) / rates["auto"][i] for i in range(rounds)]
    print(
        f"{name}: batches/s by fixed count "
        + ", ".join(f"{c}: {medians[c]:.1f}" for c in counts)
        + f"; auto {medians['auto']:.1f}, ending at {chosen} workers (last change at "
        f"{', '.join(f'{t:.2f}' for t in settled)} s); best fixed / auto "
        f"per round {', '.join(f'{r:.2f}' for r in per_round)} "
        f"(median {statistics.median(per_round):.2f})",
        flush=True,
    )
    return Result(
        f"{name}: auto vs best fixed count ({best})",
        medians["auto"],
        medians[best],
        "batches/s",
        goal=1.1,
        higher_is_better=True,
        floor_is=f"the best of {len(counts)} fixed counts, run interleaved with auto",
    )


def run(quick: bool = False, full: bool = False) -> list[Result]:
    rounds, times = (2, (1.5, 1.5)) if quick else (3, (2.0, 3.0))
    auto = AutoWorkers(max_workers=max(COUNTS), interval=0.25, cpu_check=False)
    results = [
        _case("fast consumer", 0.0, rounds, times, "threads", waiting_materialize, auto, COUNTS),
        _case(
            "slow consumer", CONSUMER, rounds, times, "threads", waiting_materialize, auto, COUNTS
        ),
    ]
    if full:
        results.append(
            _case(
                "CPU-bound, processes, AutoWorkers(max 2)",
                0.0,
                rounds,
                times,
                "processes",
                cpu_materialize,
                AutoWorkers(max_workers=2, interval=0.25),
                (1, 2),
            )  # fmt: skip
        )
    return results


def _main() -> int:
    import sys

    full = "--full" in sys.argv
    if full:
        sys.argv.remove("--full")
    return script_main(lambda quick=False: run(quick, full), __doc__)


if __name__ == "__main__":
    raise SystemExit(_main())
