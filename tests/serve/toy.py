"""Toy batch schemes and materializers for the Batcher tests.

A batch is a tuple of items; an item is ``(seed, shape, action)`` where ``action``
says what the materializer does besides computing its arrays deterministically from
the seed: nothing, fail, sleep, read a file, or kill its own worker once. Everything
here is top-level so that worker processes can unpickle it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ondabatches.abc import BatchScheme, Materializer
from ondabatches.errors import UntrustedPathError
from ondabatches.materialize import FunctionMaterializer

Item = tuple  # (seed, shape, action)


def item_arrays(seed: int, shape: tuple[int, ...], dtype) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of one item: a pure function of (seed, shape, dtype)."""
    rng = np.random.Generator(np.random.Philox(key=seed))
    x = rng.standard_normal((1, *shape)).astype(dtype)
    y = rng.integers(0, 6, size=(1, 1, 2)).astype(np.uint8)
    return x, y


class PluginRefusal(UntrustedPathError):
    """A plug-in's own error class, made outside ondabatches._errors."""


def _act(action) -> None:
    if action is None:
        return
    kind, arg = action
    if kind == "fail":
        raise ValueError(f"toy failure {arg}")
    if kind == "refuse":
        raise PluginRefusal(f"{arg} is outside the storage this plug-in allows")
    if kind == "sleep":
        time.sleep(arg)
    elif kind == "read":
        Path(arg).read_bytes()
    elif kind == "load":
        # An Onda sample file that is not there: ours, permanent (SampleFileNotFoundError).
        from ondabatches.onda import SamplesInfo, Signal, TimeSpan, load

        info = SamplesInfo("eeg", ("a",), "uV", 1.0, 0.0, "int16", 1.0)
        load(Signal(uuid.UUID(int=7), arg, "lpcm", TimeSpan(0, 10**10), "eeg", info))
    elif kind == "fail_times":
        # Fail while the counter file holds fewer than n marks: a transient error.
        path, n = arg
        with open(path, "a+") as f:
            f.seek(0)
            seen = len(f.read())
            if seen < n:
                f.write("x")
                f.flush()
                raise OSError(f"transient toy failure {seen + 1} of {n}")
    elif kind == "meet":
        # Wait (up to `wait` s) for another batch of this process to start too, then
        # record when this one ran ("span-<pid>-<mark>": start and end, time.time()).
        folder, mark, wait = Path(arg[0]), arg[1], arg[2]
        start = time.time()
        (folder / f"running-{os.getpid()}-{mark}").write_text("")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            started = {q.name[8:] for q in folder.glob(f"running-{os.getpid()}-*")}
            ended = {q.name[5:] for q in folder.glob(f"span-{os.getpid()}-*")}
            if len(started - ended) > 1:
                break
            time.sleep(0.01)
        (folder / f"span-{os.getpid()}-{mark}").write_text(f"{start} {time.time()}")
    elif kind == "kill_once":
        # Kill this very worker process the first time, to simulate a crash mid-batch.
        marker = Path(arg)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def _toy_materialize(batch, dtype):
    """Stack the items of ``batch`` on a new leading axis."""
    xs, ys = [], []
    for seed, shape, action in batch:
        _act(action)
        x, y = item_arrays(seed, tuple(shape), dtype)
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys)


toy_materialize = FunctionMaterializer(_toy_materialize)


@dataclass(frozen=True)
class ToyScheme(BatchScheme):
    """Batch k holds items with seeds ``(k, i)``; finite when ``n_batches`` is set.

    ``actions`` maps a batch index to the action of its first item. The state is the
    plain int k, so it is its own JSON.
    """

    batch_size: int = 2
    shape: tuple[int, ...] = (2, 8)
    n_batches: int | None = None
    actions: tuple[tuple[int, tuple], ...] = ()

    def iterate_batch(self, state):
        k = state
        if self.n_batches is not None and k >= self.n_batches:
            return None
        action = dict(self.actions).get(k)
        batch = tuple(
            (k * 1000 + i, self.shape, action if i == 0 else None) for i in range(self.batch_size)
        )
        return batch, k + 1


#: The process ids where SteppingToyScheme drew a batch, as seen by this process.
DRAWS: list[int] = []


@dataclass(frozen=True)
class SteppingToyScheme(ToyScheme):
    """A ToyScheme that steps through its states without drawing (``next_state``), so
    that the Batcher lets its workers draw; the batches are the same."""

    def iterate_batch(self, state):
        DRAWS.append(os.getpid())
        return super().iterate_batch(state)

    steps_without_drawing = True

    def next_state(self, state):
        return None if self.n_batches is not None and state >= self.n_batches else state + 1


def _refuse_to_load():
    raise RuntimeError("this materializer cannot be loaded in a worker")


class UnloadableMaterialize(Materializer):
    """``toy_materialize`` that pickles, but whose unpickling raises (in a worker)."""

    def __call__(self, batch, dtype):
        return toy_materialize(batch, dtype)

    def __reduce__(self):
        return (_refuse_to_load, ())


#: The modalities of a toy dict batch: channels and samples per item (each its own rate).
MODALITIES = {"eeg": (2, 16), "eog": (1, 8), "emg": (1, 32)}


def _toy_dict_materialize(batch, dtype, allocate=np.empty):
    """The multi-signal batch layout: ``x`` a dict of arrays ``(batch, channels, samples)``,
    one per modality with its own number of samples, and a ``mask`` dict of bool
    ``(batch,)`` arrays; ``y`` as :func:`toy_materialize`'s.

    Like :func:`~ondabatches.materialize_batch`, it writes into arrays that
    ``allocate`` makes, one call per array, so worker processes write into shared memory.
    """
    n = len(batch)
    x = {
        name: allocate((n, channels, samples), dtype)
        for name, (channels, samples) in MODALITIES.items()
    }
    mask = {name: allocate((n,), np.bool_) for name in MODALITIES}
    y = allocate((n, 1, 2), np.uint8)
    for i, (seed, _shape, action) in enumerate(batch):
        _act(action)
        rng = np.random.Generator(np.random.Philox(key=seed))
        for name, (channels, samples) in MODALITIES.items():
            x[name][i] = rng.standard_normal((channels, samples)).astype(dtype)
            mask[name][i] = rng.random() < 0.7
        y[i] = rng.integers(0, 6, size=(1, 2))
    x["mask"] = mask
    return x, y


toy_dict_materialize = FunctionMaterializer(_toy_dict_materialize, allocates=True)


def report_limits(batch, dtype, signals=()):
    """What a worker's limits do, as a batch like `report_settings`'s: how many
    descriptors it holds after loading ``signals`` (``max_open``), and whether it
    refuses a state JSON of 3,000 characters for its length (``max_state_json``)."""
    import json

    from ondabatches.batches import BatchState
    from ondabatches.errors import StateError
    from ondabatches.onda import _descriptors, load

    _descriptors.close_all()
    for each in signals:
        load(each, encoded=True)
    held = _descriptors.open_count()
    _descriptors.close_all()
    try:
        BatchState.from_json("{" + " " * 2998 + "}")
    except StateError as exc:
        refused = "more than the limit" in str(exc)
    report = {"open": held, "state_refused": refused}
    x = np.frombuffer(json.dumps(report, sort_keys=True).encode(), dtype=np.uint8)
    return x[None, :].copy(), np.array([[os.getpid()]], dtype=np.int64)


def report_settings(batch, dtype):
    """What a worker sees of its process's settings, as a batch: ``x`` the JSON of
    the settings and of what follows from them (the kernels' switch, the cache's
    folder), as bytes; ``y`` the worker's process id."""
    import json

    from ondabatches.onda import _kernels, current_settings, get_cache

    cache = get_cache()
    report = {
        "settings": current_settings().to_dict(),
        "kernels_enabled": _kernels._enabled(),
        "cache": None if cache is None else cache.directory,
    }
    x = np.frombuffer(json.dumps(report, sort_keys=True).encode(), dtype=np.uint8)
    return x[None, :].copy(), np.array([[os.getpid()]], dtype=np.int64)
