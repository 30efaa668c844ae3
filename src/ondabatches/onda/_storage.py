"""Where sample files live: local paths and any fsspec URL (``s3://``, ``gs://``, ...).

[`filesystem_for`][ondabatches.onda.filesystem_for] turns a path or URL into an fsspec
filesystem and a path on it. Options for a protocol (an S3 endpoint, credentials, ...)
come, lowest priority first, from the environment that the backend itself reads
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... are honoured by botocore), from
[`set_storage_options`][ondabatches.onda.set_storage_options], and from the
``storage_options`` of one call.

How worker processes get the configuration
------------------------------------------
fsspec's own configuration (``fsspec.config.conf[protocol]``, which fsspec fills from
its config files and from ``FSSPEC_<PROTOCOL>`` (JSON) and ``FSSPEC_<PROTOCOL>_<OPTION>``
environment variables when it is imported) applies to every filesystem it makes. The
options of [`set_storage_options`][ondabatches.onda.set_storage_options] go over it:
they are part of the process's [`Settings`][ondabatches.onda.Settings], which the
Batcher passes to its worker processes and Ray actors as they start. Processes that
do not come from a Batcher need them forwarded: ``ray.init(runtime_env={"env_vars":
storage_env()})``, or ``env=`` of a ``subprocess``. Filesystem instances are fsspec's
too (its instance cache, one per process and options, renewed after a fork).

What ondabatches adds to fsspec is only what it lacks: the S3 timeouts, retries and
connection pool below, errors mapped to ours naming the URL, atomic writes, descriptor
caching for local reads, and the allow-list of
[`allowed_storage`][ondabatches.onda.allowed_storage]. (``ONDABATCHES_STORAGE_OPTIONS``,
the JSON variable of ondabatches 0.1, is still read into the settings, with a
``DeprecationWarning`` that names ``FSSPEC_<PROTOCOL>``.)

S3 client defaults
------------------
Unless the options say otherwise, ``s3://`` filesystems get the botocore settings in
[`S3_CONFIG_DEFAULTS`][ondabatches.onda.S3_CONFIG_DEFAULTS] (through s3fs's
``config_kwargs``): bounded connect and read timeouts, so that a request that hangs
fails and is retried instead of blocking a batch forever; botocore's ``"standard"``
retry mode, which retries HTTP 500/502/503/504, throttling, connection resets and
timeouts with a short jittered backoff (unless ``AWS_RETRY_MODE`` or
``AWS_MAX_ATTEMPTS`` is set, which botocore then honours); and a connection pool as
large as the reads that one batch issues at once. s3fs retries connection errors and
truncated bodies on its own as well (5 tries). Any key given in ``config_kwargs``
replaces the default of that key::

    set_storage_options("s3", config_kwargs={"read_timeout": 5,
                                             "retries": {"mode": "standard", "max_attempts": 8}})

Errors from storage backends (botocore, aiohttp, ``OSError`` from fsspec) are raised
again as [`StorageError`][ondabatches._errors.StorageError], and a missing file as
[`SampleFileNotFoundError`][ondabatches._errors.SampleFileNotFoundError], naming the URL.
"""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, BinaryIO

import fsspec
import fsspec.config
from fsspec.implementations.local import LocalFileSystem

from .._errors import (
    ArgumentError,
    MissingDependencyError,
    OndaBatchesError,
    SampleFileError,
    SampleFileNotFoundError,
    StorageError,
    UntrustedPathError,
)
from ._settings import (
    ALLOWED_STORAGE_ENV,
    STORAGE_OPTIONS_ENV,
    current_settings,
    protocol_name,
    use_settings,
)

__all__ = [
    "ALLOWED_STORAGE_ENV",
    "S3_CONFIG_DEFAULTS",
    "STORAGE_OPTIONS_ENV",
    "allowed_storage",
    "filesystem_for",
    "get_storage_options",
    "set_storage_options",
    "storage_env",
]

#: botocore ``Config`` settings that ``s3://`` filesystems get unless their options set
#: the key in ``config_kwargs`` (see the module documentation).
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 30,
    "max_pool_connections": 64,
    "retries": {"mode": "standard", "max_attempts": 5},
}
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
# Set, these make botocore choose the retries itself.
_RETRY_ENV = ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")

# The pip extra that brings each protocol's fsspec implementation.
_EXTRAS = {"s3": "s3", "s3a": "s3"}

# Exceptions raised from these packages are storage failures, whatever their class.
_FOREIGN_PACKAGES = frozenset(
    {
        "botocore",
        "aiobotocore",
        "aiohttp",
        "s3fs",
        "fsspec",
        "gcsfs",
        "adlfs",
        "urllib3",
        "requests",
    }
)

# Environment variables that configure storage and are no setting of ours (botocore
# and fsspec read them); storage_env forwards them with the settings.
_FORWARDED_ENV_PREFIXES = ("AWS_", "FSSPEC_")


def get_storage_options(protocol: str | None = None) -> dict[str, Any]:
    """The options ``protocol://`` filesystems get, or those of every protocol
    (``{protocol: options}``).

    fsspec's configuration (its config files and ``FSSPEC_*`` variables,
    ``fsspec.config.conf``) with the options of
    [`set_storage_options`][ondabatches.onda.set_storage_options] (the settings'
    ``storage_options``) over it, key by key. Returns a copy.

    Examples
    --------
    >>> set_storage_options("memory", skip_instance_cache=False)
    >>> get_storage_options("memory")
    {'skip_instance_cache': False}
    >>> set_storage_options("memory")  # forget them again
    """
    ours = current_settings().storage_options
    if protocol is None:
        return {p: get_storage_options(p) for p in sorted({*fsspec.config.conf, *ours})}
    return copy.deepcopy({**fsspec.config.conf.get(protocol, {}), **ours.get(protocol, {})})


def set_storage_options(protocol: str, **options: Any) -> None:
    """Set the fsspec options used for every ``protocol://`` URL; no options clears them.

    They replace that protocol's ``storage_options`` in the process's
    [`Settings`][ondabatches.onda.Settings] (see
    [`use_settings`][ondabatches.onda.use_settings]), which the Batcher's worker
    processes and Ray actors receive; so they must be JSON-serializable. fsspec's own
    configuration is left as it is; the options go over it.

    Examples
    --------
    >>> set_storage_options("s3", client_kwargs={"endpoint_url": "http://127.0.0.1:9000"})
    >>> get_storage_options("s3")["client_kwargs"]
    {'endpoint_url': 'http://127.0.0.1:9000'}
    >>> storage_env()["FSSPEC_S3"]  # for processes that do not come from a Batcher
    '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}'
    >>> set_storage_options("s3")
    """
    if not isinstance(protocol, str) or not protocol:
        raise ArgumentError(f"protocol must be a non-empty string, got {protocol!r}")
    all_options = dict(current_settings().storage_options)
    if options:
        all_options[protocol] = options
    else:
        all_options.pop(protocol, None)
    use_settings(storage_options=all_options)


def storage_env() -> dict[str, str]:
    """The environment variables that give a process started from this one its storage
    configuration and settings (for processes that do not come from a Batcher).

    Every ``FSSPEC_*`` and ``AWS_*`` variable set in this process, with
    [`Settings.to_env`][ondabatches.onda.Settings.to_env] of the current settings over
    them: ``FSSPEC_<PROTOCOL>`` for the options of
    [`set_storage_options`][ondabatches.onda.set_storage_options] (merged with fsspec's
    configuration of that protocol), the allow-list of
    [`allowed_storage`][ondabatches.onda.allowed_storage], the node-local cache
    (``ONDABATCHES_CACHE``) and the other ``ONDABATCHES_*`` settings that are not the
    defaults.

    Examples
    --------
    >>> env = storage_env()  # e.g. ray.init(runtime_env={"env_vars": env})
    >>> all(k.startswith(("AWS_", "FSSPEC_", "ONDABATCHES_")) for k in env)
    True
    """
    settings = current_settings()
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV_PREFIXES)}
    env.update(settings.to_env())
    for protocol in settings.storage_options:
        env[f"FSSPEC_{protocol.upper()}"] = json.dumps(
            get_storage_options(protocol), sort_keys=True
        )
    return env


def _new_filesystem(protocol: str, options: dict[str, Any]) -> fsspec.AbstractFileSystem:
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 'ondabatches[{extra}]'" if extra else str(exc)
        raise MissingDependencyError(
            f"reading {protocol}:// URLs needs an fsspec backend that is not installed: {hint}"
        ) from exc
    except ValueError as exc:
        raise StorageError(f"no storage backend for protocol {protocol!r}: {exc}") from exc


_LOCAL = LocalFileSystem()


class allowed_storage:  # noqa: N801 - used like a function, as contextlib's helpers are
    """Allow sample files only from these storage protocols and path prefixes.

    The way to read tables you did not write: a table's ``file_path`` may be any fsspec
    URL or local path, so a table from an untrusted source could make workers fetch
    internal URLs (a cloud metadata endpoint) or read local files into batches. Once
    set, every path that ondabatches opens (sample files, stored labels) must use one
    of ``protocols`` (``"file"`` for local paths) and start with one of ``prefixes``;
    any other is an [`UntrustedPathError`][ondabatches._errors.UntrustedPathError],
    before anything is opened. Local paths are compared after resolving symbolic links
    and ``..``; URLs with ``..`` segments or chained protocols (``a::b``) are refused.

    The allow-list is part of the process's [`Settings`][ondabatches.onda.Settings]
    (``allowed_protocols``, ``allowed_prefixes``), so the Batcher's worker processes and
    Ray actors started afterwards enforce it too; it can also be set in the environment
    variable [`ALLOWED_STORAGE_ENV`][ondabatches.onda.ALLOWED_STORAGE_ENV], read once.
    Calling ``allowed_storage(...)`` sets it for the process; used as a context
    manager, it restores the previous allow-list on exit. At least one of ``protocols``
    and ``prefixes`` must be given: ``allowed_storage()`` would allow everything, so it
    is an ``ArgumentError``. Lifting the allow-list is said out loud:
    ``use_settings(allowed_protocols=None, allowed_prefixes=None)``.

    Parameters
    ----------
    protocols:
        Allowed protocols, e.g. ``["s3"]``, or ``None`` for any.
    prefixes:
        Allowed prefixes of the full path or URL, e.g. ``["s3://my-bucket/eeg/",
        "/data/onda/"]``, or ``None`` for any.

    Examples
    --------
    >>> with allowed_storage(protocols=["file"], prefixes=["/data/onda/"]):
    ...     filesystem_for("/etc/passwd")
    Traceback (most recent call last):
    ...
    ondabatches._errors.UntrustedPathError: /etc/passwd is outside the allowed storage ...
    """

    def __init__(
        self, protocols: Iterable[str] | None = None, prefixes: Iterable[str] | None = None
    ):
        if protocols is None and prefixes is None:
            raise ArgumentError(
                "allowed_storage() needs protocols= or prefixes= (or both): with neither "
                "it would allow every protocol and path. To lift the allow-list, say so: "
                "use_settings(allowed_protocols=None, allowed_prefixes=None)"
            )
        self._previous = current_settings()
        use_settings(allowed_protocols=protocols, allowed_prefixes=prefixes)

    def __enter__(self) -> allowed_storage:
        return self

    def __exit__(self, *exc: object) -> None:
        # Only the allow-list comes back: other settings changed in the block stay.
        use_settings(
            allowed_protocols=self._previous.allowed_protocols,
            allowed_prefixes=self._previous.allowed_prefixes,
        )


@lru_cache(maxsize=8)
def _allow_list(
    protocols: tuple[str, ...] | None, prefixes: tuple[str, ...] | None
) -> tuple[frozenset[str] | None, tuple[str, ...] | None]:
    # Local prefixes resolved once per allow-list (symbolic links, ..).
    return (
        None if protocols is None else frozenset(protocols),
        None
        if prefixes is None
        else tuple(
            _normalized(p, local=protocol_name(fsspec.core.split_protocol(p)[0]) == "file")
            for p in prefixes
        ),
    )


def _normalized(url: str, *, local: bool) -> str:
    if local:
        path = fsspec.core.split_protocol(url)[1]
        resolved = os.path.realpath(path)
        # A prefix that names a folder keeps its trailing separator: "/data/a" must not
        # allow "/data/ab".
        return resolved + os.sep if path.endswith(os.sep) and resolved != os.sep else resolved
    return url


def check_allowed(url: str) -> None:
    """Refuse ``url`` unless the allow-list of the settings (see
    [`allowed_storage`][ondabatches.onda.allowed_storage]) allows it (a no-op when unset)."""
    settings = current_settings()
    if not settings.allowed:
        return
    protocols, prefixes = _allow_list(settings.allowed_protocols, settings.allowed_prefixes)
    protocol = protocol_name(fsspec.core.split_protocol(url)[0])
    allowed = f"protocols {'any' if protocols is None else sorted(protocols)}, prefixes " + (
        "any" if prefixes is None else f"{list(prefixes)}"
    )
    if "::" in url:
        why = "chained protocols are not allowed"
    elif protocol != "file" and any(part == ".." for part in url.split("/")):
        why = "'..' segments are not allowed"
    elif protocols is not None and protocol not in protocols:
        why = f"protocol {protocol!r} is not allowed"
    else:
        target = _normalized(url, local=protocol == "file")
        if prefixes is None or any(
            target == p.rstrip(os.sep) or target.startswith(p) for p in prefixes
        ):
            return
        why = f"{target} is under none of the allowed prefixes"
    raise UntrustedPathError(
        f"{url} is outside the allowed storage ({why}; allowed: {allowed}; see "
        f"ondabatches.onda.allowed_storage, {ALLOWED_STORAGE_ENV})"
    )


def filesystem_for(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem that holds ``path``, and the path on it (protocol stripped).

    Filesystems come from fsspec, which applies its configuration (see
    [`set_storage_options`][ondabatches.onda.set_storage_options]) and caches instances
    per process and options. Local paths (and ``file://``) give a
    `fsspec.implementations.local.LocalFileSystem`.

    Examples
    --------
    >>> fs, p = filesystem_for("file:///tmp/a.lpcm")
    >>> type(fs).__name__, p
    ('LocalFileSystem', '/tmp/a.lpcm')
    """
    url = os.fspath(path)
    check_allowed(url)
    if not storage_options:
        local = _local_path(url)
        if local is not None:
            return _LOCAL, local
    protocol, _ = fsspec.core.split_protocol(url)
    protocol = protocol or "file"
    # fsspec applies its configuration (conf[protocol]) itself; the S3 defaults go
    # under it, so that configured or given options win key by key.
    options = {**current_settings().storage_options.get(protocol, {}), **(storage_options or {})}
    if protocol in _S3_PROTOCOLS:
        options = _with_s3_defaults({**fsspec.config.conf.get(protocol, {}), **options})
    fs = _new_filesystem(protocol, options)
    return fs, fs._strip_protocol(url)


def _local_path(url: str) -> str | None:
    # A relative path is made absolute against the working directory of the moment,
    # which may change between calls: only other URLs are cached.
    if "://" not in url and not os.path.isabs(url):
        return _LOCAL._strip_protocol(url)
    return _cached_local_path(url)


@lru_cache(maxsize=4096)
def _cached_local_path(url: str) -> str | None:
    # Parsed once per URL: an absolute path's or URL's protocol and stripped form never
    # change (and a pure function of the string is the same in every process).
    protocol, _ = fsspec.core.split_protocol(url)
    return _LOCAL._strip_protocol(url) if protocol in (None, "file", "local") else None


def _with_s3_defaults(options: dict[str, Any]) -> dict[str, Any]:
    config = dict(S3_CONFIG_DEFAULTS)
    if any(name in os.environ for name in _RETRY_ENV):
        del config["retries"]
    config.update(options.get("config_kwargs") or {})
    return {**options, "config_kwargs": config}


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk, where ``os`` calls are the fast path."""
    return isinstance(fs, LocalFileSystem)


def open_regular(path: str) -> tuple[io.FileIO, os.stat_result]:
    """Open a local file for unbuffered reading, refusing anything but a regular file.

    A FIFO given as a ``file_path`` would block its reader forever (in ``open`` itself,
    waiting for a writer), and a device such as ``/dev/zero`` never ends: opening
    without blocking and checking the opened file's type (not the path's, which could
    change in between) turns both into a
    [`SampleFileError`][ondabatches._errors.SampleFileError]. Returns the file and its
    ``fstat``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        return io.FileIO(fd, "rb", closefd=True), st
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str, st: os.stat_result) -> None:
    """Refuse ``path`` (whose ``os.stat`` is ``st``) unless it is a regular file."""
    if stat.S_ISDIR(st.st_mode):  # what open() would say (a StorageError, as before)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(st.st_mode):
        raise SampleFileError(f"{path} is not a regular file ({_file_kind(st.st_mode)})")


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return f"mode {mode:o}"


def _is_foreign(exc: BaseException) -> bool:
    return type(exc).__module__.partition(".")[0] in _FOREIGN_PACKAGES


class storage_errors:  # noqa: N801 - a context manager used like a function
    """Raise storage failures inside the block as our errors naming ``url`` (and ``context``).

    A class rather than a generator: it wraps every window read.
    """

    __slots__ = ("action", "context", "url")

    def __init__(self, url: str, action: str = "read", context: str = ""):
        self.url, self.action, self.context = url, action, context

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, OndaBatchesError) or not isinstance(exc, Exception):
            return False
        url, context = self.url, self.context
        if isinstance(exc, FileNotFoundError):
            raise SampleFileNotFoundError(f"sample file not found: {url}{context}") from exc
        if isinstance(exc, OSError) or _is_foreign(exc):
            raise StorageError(
                f"cannot {self.action} {url}{context}: {type(exc).__name__}: {exc}"
            ) from exc
        return False


@contextmanager
def atomic_writer(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[BinaryIO]:
    """A binary file whose content appears at ``path`` all at once, or not at all.

    Locally it is a temporary file in the same folder, renamed over ``path`` once
    complete. Elsewhere it is a local temporary file uploaded with one ``put`` when
    complete (a put of an S3 object is atomic). If the block raises, nothing is
    left behind.
    """
    if is_local(fs):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp_path = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        # os.open honours the umask (tempfile would make the final file owner-only).
        file: BinaryIO = os.fdopen(
            os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"
        )
    else:
        file = tempfile.NamedTemporaryFile(
            prefix="ondabatches-upload-", suffix=".tmp", delete=False
        )
        tmp_path = file.name
    try:
        with file:
            yield file
            if is_local(fs):
                file.flush()
                os.fsync(file.fileno())
        if is_local(fs):
            os.replace(tmp_path, path)
        else:
            fs.put_file(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
