"""Names of shared-memory segments, and sweeping those of dead processes.

A segment's name carries the process that made it (its pid and a tag of its start
time), so that `sweep_dead_segments` can unlink the segments that a killed process left
in ``/dev/shm`` without touching those of live ones, on this machine or another that
shares the folder.
"""

from __future__ import annotations

import functools
import os
import secrets

__all__: list[str] = []


# Where Linux keeps POSIX shared memory (a tmpfs).
_SHM_DIR = "/dev/shm"


def segment_exists(name: str) -> bool:
    """Whether a shared-memory segment of this name can be opened here."""
    import _posixshmem

    try:
        os.close(_posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600))
    except OSError:  # gone, or not ours to open
        return False
    return True


def new_segment_name() -> str:
    """A fresh, unguessable segment name that tells its owner: this process's id, and
    its start time and pid namespace (so that a sweep can tell the owner is gone even
    if its id was reused, see `sweep_dead_segments`)."""
    return f"{_PREFIX}{os.getpid()}_{_owner_tag()}_{secrets.token_hex(8)}"


_PREFIX = "ondabatches_"


def _process_tag(pid: int | str) -> str | None:
    """``"<start time>.<pid namespace>"`` of a process, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Field 22, the start time in clock ticks since boot, counting after the
            # command name (which may hold spaces and parentheses).
            start = f.read().rsplit(b")", 1)[1].split()[19].decode()
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except (OSError, IndexError):
        return None
    return f"{start}.{namespace}"


@functools.lru_cache(maxsize=4)
def _tag_of(pid: int) -> str:
    return _process_tag(pid) or "0.0"


def _owner_tag() -> str:
    return _tag_of(os.getpid())  # keyed by pid: a forked child has its own


def _owner_gone(pid: int, tag: str) -> bool:
    """Whether the process that made a segment named with ``pid`` and ``tag`` is gone.

    Only a definite answer counts: the tag must say which pid namespace the owner
    lived in, and that must be ours (a process elsewhere cannot be looked up here).
    """
    start, _, namespace = tag.partition(".")
    if start == "0" or namespace != _owner_tag().partition(".")[2]:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, and another user's: its start time tells
        pass
    current = _process_tag(pid)
    return current is not None and current != tag  # the id was reused


def sweep_dead_segments() -> list[str]:
    """Unlink the segments in ``/dev/shm`` that ondabatches processes left when they died.

    A manager killed together with its workers and its resource tracker (a cgroup OOM
    kill, a scheduler killing the whole tree) cannot unlink its segments, so each new
    pool sweeps: a segment is removed only if it belongs to this user, its name is one
    `new_segment_name` made, and its owner is certainly gone (no such process in
    this pid namespace, or one with another start time). Segments of live processes,
    other users', or of older names are left alone. Returns the names removed.
    """
    import _posixshmem

    removed = []
    try:
        entries = list(os.scandir(_SHM_DIR))
    except OSError:  # pragma: no cover - no /dev/shm (macOS)
        return removed
    uid = os.getuid()
    for entry in entries:
        parts = entry.name.split("_")
        if len(parts) != 4 or not entry.name.startswith(_PREFIX) or not parts[1].isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:  # removed meanwhile
            continue
        if _owner_gone(int(parts[1]), parts[2]):
            try:
                _posixshmem.shm_unlink("/" + entry.name)
            except OSError:  # another sweeper was faster
                continue
            removed.append(entry.name)
    return removed
