"""Check an Onda dataset and summarize it: what ``ondabatches inspect`` prints.

[`inspect_dataset`][ondabatches.inspection.inspect_dataset] takes a signals table, an
annotations table, or a folder holding them, and returns a
[`DatasetReport`][ondabatches.inspection.DatasetReport]: counts, sensors, sample rates,
durations, label counts, and the [`Problem`][ondabatches.inspection.Problem] s found
(missing or short sample files, spans out of range, annotations of recordings without
signals). It never raises for a problem in the *data*; only a path that is not an Onda
table at all raises ([`SchemaError`][ondabatches._errors.SchemaError],
[`SampleFileNotFoundError`][ondabatches._errors.SampleFileNotFoundError]).

The pieces: ``_tables`` (finding and reading the tables), ``_checks`` (sample files and
annotations), ``_labels`` (the label column and durations), ``_report`` (what is
found), ``_inspect`` (all of it, in order).
"""

from __future__ import annotations

from ._checks import summarize_annotations
from ._inspect import inspect_dataset
from ._labels import SLEEP_STAGES, label_column, label_durations, label_encoding
from ._report import DatasetReport, Problem, SensorSummary
from ._tables import find_tables, in_folder

__all__ = [
    "DatasetReport",
    "Problem",
    "SLEEP_STAGES",
    "SensorSummary",
    "find_tables",
    "in_folder",
    "inspect_dataset",
    "label_column",
    "label_durations",
    "label_encoding",
    "summarize_annotations",
]
