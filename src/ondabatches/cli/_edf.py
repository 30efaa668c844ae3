"""``ondabatches import-edf``: convert EDF/EDF+/BDF files to Onda tables and sample files."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-edf",
        help="convert EDF/EDF+/BDF files to Onda (needs the 'edf' extra)",
        description=(
            "Convert EDF, EDF+ or BDF files to Onda: channels grouped into one signal per "
            "sensor type, sample rate, unit and encoding; the EDF's digital samples are kept "
            "as they are, with the digital-to-physical map as the Onda encoding, so nothing "
            "is re-quantized; EDF+ annotations go to an annotations table (column 'value'). "
            "Each FILE gives OUT/<stem>.onda.signal.arrow, OUT/<stem>.onda.annotation.arrow "
            "and one sample file per signal."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="EDF, EDF+ or BDF file(s)")
    parser.add_argument(
        "--out", "-o", required=True, metavar="DIR", help="output folder (created if missing)"
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        default="lpcm",
        choices=["lpcm", "lpcm.zst"],
        help="sample file format (default: lpcm)",
    )
    parser.add_argument(
        "--recording",
        metavar="UUID",
        help="recording UUID (only with a single FILE; default: a fresh random UUID)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..edf import import_edf

    if args.recording is not None and len(args.files) > 1:
        raise ValueError(f"--recording names one recording but {len(args.files)} files were given")
    out = Path(args.out)
    stems = [Path(f).stem for f in args.files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(f"several files share the name(s) {repeated}; their outputs would collide")
    for i, file in enumerate(args.files, 1):
        signals, annotations = import_edf(
            file, out, recording=args.recording, file_format=args.file_format
        )
        parts = [
            f"{sensor} ({len(channels)} ch @ {rate:g} Hz)"
            for sensor, channels, rate in zip(
                signals.column("sensor_label").to_pylist(),
                signals.column("channels").to_pylist(),
                signals.column("sample_rate").to_pylist(),
                strict=True,
            )
        ]
        print(
            f"[{i}/{len(args.files)}] {file} -> {out / Path(file).stem}.onda.*.arrow: "
            f"{signals.num_rows} signal(s): {', '.join(parts)}; "
            f"{annotations.num_rows} annotation(s)",
            flush=True,
        )
    print(f"done: inspect the result with `ondabatches inspect {out}`")
    return 0
