"""EDF and BDF served in place: the Onda tables of files that stay as they are.

[`edf_signals`][ondabatches.importing.edf_signals] gives, for EDF/EDF+/BDF files (local
or any fsspec URL), the two tables that
[`import_dataset`][ondabatches.importing.import_dataset] would write, except that no
sample file is written: each signal's ``file_format`` is ``"edf"`` or ``"bdf"`` and its
``file_path`` the source file's absolute path or URL with a fragment naming the header
signals it covers (``/data/night.edf#signals=0,1,2``), read window by window by
[`EdfFormat`][ondabatches.onda.EdfFormat]. Recording and annotation ids, channels,
encodings, spans, annotations and start times are the import's own (the same code makes
them), so a window reads the same values, bit for bit, as from the imported copy.
``ondabatches import --in-place`` does the same for a whole dataset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .._errors import ArgumentError
from ..onda import annotations_table, signals_table
from ._channels import ChannelMap
from ._convert import PAST_END_POLICIES, convert_source, recording_id

__all__ = ["edf_signals"]


def edf_signals(
    paths_or_urls: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    channel_map: ChannelMap | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    annotations_past_end: str = "error",
) -> tuple[pa.Table, pa.Table]:
    """The ``onda.signal@2`` and ``onda.annotation@1`` tables of EDF/BDF files served in place.

    Each file is read once, whole (its SHA-256 makes the recording id, and EDF+
    annotations are spread over every data record); a remote file is downloaded to a
    temporary folder for that. Serving windows then reads only their data records.

    Parameters
    ----------
    paths_or_urls:
        One file or several (local paths or fsspec URLs), in the tables' order.
    channel_map, annotations_past_end:
        As for [`import_dataset`][ondabatches.importing.import_dataset].

    Raises
    ------
    SourceFileError
        A file is unreadable, truncated or discontinuous (EDF+D), or its annotations lie
        outside it; the message names it.

    Examples
    --------
    >>> import pyedflib.data
    >>> signals, annotations = edf_signals(pyedflib.data.get_generator_filename())
    >>> signals.column("file_format").to_pylist()
    ['edf']
    >>> signals.column("file_path")[0].as_py().rpartition("/")[2]
    'test_generator.edf#signals=0,1,2,3,4,5,6,7,8,9,10'
    >>> annotations.num_rows
    2
    """
    from ._sources import _absolute, _local_copy, _open_source, _sha256_of

    if annotations_past_end not in PAST_END_POLICIES:
        raise ArgumentError(
            f"annotations_past_end must be one of {PAST_END_POLICIES}, got {annotations_past_end!r}"
        )
    if isinstance(paths_or_urls, (str, os.PathLike)):
        paths_or_urls = [paths_or_urls]
    cmap = ChannelMap.from_value(channel_map)
    signal_parts, annotation_parts = [], []
    for item in paths_or_urls:
        url = _absolute(os.fspath(item))
        with _local_copy(url) as local:
            digest = _sha256_of(local)
            source = _open_source(local, url, "edf", cmap)
            try:
                signals, annotations, _ = convert_source(
                    source,
                    "",
                    "",
                    recording_id(digest),
                    annotation_seed=f"{digest}:",
                    annotations_past_end=annotations_past_end,
                    source_file=url,
                    in_place=(url, local),
                )
            finally:
                source.close()
        signal_parts.append(signals)
        annotation_parts.append(annotations)
    return (
        signals_table(pa.concat_tables(signal_parts, promote_options="permissive")),
        annotations_table(pa.concat_tables(annotation_parts, promote_options="permissive")),
    )
