"""Benchmarks: each module's ``run(quick)`` returns :class:`Result` rows (ours vs floor).

Run one with ``python -m benchmarks.onda [--quick]`` or all with
``ondabatches bench [--quick]``. Not timed tests: absolute times on a shared machine are
noise, so every figure is printed next to a floor measured side by side in the same run.
"""

from ._report import (
    MARKDOWN_MARKER,
    Result,
    format_markdown,
    format_results,
    machine_description,
    machine_line,
    parse_markdown,
    script_main,
    write_markdown,
)

__all__ = [
    "MARKDOWN_MARKER",
    "Result",
    "format_markdown",
    "format_results",
    "machine_description",
    "machine_line",
    "parse_markdown",
    "script_main",
    "write_markdown",
]
