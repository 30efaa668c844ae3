"""The ``ondabatches`` command line: demo, inspect, plot, import-edf, bench."""

from ._main import main

__all__ = ["main"]
