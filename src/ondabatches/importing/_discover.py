"""What ``ondabatches import`` takes as input: files, folders (searched recursively),
globs and ``@list.txt`` files, local or fsspec URLs, expanded to the recordings to read
([`expand_inputs`][ondabatches.importing.expand_inputs])."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Any

from .._errors import SampleFileNotFoundError
from ..onda import filesystem_for
from ..onda._storage import is_local, storage_errors

__all__ = ["expand_inputs"]

_EDF_SUFFIXES = (".edf", ".bdf", ".rec")
# What MNE's read_raw opens, for folders and globs (a file named explicitly is always tried):
# its single-file suffixes (mne.io.read_raw's table, MNE 1.13) less the ambiguous ones
# (".eeg" is also BrainVision's data file, ".dat" Persyst's and Curry's; ".mat", ".bin",
# ".txt", ".data", ".asc" name much besides recordings) and the side files of others.
_MNE_SUFFIXES = (
    ".vhdr", ".ahdr", ".set", ".fif", ".fif.gz", ".cnt", ".gdf", ".nxe", ".sqd", ".con",
    ".lay", ".nedf", ".snirf", ".cdt", ".ns3",
)  # fmt: skip
# Recordings that are folders, read by MNE as one input: EGI, CTF, MEF3 (with pymef).
# A folder holding a NIRx header (``*.hdr`` opening with "[GeneralInfo]") is one too.
_MNE_FOLDER_SUFFIXES = (".mff", ".ds", ".mefd")
_NIRX_HEADER = b"[GeneralInfo]"


def _join(base: str, *parts: str) -> str:
    return posixpath.join(base.rstrip("/"), *parts) if "://" in base else os.path.join(base, *parts)


def _url(fs: Any, path: str, like: str) -> str:
    """``path`` on ``fs`` as a URL with the protocol of ``like`` (local paths stay paths)."""
    if is_local(fs):
        return path
    return fs.unstrip_protocol(path)


def _wanted(path: str, suffixes: tuple[str, ...]) -> bool:
    return path.lower().endswith(suffixes)


def _is_nirx(fs: Any, folder: str, names: Sequence[str] | None = None) -> bool:
    """Whether ``folder`` holds a NIRx header: a ``*.hdr`` whose first line is ``[GeneralInfo]``."""
    if names is None:
        names = [e["name"] for e in fs.ls(folder, detail=True) if e.get("type") == "file"]
    for name in names:
        if name.lower().endswith(".hdr"):
            with fs.open(name, "rb") as f:
                if f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(_NIRX_HEADER):
                    return True
    return False


def _is_recording_folder(fs: Any, path: str, folders: tuple[str, ...]) -> bool:
    return bool(folders) and (_wanted(path.rstrip("/"), folders) or _is_nirx(fs, path))


def _find(fs: Any, path: str, suffixes: tuple[str, ...], folders: tuple[str, ...]) -> list[str]:
    """Recordings under the folder ``path``: files ending in ``suffixes`` and, with
    ``folders``, recording folders (never searched inside)."""
    if not folders:
        return [p for p in sorted(fs.find(path)) if _wanted(p, suffixes)]
    entries = fs.find(path, withdirs=True, detail=True)
    children: dict[str, list[str]] = {}
    for p, info in entries.items():
        if info.get("type") == "file":
            children.setdefault(posixpath.dirname(p.rstrip("/")), []).append(p)
    recordings = [
        p.rstrip("/")
        for p, info in sorted(entries.items())
        if info.get("type") == "directory"
        and p.rstrip("/") != path.rstrip("/")
        and (_wanted(p.rstrip("/"), folders) or _is_nirx(fs, p, children.get(p.rstrip("/"), [])))
    ]
    inside = tuple(f"{r}/" for r in recordings)
    kept = [r for r in recordings if not r.startswith(tuple(i for i in inside if i != f"{r}/"))]
    files = [
        p
        for p, info in entries.items()
        if info.get("type") == "file" and _wanted(p, suffixes) and not p.startswith(inside)
    ]
    return sorted({*kept, *files})


def expand_inputs(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    suffixes: tuple[str, ...] = _EDF_SUFFIXES,
    folders: tuple[str, ...] = (),
) -> list[str]:
    """The recordings named by ``inputs``: files, folders (searched recursively for
    files ending in ``suffixes``), glob patterns, and ``@list.txt`` files of inputs (one
    per line), local or any fsspec URL; sorted, without repeats.

    With ``folders`` (suffixes of recordings that are folders, as EGI's ``.mff``), such
    a folder, and any folder holding a NIRx header (a ``*.hdr`` opening with
    ``[GeneralInfo]``), is one input, named or found: it is never searched inside.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("b.edf", "a.EDF", "notes.txt"): _ = (d / n).write_bytes(b"")
    >>> [pathlib.Path(p).name for p in expand_inputs(d)]
    ['a.EDF', 'b.edf']
    >>> (d / "c.mff").mkdir(); _ = (d / "c.mff" / "signal1.bin").write_bytes(b"")
    >>> [pathlib.Path(p).name for p in expand_inputs(d, (".edf",), folders=(".mff",))]
    ['a.EDF', 'b.edf', 'c.mff']
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found: dict[str, None] = {}
    for item in items:
        text = os.fspath(item)
        if text.startswith("@"):
            fs, path = filesystem_for(text[1:])
            with storage_errors(text[1:]):
                lines = fs.cat_file(path).decode().splitlines()
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
            found.update(dict.fromkeys(expand_inputs(entries, suffixes, folders)))
            continue
        fs, path = filesystem_for(text)
        if is_local(fs):
            path = os.path.abspath(path)
        with storage_errors(text):
            if any(c in path for c in "*?["):
                matches = [
                    p.rstrip("/")
                    for p in sorted(fs.glob(path))
                    if fs.isfile(p) or (fs.isdir(p) and _is_recording_folder(fs, p, folders))
                ]
                if not matches:
                    raise SampleFileNotFoundError(f"no file matches {text}")
                found.update(dict.fromkeys(_url(fs, p, text) for p in matches))
            elif fs.isdir(path):
                if _is_recording_folder(fs, path, folders):
                    found[_url(fs, path.rstrip("/"), text)] = None
                else:
                    files = _find(fs, path, suffixes, folders)
                    found.update(dict.fromkeys(_url(fs, p, text) for p in files))
            elif fs.isfile(path):
                found[_url(fs, path, text)] = None
            else:
                raise SampleFileNotFoundError(f"input not found: {text}")
    return sorted(found)


def _stem(url: str) -> str:
    name = posixpath.basename(url.rstrip("/"))
    for suffix in (".fif.gz", *_EDF_SUFFIXES, *_MNE_SUFFIXES, *_MNE_FOLDER_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]
