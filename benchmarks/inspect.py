"""Benchmark of ``inspect``'s annotation summary: Arrow compute against the Python walk.

Builds an annotations table of 500,000 sleep-stage annotations (``--quick``: 50,000)
over 500 recordings, with signals for all but one recording (so the orphan and
out-of-range checks have work), and times, interleaved A, B, A, B...:

* ours: :func:`ondabatches.inspection.summarize_annotations` (Arrow ``group_by`` and
  ``index_in``: label counts and durations, recordings, orphans, spans out of range);
* the previous code: a copy of the per-annotation walk that ``inspect_dataset`` did
  before (one :class:`~ondabatches.onda.Annotation` object per row), kept here as the
  baseline. Goal: ours at least 10x faster (ratio baseline/ours reported as speed-up);
* the floor: the same sums with two bare ``pyarrow`` group-bys on prepared columns.
  Goal: ours <= 3x the floor.

Usage: ``python -m benchmarks.inspect [--quick]`` or ``ondabatches bench inspect``.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from ondabatches.inspection import Problem, label_column, summarize_annotations
from ondabatches.onda import annotations_table, iter_annotations

from ._report import Result, script_main

NS = 1_000_000_000
STAGES = ("wake", "nrem1", "nrem2", "nrem3", "rem")


def make_annotations(
    n: int, n_recordings: int = 500
) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
    """``n`` 30-s stage annotations over ``n_recordings``, and the recordings' extents."""
    rng = np.random.default_rng(0)
    per = n // n_recordings
    recordings = [uuid.UUID(int=i + 1) for i in range(n_recordings)]
    rec = np.repeat(np.arange(n_recordings), per)
    starts = np.tile(np.arange(per, dtype=np.int64) * 30 * NS, n_recordings)
    table = annotations_table(
        pa.table(
            {
                "recording": [str(recordings[i]) for i in rec],
                "id": [str(uuid.UUID(int=(1 << 64) + i)) for i in range(len(rec))],
                "span": pa.StructArray.from_arrays(
                    [pa.array(starts), pa.array(starts + 30 * NS)], names=["start", "stop"]
                ),
                "stage": pa.array(np.array(STAGES)[rng.integers(0, 5, len(rec))]),
            }
        )
    )
    # Signals cover all but the last recording (orphans), and end one epoch early
    # in the first (one annotation out of range).
    extent = {str(r): (0, per * 30 * NS) for r in recordings[:-1]}
    extent[str(recordings[0])] = (0, (per - 1) * 30 * NS)
    return table, extent


def previous_summary(annotations: pa.Table, extent: dict[str, tuple[int, int]]) -> tuple:
    """The annotation walk of ``inspect_dataset`` before Arrow compute (the baseline)."""
    column = label_column(annotations)
    counts: Counter[str] = Counter()
    durations: Counter[str] = Counter()
    problems = []
    recordings = set(extent)
    orphans: Counter[str] = Counter()
    for ann in iter_annotations(annotations):
        rec = str(ann.recording)
        recordings.add(rec)
        if column is not None:
            label = str(ann.extra[column])
            counts[label] += 1
            durations[label] += ann.span.duration
        if rec not in extent:
            orphans[rec] += 1
        elif ann.span.start < 0 or ann.span.start >= extent[rec][1]:
            problems.append(Problem("span_out_of_range", f"annotation {ann.id}", None, rec))
    problems.extend(
        Problem("orphan_annotations", f"{n} of {rec}", None, rec) for rec, n in orphans.items()
    )
    return column, dict(counts), dict(durations), recordings, problems


def floor_sums(keys: pa.Table) -> tuple:
    """The bare sums: per-label count and duration, per-recording count."""
    per_label = keys.group_by("label").aggregate([("duration", "sum"), ("duration", "count")])
    per_rec = keys.group_by("rec").aggregate([("duration", "count")])
    return per_label, per_rec


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Result]:
    n = 50_000 if quick else 500_000
    reps = 3 if quick else 5
    table, extent = make_annotations(n)
    rec_storage = table.column("recording").combine_chunks().storage
    starts = table.column("span").combine_chunks().storage.field("start").cast(pa.int64())
    stops = table.column("span").combine_chunks().storage.field("stop").cast(pa.int64())
    keys = pa.table(
        {
            "rec": rec_storage,
            "label": table.column("stage"),
            "duration": pa.array(stops.to_numpy() - starts.to_numpy()),
        }
    )

    ours = summarize_annotations(table, extent)
    old = previous_summary(table, extent)
    # The two agree on everything they compute.
    assert ours[1] == old[1] and ours[2] == old[2] and ours[3] <= old[3] | set(extent)
    assert sorted(p.kind for p in ours[4]) == sorted(p.kind for p in old[4])

    t_ours, t_old, t_floor = [], [], []
    for _ in range(reps):  # interleaved: A, B, C, A, B, C ...
        t_ours.append(_timed(lambda: summarize_annotations(table, extent)))
        t_old.append(_timed(lambda: previous_summary(table, extent)))
        t_floor.append(_timed(lambda: floor_sums(keys)))
    m_ours, m_old, m_floor = (statistics.median(t) for t in (t_ours, t_old, t_floor))
    print(
        f"figure: ours {m_ours:.3f} s vs previous code {m_old:.3f} s -> speed-up "
        f"{m_old / m_ours:.1f}x (goal >= 10x), {n:,} annotations"
    )
    print(
        f"figure: ours {m_ours:.3f} s vs floor {m_floor:.3f} s -> ratio "
        f"{m_ours / m_floor:.2f} (goal <= 3)"
    )
    return [
        Result(
            f"inspect summary of {n:,} annotations vs previous code",
            m_ours,
            m_old,
            "s",
            0.1,
            floor_is="the previous per-annotation walk (ratio = ours / previous)",
        ),
        Result(
            f"inspect summary of {n:,} annotations vs bare group-by",
            m_ours,
            m_floor,
            "s",
            3.0,
            floor_is="two pyarrow group_by sums on prepared columns",
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.split("\n\n")[0]))
