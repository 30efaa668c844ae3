"""Bring your own data: EDF, EDF+, BDF and MNE-readable files into one Onda dataset.

- [`import_dataset`][ondabatches.importing.import_dataset]: many files (local or any
  fsspec URL) into ONE dataset, in parallel worker processes, streamed, atomic and
  resumable (``ondabatches import``);
- [`ChannelMap`][ondabatches.importing.ChannelMap]: the user's sensor types and channel
  names for channel labels;
- [`sensor_type_and_channel`][ondabatches.importing.sensor_type_and_channel],
  [`group_channels`][ondabatches.importing.group_channels]: the guesses and grouping
  used where the map is silent;
- [`EdfSource`][ondabatches.importing.EdfSource],
  [`MneSource`][ondabatches.importing.MneSource]: the readers (pyedflib; MNE with the
  ``mne`` extra);
- [`pair_sleep_edf`][ondabatches.importing.pair_sleep_edf],
  [`SLEEP_EDF_STAGES`][ondabatches.importing.SLEEP_EDF_STAGES]: the Sleep-EDF Expanded
  recipe;
- [`import_edf`][ondabatches.importing.import_edf]: one file to its own pair of tables
  (the original API);
- [`edf_signals`][ondabatches.importing.edf_signals]: the tables of EDF/BDF files served
  in place (no sample files).
"""

from . import _channels, _dataset, _discover, _edf, _in_place, _mne, _report, _single, _sleepedf
from ._channels import *  # noqa: F403
from ._dataset import *  # noqa: F403
from ._discover import *  # noqa: F403
from ._edf import *  # noqa: F403
from ._in_place import *  # noqa: F403
from ._mne import *  # noqa: F403
from ._report import *  # noqa: F403
from ._single import *  # noqa: F403
from ._sleepedf import *  # noqa: F403

__all__ = sorted(
    {
        *_channels.__all__,
        *_dataset.__all__,
        *_discover.__all__,
        *_edf.__all__,
        *_in_place.__all__,
        *_mne.__all__,
        *_report.__all__,
        *_single.__all__,
        *_sleepedf.__all__,
    }
)
