"""Benchmark results: our figure next to its floor, as a ratio, with the goal."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Result", "format_results", "machine_line", "script_main"]


@dataclass(frozen=True, slots=True)
class Result:
    """One benchmark figure.

    ``ours`` and ``floor`` are in ``unit``. ``ratio`` is ``ours / floor`` when lower is
    better (times) and ``floor / ours`` when higher is better (rates), so a ratio of 1.0
    always means "as fast as the floor" and larger means slower. ``goal`` bounds the
    ratio (``ratio <= goal`` passes); ``floor`` may be ``None`` for figures that only
    report (memory, say).
    """

    name: str
    ours: float
    floor: float | None
    unit: str
    goal: float | None = None
    higher_is_better: bool = False
    floor_is: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        if self.ours == 0:
            return None if self.higher_is_better else 0.0
        return self.floor / self.ours if self.higher_is_better else self.ours / self.floor

    @property
    def ok(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.ratio <= self.goal

    def to_dict(self) -> dict:
        return {
            "name": self.name, "ours": self.ours, "floor": self.floor, "unit": self.unit,
            "ratio": self.ratio, "goal": self.goal, "ok": self.ok, "floor_is": self.floor_is,
        }  # fmt: skip


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def machine_line() -> str:
    return (
        f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} cpus; "
        "ratios compare figures measured side by side in this run"
    )


def format_results(results: Iterable[Result]) -> str:
    """A plain-text table: name, ours, floor, unit, ratio, goal, verdict."""
    lines = [
        f"{'benchmark':<58} {'ours':>10} {'floor':>10} {'unit':<9} {'ratio':>6} {'goal':>5}",
    ]
    for r in results:
        verdict = {True: "ok", False: "MISSED", None: ""}[r.ok]
        lines.append(
            f"{r.name:<58} {_num(r.ours):>10} {_num(r.floor):>10} {r.unit:<9} "
            f"{_num(r.ratio):>6} {_num(r.goal):>5} {verdict}"
        )
        if r.floor_is:
            lines.append(f"    floor: {r.floor_is}")
    return "\n".join(lines)


def script_main(run, description: str, argv: list[str] | None = None) -> int:
    """The ``python -m benchmarks.<name> [--quick]`` entry point of one benchmark."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repetitions")
    args = parser.parse_args(argv)
    print(machine_line(), flush=True)
    print(format_results(run(quick=args.quick)))
    return 0
