"""``ondabatches bench``: every benchmark, each figure next to its floor as a ratio."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

__all__ = ["add_parser", "run"]

# Run only when named: they need optional extras (``peers``: braindecode, mne, torch).
_ON_REQUEST = frozenset({"peers"})


def _available() -> list[str]:
    from .. import bench

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
            f"run, as a ratio. Available: {', '.join(names)}. Without names, all but "
            f"{', '.join(sorted(_ON_REQUEST))} (which needs pip install 'ondabatches[peers]')."
        ),
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all but peers)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repetitions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import format_results, machine_line

    available = _available()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {available}")
    print(machine_line(), flush=True)
    for name in args.names or [n for n in available if n not in _ON_REQUEST]:
        module = importlib.import_module(f"ondabatches.bench.{name}")
        print(f"\n== {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        print(format_results(module.run(quick=args.quick)), flush=True)
    return 0
