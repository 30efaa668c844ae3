"""Conformance suites for plug-ins, and the synthetic datasets the project tests with.

Each ``check_*`` function runs on a user's implementation of an interface of
`ondabatches.abc` the checks the built-in implementations pass (the project's
own tests run them on every built-in), and raises
[`ConformanceError`][ondabatches.testing.ConformanceError] (an ``AssertionError``)
naming the check and the expected and actual values. A plug-in that passes works in
every backend with no other change.

Examples
--------
>>> from ondabatches import RandomBatches
>>> from ondabatches.testing import check_batch_scheme, labeled_table
>>> scheme = RandomBatches(labeled_table(2, duration=600 * 10**9), batch_size=2,
...                        batch_duration=30 * 10**9)
>>> check_batch_scheme(scheme)  # nothing raised: it conforms
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import fsspec
import numpy as np

from ._errors import OndaBatchesError, SampleFileError
from .abc import (
    BatchScheme,
    ChannelSelector,
    Materializer,
    Pool,
    SampleFormat,
    Target,
    Transform,
)
from .batches._selectors import _REGISTRY, selector_from_dict, selector_to_dict
from .batches._state import BatchState
from .onda._samples import Samples, SamplesInfo
from .synthetic import labeled_table, make_dataset

__all__ = [
    "ConformanceError",
    "check_batch_scheme",
    "check_channel_selector",
    "check_materializer",
    "check_pool",
    "check_sample_format",
    "check_target",
    "check_transform",
    "labeled_table",
    "make_dataset",
]


class ConformanceError(OndaBatchesError, AssertionError):
    """A plug-in does not do what its interface says (the message names the check)."""


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ConformanceError(what)


def _same(a: Any, b: Any) -> bool:
    """Equal batches (items with ``==``; arrays element-wise)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check_batch_scheme(
    scheme: BatchScheme, state: Any = None, *, steps: int = 4, picklable: bool = True
) -> None:
    """Check a [`BatchScheme`][ondabatches.abc.BatchScheme] over ``steps`` batches from
    ``state`` (its ``initial_state(0)`` by default).

    - it subclasses the interface, and declares ``0 <= rank < world_size``;
    - batch k is a pure function of the state: drawn twice, after a pickle round trip
      of the scheme (what worker processes get; ``picklable=False`` for a scheme used
      on threads only) and, for a [`BatchState`][ondabatches.batches.BatchState], after a JSON round
      trip of the state, it is the same;
    - ``next_state`` gives the state ``iterate_batch`` gives (and None at the end);
    - ``remaining``, where declared, is the number of batches it then yields;
    - ``config`` is JSON, and the states are bound to it.
    """
    name = type(scheme).__name__
    _require(isinstance(scheme, BatchScheme), f"{name} does not subclass abc.BatchScheme")
    ws, rank = scheme.world_size, scheme.rank
    _require(
        isinstance(ws, int) and isinstance(rank, int) and 0 <= rank < ws,
        f"{name}: world_size {ws!r} and rank {rank!r} must be ints with 0 <= rank < world_size",
    )
    config = scheme.config
    if config is not None:
        try:
            json.dumps(dict(config))
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"{name}.config is not JSON: {exc}") from None
    state = scheme.initial_state(0) if state is None else state
    if isinstance(state, BatchState) and config is not None:
        try:
            state.bind(config)
        except OndaBatchesError as exc:
            raise ConformanceError(f"{name}: its state is not bound to its config: {exc}") from None
    copy = pickle.loads(pickle.dumps(scheme)) if picklable else scheme
    left = scheme.remaining(state)
    yielded = 0
    for k in range(steps):
        step = scheme.iterate_batch(state)
        after = scheme.next_state(state)
        if step is None:
            _require(after is None, f"{name}: next_state is {after!r} where there is no batch")
            break
        batch, following = step
        _require(_same(following, after), f"{name}: next_state {after!r} != {following!r} (k={k})")
        again = scheme.iterate_batch(state)
        _require(
            again is not None and _same(again[0], batch),
            f"{name}: batch {k} differs when drawn again",
        )
        pickled = copy.iterate_batch(state)
        _require(
            pickled is not None and _same(pickled[0], batch),
            f"{name}: batch {k} differs after a pickle round trip of the scheme",
        )
        if isinstance(state, BatchState):
            restored = scheme.iterate_batch(BatchState.from_json(state.to_json()))
            _require(
                restored is not None and _same(restored[0], batch),
                f"{name}: batch {k} differs after a JSON round trip of its state",
            )
        yielded += 1
        state = following
    if left is not None:
        _require(isinstance(left, int) and left >= 0, f"{name}.remaining gave {left!r}")
        if yielded < steps:
            _require(left == yielded, f"{name}.remaining said {left}, it yielded {yielded}")
        else:
            _require(left >= steps, f"{name}.remaining said {left}, it yielded {yielded} so far")


def _info(sample_type: str, n_channels: int) -> SamplesInfo:
    return SamplesInfo(
        "conformance", tuple(f"c{i}" for i in range(n_channels)), "microvolt",
        0.5, 0.0, sample_type, 128.0,
    )  # fmt: skip


def check_sample_format(
    fmt: SampleFormat,
    *,
    suffix: str = "",
    sample_types: tuple[str, ...] = ("int16", "int32", "float32"),
    n_channels: int = 3,
    n_samples: int = 5000,
    seed: int = 0,
) -> None:
    """Check a [`SampleFormat`][ondabatches.abc.SampleFormat] on local files (``suffix`` their
    file name's end): written and read back at random row ranges (empty ones, the
    first and last samples included) equal to the data, ``check_size`` passing the
    right size, and a missing file or one cut short refused (``FileNotFoundError`` or
    [`SampleFileError`][ondabatches._errors.SampleFileError], never wrong samples), by
    ``read`` itself too (only batches of over 64 MiB are size-checked before they are
    read)."""
    name = type(fmt).__name__
    _require(isinstance(fmt, SampleFormat), f"{name} does not subclass abc.SampleFormat")
    fs = fsspec.filesystem("file")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="ondabatches-conformance-") as root:
        for sample_type in sample_types:
            info = _info(sample_type, n_channels)
            dtype = np.dtype(sample_type)
            if dtype.kind == "f":
                data = rng.standard_normal((n_channels, n_samples)).astype(dtype)
            else:
                lim = np.iinfo(dtype)
                data = rng.integers(lim.min, lim.max, (n_channels, n_samples), endpoint=True)
                data = data.astype(dtype)
            path = os.path.join(root, f"{sample_type}{suffix}")
            with open(path, "wb") as f:
                fmt.write(f, data, info)
            fmt.check_size(fs, path, info, n_samples)
            starts = rng.integers(0, n_samples, 8).tolist()
            ranges = [range(0, n_samples), range(0, 0), range(n_samples, n_samples),
                      range(0, 1), range(n_samples - 1, n_samples)]  # fmt: skip
            ranges += [range(a, int(rng.integers(a, n_samples + 1))) for a in starts]
            for rows in ranges:
                got = np.asarray(fmt.read(fs, path, info, rows, n_samples))
                want = data[:, rows.start : rows.stop]
                _require(
                    got.shape == want.shape and got.dtype == want.dtype,
                    f"{name}.read({sample_type}, rows {rows.start}..{rows.stop}) gave "
                    f"{got.dtype}{got.shape}, expected {want.dtype}{want.shape}",
                )
                _require(
                    np.array_equal(got, want),
                    f"{name}.read({sample_type}, rows {rows.start}..{rows.stop}) differs from "
                    f"what was written",
                )
        _refused(lambda: _read_all(fmt, fs, os.path.join(root, "missing"), info, n_samples),
                 f"{name}: a missing file")  # fmt: skip
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        _refused(lambda: _read_all(fmt, fs, path, info, n_samples), f"{name}: a file cut short")
        # Reads of large batches skip check_size: read itself must refuse a short file.
        _refused(lambda: fmt.read(fs, path, info, range(n_samples - 10, n_samples), n_samples),
                 f"{name}.read of a file cut short")  # fmt: skip


def _read_all(fmt: SampleFormat, fs: Any, path: str, info: SamplesInfo, n: int) -> Any:
    fmt.check_size(fs, path, info, n)
    return fmt.read(fs, path, info, range(max(0, n - 10), n), n)


def _refused(call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except (FileNotFoundError, SampleFileError):
        return
    except Exception as exc:  # noqa: BLE001 - the suite reports what it got
        raise ConformanceError(
            f"{what} raised {type(exc).__name__}: {exc}; expected FileNotFoundError or "
            "SampleFileError"
        ) from None
    raise ConformanceError(f"{what} was read without an error")


def check_channel_selector(selector: ChannelSelector, samples: Samples | None = None) -> None:
    """Check a [`ChannelSelector`][ondabatches.abc.ChannelSelector]: ``select`` returns an array
    whose last axis is the window's time, the same one for the same window, after a
    pickle round trip too, and (where registered) after a JSON round trip."""
    name = type(selector).__name__
    _require(isinstance(selector, ChannelSelector), f"{name} has no select(samples) method")
    if samples is None:
        rng = np.random.default_rng(0)
        info = _info("int16", 6)
        samples = Samples(rng.integers(-1000, 1000, (6, 256)).astype(np.int16), info, True)
    x = np.asarray(selector.select(samples))
    _require(x.ndim >= 1, f"{name}.select gave a {x.ndim}-d value")
    n_time = samples.data.shape[-1]
    _require(x.shape[-1] == n_time, f"{name}.select: last axis {x.shape[-1]}, expected {n_time}")
    _require(np.array_equal(selector.select(samples), x), f"{name}.select is not deterministic")
    copy = pickle.loads(pickle.dumps(selector))
    _require(np.array_equal(copy.select(samples), x), f"{name} differs after a pickle round trip")
    if type(selector) in _REGISTRY.values():
        doc = json.loads(json.dumps(selector_to_dict(selector)))
        back = selector_from_dict(doc)
        _require(np.array_equal(back.select(samples), x), f"{name} differs after a JSON round trip")


def _square(batch: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(batch, dtype=dtype)
    return x * x, np.asarray([len(batch)])


def _fail(batch: Any, dtype: Any) -> Any:
    raise SampleFileError(f"conformance: batch {batch!r} refused on purpose")


def check_pool(make_pool: Callable[[], Pool], *, timeout: float = 60.0) -> None:
    """Check a [`Pool`][ondabatches.abc.Pool] made by ``make_pool()``: it declares
    ``lazy`` and ``sends_once``; submitted batches come back as computed, in any
    order, a failing one as an exception (not a hang), a cancelled one does not stop
    the others, ``settle`` and ``close`` may be called, ``close`` twice."""
    pool = make_pool()
    name = type(pool).__name__
    try:
        _require(isinstance(pool, Pool), f"{name} does not subclass abc.Pool")
        _require(
            isinstance(pool.lazy, bool) and isinstance(pool.sends_once, bool),
            f"{name}: lazy and sends_once must be bools",
        )
        batches = [[float(i), float(i + 1)] for i in range(6)]
        futures = [pool.submit(_square, b, np.float64) for b in batches]
        failing = pool.submit(_fail, [7.0], np.float64)
        spare = pool.submit(_square, [9.0], np.float64)
        pool.cancel(spare)
        for b, fut in reversed(list(zip(batches, futures, strict=True))):
            x, y = fut.result(timeout)
            _require(
                np.array_equal(np.asarray(x), np.square(b)), f"{name}: batch {b} came back as {x!r}"
            )
            _require(int(np.asarray(y)[0]) == 2, f"{name}: y of batch {b} came back as {y!r}")
        error = failing.exception(timeout)
        _require(error is not None, f"{name}: a failing batch gave no exception")
        pool.settle()
    finally:
        pool.close()
    pool.close()


def _leaves(tree: Any) -> tuple[list[np.ndarray], Any]:
    from .serve._tree import flatten

    return flatten(tree)


def _bits(a: Any, b: Any) -> bool:
    """The same trees of arrays, bit for bit (shapes and dtypes included)."""
    (la, ta), (lb, tb) = _leaves(a), _leaves(b)
    return ta == tb and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
        for x, y in zip(la, lb, strict=True)
    )


def _rows_differ(x: Any) -> bool:
    return any(not np.array_equal(a[0], a[1]) for a in _leaves(x)[0])


_MINUTE = 60 * 10**9  # the batch duration of the suites' schemes


def _plugin_schemes(root: str) -> tuple[BatchScheme, BatchScheme, Any]:
    """A single-signal scheme (EEG) and a multi-signal one (EEG and EOG) over a small
    synthetic dataset written under ``root``, and its signals table."""
    import warnings

    import pyarrow.compute as pc

    from .batches import ExcludedRecordingsWarning, RandomBatches
    from .labels import label_signals
    from .synthetic import EPOCH, STAGE_ENCODING

    ds = make_dataset(root, n_recordings=2, duration=4 * 60 * 10**9, eog_every=1, sample_rate=128.0)
    labeled = label_signals(
        ds.signals, ds.annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    eeg = labeled.filter(pc.equal(labeled["sensor_type"], "eeg"))
    single = RandomBatches(eeg, n_channels=2, batch_size=3, batch_duration=60 * 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        multi = RandomBatches(
            labeled, modalities={"eeg": "eeg", "eog": "eog"}, batch_size=3,
            batch_duration=60 * 10**9,
        )  # fmt: skip
    return single, multi, ds.signals


def _served(scheme: Any, backend: str, workers: int, steps: int, **kwargs: Any) -> list:
    from .serve import Batcher

    out = []
    with Batcher(scheme, backend=backend, workers=workers, **kwargs) as batcher:
        state = batcher.batches.initial_state(seed=0)
        batcher.start(state)
        for _ in range(steps):
            result, state = batcher.take(state)
            out.append(result)
    return out


def _same_on_workers(scheme: Any, what: str, backend: str, workers: int, **kwargs: Any) -> None:
    inline = _served(scheme, "inline", 1, 2, **kwargs)
    served = _served(scheme, backend, workers, 2, **kwargs)
    _require(
        all(_bits(a, b) for a, b in zip(inline, served, strict=True)),
        f"{what}: a {backend} Batcher with {workers} workers served other bits than inline",
    )


def _json_round_trip(plugin: Any, interface: type, from_dict: Callable[[Any], Any]) -> Any:
    """``plugin`` rebuilt from the JSON of its ``to_dict`` (which must give it again)."""
    name = type(plugin).__name__
    _require(isinstance(plugin, interface), f"{name} does not subclass abc.{interface.__name__}")
    try:
        again = from_dict(json.loads(json.dumps(plugin.to_dict())))
    except Exception as exc:
        raise ConformanceError(f"{name}: to_dict does not round-trip through JSON: {exc}") from exc
    _require(
        again.to_dict() == plugin.to_dict(),
        f"{name}: {from_dict.__name__}(to_dict()) gave {again!r}",
    )
    return again


def check_transform(
    transform: Transform, *, modalities: bool = True, backend: str = "processes", workers: int = 2
) -> None:
    """Check a [`Transform`][ondabatches.abc.Transform] on small synthetic batches.

    - it subclasses the interface, is registered, and its ``to_dict`` survives a JSON
      round trip through
      [`transform_from_dict`][ondabatches.transforms.transform_from_dict];
    - materialized twice with the same key, a batch gives the same bits; ``x`` keeps
      the batch's length, float32 and finite values, and another batch the same shapes;
    - a random one draws differently for other keys and, an item transform, for the
      same item at two positions of a batch;
    - the same on a multi-signal batch (``modalities=False`` skips it);
    - a ``backend`` Batcher with ``workers`` workers serves the bits served inline.
    """
    from .transforms import transform_from_dict

    name = type(transform).__name__
    again = _json_round_trip(transform, Transform, transform_from_dict)
    with tempfile.TemporaryDirectory() as root:
        single, multi, _ = _plugin_schemes(root)
        for scheme, where in [(single, "single-signal")] + [(multi, "multi-signal")] * modalities:
            _check_transform_on(transform, scheme, f"{name} on a {where} batch", again)
        _same_on_workers(single, name, backend, workers, transforms=[transform])


def _check_transform_on(transform: Transform, scheme: Any, what: str, again: Transform) -> None:
    from .materialize import materialize_batch

    batch, _ = scheme.iterate_batch(scheme.initial_state(seed=0))
    other, _ = scheme.iterate_batch(scheme.initial_state(seed=1))
    run = lambda b, k: materialize_batch(b, transforms=[transform], key=(0, k))  # noqa: E731
    first = run(batch, 0)
    _require(_bits(first, run(batch, 0)), f"{what}: the same key gave other bits")
    rebuilt = materialize_batch(batch, transforms=[again], key=(0, 0))
    _require(_bits(first, rebuilt), f"{what}: transform_from_dict(to_dict()) makes other bits")
    xs = _leaves(first[0])[0]
    for x in xs:
        _require(x.shape[:1] == (len(batch),), f"{what}: x of {x.shape} for {len(batch)} items")
        if x.dtype.kind == "f":
            _require(x.dtype == np.float32, f"{what}: x is {x.dtype}, float32 was asked for")
            _require(bool(np.isfinite(x).all()), f"{what}: x has non-finite values")
    shapes = [x.shape for x in xs]
    _require(
        [x.shape for x in _leaves(run(other, 0)[0])[0]] == shapes,
        f"{what}: another batch gave other shapes than {shapes}",
    )
    if not transform.random:
        return
    _require(
        any(not _bits(first, run(batch, k)) for k in range(1, 9)),
        f"{what}: keys (0, 1)..(0, 8) drew the same as key (0, 0)",
    )
    if transform.stage == "item":
        twins = [batch[0], batch[0]]
        _require(
            any(_rows_differ(run(twins, k)[0]) for k in range(8)),
            f"{what}: the same item at positions 0 and 1 drew the same for 8 keys",
        )


def _events_of(signals: Any, root: str) -> Any:
    """Events of 2 classes (long ones and instants) on every recording of ``signals``."""
    import uuid
    import warnings

    from .labels import EventsWarning, label_events
    from .onda import annotations_table, iter_signals

    rows, seen = [], set()
    for sig in iter_signals(signals):
        if sig.recording in seen:
            continue
        seen.add(sig.recording)
        for k in range(12):
            on = (k * 17 + 3) * 10**9 % (sig.span.stop - 20 * 10**9)
            span = (on, on + (k % 3) * 7 * 10**9)  # every third an instant
            rows.append(dict(recording=sig.recording, id=uuid.uuid4(), span=span,
                             event="ab"[k % 2]))  # fmt: skip
    with warnings.catch_warnings():  # an event past a shorter signal's end: dropped
        warnings.simplefilter("ignore", EventsWarning)
        return label_events(signals, annotations_table(rows), column="event",
                            classes=["a", "b"], out=os.path.join(root, "events"))  # fmt: skip


def check_target(target: Target, *, backend: str = "processes", workers: int = 2) -> None:
    """Check an event [`Target`][ondabatches.abc.Target].

    - it subclasses the interface, is registered, and its ``to_dict`` survives a JSON
      round trip through [`target_from_dict`][ondabatches.transforms.target_from_dict];
    - in an [`EventTargets`][ondabatches.transforms.EventTargets] of a batch, it makes
      per item what its ``output`` declares (shape and dtype), the same bits twice, and
      zeros-shaped the same where a window has no events;
    - a ``backend`` Batcher with ``workers`` workers serves the bits served inline.
    """
    from .materialize import materialize_batch
    from .transforms import EventTargets, target_from_dict

    name = type(target).__name__
    _json_round_trip(target, Target, target_from_dict)
    with tempfile.TemporaryDirectory() as root:
        single, _, signals = _plugin_schemes(root)
        events = _events_of(signals, root)
        made = EventTargets({"t": (events, target)})
        batch, _ = single.iterate_batch(single.initial_state(seed=0))
        y = materialize_batch(batch, transforms=[made])[1]
        _require(_bits(y, materialize_batch(batch, transforms=[made])[1]), f"{name}: other bits")
        _check_output(target, y["t"], len(batch), _MINUTE, name)
        found = tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
        starts = np.array([0, 60 * 10**9], dtype=np.int64)
        empty = target.compute(found, starts, starts + _MINUTE, 2)
        _check_output(target, empty, 2, _MINUTE, f"{name} with no events")
        _same_on_workers(single, name, backend, workers, transforms=[made])


def _check_output(target: Target, made: Any, n: int, duration: int, what: str) -> None:
    declared = target.output(int(duration), 2)
    if isinstance(declared, dict):
        _require(isinstance(made, dict) and set(made) == set(declared),
                 f"{what}: made {sorted(made) if isinstance(made, dict) else type(made)}, "
                 f"declared {sorted(declared)}")  # fmt: skip
        pairs = [(made[k], declared[k], k) for k in sorted(declared)]
    else:
        pairs = [(made, declared, "")]
    for array, (shape, dtype), key in pairs:
        want = ((n, *shape), np.dtype(dtype))
        got = (getattr(array, "shape", None), getattr(array, "dtype", None))
        _require(got == want, f"{what}{key and ' ' + key}: made {got}, output() declared {want}")


def check_materializer(
    materializer: Materializer,
    scheme: BatchScheme | None = None,
    *,
    backend: str = "processes",
    workers: int = 2,
) -> None:
    """Check a [`Materializer`][ondabatches.abc.Materializer] on ``scheme``'s batches
    (by default, a small synthetic single-signal scheme).

    - it subclasses the interface and survives a pickle round trip (the same bits after);
    - it returns ``(x, y)``, both with the batch's length, the same bits twice;
    - declaring ``allocates``, it writes ``x`` into the arrays ``allocate`` gives, the
      same bits as without;
    - a ``backend`` Batcher with ``workers`` workers serves the bits served inline.
    """
    name = type(materializer).__name__
    _require(isinstance(materializer, Materializer), f"{name} does not subclass abc.Materializer")
    with tempfile.TemporaryDirectory() as root:
        if scheme is None:
            scheme = _plugin_schemes(root)[0]
        batch, _ = scheme.iterate_batch(scheme.initial_state(seed=0))
        first = materializer(batch, np.float32)
        _require(isinstance(first, tuple) and len(first) == 2, f"{name}: returned {type(first)}")
        for part, which in zip(first, "xy", strict=True):
            for leaf in _leaves(part)[0]:
                _require(leaf.shape[:1] == (len(batch),),
                         f"{name}: {which} of {leaf.shape} for {len(batch)} items")  # fmt: skip
        _require(_bits(first, materializer(batch, np.float32)), f"{name}: other bits twice")
        copy = pickle.loads(pickle.dumps(materializer))
        _require(_bits(first, copy(batch, np.float32)), f"{name}: other bits after a pickle")
        if materializer.allocates:
            made: list[np.ndarray] = []

            def allocate(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
                array = np.full(shape, 7, dtype=dtype)  # not zeros: unwritten shows
                made.append(array)
                return array

            second = materializer(batch, np.float32, allocate=allocate)
            _require(_bits(first, second), f"{name}: other bits with allocate=")
            xs = _leaves(second[0])[0]
            placed = all(any(np.shares_memory(x, m) for m in made) for x in xs)
            _require(placed, f"{name}: declares allocates but x is not in the allocated arrays")
        _same_on_workers(scheme, name, backend, workers, materialize=materializer)
