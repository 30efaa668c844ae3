"""``ondabatches convert``: a signals table's sample files rewritten in another format."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="rewrite a signals table's sample files as dbp, pco, lpcm or lpcm.zst",
        description=(
            "Write every signal of the signals table SRC to OUT/<recording>/<sensor_label>.EXT "
            "in FORMAT (samples copied bit for bit) and OUT/signals.arrow pointing at them: "
            "dbp or pco (smaller; this package only) to lpcm or lpcm.zst for Onda.jl, or back."
        ),
        epilog="example: ondabatches convert DATA/signals.arrow OUT --format lpcm.zst",
    )
    parser.add_argument("src", metavar="SRC", help="signals table (local path)")
    parser.add_argument("out", metavar="OUT", help="output folder (must not hold signals.arrow)")
    parser.add_argument("--format", dest="file_format", required=True,
                        choices=["dbp", "pco", "lpcm", "lpcm.zst"])  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._errors import DatasetExistsError
    from ..onda import read_signals, signals_table, write_signals
    from ..onda._convert import convert_signal
    from ..onda._signal import Signal

    table = os.path.join(args.out, "signals.arrow")
    if os.path.exists(table):
        raise DatasetExistsError(f"{table} exists; convert into an empty folder")
    converted = []
    for row in read_signals(args.src).to_pylist():
        signal = Signal.from_row(row)
        folder = os.path.join(args.out, str(signal.recording))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{signal.sensor_label}.{args.file_format}")
        converted.append(convert_signal(signal, path, args.file_format))
        print(f"{signal.file_path} -> {path}")
    write_signals(table, signals_table(converted))
    print(f"wrote {len(converted)} signals to {table}")
    return 0
