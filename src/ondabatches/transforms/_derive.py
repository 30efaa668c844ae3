"""Derived datasets: filtered, re-referenced and resampled copies of an Onda dataset,
written out of core.

Each signal is streamed in blocks, each read with the context its filters need (as a
window is, see `ondabatches.transforms`), so the result equals the filters run
over the whole recording (within 1e-3 of the RMS), with memory bounded by the block
size whatever the recording's length. Resampling (scipy's ``resample_poly``) runs on
the same blocks with its own margin, aligned to the whole signal's. Where the compiled
kernels run, a block is decoded into one time-major buffer where the filters run back
to back, then referenced and resampled there (`._resample`: the whole signal's
outputs, whatever the block's boundaries), each step the bits of scipy's, and written
as float32 time steps with no transpose or copy (2.06 -> 0.47-0.49 s for an hour of 19
channels at 256 Hz, band-pass, notch and a resample to 100 Hz, on an AMD EPYC, one
process). The samples are
stored as float32 (``lpcm`` or ``lpcm.zst``); the annotations are copied, so that
labeling works on the result; ``derived.json`` beside the tables records the source
tables' digest and the pipeline (provenance). Recordings run in parallel worker
processes; a killed run, run again, skips the signals already written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError, require
from ..onda import _kernels
from ..onda._formats import get_format
from ..onda._io import decode_into, load_rows
from ..onda._samples import SamplesInfo
from ..onda._storage import atomic_writer, filesystem_for, storage_errors
from ..onda._table_files import read_annotations, read_signals, write_annotations, write_signals
from ..onda._tables import (
    iter_signals,
    signals_table,
)
from ..onda._timespan import TimeSpan, n_samples, time_from_index
from . import _filtfilt, _resample
from ._base import Pipeline
from ._builtins import _Filter, _pad, _padlen, _sos
from ._filtfilt import decode_steps, sosfiltfilt_rows, sosfiltfilt_steps
from ._resample import input_rows, resample_steps

__all__ = ["derive_dataset"]

#: Input samples per block (per channel).
BLOCK = 1 << 17


def _reference(x: np.ndarray, reference: str | None) -> np.ndarray:
    if reference is None:
        return x
    if reference == "average":
        return x - x.mean(axis=0, keepdims=True)
    raise BatchSpecError(f"reference must be None or 'average', got {reference!r}")


def _blocks(
    sig: Any, filters: Pipeline, reference: str | None, resample: Fraction | None, block: int
) -> Iterator[np.ndarray]:
    """The derived signal in blocks (channels x time, float32): compiled, in one
    time-major buffer a block, where the kernels run, else by scipy's calls."""
    if _kernels._enabled() and _filtfilt._kernel() is not None and _resample._kernel():
        return _time_major_blocks(sig, filters, reference, resample, block)
    return _scipy_blocks(sig, filters, reference, resample, block)


def _time_major_blocks(
    sig: Any, filters: Pipeline, reference: str | None, resample: Fraction | None, block: int
) -> Iterator[np.ndarray]:
    """`_blocks` by the kernels: a block's rows (with its filters' margin and the rows
    its resampled outputs reach) decoded into a time-major float64 buffer, the filters
    run there back to back (`sosfiltfilt_steps`), then the reference and the resample
    (`resample_steps`: the whole signal's outputs, whatever the block's boundaries)
    written as float32 time steps, which the LPCM writer takes with no copy."""
    rate = sig.info.sample_rate
    n = n_samples(sig.span.duration, rate)
    margin = filters.margin(rate) if filters else 0
    designs = [(_sos(t, rate), _pad(t, rate)) for _, t in filters.item]
    pad = max((p for _, p in designs), default=0)
    ratio = None if resample is None else (resample.numerator, resample.denominator)
    up, down = ratio or (1, 1)
    channels = len(sig.info.channels)
    columns = _columns(channels)
    for a in range(0, n, block):
        b = min(a + block, n)
        first, stop = -(-a * up // down), -(-b * up // down)
        if first == stop:
            continue
        lo, hi = (a, b) if ratio is None else input_rows(up, down, n, first, stop)
        lo, hi = max(lo - margin, 0), min(hi + margin, n)
        w = _filtfilt._buffer(2, (hi - lo + 2 * pad, columns), np.float64)
        w[:, channels:] = 0.0  # zeros filter to zeros: the padding changes no channel
        x = w[pad : pad + hi - lo]
        encoded = load_rows(sig, range(lo, hi), encoded=True).data  # channels x time
        res, off = sig.info.sample_resolution_in_unit, sig.info.sample_offset_in_unit
        if not decode_steps(encoded.T, res, off, w, pad):  # straight into the buffer
            x[:, :channels] = decode_into(encoded, sig.info).T
        for sos, p in designs:
            if not sosfiltfilt_steps(sos, p, w, pad, hi - lo):
                x[...] = require("scipy.signal", "transforms").sosfiltfilt(sos, x, axis=0)
        out = np.empty((stop - first, channels), np.float32)
        resample_steps(x, lo, n, ratio, first, out, None if reference is None else (0, hi - lo))
        yield out.T


def _columns(channels: int) -> int:
    """The time-major buffer's columns for ``channels``: a multiple of 4 (AVX2's
    float64 vectors) where that adds at most an eighth, so that the filters' loop over
    a time step's channels has no scalar remainder (19 channels as 20: the sections'
    pass 13.1 -> 10.8 ms for 140k steps, on an AMD EPYC)."""
    more = -channels % 4
    return channels + more if 8 * more <= channels else channels


def _scipy_blocks(
    sig: Any, filters: Pipeline, reference: str | None, resample: Fraction | None, block: int
) -> Iterator[np.ndarray]:
    """`_blocks` by scipy's calls, each block with its own margin for the resample."""
    scipy = require("scipy.signal", "transforms")
    rate = sig.info.sample_rate
    n = n_samples(sig.span.duration, rate)
    margin = filters.margin(rate) if filters else 0
    up = down = 1
    reach = 0
    if resample is not None:
        up, down = resample.numerator, resample.denominator
        reach = (10 * max(up, down) // up + 1) * down  # resample_poly's filter, in input rows
        block = max(down, block // down * down)
    for a in range(0, n, block):
        b = min(a + block, n)
        lo, hi = max(a - margin - reach, 0), min(b + margin + reach, n)
        if resample is not None:
            lo = lo // down * down
        x = np.asarray(load_rows(sig, range(lo, hi)).data, dtype=np.float64)
        for _, t in filters.item:  # compiled where numba runs: the same bits as scipy's
            sos = t._design(rate)
            y = sosfiltfilt_rows(sos, x, _padlen(sos))
            x = scipy.sosfiltfilt(sos, x, axis=-1) if y is None else y
        x = _reference(x, reference)
        if resample is None:
            yield x[:, a - lo : b - lo].astype(np.float32)
            continue
        y = scipy.resample_poly(x, up, down, axis=-1)
        first = (a - lo) * up // down
        count = -(-b * up // down) - (-(-a * up // down))
        yield y[:, first : first + count].astype(np.float32)


def _derive_one(task: dict[str, Any]) -> dict[str, Any]:
    signals = signals_table([task["row"]])
    sig = next(iter_signals(signals))
    filters = Pipeline(task["filters"])
    resample = Fraction(task["resample"]) if task["resample"] else None
    rate = sig.info.sample_rate * (float(resample) if resample else 1)
    info = replace(
        sig.info, sample_type="float32", sample_resolution_in_unit=1.0,
        sample_offset_in_unit=0.0, sample_rate=rate,
    )  # fmt: skip
    fmt = get_format(task["file_format"])
    url = task["out_file"]
    fs, path = filesystem_for(url)
    from ..importing._convert import _write_blocks

    with storage_errors(url, action="write"), atomic_writer(fs, path) as file:
        _write_blocks(file, _blocks(sig, filters, task["reference"], resample, task["block"]),
                      fmt, info)  # fmt: skip
    n_in = n_samples(sig.span.duration, sig.info.sample_rate)
    n_out = -(-n_in * resample.numerator // resample.denominator) if resample else n_in
    marker = {"key": task["key"], "info": info.to_dict(), "n_samples": n_out}
    fs, mpath = filesystem_for(task["marker"])
    with storage_errors(task["marker"], action="write"), atomic_writer(fs, mpath) as f:
        f.write(json.dumps(marker, sort_keys=True).encode())
    return marker


def derive_dataset(
    signals: str,
    annotations: str | None,
    out: str,
    *,
    filters: Sequence[Any] = (),
    reference: str | None = None,
    resample_hz: float | None = None,
    file_format: str = "lpcm",
    name: str = "derived",
    workers: int = 1,
    progress: bool = False,
    block_samples: int = BLOCK,
) -> tuple[str, str | None]:
    """Write a derived copy of the dataset whose signals table is ``signals``.

    ``filters`` are filter transforms ([`Bandpass`][ondabatches.transforms.Bandpass],
    [`Notch`][ondabatches.transforms.Notch], ...), run in order; ``reference="average"``
    subtracts each sample's mean over the channels (after filtering); ``resample_hz``
    resamples to that rate (a rational ratio of each signal's). Returns the paths of the
    new signals and annotations tables.

    Raises
    ------
    BatchSpecError
        For a transform that is not a filter, an edge above a signal's Nyquist, or a
        rate that is not a rational ratio of a signal's.
    """
    pipeline = Pipeline(filters)
    for _, t in pipeline.item + pipeline.batch:
        if not isinstance(t, _Filter):
            raise BatchSpecError(f"derive applies filters only, got {t!r}")
    _reference(np.zeros((1, 1)), reference)
    table = read_signals(signals)
    digest = _table_digest(table)
    out = str(out).rstrip("/")
    config = {
        "filters": pipeline.config, "reference": reference, "resample_hz": resample_hz,
        "file_format": file_format, "source": str(signals), "source_digest": digest,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    tasks, rows = [], []
    for i, sig in enumerate(iter_signals(table)):
        rate = sig.info.sample_rate
        n = n_samples(sig.span.duration, rate)
        pipeline.check(rate, n, n, f"signal {i} ({sig.file_path})")
        ratio = None if resample_hz is None else _resample_ratio(resample_hz, rate, i)
        file_name = f"{sig.recording}_{sig.sensor_label}_{i}.{file_format}"
        task = {
            "row": _row(sig), "filters": pipeline.config, "reference": reference,
            "resample": str(ratio) if ratio is not None else None, "file_format": file_format,
            "out_file": f"{out}/{file_name}", "marker": f"{out}/.derive/{file_name}.done.json",
            "key": key, "block": int(block_samples),
        }  # fmt: skip
        tasks.append(task)
        rows.append((sig, file_name))
    fs, root = filesystem_for(out)
    with storage_errors(out, action="write"):
        fs.makedirs(f"{root}/.derive", exist_ok=True)
    _run_tasks(tasks, workers, progress)
    signals_out = f"{out}/{name}.onda.signal.arrow"
    write_signals(signals_out, signals_table(_derived_rows(rows, tasks, file_format)))
    annotations_out = None
    if annotations is not None:
        annotations_out = f"{out}/{name}.onda.annotation.arrow"
        write_annotations(annotations_out, read_annotations(annotations))
    fs, path = filesystem_for(f"{out}/derived.json")
    with storage_errors(out, action="write"), atomic_writer(fs, path) as f:
        f.write(json.dumps({**config, "key": key}, sort_keys=True, indent=1).encode())
    return signals_out, annotations_out


def _resample_ratio(resample_hz: float, rate: float, i: int) -> Fraction:
    """The ratio of ``resample_hz`` to signal ``i``'s ``rate``: a small rational or an error."""
    ratio = Fraction(resample_hz).limit_denominator(10_000) / Fraction(rate).limit_denominator(
        10_000
    )
    if abs(float(ratio) * rate - resample_hz) > 1e-9 * resample_hz or ratio.numerator > 1000:
        raise BatchSpecError(
            f"resample_hz={resample_hz} is not a small rational ratio of signal {i}'s "
            f"rate {rate} Hz"
        )
    return ratio


def _run_tasks(tasks: list[dict[str, Any]], workers: int, progress: bool) -> None:
    """Derive the signals not already written, on ``workers`` processes where more than one."""
    todo = [t for t in tasks if _done(t) is None]
    bar = _progress(len(tasks), len(tasks) - len(todo), progress)
    if workers > 1 and len(todo) > 1:
        _warm_up()
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_derive_one, todo):
                bar.update(1)
    else:
        for t in todo:
            _derive_one(t)
            bar.update(1)
    bar.close()


def _warm_up() -> None:
    """Load the compiled kernels here, before the workers fork, where they fork: each
    then starts with them (loading numba and its cache takes about 2 s a process,
    more than the work on a few recordings: 2 workers took 1.06 s for 4 x 10 min of 19
    channels, one process 0.37 s, on a 2-core AMD EPYC)."""
    import multiprocessing

    if multiprocessing.get_start_method() == "fork" and _kernels._enabled():
        _filtfilt._kernel()
        _resample._kernel()


def _derived_rows(
    rows: list[tuple[Any, str]], tasks: list[dict[str, Any]], file_format: str
) -> list[dict[str, Any]]:
    """The derived signals' rows, from the source rows and the markers their tasks wrote."""
    out_rows = []
    for (sig, file_name), task in zip(rows, tasks, strict=True):
        done = _done(task)
        info = SamplesInfo.from_dict(done["info"])
        stop = sig.span.start + time_from_index(done["n_samples"], info.sample_rate)
        span = TimeSpan(sig.span.start, stop)
        out_rows.append(
            {**_row(sig), **info.to_dict(), "file_path": file_name, "file_format": file_format,
             "span": span}
        )  # fmt: skip
    return out_rows


def _row(sig: Any) -> dict[str, Any]:
    return {
        "recording": sig.recording, "file_path": sig.file_path, "file_format": sig.file_format,
        "span": sig.span, "sensor_label": sig.sensor_label, **sig.info.to_dict(),
    }  # fmt: skip


def _done(task: dict[str, Any]) -> dict[str, Any] | None:
    fs, path = filesystem_for(task["marker"])
    try:
        done = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    if done.get("key") != task["key"]:
        return None
    fs, path = filesystem_for(task["out_file"])
    return done if fs.exists(path) else None


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="signal", desc="derive", disable=not enabled,
                file=os.sys.stderr)  # fmt: skip


def _table_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]
