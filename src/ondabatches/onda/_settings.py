"""The process's settings: one frozen value, read from the environment once.

[`Settings`][ondabatches.onda.Settings] holds everything that configures ondabatches
in a process and that its workers must agree on: storage options per protocol, the
allow-list of [`allowed_storage`][ondabatches.onda.allowed_storage], the decode
kernels, the node-local cache, the shared-memory ceiling and the limits (reads in
flight per batch, sample files held open, the length of a batch state's JSON). The
first time anything asks for them
([`current_settings`][ondabatches.onda.current_settings]), they are read from the
``ONDABATCHES_*`` environment variables (`Settings.from_env`); after that the
environment is not read again. [`use_settings`][ondabatches.onda.use_settings] replaces
them (for the process, or for a ``with`` block), and the older setters
([`set_storage_options`][ondabatches.onda.set_storage_options],
[`set_cache`][ondabatches.onda.set_cache], [`allowed_storage`][ondabatches.onda.allowed_storage])
are thin wrappers on it.

Workers get the settings as an argument, not through the environment: the Batcher's
worker processes and Ray actors receive the settings of the process that started them
and install them before their first batch (a restarted worker gets the same ones);
worker threads share their process's. For processes started some other way, forward
[`storage_env`][ondabatches.onda.storage_env] (the variables that reproduce the
settings) or pass the object itself (it pickles, and ``to_dict`` gives JSON).
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from .._errors import ArgumentError, ArgumentTypeError, CacheError, SizeLimitError, StorageError

__all__ = ["Settings", "current_settings", "use_settings"]

#: The environment variable of ondabatches 0.1's storage options (JSON, all protocols).
#: Deprecated: still read, with a warning; fsspec's ``FSSPEC_<PROTOCOL>`` replaces it.
STORAGE_OPTIONS_ENV = "ONDABATCHES_STORAGE_OPTIONS"

#: The environment variable holding
#: [`allowed_storage`][ondabatches.onda.allowed_storage]'s allow-list as JSON:
#: ``{"protocols": [...], "prefixes": [...]}`` (either may be left out).
ALLOWED_STORAGE_ENV = "ONDABATCHES_ALLOWED_STORAGE"

#: The environment variable that turns the cache on in every process: ``/path:SIZE``.
CACHE_ENV = "ONDABATCHES_CACHE"

#: The environment variable that chooses the decode kernels: ``auto`` or ``numpy``.
KERNELS_ENV = "ONDABATCHES_KERNELS"

#: The environment variable that caps a batch's segment, in bytes (default: the size of
#: the whole shared-memory filesystem, which no segment can outgrow).
MAX_SEGMENT_ENV = "ONDABATCHES_MAX_SEGMENT_BYTES"

#: The environment variable of the most reads of one batch in flight at once.
MAX_CONCURRENT_READS_ENV = "ONDABATCHES_MAX_CONCURRENT_READS"

#: The environment variable of the most sample files a process keeps open.
MAX_OPEN_ENV = "ONDABATCHES_MAX_OPEN"

#: The environment variable of the longest batch state JSON that is parsed, in characters.
MAX_STATE_JSON_ENV = "ONDABATCHES_MAX_STATE_JSON"

#: The environment variable of the most batches a worker process materializes at once.
WORKER_TASKS_ENV = "ONDABATCHES_WORKER_TASKS"

#: The defaults of the limits.
DEFAULT_MAX_CONCURRENT_READS = 32
DEFAULT_MAX_OPEN = 64
DEFAULT_MAX_STATE_JSON = 1 << 20

#: The limits: field -> (its environment variable, its default, the least and the most
#: it may be).
LIMITS: Mapping[str, tuple[str, int, int, int]] = MappingProxyType(
    {
        "max_concurrent_reads": (MAX_CONCURRENT_READS_ENV, DEFAULT_MAX_CONCURRENT_READS, 1, 1024),
        "max_open": (MAX_OPEN_ENV, DEFAULT_MAX_OPEN, 1, 1 << 16),
        "max_state_json": (MAX_STATE_JSON_ENV, DEFAULT_MAX_STATE_JSON, 1 << 10, 1 << 30),
        "worker_tasks": (WORKER_TASKS_ENV, 1, 1, 16),
    }
)

_KERNELS = ("auto", "numpy")
_DEFAULT_CACHE_BYTES = 10 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str = CACHE_ENV) -> int:
    """``"512M"`` -> 536870912; plain digits are bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise CacheError(f"{what}: cannot read a size from {text!r} (e.g. 500M, 20G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def protocol_name(protocol: str | None) -> str:
    """fsspec's aliases of the local disk all count as ``"file"``."""
    return "file" if protocol in (None, "file", "local") else protocol


def _strings(values: Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    try:
        out = tuple(values)
    except TypeError:
        raise ArgumentTypeError(
            f"{what} must be a list of non-empty strings or None, got {values!r}"
        ) from None
    if not all(isinstance(v, str) and v for v in out):
        raise ArgumentTypeError(f"{what} must be non-empty strings, got {list(out)!r}")
    return out


def _frozen_options(options: Any) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(options, Mapping) or not all(
        isinstance(p, str) and p and isinstance(o, Mapping) for p, o in options.items()
    ):
        raise ArgumentTypeError(
            f"storage_options must map protocol names to mappings of options, got {options!r:.200}"
        )
    try:
        # JSON in and out: the options reach workers as plain data, and a copy here
        # cannot be changed through the caller's dicts.
        plain = json.loads(json.dumps({p: dict(o) for p, o in options.items()}, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"storage options must be JSON-serializable so that workers can receive them: {exc}"
        ) from None
    return MappingProxyType({p: MappingProxyType(o) for p, o in plain.items() if o})


def _limit(name: str, value: Any, variable: str | None = None) -> int:
    """``value`` as the limit ``name``, or an ``ArgumentError`` naming the field (and the
    environment variable whose text ``value`` is, if given) and the range."""
    _, _, least, most = LIMITS[name]
    number = value
    if variable is not None:
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int) or not least <= number <= most:
        what = name if variable is None else f"{variable} ({name})"
        raise ArgumentError(f"{what} must be a whole number from {least} to {most}, got {value!r}")
    return number


def _whole(value: Any, what: str, error: type[Exception] = ArgumentError) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{what} must be a positive whole number of bytes, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """What configures ondabatches in a process and its workers (frozen; pickles; JSON).

    Parameters
    ----------
    storage_options:
        fsspec options per protocol, ``{"s3": {"anon": False, ...}}``: given to every
        filesystem of that protocol, over fsspec's own configuration (its config files
        and ``FSSPEC_<PROTOCOL>`` variables) and under a call's ``storage_options``.
    allowed_protocols, allowed_prefixes:
        The allow-list of [`allowed_storage`][ondabatches.onda.allowed_storage]: allowed
        protocols (``"file"`` for local paths) and prefixes of paths and URLs. ``None``
        for either allows any; both ``None`` (the default) is no allow-list.
    kernels:
        ``"auto"`` (compiled decode kernels when numba is installed) or ``"numpy"``.
    cache_directory, cache_max_bytes:
        The node-local cache of remote byte ranges (see
        [`set_cache`][ondabatches.onda.set_cache]): its folder, or ``None`` for off, and
        its size bound in bytes.
    max_segment_bytes:
        The most bytes one batch's shared-memory segment may take, or ``None`` for the
        size of ``/dev/shm``.
    max_concurrent_reads:
        The most reads of one batch in flight at once, per materializing process or
        thread (1 to 1024; default 32). Above 64, raise the ``max_pool_connections`` of
        ``s3://`` filesystems' ``config_kwargs`` too (64 by default).
    max_open:
        The most descriptors of local sample files a process keeps open between reads
        (1 to 65536; default 64).
    max_state_json:
        The longest state JSON that
        [`BatchState.from_json`][ondabatches.batches.BatchState.from_json] parses, in
        characters (1024 to 2**30; default 2**20): a real one is a few hundred.
    worker_tasks:
        The most batches one worker process (processes backend) materializes at once,
        each in a thread of its own (1 to 16; default 1). Over a slow link (S3 with tens
        of ms per request), 2 or more let a worker issue the reads of its next batch
        while the current one is still waiting for its last bytes or being decoded; each
        batch in flight holds its own shared-memory segment. The Batcher sends each
        worker at least one more batch than this ahead.

    Examples
    --------
    >>> s = Settings(kernels="numpy", storage_options={"s3": {"anon": True}})
    >>> s.storage_options["s3"]["anon"], s.allowed
    (True, False)
    >>> Settings.from_dict(s.to_dict()) == s
    True
    >>> Settings.from_env({"ONDABATCHES_MAX_SEGMENT_BYTES": "1000000"}).max_segment_bytes
    1000000
    """

    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allowed_protocols: tuple[str, ...] | None = None
    allowed_prefixes: tuple[str, ...] | None = None
    kernels: str = "auto"
    cache_directory: str | None = None
    cache_max_bytes: int = _DEFAULT_CACHE_BYTES
    max_segment_bytes: int | None = None
    max_concurrent_reads: int = DEFAULT_MAX_CONCURRENT_READS
    max_open: int = DEFAULT_MAX_OPEN
    max_state_json: int = DEFAULT_MAX_STATE_JSON
    worker_tasks: int = 1

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "storage_options", _frozen_options(self.storage_options))
        protocols = _strings(self.allowed_protocols, "allowed_protocols")
        if protocols is not None:
            protocols = tuple(dict.fromkeys(protocol_name(p) for p in protocols))
        set_(self, "allowed_protocols", protocols)
        set_(self, "allowed_prefixes", _strings(self.allowed_prefixes, "allowed_prefixes"))
        if self.kernels not in _KERNELS:
            raise ArgumentError(f"kernels must be one of {list(_KERNELS)}, got {self.kernels!r}")
        if self.cache_directory is not None:
            if not isinstance(self.cache_directory, (str, os.PathLike)):
                raise ArgumentTypeError(
                    f"cache_directory must be a path or None, got {self.cache_directory!r}"
                )
            set_(self, "cache_directory", os.path.abspath(os.fspath(self.cache_directory)))
        size = self.cache_max_bytes
        if isinstance(size, str):
            size = parse_size(size, "cache_max_bytes")
        set_(self, "cache_max_bytes", _whole(size, "cache_max_bytes", CacheError))
        if self.max_segment_bytes is not None:
            _whole(self.max_segment_bytes, "max_segment_bytes", SizeLimitError)
        for name in LIMITS:
            _limit(name, getattr(self, name))

    def __repr__(self) -> str:
        # Only what differs from the defaults, as plain data.
        default, plain = Settings().to_dict(), self.to_dict()
        changed = ", ".join(f"{k}={v!r}" for k, v in plain.items() if v != default[k])
        return f"Settings({changed})"

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __reduce__(self) -> tuple[Callable[..., Settings], tuple[dict[str, Any]]]:
        # The read-only mappings do not pickle: the plain form does.
        return (Settings.from_dict, (self.to_dict(),))

    @property
    def allowed(self) -> bool:
        """Whether an allow-list is set (paths outside it are refused)."""
        return self.allowed_protocols is not None or self.allowed_prefixes is not None

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (``dataclasses.replace``); an unknown field is an
        ``ArgumentError``."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ArgumentError(
                f"unknown settings {unknown}; known: {sorted(f.name for f in fields(self))}"
            )
        return replace(self, **changes)

    # -- plain data ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON data (lists for tuples)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {p: dict(o) for p, o in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Settings:
        """The settings that `to_dict` gave; unknown keys are an ``ArgumentError``."""
        return cls().replace(**d)

    # -- the environment -------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings that the ``ONDABATCHES_*`` variables of ``environ`` (default:
        ``os.environ``) say; unset ones keep their defaults.

        A malformed value is an error naming the variable, what it must be and what it
        holds: ``StorageError`` (storage options, allow-list), ``CacheError``,
        ``ArgumentError`` (kernels, the limits: with their range), ``SizeLimitError``
        (segment ceiling).
        """
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        raw = env.get(STORAGE_OPTIONS_ENV)
        if raw:
            changes["storage_options"] = _legacy_options(raw)
        raw = env.get(ALLOWED_STORAGE_ENV)
        if raw:
            changes["allowed_protocols"], changes["allowed_prefixes"] = _allow_list(raw)
        raw = env.get(KERNELS_ENV, "").strip().lower()
        if raw:
            if raw not in _KERNELS:
                raise ArgumentError(
                    f"{KERNELS_ENV} must be one of {list(_KERNELS)}, got {env[KERNELS_ENV]!r}"
                )
            changes["kernels"] = raw
        raw = env.get(CACHE_ENV)
        if raw:
            folder, sep, size = raw.rpartition(":")
            try:
                if not sep or not folder:
                    raise CacheError("no folder")
                changes["cache_max_bytes"] = parse_size(size)
            except CacheError:
                raise CacheError(
                    f"{CACHE_ENV} must be /path:SIZE (SIZE in bytes or with a K/M/G/T "
                    f"suffix, e.g. /mnt/cache:20G), got {raw!r}"
                ) from None
            changes["cache_directory"] = folder
        raw = env.get(MAX_SEGMENT_ENV)
        if raw:
            try:
                changes["max_segment_bytes"] = _whole(int(raw), MAX_SEGMENT_ENV)
            except (ValueError, ArgumentError):
                raise SizeLimitError(
                    f"{MAX_SEGMENT_ENV} must be a whole number of bytes, got {raw!r}"
                ) from None
        for name, (variable, *_) in LIMITS.items():
            raw = env.get(variable)
            if raw:
                changes[name] = _limit(name, raw, variable)
        return cls(**changes)

    def to_env(self) -> dict[str, str]:
        """The environment variables that give these settings to a process started with
        them: ``FSSPEC_<PROTOCOL>`` per protocol's options (fsspec reads them) and the
        ``ONDABATCHES_*`` variables of the settings that are not the defaults.

        Examples
        --------
        >>> Settings(kernels="numpy", storage_options={"s3": {"anon": True}}).to_env()
        {'FSSPEC_S3': '{"anon": true}', 'ONDABATCHES_KERNELS': 'numpy'}
        """
        env = {
            f"FSSPEC_{p.upper()}": json.dumps(dict(o), sort_keys=True)
            for p, o in self.storage_options.items()
        }
        if self.allowed:
            rules = {"protocols": self.allowed_protocols, "prefixes": self.allowed_prefixes}
            env[ALLOWED_STORAGE_ENV] = json.dumps(
                {k: list(v) for k, v in rules.items() if v is not None}, sort_keys=True
            )
        if self.kernels != "auto":
            env[KERNELS_ENV] = self.kernels
        if self.cache_directory is not None:
            env[CACHE_ENV] = f"{self.cache_directory}:{self.cache_max_bytes}"
        if self.max_segment_bytes is not None:
            env[MAX_SEGMENT_ENV] = str(self.max_segment_bytes)
        for name, (variable, default, *_) in LIMITS.items():
            if getattr(self, name) != default:
                env[variable] = str(getattr(self, name))
        return env


def _legacy_options(raw: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StorageError(f"{STORAGE_OPTIONS_ENV} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise StorageError(
            f"{STORAGE_OPTIONS_ENV} must be a JSON object mapping protocols to option "
            f"objects, got {raw!r:.200}"
        )
    names = ", ".join(f"FSSPEC_{p.upper()}" for p in sorted(parsed))
    warnings.warn(
        f"{STORAGE_OPTIONS_ENV} is deprecated: set {names} (the same JSON object, for one "
        "protocol) or call set_storage_options()",
        DeprecationWarning,
        stacklevel=4,
    )
    return parsed


def _allow_list(raw: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    try:
        rules = json.loads(raw)
        if not isinstance(rules, dict) or set(rules) - {"protocols", "prefixes"}:
            raise ArgumentError("not an object with only 'protocols' and 'prefixes'")
        return (
            _strings(rules.get("protocols"), "protocols"),
            _strings(rules.get("prefixes"), "prefixes"),
        )
    except (ValueError, TypeError) as exc:
        raise StorageError(
            f"{ALLOWED_STORAGE_ENV} must be a JSON object with lists of strings 'protocols' "
            f"and 'prefixes', got {raw!r:.200} ({exc})"
        ) from None


# -- the process's settings ---------------------------------------------------------

_current: Settings | None = None
_lock = threading.RLock()
# Called with the new settings whenever they change (None: back to unread): modules
# that keep a value derived from them for their hot path (the kernels' switch)
# register here.
_listeners: list[Callable[[Settings | None], None]] = []


def on_change(listener: Callable[[Settings | None], None]) -> None:
    """Call ``listener(settings)`` now and whenever the settings change (with None
    while they are not read yet)."""
    with _lock:
        _listeners.append(listener)
        listener(_current)


def adopt_settings(settings: Settings, origin: int) -> None:
    """Install ``settings``, those of process ``origin``, if this is another process
    that has other ones: a worker that its pool did not start (an executor's, a
    DataLoader's) calls it before each task. Threads of ``origin`` share its settings
    and keep them."""
    if os.getpid() != origin and _current != settings:
        use_settings(settings)


def current_settings() -> Settings:
    """The settings of this process: read from the environment the first time
    (`Settings.from_env`), then whatever [`use_settings`][ondabatches.onda.use_settings]
    installed.

    Examples
    --------
    >>> current_settings().kernels in ("auto", "numpy")
    True
    """
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _install(Settings.from_env())
        assert _current is not None
        return _current


def _install(settings: Settings | None) -> None:
    global _current
    with _lock:
        _current = settings
        for listener in _listeners:
            listener(settings)


class use_settings:  # noqa: N801 - used like a function, as contextlib's helpers are
    """Install ``settings`` (with ``changes``) as this process's settings.

    A plain call installs them for good; used as a context manager, the settings of
    before come back on exit. With no ``settings``, ``changes`` apply to the current
    ones. Workers started afterwards (the Batcher's processes and Ray actors) get them;
    worker threads, which share the process's settings, see the change at once. Given
    ``settings``, the environment is not read (a worker installs its manager's
    settings so).

    Parameters
    ----------
    settings:
        The settings to install, or ``None`` for the current ones.
    **changes:
        Fields of [`Settings`][ondabatches.onda.Settings] to change.

    Examples
    --------
    >>> with use_settings(kernels="numpy") as s:
    ...     current_settings().kernels, s.settings is current_settings()
    ('numpy', True)
    >>> current_settings() is s.previous
    True
    """

    def __init__(self, settings: Settings | None = None, /, **changes: Any):
        if settings is not None and not isinstance(settings, Settings):
            raise ArgumentTypeError(
                f"use_settings takes a Settings object, got {type(settings).__name__}"
            )
        with _lock:
            #: The settings installed before these (None: not read yet, and read again
            #: from the environment when next asked for after the block).
            self.previous = _current
            base = current_settings() if settings is None else settings
            #: The settings installed.
            self.settings = base.replace(**changes) if changes else base
            _install(self.settings)

    def __enter__(self) -> use_settings:
        return self

    def __exit__(self, *exc: object) -> None:
        _install(self.previous)
