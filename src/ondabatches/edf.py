"""EDF, EDF+ and BDF import, kept for existing code: see `ondabatches.importing`.

[`import_edf`][ondabatches.edf.import_edf] converts one file to its own pair of tables;
[`import_dataset`][ondabatches.importing.import_dataset] imports many files into one dataset.
"""

from __future__ import annotations

from .importing import SourceChannel as EdfChannel
from .importing import import_edf, read_edf_channels, sensor_type_and_channel

__all__ = ["EdfChannel", "import_edf", "read_edf_channels", "sensor_type_and_channel"]
