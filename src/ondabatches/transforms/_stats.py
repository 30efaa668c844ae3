"""Per-channel statistics of whole recordings, computed out of core and stored with the
dataset, for [`Normalize`][ondabatches.transforms.Normalize] ``(scope="recording")``.

Each signal is streamed in blocks (never whole in memory). Integer samples of up to 16
bits are counted in an exact histogram of their stored values, so the median and
quartiles are exactly ``numpy.percentile``'s over the whole recording; wider types
take a second pass over a 65,536-bin histogram between each channel's extremes (within
1/65,536 of the range). Mean and standard deviation come from float64 sums. Values
are in the signal's unit (decoded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import BatchSpecError
from ..onda._io import load_rows
from ..onda._storage import atomic_writer, filesystem_for, is_local, storage_errors
from ..onda._tables import iter_signals
from ..onda._timespan import n_samples

__all__ = ["RecordingStatistics", "load_recording_statistics", "recording_statistics"]

_BINS = 1 << 16


@dataclass(frozen=True)
class RecordingStatistics:
    """Per signal (its ``file_path``), per channel: ``mean``, ``std``, ``median``, ``q1``,
    ``q3``. [`to_dict`][ondabatches.transforms.RecordingStatistics.to_dict] (the file's
    URL and a digest) is what a state's config holds."""

    path: str
    signals: Mapping[str, Mapping[str, list[float]]]
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecordingStatistics:
        if not isinstance(d, Mapping) or not {"path", "digest"} <= set(d):
            raise BatchSpecError(f"recording statistics are {{'path', 'digest'}}, got {d!r}")
        stats = load_recording_statistics(str(d["path"]))
        if stats.digest != d["digest"]:
            raise BatchSpecError(
                f"the statistics in {d['path']} changed: digest {stats.digest}, expected "
                f"{d['digest']} (the state was made with other statistics)"
            )
        return stats

    def __hash__(self) -> int:
        return hash((self.path, self.digest))

    def of(self, file_path: str, where: str) -> Mapping[str, np.ndarray]:
        found = self.signals.get(file_path)
        if found is None:
            raise BatchSpecError(
                f"no recording statistics for {where} ({file_path}) in {self.path}: compute "
                f"them over the table the batches come from"
            )
        return _arrays(self.path, self.digest, file_path)


@lru_cache(maxsize=4096)
def _arrays(path: str, digest: str, file_path: str) -> dict[str, np.ndarray]:
    raw = load_recording_statistics(path).signals[file_path]
    return {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in raw.items()}


@lru_cache(maxsize=16)
def load_recording_statistics(path: str) -> RecordingStatistics:
    """The statistics
    [`recording_statistics`][ondabatches.transforms.recording_statistics] wrote to
    ``path``."""
    fs, local = filesystem_for(path)
    with storage_errors(path):
        raw = json.loads(fs.cat_file(local))
    return RecordingStatistics(path, raw["signals"], raw["digest"])


def recording_statistics(
    signals: pa.Table, path: str, *, block_samples: int = 1 << 20
) -> RecordingStatistics:
    """Compute every signal's per-channel statistics, streamed, and write them (JSON) to
    ``path`` (local or a URL; the folder of the dataset, say). A later run reuses them
    with [`load_recording_statistics`][ondabatches.transforms.load_recording_statistics]
    or ``RecordingStatistics.from_dict``."""
    out: dict[str, dict[str, list[float]]] = {}
    for sig in iter_signals(signals):
        if sig.file_path in out:
            continue
        out[sig.file_path] = _signal_stats(sig, block_samples)
    text = json.dumps(out, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    fs, local = filesystem_for(path)
    with storage_errors(path, action="write"):
        if is_local(fs) and "/" in local:
            fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
        with atomic_writer(fs, local) as f:
            f.write(json.dumps({"signals": out, "digest": digest}, sort_keys=True).encode())
    load_recording_statistics.cache_clear()
    return RecordingStatistics(path, out, digest)


def _blocks(sig: Any, block: int):
    n = n_samples(sig.span.duration, sig.info.sample_rate)
    for start in range(0, n, block):
        yield load_rows(sig, range(start, min(start + block, n)), encoded=True).data


def _signal_stats(sig: Any, block: int) -> dict[str, list[float]]:
    info = sig.info
    dtype = np.dtype(info.sample_type)
    n_ch = len(info.channels)
    total, sums, squares = 0, np.zeros(n_ch), np.zeros(n_ch)
    exact = dtype.kind in "iu" and dtype.itemsize <= 2
    lo = np.full(n_ch, np.inf)
    hi = np.full(n_ch, -np.inf)
    if exact:
        base = int(np.iinfo(dtype).min)
        counts = np.zeros((n_ch, 1 << (8 * dtype.itemsize)), dtype=np.int64)
    for data in _blocks(sig, block):
        values = data.astype(np.float64)
        total += data.shape[1]
        sums += values.sum(axis=1)
        squares += (values * values).sum(axis=1)
        lo = np.minimum(lo, values.min(axis=1))
        hi = np.maximum(hi, values.max(axis=1))
        if exact:
            for c in range(n_ch):
                counts[c] += np.bincount(data[c].astype(np.int64) - base, minlength=counts.shape[1])
    if total == 0:
        raise BatchSpecError(f"signal {sig.file_path} holds no samples")
    if exact:
        edges = [np.arange(counts.shape[1], dtype=np.float64) + base] * n_ch
    else:  # a second pass: a fine histogram between each channel's extremes
        counts = np.zeros((n_ch, _BINS), dtype=np.int64)
        width = np.where(hi > lo, (hi - lo) / (_BINS - 1), 1.0)
        for data in _blocks(sig, block):
            index = np.rint((data.astype(np.float64) - lo[:, None]) / width[:, None]).astype(
                np.int64
            )
            for c in range(n_ch):
                counts[c] += np.bincount(index[c], minlength=_BINS)
        edges = [lo[c] + np.arange(_BINS) * width[c] for c in range(n_ch)]
    mean = sums / total
    std = np.sqrt(np.maximum(squares / total - mean**2, 0.0))
    quant = np.array([[_percentile(counts[c], edges[c], q, total) for q in (0.25, 0.5, 0.75)]
                      for c in range(n_ch)])  # fmt: skip
    res, off = info.sample_resolution_in_unit, info.sample_offset_in_unit
    decoded = quant * res + off
    if res < 0:
        decoded = decoded[:, ::-1]
    return {
        "mean": (mean * res + off).tolist(),
        "std": (std * abs(res)).tolist(),
        "q1": decoded[:, 0].tolist(),
        "median": decoded[:, 1].tolist(),
        "q3": decoded[:, 2].tolist(),
    }


def _percentile(counts: np.ndarray, values: np.ndarray, q: float, total: int) -> float:
    """numpy.percentile's linear interpolation, from a histogram of the values."""
    position = q * (total - 1)
    below = int(np.floor(position))
    cum = np.cumsum(counts)
    a = values[int(np.searchsorted(cum, below + 1))]
    b = values[int(np.searchsorted(cum, min(below + 2, total)))]
    return float(a + (b - a) * (position - below))
