"""Sleep-EDF Expanded (PhysioNet) layout: ``*-PSG.edf`` recordings with ``*-Hypnogram.edf``.

Sleep-EDF names a night's polysomnogram ``SC4001E0-PSG.edf`` and its hypnogram
``SC4001EC-Hypnogram.edf``: the first six characters (subject and night) match, the
last two of the stem differ. The hypnogram is an EDF+ file of annotations only, whose
texts are the Rechtschaffen & Kales stages, mapped by
[`SLEEP_EDF_STAGES`][ondabatches.importing.SLEEP_EDF_STAGES] to the stage names of the
tour (stage 4 merges into ``nrem3``, as AASM scoring does).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from types import MappingProxyType

from .._errors import SourceFileError

__all__ = ["SLEEP_EDF_STAGES", "pair_sleep_edf"]

#: Hypnogram text -> ``stage`` value (``"no_stage"`` for movement and unscored epochs).
SLEEP_EDF_STAGES = MappingProxyType(
    {
        "Sleep stage W": "wake",
        "Sleep stage 1": "nrem1",
        "Sleep stage 2": "nrem2",
        "Sleep stage 3": "nrem3",
        "Sleep stage 4": "nrem3",
        "Sleep stage R": "rem",
        "Movement time": "no_stage",
        "Sleep stage ?": "no_stage",
    }
)

_PSG = "-psg.edf"
_HYPNOGRAM = "-hypnogram.edf"


def pair_sleep_edf(files: Sequence[str]) -> list[tuple[str, str | None]]:
    """Each ``*-PSG.edf`` of ``files`` with the ``*-Hypnogram.edf`` of the same night.

    Nights match on the first six characters of the file name. A PSG without a
    hypnogram is paired with ``None``; a hypnogram without a PSG, or two for one PSG,
    is a [`SourceFileError`][ondabatches._errors.SourceFileError]. Other files are
    imported on their own.

    Examples
    --------
    >>> pair_sleep_edf(["d/SC4001E0-PSG.edf", "d/SC4001EC-Hypnogram.edf", "d/SC4002E0-PSG.edf"])
    [('d/SC4001E0-PSG.edf', 'd/SC4001EC-Hypnogram.edf'), ('d/SC4002E0-PSG.edf', None)]
    """
    hypnograms: dict[str, list[str]] = {}
    for f in files:
        name = posixpath.basename(f.replace("\\", "/"))
        if name.lower().endswith(_HYPNOGRAM):
            hypnograms.setdefault(name[:6], []).append(f)
    pairs: list[tuple[str, str | None]] = []
    used: set[str] = set()
    for f in files:
        name = posixpath.basename(f.replace("\\", "/"))
        if name.lower().endswith(_HYPNOGRAM):
            continue
        if not name.lower().endswith(_PSG):
            pairs.append((f, None))
            continue
        found = hypnograms.get(name[:6], [])
        if len(found) > 1:
            raise SourceFileError(
                f"{f}: several hypnograms match its night {name[:6]!r}: {sorted(found)}"
            )
        pairs.append((f, found[0] if found else None))
        used.update(found)
    orphans = sorted({h for hs in hypnograms.values() for h in hs} - used)
    if orphans:
        raise SourceFileError(
            f"{orphans[0]}: a hypnogram without its *-PSG.edf (same first six characters)"
            + (f", and {len(orphans) - 1} more" if len(orphans) > 1 else "")
        )
    return pairs
