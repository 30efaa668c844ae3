"""The Onda format: time spans, sample metadata and matrices, tables, sample files and storage."""

# Each private module lists its public names in __all__; they are gathered here.
# (Curated and checked by tests/test_exported_members.py.)
from . import (
    _cache,
    _formats,
    _io,
    _samples,
    _settings,
    _signal,
    _storage,
    _table_files,
    _tables,
    _timespan,
)
from ._cache import *  # noqa: F403
from ._formats import *  # noqa: F403
from ._io import *  # noqa: F403
from ._samples import *  # noqa: F403
from ._settings import *  # noqa: F403
from ._signal import *  # noqa: F403
from ._storage import *  # noqa: F403
from ._table_files import *  # noqa: F403
from ._tables import *  # noqa: F403
from ._timespan import *  # noqa: F403

__all__ = sorted(
    {
        *_cache.__all__,
        *_formats.__all__,
        *_io.__all__,
        *_samples.__all__,
        *_settings.__all__,
        *_signal.__all__,
        *_storage.__all__,
        *_table_files.__all__,
        *_tables.__all__,
        *_timespan.__all__,
    }
)
