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


def _sha256_of(path: str) -> str:
    """SHA-256 of a file's bytes; of a folder recording, of its files' relative paths and bytes."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for rel, full in _folder_files(path):
            digest.update(f"{rel}\0{os.path.getsize(full)}\0".encode())
            _update(digest, full)
        return digest.hexdigest()
    _update(digest, path)
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
            elif _wanted(name, _EDF_SUFFIXES):
                siblings = [path]
            else:
                # BrainVision (.vhdr + .eeg + .vmrk), EEGLAB (.set + .fdt): the files
                # sharing the stem come along.
                folder = posixpath.dirname(path)
                siblings = [
                    e["name"] for e in fs.ls(folder, detail=True)
                    if posixpath.basename(e["name"]).startswith(_stem(name) + ".")
                    and e.get("type") == "file"
                ] or [path]  # fmt: skip
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
