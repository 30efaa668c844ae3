"""Deprecated: the benchmarks moved to the repository's ``benchmarks/`` package.

They are development tools, so the installed package no longer carries them. This
stand-in keeps ``import ondabatches.bench.onda`` (and ``python -m
ondabatches.bench.onda``) working from a clone, with a ``DeprecationWarning`` that names
the new place: ``python -m benchmarks.onda`` from the repository's root, or
``ondabatches bench onda``.
"""

import warnings

from ..cli._bench import benchmarks_dir

warnings.warn(
    "ondabatches.bench moved to the repository's benchmarks/ package: run "
    "`python -m benchmarks.NAME` from a clone's root, or `ondabatches bench NAME`",
    DeprecationWarning,
    stacklevel=2,
)

_found = benchmarks_dir()
if _found is None:
    raise ImportError(
        "ondabatches.bench moved to the repository's benchmarks/ package, which the "
        "installed package does not carry: run it from a clone (`python -m benchmarks.NAME`) "
        "or set ONDABATCHES_BENCHMARKS to that folder"
    )
# Submodules (ondabatches.bench.onda, ...) load from the benchmarks folder itself.
__path__ = [str(_found)]
with open(_found / "__init__.py", encoding="utf-8") as _init:
    exec(compile(_init.read(), str(_found / "__init__.py"), "exec"))
