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
from .abc import BatchScheme, ChannelSelector, Pool, SampleFormat
from .batches._selectors import _REGISTRY, selector_from_dict, selector_to_dict
from .batches._state import BatchState
from .onda._samples import Samples, SamplesInfo
from .synthetic import labeled_table, make_dataset

__all__ = [
    "ConformanceError",
    "check_batch_scheme",
    "check_channel_selector",
    "check_pool",
    "check_sample_format",
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
