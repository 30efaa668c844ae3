"""Scale, out of core: memory and latency of labeling, specs and streaming as recordings grow.

For 20, 200 and 2,000 recordings of 19 channels x 10^8 int16 samples (sparse files,
3.8 GB apparent each: :func:`ondabatches.scale.make_scale_dataset`), each step runs in
a fresh process so that its peak resident memory is its own:

- *label*: read the signals and annotations tables and run ``label_signals``,
  storing the labels as they are computed (``store=``: one file per recording), as
  users at this scale do;
- *stream*: read the lazily labeled table, build ``RandomBatches``, start a
  ``Batcher`` (processes backend, 2 workers) and take batches, as a trainer does.

Memory figures are compared with the 20-recording run (goal: within 1.5x); times with
the 20-recording time scaled linearly (ratio <= 1: linear or better) and with 10 s.
The stream step also counts the label files the trainer opened (must be 0: labels
are read by the workers, window by window).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._report import Result, script_main

__all__ = ["descendant_peak_rss_mb", "measure", "run"]

#: Items per batch and window length of the stream step (19 channels x 60 s at 256 Hz).
BATCH_SIZE = 32
BATCH_SECONDS = 60
WORKERS = 2


def _peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory (``VmHWM``) of a process in MB; None if it is gone.

    Not ``getrusage``: Linux carries ``ru_maxrss`` across ``exec``, so a child started
    from a big parent would report the parent's size.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ")"
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendant_peak_rss_mb(pid: int | None = None) -> dict[int, float]:
    """Peak resident memory (``VmHWM``, MB) of every live descendant of ``pid`` (default: us).

    Worker processes started by a forkserver are its children, not ours: the whole
    tree is walked.
    """
    children = _children()
    todo, out = list(children.get(os.getpid() if pid is None else pid, [])), {}
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        peak = _peak_rss_mb(p)
        if peak is not None:
            out[p] = peak
    return out


# ----------------------------------------------------------------------------- the steps


def _label_step(root: str) -> dict[str, Any]:
    from ondabatches.labels import label_signals
    from ondabatches.onda import read_annotations, read_signals
    from ondabatches.scale import ScaleDataset
    from ondabatches.synthetic import EPOCH, STAGE_ENCODING

    ds = ScaleDataset.open(root)
    start = time.perf_counter()
    signals = read_signals(ds.signals_path)
    annotations = read_annotations(ds.annotations_path)
    # Not ds.labels_root: the stream step's table refers to those files; leave them as they are.
    labeled = label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING,
        store=Path(root) / "labels-label-step",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    # What labeling must hold whatever the implementation: its input and its output
    # (references to label files, stored one recording at a time).
    held = annotations.nbytes + labeled.column("labels").nbytes
    return {
        "seconds": seconds,
        "rows": labeled.num_rows,
        "annotations": annotations.num_rows,
        "held_mb": held / 2**20,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _stream_step(root: str, n_batches: int) -> dict[str, Any]:
    import numpy as np

    from ondabatches.batches import RandomBatches
    from ondabatches.labels import read_labeled_signals
    from ondabatches.scale import ScaleDataset
    from ondabatches.serve import Batcher

    ds = ScaleDataset.open(root)
    labels_root = str(ds.labels_root)
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].startswith(labels_root):
            opened.append(args[0])

    sys.addaudithook(audit)
    start = time.perf_counter()
    labeled = read_labeled_signals(ds.labeled_path)
    batches = RandomBatches(labeled, batch_size=BATCH_SIZE, batch_duration=BATCH_SECONDS * 10**9)
    state = first = batches.initial_state(seed=0)
    for _ in range(100):
        _, state = batches.iterate_batch(state)
    spec_seconds = time.perf_counter() - start
    items, _ = batches.iterate_batch(first)
    with Batcher(batches, workers=WORKERS, backend="processes") as batcher:
        batcher.start(first)
        (x, _y), state = batcher.take(first)
        first_seconds = time.perf_counter() - start
        # The trainer's view of the data: every value streamed must be the file's.
        correct = all(
            np.array_equal(x[i], ds.expected(it.recording, it.window) * np.float32(0.5))
            for i, it in enumerate(items)
        )
        t0 = time.perf_counter()
        for _ in range(n_batches - 1):
            (x, _y), state = batcher.take(state)
            float(x[:, :, ::64].sum())  # touch the batch, as a copy to the device would
        rate = (n_batches - 1) / (time.perf_counter() - t0) if n_batches > 1 else None
        workers = descendant_peak_rss_mb()
    return {
        "rows": labeled.num_rows,
        "spec_seconds": spec_seconds,
        "first_batch_seconds": first_seconds,
        "batches_per_s": rate,
        "correct": correct,
        "label_files_opened": len(opened),
        "peak_rss_mb": _peak_rss_mb(),
        "worker_peak_rss_mb": max(workers.values(), default=0.0),
        "processes": len(workers),
    }


def _child() -> None:
    args = json.loads(sys.argv[1])
    if args["step"] == "label":
        out = _label_step(args["root"])
    else:
        out = _stream_step(args["root"], args["n_batches"])
    print(json.dumps(out))


def measure(root: str | os.PathLike[str], step: str, *, n_batches: int = 10) -> dict[str, Any]:
    """Run ``step`` (``"label"`` or ``"stream"``) on the dataset at ``root`` in a fresh process.

    Returns the step's figures (times in s, peak RSS in MB, ...) as a dict.

    Examples
    --------
    >>> measure("/tmp/scale-200", "stream")["peak_rss_mb"]  # doctest: +SKIP
    182.3
    """
    if step not in ("label", "stream"):
        raise ValueError(f"step must be 'label' or 'stream', got {step!r}")
    args = json.dumps({"step": step, "root": os.fspath(root), "n_batches": n_batches})
    root_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {root_dir!r}); "
        "from benchmarks.scale import _child; _child()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, args], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the {step} step failed on {root}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report


def run(quick: bool) -> list[Result]:
    from ondabatches.scale import make_scale_dataset

    sizes = (20, 200) if quick else (20, 200, 2000)
    figures: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ondabatches-scale-") as tmp:
        for n in sizes:
            root = Path(tmp) / str(n)
            t0 = time.perf_counter()
            ds = make_scale_dataset(root, n_recordings=n)
            generate = time.perf_counter() - t0
            disk = sum(p.stat().st_blocks * 512 for p in ds.root.rglob("*") if p.is_file())
            figures[n] = {
                "generate_seconds": generate,
                "disk_mb": disk / 2**20,
                "apparent_tb": n * ds.file_bytes / 1e12,
                "label": measure(root, "label"),
                "stream": measure(root, "stream"),
            }
    return _results(figures)


def _results(figures: dict[int, dict[str, Any]]) -> list[Result]:
    base_n = min(figures)
    base = figures[base_n]
    out: list[Result] = []
    for n, f in figures.items():
        label, stream = f["label"], f["stream"]
        tag = f"{n} recordings"
        out.append(Result(
            f"generate ({f['apparent_tb']:.2f} TB apparent, {f['disk_mb']:.0f} MB on disk), {tag}",
            f["generate_seconds"], None, "s",
        ))  # fmt: skip
        for what, ours, floor in (
            ("trainer peak RSS: label_signals(store=)", label["peak_rss_mb"],
             base["label"]["peak_rss_mb"]),
            ("trainer peak RSS: lazy table, specs, Batcher", stream["peak_rss_mb"],
             base["stream"]["peak_rss_mb"]),
            ("worker peak RSS (max of workers)", stream["worker_peak_rss_mb"],
             base["stream"]["worker_peak_rss_mb"]),
        ):  # fmt: skip
            out.append(Result(
                f"{what}, {tag}", ours, floor, "MB", goal=1.5,
                floor_is=f"the same at {base_n} recordings" if n == base_n else "",
            ))  # fmt: skip
        if n == max(figures) and n != base_n:  # smaller growths are lost in the noise
            out.append(Result(
                f"label_signals RSS growth vs growth of annotations + labels held, {tag}",
                label["peak_rss_mb"] - base["label"]["peak_rss_mb"],
                label["held_mb"] - base["label"]["held_mb"], "MB", goal=1.5,
                floor_is="the tables' own bytes: annotations in, label references out",
            ))  # fmt: skip
        scale = n / base_n
        for what, ours, floor in (
            ("read tables + label_signals(store=)", label["seconds"],
             base["label"]["seconds"]),
            ("read lazy table + specs + first batch", stream["first_batch_seconds"],
             base["stream"]["first_batch_seconds"]),
        ):  # fmt: skip
            out.append(Result(
                f"{what}, {tag}", ours, floor * scale, "s", goal=1.0,
                floor_is=f"the {base_n}-recording time x {scale:g} (linear)",
            ))  # fmt: skip
            out.append(Result(f"{what} vs 10 s, {tag}", ours, 10.0, "s", goal=1.0))
        out.append(Result(
            f"label files opened by the trainer, {tag}", stream["label_files_opened"], None,
            "files", floor_is="must be 0: labels are read by the workers",
        ))  # fmt: skip
        out.append(Result(
            f"streamed batches ({BATCH_SIZE} x 19 ch x {BATCH_SECONDS} s) per s, {tag}",
            stream["batches_per_s"] or 0.0, None, "batch/s",
            floor_is="" if stream["correct"] else "WRONG VALUES in the first batch",
        ))  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__))
