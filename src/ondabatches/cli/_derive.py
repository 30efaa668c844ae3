"""``ondabatches derive``: a filtered, re-referenced, resampled copy of a dataset."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        message = f"expected LOW,HIGH in Hz (e.g. 0.3,35), got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return low, high


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "derive",
        help="write a filtered / re-referenced / resampled copy of a dataset",
        description=(
            "Write new Onda signals derived from the dataset at SRC (a folder or a signals "
            "table) into OUT: zero-phase filters equal to filtering each whole recording, "
            "an average reference, a new rate; float32 samples, the annotations carried "
            "over, provenance in OUT/derived.json. Streamed in blocks (memory bounded "
            "whatever the recording's length), recordings in parallel, and a rerun skips "
            "the signals already written."
        ),
        epilog="example: ondabatches derive DATA OUT --bandpass 0.3,35 --notch 60 --resample 100",
    )
    parser.add_argument("src", metavar="SRC", help="dataset folder or signals table (local or URL)")
    parser.add_argument("out", metavar="OUT", help="output folder (local or URL)")
    parser.add_argument("--bandpass", type=_pair, metavar="LOW,HIGH", help="band-pass in Hz")
    parser.add_argument("--highpass", type=float, metavar="HZ")
    parser.add_argument("--lowpass", type=float, metavar="HZ")
    parser.add_argument("--notch", type=float, action="append", metavar="HZ",
                        help="notch frequency (repeatable)")  # fmt: skip
    parser.add_argument("--reference", choices=["average"], default=None)
    parser.add_argument("--resample", type=float, metavar="HZ", help="new sample rate")
    parser.add_argument("--format", dest="file_format", default="lpcm",
                        choices=["lpcm", "lpcm.zst"])  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._errors import SchemaError
    from ..inspection import find_tables
    from ..transforms import Bandpass, Highpass, Lowpass, Notch, derive_dataset

    signals, annotations = find_tables(args.src)
    if len(signals) != 1:
        raise SchemaError(
            f"{args.src} must hold exactly one signals table, found {len(signals)}: {signals}"
        )
    if not annotations and signals[0].endswith(".signal.arrow"):
        # A signals table given: its annotations table beside it, where there is one.
        sibling = signals[0][: -len(".signal.arrow")] + ".annotation.arrow"
        annotations = (
            [a for a in find_tables(sibling)[1] if a == sibling] if _exists(sibling) else []
        )
    filters = []
    if args.highpass:
        filters.append(Highpass(args.highpass))
    if args.lowpass:
        filters.append(Lowpass(args.lowpass))
    if args.bandpass:
        filters.append(Bandpass(*args.bandpass))
    filters += [Notch(f) for f in args.notch or ()]
    out_signals, out_annotations = derive_dataset(
        signals[0], annotations[0] if len(annotations) == 1 else None, args.out,
        filters=filters, reference=args.reference, resample_hz=args.resample,
        file_format=args.file_format, workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip
    print(f"wrote {out_signals}" + (f" and {out_annotations}" if out_annotations else ""))
    sys.stdout.flush()
    return 0


def _exists(url: str) -> bool:
    from ..onda._storage import filesystem_for

    fs, path = filesystem_for(url)
    return fs.exists(path)
