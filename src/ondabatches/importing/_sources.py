"""The files an import reads: their content digests (a recording's id), a local copy
of a remote file for the readers that need a path, and the readers themselves."""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from typing import Any

from .._errors import SampleFileNotFoundError
from ..onda import filesystem_for
from ..onda._storage import is_local, storage_errors
from ._channels import ChannelMap
from ._discover import _EDF_SUFFIXES, _stem, _wanted

#: Header files whose recording goes on in files beside them that share their stem
#: (BrainVision .vhdr/.ahdr + .eeg + .vmrk, EEGLAB .set + .fdt, Persyst .lay + .dat,
#: Curry .cdt + .cdt.dpa): a copy brings those along, and the recording's digest and
#: rerun key cover them, so that two headers alike (a template) are two recordings and
#: new data under an old header is imported again.
_SIDECAR_SUFFIXES = (".vhdr", ".ahdr", ".set", ".lay", ".cdt")


def companions(fs: Any, path: str) -> list[str]:
    """The files of the recording whose (header) file is ``path`` on ``fs``, ``path``
    first: itself alone, or with its side files (`_SIDECAR_SUFFIXES`), sorted."""
    name = posixpath.basename(path.rstrip("/"))
    if not _wanted(name, _SIDECAR_SUFFIXES):
        return [path]
    prefix = _stem(name) + "."
    others = sorted(
        e["name"] for e in fs.ls(posixpath.dirname(path) or ".", detail=True)
        if e.get("type") == "file" and posixpath.basename(e["name"]).startswith(prefix)
        and posixpath.basename(e["name"]) != name
    )  # fmt: skip
    return [path, *others]


def _sha256_of(path: str) -> str:
    """SHA-256 of a file's bytes; of a folder recording, or of a header with its side
    files (`companions`), of its files' relative paths, sizes and bytes."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        files = _folder_files(path)
    else:
        files = companions(filesystem_for(path)[0], path)
        if len(files) == 1:  # one file: the digest of its bytes, as before side files
            _update(digest, path)
            return digest.hexdigest()
        files = [(os.path.basename(f), f) for f in files]
    for rel, full in files:
        digest.update(f"{rel}\0{os.path.getsize(full)}\0".encode())
        _update(digest, full)
    return digest.hexdigest()


def _update(digest: Any, path: str) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def _folder_files(folder: str) -> list[tuple[str, str]]:
    """``(relative path with "/", full path)`` of every file under a local folder, sorted."""
    out = []
    for root, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(root, name)
            out.append((os.path.relpath(full, folder).replace(os.sep, "/"), full))
    return sorted(out)


@contextlib.contextmanager
def _local_copy(url: str) -> Iterator[str]:
    """A local path holding ``url``'s bytes: the file itself, or a temporary download."""
    fs, path = filesystem_for(url)
    if is_local(fs):
        if not os.path.exists(path):
            raise SampleFileNotFoundError(f"file to import not found: {url}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ondabatches-import-") as tmp:
        name = posixpath.basename(path.rstrip("/"))
        with storage_errors(url):
            if fs.isdir(path):
                # A folder recording (.mff, .ds, .mefd, NIRx) comes whole.
                root = path.rstrip("/")
                os.makedirs(os.path.join(tmp, name))
                for remote in sorted(fs.find(root)):
                    local = os.path.join(tmp, name, *posixpath.relpath(remote, root).split("/"))
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    fs.get_file(remote, local)
                siblings = []
            else:
                siblings = companions(fs, path)  # a header's side files come along
            for sibling in siblings:
                fs.get_file(sibling, os.path.join(tmp, posixpath.basename(sibling)))
        yield os.path.join(tmp, name)


def _absolute(url: str) -> str:
    """``url`` as a table written elsewhere can find it: a local path made absolute."""
    return url if "://" in url else os.path.abspath(url)


def _open_source(path: str, name: str, reader: str, channel_map: ChannelMap) -> Any:
    if reader == "edf" or (reader == "auto" and _wanted(name, _EDF_SUFFIXES)):
        from ._edf import EdfSource

        return EdfSource(path, channel_map, name=name)
    from ._mne import MneSource

    return MneSource(path, channel_map, name=name)


def _read_annotation_file(path: str, name: str) -> list[tuple[float, float, str]]:
    from ._edf import EdfSource

    source = EdfSource(path, name=name)
    try:
        return source.annotations()
    finally:
        source.close()
