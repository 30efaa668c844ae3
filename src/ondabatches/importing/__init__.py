"""Bring your own data: EDF, EDF+, BDF and MNE-readable files into one Onda dataset.

- :func:`import_dataset`: many files (local or any fsspec URL) into ONE dataset, in
  parallel worker processes, streamed, atomic and resumable (``ondabatches import``);
- :class:`ChannelMap`: the user's sensor types and channel names for channel labels;
- :func:`sensor_type_and_channel`, :func:`group_channels`: the guesses and grouping
  used where the map is silent;
- :class:`EdfSource`, :class:`MneSource`: the readers (pyedflib; MNE with the ``mne`` extra);
- :func:`pair_sleep_edf`, :data:`SLEEP_EDF_STAGES`: the Sleep-EDF Expanded recipe;
- :func:`import_edf`: one file to its own pair of tables (the original API);
- :func:`edf_signals`: the tables of EDF/BDF files served in place (no sample files).
"""

from . import _channels, _dataset, _edf, _in_place, _mne, _single, _sleepedf
from ._channels import *  # noqa: F403
from ._dataset import *  # noqa: F403
from ._edf import *  # noqa: F403
from ._in_place import *  # noqa: F403
from ._mne import *  # noqa: F403
from ._single import *  # noqa: F403
from ._sleepedf import *  # noqa: F403

__all__ = sorted(
    {
        *_channels.__all__,
        *_dataset.__all__,
        *_edf.__all__,
        *_in_place.__all__,
        *_mne.__all__,
        *_single.__all__,
        *_sleepedf.__all__,
    }
)
