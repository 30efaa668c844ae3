"""``ondabatches import`` (alias ``import-edf``): EDF/BDF/MNE files into one Onda dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        aliases=["import-edf"],
        help="import EDF/EDF+/BDF (and MNE-readable) files into one Onda dataset",
        description=(
            "Import EDF, EDF+ or BDF files (and, with the 'mne' extra, every raw format MNE "
            "reads) into ONE Onda dataset: OUT/<name>.onda.signal.arrow, "
            "OUT/<name>.onda.annotation.arrow and sample files under OUT/samples. Channels are "
            "grouped into one signal per sensor type, sample rate, unit and encoding "
            "(unrecognised labels into one 'misc' signal, named by their prefix; --channel-map "
            "names them); the "
            "EDF's digital samples are kept as they are, with the digital-to-physical map as "
            "the Onda encoding, so nothing is re-quantized. Files are converted in parallel "
            "and streamed; rerunning an interrupted import resumes it. OUT may be a URL "
            "(s3://...)."
        ),
    )
    _add_dataset_arguments(parser)
    _add_run_arguments(parser)
    parser.set_defaults(func=run)


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """What is imported, and into which dataset."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="files, folders, glob patterns or @list.txt files (local paths or URLs)",
    )
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="OUT",
        help="dataset folder or URL (created if missing)",
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        default="lpcm",
        choices=["lpcm", "lpcm.zst"],
        help="sample file format (default: lpcm)",
    )
    parser.add_argument(
        "--name", default="dataset", help="stem of the two tables (default: dataset)"
    )
    parser.add_argument(
        "--channel-map",
        metavar="FILE",
        help="JSON ({label: [sensor_type, channel]}) or CSV (label,sensor_type,channel) file",
    )
    parser.add_argument(
        "--sleep-edf",
        action="store_true",
        help="pair *-PSG.edf with *-Hypnogram.edf (Sleep-EDF Expanded) and add a 'stage' column",
    )
    parser.add_argument(
        "--reader",
        choices=["auto", "edf", "mne"],
        default="auto",
        help="file reader (default: auto)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """How the import runs: workers, annotations past the end, in place, output."""
    parser.add_argument(
        "--workers", "-j", type=int, default=None, help="worker processes (default: CPU count)"
    )
    parser.add_argument(
        "--annotations-past-end",
        choices=["error", "clip", "drop"],
        default=None,
        help="annotations ending after their recording (default: error; clip with --sleep-edf)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help=(
            "write the two tables only, no sample files: signals read the EDF/BDF files "
            "themselves (file_format edf/bdf, file_path FILE#signals=...)"
        ),
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="one line per file even for many files"
    )


def run(args: argparse.Namespace) -> int:
    from .._errors import SourceFileError
    from ..importing import import_dataset
    from ..importing._convert import PAST_END_REMEDY

    try:
        report = import_dataset(
            args.inputs,
            args.out,
            name=args.name,
            file_format=args.file_format,
            channel_map=args.channel_map,
            sleep_edf=args.sleep_edf,
            reader=args.reader,
            workers=args.workers,
            progress=not args.no_progress,
            annotations_past_end=args.annotations_past_end,
            in_place=args.in_place,
        )
    except SourceFileError as exc:
        if PAST_END_REMEDY not in str(exc):
            raise
        # The output folder now remembers this run's policy: a rerun with another needs
        # a folder of its own.
        remedy = (
            "rerun with --annotations-past-end clip or drop to accept such files, "
            f"into another --out or after deleting {args.out}"
        )
        raise SourceFileError(str(exc).replace(PAST_END_REMEDY, remedy)) from exc
    if args.verbose or len(report.files) <= 20:
        for i, f in enumerate(report.files, 1):
            print(f"[{i}/{len(report.files)}] {f}")
    print(report)
    print(f"done: inspect the result with `ondabatches inspect {args.out}`")
    return 0
