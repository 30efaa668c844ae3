"""``ondabatches inspect``: summarize and check an Onda dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarize an Onda signals/annotations table or a folder, and check it",
        description=(
            "Print a summary of an Onda dataset (recordings, sensors, channels, sample rates "
            "and types, total duration, label counts per class) and the problems found: "
            "missing sample files, sample files of the wrong size, spans out of range, "
            "annotations of recordings without signals. Exits with status 1 when there "
            "are problems."
        ),
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a *.onda.signal.arrow or *.onda.annotation.arrow file, or a folder; local or a "
        "URL (s3://bucket/dataset)",
    )
    parser.add_argument(
        "--reroot",
        metavar="DIR",
        help="find sample files by base name in DIR (tables written on another machine)",
    )
    parser.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="do not open the sample files (faster on remote storage)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--events",
        metavar="MANIFEST",
        action="append",
        help="also summarize an event label set (its events.json, from label_events): "
        "counts, instants, durations and overlaps per class (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inspection import inspect_dataset

    report = inspect_dataset(args.path, reroot=args.reroot, check_files=args.check_files)
    events = {}
    if args.events:
        from ..labels import event_summary, load_event_labels

        events = {m: event_summary(load_event_labels(m)) for m in args.events}
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "events": events}, indent=2))
    else:
        print(report)
        for manifest, summary in events.items():
            print(f"events of {manifest}:")
            for cls, row in summary.items():
                print(
                    f"  {cls}: {row['events']} events in {row['recordings']} recording(s), "
                    f"{row['seconds']:.1f} s in all, {row['instants']} instant(s), "
                    f"{row['overlapping']} overlapping another of their class"
                )
    return 0 if report.ok else 1
