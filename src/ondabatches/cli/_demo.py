"""``ondabatches demo``: the whole pipeline on a synthetic sleep dataset, with live throughput."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .._errors import ArgumentError

__all__ = ["add_parser", "run"]

_NS = 10**9

say = print  # the demo's output, step by step


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthesize a sleep dataset, label it and stream batches from worker processes",
        description=(
            "Synthesize a small sleep dataset (EEG with stage-dependent rhythms, EOG, ECG, "
            "30 s sleep-stage annotations, lpcm and lpcm.zst files, relative and absolute "
            "paths), label it, store the labels as Onda files, and stream random batches "
            "of a montage (EEG C3-M2, both EOG channels, ECG, each at its own rate) from a "
            "Batcher, showing batches/s and MB/s."
        ),
    )
    parser.add_argument(
        "--dir", type=Path, help="where to write the dataset (default: a new temporary folder)"
    )
    parser.add_argument("--recordings", type=int, default=8, help="recordings (default 8)")
    parser.add_argument("--hours", type=float, default=1.0, help="hours per recording (default 1)")
    parser.add_argument("--batches", type=int, default=200, help="batches to stream (default 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="items per batch (default 32)")
    parser.add_argument(
        "--duration", type=int, default=60, help="window length in seconds, a multiple of 30"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker count (default 2)")
    parser.add_argument(
        "--backend",
        default="processes",
        choices=["inline", "threads", "processes", "ray"],
        help="where batches are materialized (default: processes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and batches")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.recordings < 1 or args.hours <= 0 or args.batches < 1:
        raise ArgumentError("--recordings, --hours and --batches must be positive")
    root = args.dir or Path(tempfile.mkdtemp(prefix="ondabatches-demo-"))
    ds = _synthesize(args, root)
    labeled, labeled_path = _label(ds, root)
    batches, state = _scheme(args, labeled)
    state, summary = _stream(args, batches, state)
    _report(args, root, ds, labeled_path, state, summary)
    return 0


def _synthesize(args: argparse.Namespace, root: Path) -> Any:
    """Step 1: the synthetic recordings."""
    from ..synthetic import make_dataset

    say(f"1/4 synthesizing {args.recordings} recordings x {args.hours:g} h in {root} ...")
    t0 = time.perf_counter()
    ds = make_dataset(
        root,
        n_recordings=args.recordings,
        duration=int(args.hours * 3600) * _NS,
        seed=args.seed,
        eog_every=1,
        ecg_every=1,
        sample_rate=128.0,
    )
    formats = sorted(set(ds.signals.column("file_format").to_pylist()))
    sensors = sorted(set(ds.signals.column("sensor_type").to_pylist()))
    say(
        f"    {ds.signals.num_rows} signals ({', '.join(sensors)}; formats {', '.join(formats)}), "
        f"{ds.annotations.num_rows} stage annotations "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    return ds


def _label(ds: Any, root: Path) -> tuple[Any, Path]:
    """Step 2: the labeled signals, labels stored lazily."""
    from ..labels import label_signals, sort_and_trim_spans, store_labels, write_labeled_signals
    from ..synthetic import EPOCH, STAGE_ENCODING

    say("2/4 labeling the signals with 30 s sleep stages ...")
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    labeled = label_signals(
        ds.signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    labeled = store_labels(labeled, root / "labels")
    labeled_path = root / "labeled.arrow"
    write_labeled_signals(labeled_path, labeled)
    say(f"    {labeled.num_rows} labeled signals, labels stored lazily under {root / 'labels'}")

    return labeled, labeled_path


def _scheme(args: argparse.Namespace, labeled: Any) -> tuple[Any, Any]:
    """Step 3: a montage's random batches and their first state."""
    from ..batches import RandomBatches
    from ..materialize import Bipolar

    batches = RandomBatches(
        labeled,
        modalities={
            "eeg": ("eeg", Bipolar(["c3-m2"])),
            "eog": ("eog", ["eog-l", "eog-r"]),
            "ecg": ("ecg", None),
        },
        batch_size=args.batch_size,
        batch_duration=args.duration * _NS,
    )
    state = batches.initial_state(seed=args.seed)
    say(
        f"3/4 RandomBatches of a montage (EEG C3-M2, EOG left and right, ECG): "
        f"{args.batch_size} items x {args.duration} s per batch, seed {args.seed}"
    )

    return batches, state


def _stream(args: argparse.Namespace, batches: Any, state: Any) -> tuple[Any, dict[str, Any]]:
    """Step 4: the batches from the Batcher, with a progress bar; the next state and what
    was measured."""
    from tqdm import tqdm

    from ..serve import Batcher

    workers = 1 if args.backend == "inline" else args.workers
    say(f"4/4 streaming {args.batches} batches from {workers} {args.backend} worker(s) ...")
    n_bytes = 0
    t_start = time.perf_counter()
    t_first = None
    with Batcher(batches, workers=workers, backend=args.backend) as batcher:
        batcher.start(state)
        bar = tqdm(total=args.batches, unit="batch", disable=args.no_progress, dynamic_ncols=True)
        try:
            for _ in range(args.batches):
                (x, y), state = batcher.take(state)
                if t_first is None:
                    t_first = time.perf_counter() - t_start
                    # One array per modality (batch, channels, samples at its rate).
                    x_shapes = {name: (a.shape, a.dtype) for name, a in x.items()}
                    y_shape = (y.shape, y.dtype)
                n_bytes += sum(a.nbytes for a in x.values()) + y.nbytes
                elapsed = time.perf_counter() - t_start
                stats = batcher.stats()
                bar.set_postfix_str(
                    f"{n_bytes / 1e6 / elapsed:.0f} MB/s, "
                    f"waited {100 * stats['wait_fraction']:.0f}%, "
                    f"{workers} workers busy {100 * stats['worker_busy']:.0f}%",
                    refresh=False,
                )
                bar.update()
        finally:
            bar.close()
        stats = batcher.stats()
    summary = {
        "elapsed": time.perf_counter() - t_start,
        "first": t_first,
        "n_bytes": n_bytes,
        "stats": stats,
        "x": x_shapes,
        "y": y_shape,
    }
    return state, summary


def _report(
    args: argparse.Namespace,
    root: Path,
    ds: Any,
    labeled_path: Path,
    state: Any,
    summary: dict[str, Any],
) -> None:
    elapsed, t_first, n_bytes = summary["elapsed"], summary["first"], summary["n_bytes"]
    stats, x_shapes, y_shape = summary["stats"], summary["x"], summary["y"]
    say(
        f"    {args.batches} batches in {elapsed:.1f} s: {args.batches / elapsed:.1f} batches/s, "
        f"{n_bytes / 1e6 / elapsed:.0f} MB/s; first batch after {t_first:.2f} s"
    )
    say(
        f"    waiting for data {100 * stats['wait_fraction']:.1f}% of the time, workers busy "
        f"{100 * stats['worker_busy']:.0f}% (Batcher.stats(); near 100% busy: add workers)"
    )
    x_text = ", ".join(f"{name} {shape} {dtype}" for name, (shape, dtype) in x_shapes.items())
    say(
        f"    x: {x_text} (batch, channels, time at each signal's rate); "
        f"y: {y_shape[0]} {y_shape[1]} (stage codes)"
    )
    say("")
    say(f"Everything is in {root}:")
    say(f"  {ds.signals_path.name}, {ds.annotations_path.name}   the Onda tables")
    say(f"  {labeled_path.name}   the labeled signals (labels stored under labels/)")
    say(f"  resume state of the next batch: {state.to_json()}")
    say("What to try next:")
    say(f"  ondabatches inspect {root}")
    say(f"  ondabatches plot {root} --seed {args.seed} --modalities eeg,eog,ecg --out item.png")
    say(f"  ondabatches demo --workers {max(1, (os.cpu_count() or 2))} --batches 500")
    say("  docs/tour.md: the same steps in Python, one at a time")
