"""Benchmark of sparse event labels: a plain script, not a test.

- ``label_events``: 2,000 recordings x 1,000 events (overlapping, 3 classes) stored on
  one core (goal at most 60 s), and its peak RSS next to that of 20 recordings (goal at
  most 1.5x), each in a fresh process that streams the annotations from an Arrow file
  (written by another process);
- ``targets``: ``EventTargets`` (a 2 Hz mask, multi-hot epochs, a 16-event list) on
  the everyday batch of 32 x 30 s x 19 channels, against the plain batch (goal at most
  1.10x), interleaved, median of the paired ratios;
- ``sampling``: event-aware batch specifications (``event_weights`` + RandomBatches,
  32 items) per second (goal at least 100k items/s).

Run ``python -m benchmarks.events [--quick]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from ._report import Result, script_main

__all__ = ["run"]

S = 10**9

# The annotations are written by one process and labeled by another, from the file (as
# users hold them: on disk), so that the child's peak RSS is label_events' own.
_WRITER = """
import sys
sys.path.insert(0, sys.argv[3])
import pyarrow as pa
from benchmarks.events import _tables
signals, annotations = _tables(int(sys.argv[1]), 1000)
for table, name in ((signals, "signals"), (annotations, "annotations")):
    with pa.ipc.new_file(f"{sys.argv[2]}.{name}.arrow", table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 16)
"""

_CHILD = """
import sys, time, warnings
sys.path.insert(0, sys.argv[3])
import pyarrow as pa
from ondabatches import label_events
signals = pa.ipc.open_file(f"{sys.argv[2]}.signals.arrow").read_all()
warnings.simplefilter("ignore")
started = time.perf_counter()
label_events(signals, f"{sys.argv[2]}.annotations.arrow", column="event",
             classes=["arousal", "apnea", "spindle"], out=sys.argv[2])
took = time.perf_counter() - started
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(took, hwm)
"""


def _tables(n_recordings: int, per: int, seconds: int = 8 * 3600) -> tuple[pa.Table, pa.Table]:
    """A signals table (spans only) and ``per`` random events per recording."""
    from ondabatches.onda._arrow import timespan_array, uuid_array_from_bytes

    rng = np.random.default_rng(0)
    ids = np.frombuffer(b"".join(uuid.UUID(int=i + 1).bytes for i in range(n_recordings)),
                        dtype=np.uint8).reshape(-1, 16)  # fmt: skip
    signals = pa.table({
        "recording": uuid_array_from_bytes(ids),
        "span": timespan_array(np.zeros(n_recordings, np.int64),
                               np.full(n_recordings, seconds * S, np.int64)),
    })  # fmt: skip
    which = np.repeat(np.arange(n_recordings), per)
    onsets = rng.integers(0, seconds * S, size=len(which))
    lengths = rng.choice([0, 3 * S, 15 * S, 40 * S], size=len(which))
    classes = np.array(["arousal", "apnea", "spindle"])[rng.integers(0, 3, len(which))]
    annotations = pa.table({
        "recording": uuid_array_from_bytes(ids[which]),
        "span": timespan_array(onsets, onsets + lengths),
        "event": pa.array(classes),
    })  # fmt: skip
    return signals, annotations


def _label_child(n: int, out: str) -> tuple[float, float]:
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", _WRITER, str(n), out, root], check=True)
    run = subprocess.run([sys.executable, "-c", _CHILD, str(n), out, root],
                         capture_output=True, text=True, check=True)  # fmt: skip
    took, hwm = run.stdout.split()
    return float(took), int(hwm) / 1024


def bench_label(tmp: Path, quick: bool) -> list[Result]:
    n = 200 if quick else 2000
    took, rss = _label_child(n, str(tmp / "big"))
    _, rss_small = _label_child(20, str(tmp / "small"))
    print(f"figure: label_events {n} recordings x 1000 events: {took:.3g} s (goal 60)")
    print(f"figure: label_events peak RSS, {n} vs 20 recordings (MB): ours {rss:.4g} vs floor "
          f"{rss_small:.4g} -> ratio {rss / rss_small:.3f} (goal 1.5)")  # fmt: skip
    return [
        Result(f"label_events, {n} recordings x 1000 events (s)", took, 60.0, "s", goal=1.0,
               floor_is="the goal itself: 60 s"),
        Result(f"label_events peak RSS, {n} recordings vs 20", rss, rss_small, "MB", goal=1.5,
               floor_is="the same process over 20 recordings"),
    ]  # fmt: skip


def bench_targets(tmp: Path, quick: bool) -> list[Result]:
    from ondabatches import RandomBatches, label_events, materialize_batch
    from ondabatches.batches import event_weights
    from ondabatches.onda import annotations_table
    from ondabatches.transforms import EventList, EventMask, EventTargets, MultiHot, Pipeline

    from .windows import BATCH, EPOCH, make_recordings

    labeled = make_recordings(tmp / "rec", n_recordings=2, minutes=20 if quick else 60)["lpcm"]
    rng = np.random.default_rng(1)
    rows = []
    for rec in set(labeled.column("recording").to_pylist()):
        for _ in range(300):
            a = int(rng.integers(0, 19 * 60 * S))
            b = a + int(rng.integers(0, 20 * S))
            kind = str(rng.choice(["arousal", "apnea"]))
            rows.append(dict(recording=rec, id=uuid.uuid4(), span=(a, b), event=kind))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = label_events(labeled, annotations_table(rows), column="event",
                              classes=["arousal", "apnea"], out=str(tmp / "ev"))  # fmt: skip
    pipeline = Pipeline([EventTargets({"mask": (events, EventMask(2.0)),
                                       "epochs": (events, MultiHot(30.0)),
                                       "list": (events, EventList(16))})])  # fmt: skip
    scheme = RandomBatches(labeled, batch_size=BATCH, batch_duration=EPOCH)
    batches = [scheme.iterate_batch(scheme.initial_state(seed=2).advance(k))[0] for k in range(8)]

    def timed(f) -> float:
        started = time.perf_counter()
        f()
        return time.perf_counter() - started

    def ours():
        for b in batches:
            materialize_batch(b, transforms=pipeline)

    def floor():
        for b in batches:
            materialize_batch(b)

    ours(), floor()
    a, b = [], []
    for _ in range(5 if quick else 11):
        a.append(timed(ours))
        b.append(timed(floor))
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    t_a, t_b = statistics.median(a) / 8 * 1e3, statistics.median(b) / 8 * 1e3
    print(f"figure: event targets vs the plain batch (ms/batch): ours {t_a:.4g} vs floor "
          f"{t_b:.4g} -> ratio {ratio:.3f} (goal 1.1)")  # fmt: skip
    sw, lw = event_weights(labeled, events, fraction=0.5, classes=["apnea"])
    aware = RandomBatches(labeled, batch_size=32, batch_duration=EPOCH, signal_weights=sw,
                          label_weights=lw)  # fmt: skip
    state = aware.initial_state(seed=0)
    n = 300 if quick else 3000
    started = time.perf_counter()
    for _ in range(n):
        _, state = aware.iterate_batch(state)
    rate = n * 32 / (time.perf_counter() - started)
    print(f"figure: event-aware specs: {rate:.4g} items/s (goal 100000)")
    return [
        Result("EventTargets (mask, multi-hot, list) on 32 x 30 s x 19 ch", t_a, t_b,
               "ms/batch", goal=1.10, floor_is="materialize_batch without them"),
        Result("event-aware batch specs, 32 items", rate, 100_000.0, "items/s", goal=1.0,
               higher_is_better=True, floor_is="the goal itself: 100k items/s"),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        root = Path(tmp)
        return bench_label(root, quick) + bench_targets(root, quick)


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
