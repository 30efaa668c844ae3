"""``ondabatches bench``: every benchmark, each figure next to its floor as a ratio."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path

from .._errors import ArgumentError

__all__ = ["add_parser", "run"]

# Run only when named: they need optional extras (``peers``: braindecode, mne, torch).
_ON_REQUEST = frozenset({"peers", "derive_peers"})


def benchmarks_dir() -> Path | None:
    """The repository's ``benchmarks`` folder: ``$ONDABATCHES_BENCHMARKS``, or beside ``src/``.

    The benchmarks are development tools, so they are not in the installed package: an
    editable install (or a checkout on ``PYTHONPATH``) finds them in the source tree.
    """
    env = os.environ.get("ONDABATCHES_BENCHMARKS")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[3] / "benchmarks"  # src/ondabatches/cli/
    return here if (here / "__init__.py").is_file() else None


def _import_benchmarks():
    folder = benchmarks_dir()
    if folder is None or not (folder / "__init__.py").is_file():
        raise ArgumentError(
            "the benchmarks live in the source repository (its benchmarks/ folder), not in "
            "the installed package: run `ondabatches bench` from an editable install of a "
            "clone, or set ONDABATCHES_BENCHMARKS to that folder"
        )
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    return importlib.import_module(folder.name)


def _available() -> list[str]:
    try:
        bench = _import_benchmarks()
    except ValueError:
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    names = _available()
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (ours vs floor, side by side)",
        description=(
            "Run benchmarks and print each figure next to its floor (the raw reads and "
            "decode of the same bytes, or the same work done inline) measured in the same "
            f"run, as a ratio. Available: {', '.join(names) or 'none (run from a clone)'}. "
            f"Without names, all but {', '.join(sorted(_ON_REQUEST))} (which needs "
            "pip install 'ondabatches[peers]')."
        ),
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all but peers)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repetitions")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write every figure as a markdown page (tables, this machine, the date)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bench = _import_benchmarks()
    available = _available()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        raise ArgumentError(f"unknown benchmark(s) {unknown}; available: {available}")
    markdown = getattr(args, "markdown", None)
    if markdown and not Path(markdown).resolve().parent.is_dir():
        raise ArgumentError(f"--markdown {markdown}: its folder does not exist")
    print(bench.machine_line(), flush=True)
    sections = []
    for name in args.names or [n for n in available if n not in _ON_REQUEST]:
        module = importlib.import_module(f"{bench.__name__}.{name}")
        description = (module.__doc__ or "").strip().splitlines()[0]
        print(f"\n== {name}: {description}", flush=True)
        results = module.run(quick=args.quick)
        print(bench.format_results(results), flush=True)
        sections.append((name, description, results))
    if markdown:
        command = " ".join(
            ["ondabatches bench", *args.names, *(["--quick"] if args.quick else []),
             "--markdown", str(markdown)]
        )  # fmt: skip
        bench.write_markdown(markdown, sections, command)
        print(f"\nwrote {markdown}", flush=True)
    return 0
