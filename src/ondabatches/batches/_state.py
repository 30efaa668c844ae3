"""Batch states and the batch-scheme interface.

A batch scheme is a [`BatchScheme`][ondabatches.batches.BatchScheme]:
``iterate_batch(state) -> (batch, next_state) | None``, and the capabilities it
declares. The state is a small immutable value: the seed, the index of the batch it
stands for, and a fingerprint of the configuration that produced it, so that restoring a
checkpoint into a differently configured scheme fails loudly instead of quietly
producing other batches.
"""

from __future__ import annotations

import json
import numbers
import reprlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._errors import ArgumentTypeError, StateError
from ..onda._settings import DEFAULT_MAX_STATE_JSON, current_settings

__all__ = ["BatchScheme", "BatchState", "STATE_VERSION"]

#: Version of the state's JSON layout; a state of another version is refused.
STATE_VERSION = 1

#: The default of the longest state JSON that
#: [`BatchState.from_json`][ondabatches.batches.BatchState.from_json] parses, in
#: characters (a real one is a few hundred; a checkpoint from elsewhere must not cost
#: gigabytes): the settings' ``max_state_json`` (``ONDABATCHES_MAX_STATE_JSON``) is the
#: limit.
MAX_STATE_JSON = DEFAULT_MAX_STATE_JSON

# How deep lists and mappings may nest in a config value (selectors are 2 or 3 deep).
_MAX_DEPTH = 16
# Indices are int64 in the batch schemes' arithmetic.
_MAX_INDEX = 2**63

_DIGEST_HINT = (
    "the fingerprint identifies the data by content, not by where its files are: "
    "moving them does not change it"
)


@dataclass(frozen=True, slots=True)
class BatchState:
    """Where a batch scheme stands: batch ``index`` of the stream seeded by ``seed``.

    ``config`` is a fingerprint of the scheme (its class, sizes, durations, and digests
    of its data by content: ``digest.recordings``, ``digest.labels``... see
    `LabeledArrays.fingerprint`)
    as sorted ``(key, value)`` pairs: the same data at another place (local disk, S3)
    binds, changed data is refused naming what changed. A state with an empty
    ``config`` is *unbound*: any scheme accepts it, and the state it returns is bound.

    Parameters
    ----------
    seed:
        A non-negative integer below 2**64.
    index:
        The 0-based index of the batch this state yields.
    config:
        The configuration fingerprint; a mapping or ``(key, value)`` pairs.
    version:
        The layout version, [`STATE_VERSION`][ondabatches.batches.STATE_VERSION].

    Examples
    --------
    >>> state = BatchState(seed=7)
    >>> state.advance(3)
    BatchState(seed=7, index=3, config=(), version=1)
    >>> BatchState.from_json(state.to_json()) == state
    True
    """

    seed: int
    index: int = 0
    config: tuple[tuple[str, Any], ...] = ()
    version: int = STATE_VERSION

    def __post_init__(self) -> None:
        for name in ("seed", "index", "version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise StateError(f"BatchState.{name} must be an int, got {_short(value)}")
        if not 0 <= self.seed < 2**64:
            raise StateError(f"BatchState.seed must be in [0, 2**64), got {_int(self.seed)}")
        if not 0 <= self.index < _MAX_INDEX:
            raise StateError(f"BatchState.index must be in [0, 2**63), got {_int(self.index)}")
        if self.version != STATE_VERSION:
            raise StateError(
                f"BatchState version {_int(self.version)} is not supported; this ondabatches "
                f"reads version {STATE_VERSION}"
            )
        object.__setattr__(self, "config", _frozen_config(self.config))

    def advance(self, n: int = 1) -> BatchState:
        """The state ``n`` batches later (O(1): batches depend only on seed and index)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= self.index + n < _MAX_INDEX:
            raise StateError(f"cannot advance state at index {self.index} by {_short(n)}")
        return self._derived(self.index + n, self.config)

    def bind(self, config: Mapping[str, Any] | tuple[tuple[str, Any], ...]) -> BatchState:
        """This state bound to ``config``; refuses a state bound to a different one.

        ``config`` is a mapping or ``(key, value)`` pairs; a scheme that passes the
        same frozen pairs each time (a [`config`][ondabatches.batches.BatchState.config]
        of its own) is bound without any work, which the Batcher's manager does once per
        batch.

        Raises
        ------
        StateError
            If the state is bound to another configuration; the message lists every
            key whose values differ, with the state's and the scheme's values.
        """
        if config is self.config:
            return self
        if type(config) is tuple and config == self.config:  # a scheme's equal pairs
            return self
        frozen = _frozen_config(config)
        if not self.config or self.config == frozen:
            # Share the scheme's tuple, so that the next states take the fast path.
            shared = config if isinstance(config, tuple) and config == frozen else frozen
            return self._derived(self.index, shared)
        mine, theirs = dict(self.config), dict(frozen)
        changed = [
            key
            for key in sorted(set(mine) | set(theirs))
            if mine.get(key, "<missing>") != theirs.get(key, "<missing>")
        ]
        diffs = [
            f"  {key}: state has {mine.get(key, '<missing>')!r}, scheme has "
            f"{theirs.get(key, '<missing>')!r}"
            for key in changed
        ]
        data = [key.removeprefix("digest.") for key in changed if key.startswith("digest.")]
        summary = (
            f"the data changed: its {', '.join(data)} differ ({_DIGEST_HINT})\n" if data else ""
        )
        if "table_digest" in mine and not any(key.startswith("digest.") for key in mine):
            summary += (
                "the state was made by an older ondabatches, whose fingerprint held file "
                "paths; start from a new state, or resume with the older version\n"
            )
        raise StateError(
            "this state belongs to a differently configured batch scheme:\n"
            + summary
            + "\n".join(diffs)
        )

    def __reduce__(self):
        # A state goes to a worker with every batch: plain construction pickles faster
        # than the generic state of a slotted dataclass, and validates on arrival.
        return (BatchState, (self.seed, self.index, self.config, self.version))

    def _derived(self, index: int, config: tuple[tuple[str, Any], ...]) -> BatchState:
        # A state made from a valid one needs no validation again.
        state = object.__new__(BatchState)
        for name, value in (
            ("seed", self.seed),
            ("index", index),
            ("config", config),
            ("version", self.version),
        ):
            object.__setattr__(state, name, value)
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "seed": self.seed,
            "index": self.index,
            "config": {k: _thaw(v) for k, v in self.config},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchState:
        """The state that [`to_dict`][ondabatches.batches.BatchState.to_dict] gave;
        anything else is a [`StateError`][ondabatches._errors.StateError] naming the key
        at fault."""
        if not isinstance(d, Mapping):
            raise StateError(f"a batch state must be a mapping, got {type(d).__name__}")
        for key in ("seed", "index"):
            if key not in d:
                raise StateError(
                    f"not a batch state: key {key!r} is missing (keys: {_short(list(d))})"
                )
        return cls(
            seed=d["seed"],
            index=d["index"],
            config=d.get("config") or (),
            version=d.get("version", STATE_VERSION),
        )

    def to_json(self) -> str:
        """A compact JSON string (keys sorted, so equal states give equal strings)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> BatchState:
        """The state that [`to_json`][ondabatches.batches.BatchState.to_json] gave.

        Raises
        ------
        StateError
            For text over the settings' ``max_state_json`` characters (default
            `MAX_STATE_JSON`), text that is not JSON (or
            nests too deep, or holds integers of thousands of digits), or JSON that is
            not a state; the message names the key at fault.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise StateError(f"batch state JSON must be str or bytes, got {type(text).__name__}")
        most = current_settings().max_state_json
        if len(text) > most:
            raise StateError(
                f"batch state JSON is {len(text)} characters long, more than the limit of "
                f"{most} (settings' max_state_json, ONDABATCHES_MAX_STATE_JSON): not a state "
                "this library wrote"
            )
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, digit limit, depth
            raise StateError(f"batch state is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(d, dict):
            raise StateError(f"batch state JSON must be an object, got {type(d).__name__}")
        return cls.from_dict(d)


def _frozen_config(config: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple:
    """``config`` as sorted ``(key, value)`` pairs with sequences turned into tuples.

    Values must be JSON values (mappings with string keys, lists, strings, numbers,
    booleans, None) nested at most 16 deep: a
    [`StateError`][ondabatches._errors.StateError] names the key otherwise.
    """
    if isinstance(config, Mapping):
        pairs = list(config.items())
    elif isinstance(config, Sequence) and not isinstance(config, (str, bytes)):
        pairs = list(config)
        for pair in pairs:
            if not (
                isinstance(pair, Sequence) and not isinstance(pair, (str, bytes)) and len(pair) == 2
            ):
                raise StateError(
                    "BatchState.config must be a mapping or (key, value) pairs; found "
                    + _short(pair)
                )
    else:
        raise StateError(
            f"BatchState.config must be a mapping or (key, value) pairs, got "
            f"{type(config).__name__} {_short(config)}"
        )
    frozen = []
    for key, value in pairs:
        if not isinstance(key, str):
            raise StateError(f"BatchState.config keys must be strings, got {_short(key)}")
        frozen.append((key, _freeze(value, key, 0)))
    try:
        return tuple(sorted(frozen))
    except TypeError:  # two equal keys whose values do not compare
        raise StateError(f"BatchState.config repeats a key: {[k for k, _ in frozen]}") from None


def _int(n: int) -> str:
    """``n`` for a message: an int of thousands of digits cannot be printed (Python
    refuses past 4,300 digits), so such a one is described by its size."""
    if abs(n) < 10**100:
        return str(n)
    sign = "a negative" if n < 0 else "an"
    return f"{sign} integer of about {int(abs(n).bit_length() * 0.30103)} digits"


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value)
    # reprlib bounds the length and depth: a repr of a 100,000-deep list would recurse.
    try:
        return reprlib.repr(value)
    except ValueError:  # holds an int too long to print
        return f"a {type(value).__name__} holding an integer too long to print"


class _FrozenMapping(tuple):
    """A mapping in a config, as sorted (key, value) pairs: hashable, and thawed back
    into a mapping for JSON."""

    __slots__ = ()


def _freeze(value: Any, key: str, depth: int) -> Any:
    # JSON round trips turn tuples into lists; freeze both so equality and hashing hold.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**100:
        # JSON could not carry it back (Python prints no int of over 4,300 digits).
        raise StateError(
            f"BatchState.config[{key!r}] holds {_int(value)}; integers in a config have "
            "at most 100 digits"
        )
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers: equal to the int
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if depth >= _MAX_DEPTH:
        raise StateError(f"BatchState.config[{key!r}] nests deeper than {_MAX_DEPTH} levels")
    if isinstance(value, _FrozenMapping):
        # Already frozen (a state built from another's config): freezing it again as a
        # tuple would turn the mapping into a list of pairs.
        return _FrozenMapping((k, _freeze(v, key, depth + 1)) for k, v in value)
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise StateError(
                    f"BatchState.config[{key!r}] has a key that is not a string: {_short(k)}"
                )
            items.append((k, _freeze(v, key, depth + 1)))
        return _FrozenMapping(sorted(items))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, key, depth + 1) for v in value)
    raise StateError(
        f"BatchState.config[{key!r}] must hold JSON values, got {type(value).__name__} "
        + _short(value)
    )


def _thaw(value: Any) -> Any:
    if isinstance(value, _FrozenMapping):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class BatchScheme(ABC):
    """The interface of batch schemes: what turns a state into a batch and the next state.

    Subclass it and implement
    [`iterate_batch`][ondabatches.batches.BatchScheme.iterate_batch]; declare what else
    the scheme can do by overriding the members below (the Batcher, `ondabatches.torch`
    and the transforms read them, never probe for them). Check a scheme with
    [`ondabatches.testing.check_batch_scheme`][ondabatches.testing.check_batch_scheme].

    ``iterate_batch(state)`` returns ``(batch, next_state)``, or ``None`` when a finite
    scheme has no batch at ``state``. The batch is a sequence of items that
    [`materialize_batch`][ondabatches.materialize.materialize_batch] (or the user's own function)
    turns into arrays. It must be a pure function of ``state``.

    Examples
    --------
    >>> class FixedList(BatchScheme):
    ...     def __init__(self, batches):
    ...         self.batches = batches
    ...     def iterate_batch(self, state):
    ...         if state.index >= len(self.batches):
    ...             return None
    ...         return self.batches[state.index], state.advance()
    ...     def remaining(self, state):
    ...         return max(0, len(self.batches) - state.index)
    >>> scheme = FixedList([[1], [2]])
    >>> scheme.iterate_batch(BatchState(0))[0], scheme.remaining(BatchState(0))
    ([1], 2)
    """

    #: Whether [`next_state`][ondabatches.batches.BatchScheme.next_state] steps through
    #: the states without drawing the batches (cheaply): the Batcher then lets its
    #: workers draw them (the scheme is sent to each worker once), so that its own cost
    #: per batch does not grow with the batch size.
    steps_without_drawing: ClassVar[bool] = False
    #: A scheme built as one rank's share (``SequentialBatches(world_size=w, rank=r)``)
    #: says so here; ``shard_batches`` then leaves it as it is.
    world_size: int = 1
    rank: int = 0

    @abstractmethod
    def iterate_batch(self, state: Any) -> tuple[Sequence[Any], Any] | None:
        """``(batch, next_state)``, or None where a finite scheme has no batch at ``state``."""

    def next_state(self, state: Any) -> Any:
        """The state after ``state``, or None where
        [`iterate_batch`][ondabatches.batches.BatchScheme.iterate_batch] would return
        None; by default through
        [`iterate_batch`][ondabatches.batches.BatchScheme.iterate_batch] (declare
        [`steps_without_drawing`][ondabatches.batches.BatchScheme.steps_without_drawing]
        where an override does not draw)."""
        step = self.iterate_batch(state)
        return None if step is None else step[1]

    def remaining(self, state: Any) -> int | None:
        """How many batches the scheme yields from ``state`` on; None (the default)
        where endless or unknown."""
        return None

    @property
    def config(self) -> Mapping[str, Any] | None:
        """The JSON configuration its states are bound to (None: states carry none)."""
        return None

    def initial_state(self, seed: int = 0) -> Any:
        """The state of batch 0 for ``seed`` (a
        [`BatchState`][ondabatches.batches.BatchState] bound to
        [`config`][ondabatches.batches.BatchScheme.config], by default)."""
        return BatchState(seed=seed, index=0, config=self.config)


class _DuckScheme(BatchScheme):
    """A scheme that does not subclass [`BatchScheme`][ondabatches.batches.BatchScheme],
    seen through it: only its ``iterate_batch`` is used (nothing else is declared)."""

    def __init__(self, scheme: Any):
        self.scheme = scheme

    def iterate_batch(self, state: Any) -> tuple[Sequence[Any], Any] | None:
        return self.scheme.iterate_batch(state)

    def __getattr__(self, name: str) -> Any:  # its other members, for the user
        if name.startswith("__") or name == "scheme":
            raise AttributeError(name)
        return getattr(self.scheme, name)

    def __repr__(self) -> str:
        return repr(self.scheme)


def as_batch_scheme(scheme: Any, where: str = "batches") -> BatchScheme:
    """``scheme`` as a [`BatchScheme`][ondabatches.batches.BatchScheme]: itself, or
    (deprecated) an object with an ``iterate_batch`` method seen through the interface
    with nothing else declared."""
    if isinstance(scheme, BatchScheme):
        return scheme
    if callable(getattr(scheme, "iterate_batch", None)):
        warnings.warn(
            f"{where}: {type(scheme).__name__} does not subclass ondabatches.abc.BatchScheme; "
            "it is used through its iterate_batch alone (no next_state, remaining, config or "
            "sharding is read from it). Subclass BatchScheme to declare them; objects that do "
            "not will be refused in a later release",
            DeprecationWarning,
            stacklevel=3,
        )
        return _DuckScheme(scheme)
    raise ArgumentTypeError(
        f"{where}: batches must be a batch scheme (a subclass of ondabatches.abc.BatchScheme "
        f"implementing iterate_batch(state)), got {type(scheme).__name__}"
    )
