"""``ondabatches bench``: every benchmark, each figure next to its floor as a ratio."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .._errors import ArgumentError, OndaBatchesError

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
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run every benchmark in this process (default: each in a fresh one, so that "
        "none inherits another's threads, allocations or imports)",
    )
    parser.set_defaults(func=run)


def _run_section(name: str, quick: bool, same_process: bool) -> list:
    """Benchmark ``name``'s results, run here or in a fresh interpreter.

    A section that ran after another in one process was measurably slower there: after
    ``train`` (torch's threads, its allocations), ``transforms``' four augmentations gave
    1.43x where the same section alone gave 1.09-1.10x. A child per section reports
    every figure as that benchmark alone (``python -m benchmarks.NAME``) gives it.
    """
    bench = _import_benchmarks()
    if same_process:
        return importlib.import_module(f"{bench.__name__}.{name}").run(quick=quick)
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        out = Path(tmp) / "results.json"
        env = {**os.environ, "ONDABATCHES_BENCHMARKS": str(benchmarks_dir())}
        code = "from ondabatches.cli._bench import _child; _child()"
        done = subprocess.run(
            [sys.executable, "-c", code, name, "1" if quick else "0", str(out)], env=env
        )
        if done.returncode != 0 or not out.is_file():
            raise OndaBatchesError(
                f"benchmark {name!r} failed in its own process (exit status "
                f"{done.returncode}; its output is above)"
            )
        return [bench.Result.from_dict(d) for d in json.loads(out.read_text())]


def _child() -> None:
    """A child of `_run_section`: ``argv`` = name, quick (0 or 1), results path."""
    name, quick, out = sys.argv[1:4]
    bench = _import_benchmarks()
    results = importlib.import_module(f"{bench.__name__}.{name}").run(quick=quick == "1")
    Path(out).write_text(json.dumps([r.to_dict() for r in results]))


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
        results = _run_section(name, args.quick, getattr(args, "same_process", False))
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
