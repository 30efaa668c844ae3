"""Entry point of the ``ondabatches`` command: argument parsing and error reporting."""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

from .._errors import OndaBatchesError
from .._version import __version__

__all__ = ["main"]

# Each subcommand module exposes ``add_parser(subparsers) -> None`` setting ``func``.
_COMMANDS = ("_demo", "_inspect", "_plot", "_edf", "_derive", "_convert", "_bench")
# Commands that never use pandas (bench runs peers that may: braindecode, mne, torch).
_PANDAS_FREE = frozenset({"demo", "inspect", "plot", "import", "import-edf", "convert"})


class _HidePandas(importlib.abc.MetaPathFinder):
    """On ``sys.meta_path``: ``import pandas`` fails, naming why."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                f"ondabatches hides {fullname!r} while a command runs from the command line "
                "(pyarrow would load it, unused, on its first array)",
                name=fullname,
            )
        return None


@contextlib.contextmanager
def _pandas_hidden() -> Iterator[None]:
    """pandas made unimportable for one command.

    pyarrow imports pandas, when installed, on its first array, scalar or table, only to
    ask whether its input is a pandas object: 0.3-0.6 s of every command, none of which
    uses pandas. While pandas cannot be imported no pandas object can exist, so pyarrow
    loses nothing; pyarrow's shim is left believing pandas absent, which is why only the
    process's own command line (``main()`` without ``argv``) does this, not callers of
    ``main(argv)`` that may go on to use pandas.
    """
    if "pandas" in sys.modules:  # already paid for
        yield
        return
    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="ondabatches",
        description="Deterministic, resumable, distributed training batches from Onda datasets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug logging on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 on success).

    Without ``argv`` (the ``ondabatches`` program itself, arguments from ``sys.argv``)
    pandas stays unloaded during commands that do not need it (see ``_pandas_hidden``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    hide = argv is None and args.command in _PANDAS_FREE
    try:
        with _pandas_hidden() if hide else contextlib.nullcontext():
            return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OndaBatchesError, OSError, ValueError, ImportError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"ondabatches {args.command}: error: {message}", file=sys.stderr)
        print("(run with --debug for the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
