"""The pipeline of the end-to-end tests: a synthetic dataset on S3, labeled, batched, served."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ondabatches.abc import BatchScheme, Materializer
from ondabatches.batches import RandomBatches
from ondabatches.labels import label_signals, sort_and_trim_spans, store_labels
from ondabatches.materialize import materialize_batch
from ondabatches.onda import read_annotations, read_signals
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, SyntheticDataset, make_dataset

N_RECORDINGS = 8
DURATION = 10 * 60 * 10**9
BATCH_SIZE = 8
BATCH_DURATION = 60 * 10**9
#: 128 Hz rows are lpcm (int16), 256 Hz rows lpcm.zst (float32): see ondabatches.synthetic.
RATES = {"lpcm": 128.0, "lpcm.zst": 256.0}


@dataclass(frozen=True)
class Dataset:
    """A synthetic dataset on local disk and its copy on S3."""

    local: SyntheticDataset
    s3_root: str  # s3://bucket/prefix, holding signals.arrow, annotations.arrow, <recording>/...


def make_s3_dataset(local_root: Path, fs, s3_root: str) -> Dataset:
    ds = make_dataset(local_root, n_recordings=N_RECORDINGS, duration=DURATION)
    fs.put(str(ds.root) + "/", s3_root + "/", recursive=True)
    return Dataset(ds, s3_root)


def label(signals: pa.Table, annotations: pa.Table) -> pa.Table:
    annotations = sort_and_trim_spans(annotations, epoch=EPOCH, by="recording")
    return label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )


def local_labeled(ds: Dataset, labels_root: Path) -> pa.Table:
    """The reference: tables and samples from local disk, labels stored on local disk."""
    return store_labels(label(ds.local.signals, ds.local.annotations), labels_root)


def s3_labeled(ds: Dataset, labels_url: str) -> pa.Table:
    """Everything from S3: tables read from s3://, labels stored to and read from S3.

    Absolute ``file_path`` values written on this machine are rerooted to the S3 copy;
    relative ones resolve against the table's s3:// URL.
    """
    signals = read_signals(f"{ds.s3_root}/signals.arrow", reroot={str(ds.local.root): ds.s3_root})
    annotations = read_annotations(f"{ds.s3_root}/annotations.arrow")
    return store_labels(label(signals, annotations), labels_url)


def at_rate(table: pa.Table, file_format: str) -> pa.Table:
    """The EEG rows of one file format (one sample rate, so that items stack)."""
    table = table.filter(pc.equal(table.column("sensor_label"), "eeg"))
    return table.filter(pc.equal(table.column("sample_rate"), RATES[file_format]))


def scheme(table: pa.Table, batch_size: int = BATCH_SIZE) -> RandomBatches:
    return RandomBatches(table, n_channels=2, batch_size=batch_size, batch_duration=BATCH_DURATION)


def reference_batches(
    table: pa.Table, n: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` batches materialized in this process, one item after the other."""
    batches = scheme(table)
    state = batches.initial_state(seed)
    out = []
    for _ in range(n):
        batch, state = batches.iterate_batch(state)
        out.append(materialize_batch(batch))
    return out


def take(batcher, state, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    batcher.start(state)
    out = []
    for _ in range(n):
        arrays, state = batcher.take(state)
        out.append(arrays)
    return out


def n_identical(got, want) -> int:
    """How many batches of ``got`` equal (values, dtypes, shapes) those of ``want``."""
    return sum(
        x.dtype == wx.dtype
        and y.dtype == wy.dtype
        and np.array_equal(x, wx)
        and np.array_equal(y, wy)
        for (x, y), (wx, wy) in zip(got, want, strict=True)
    )


class DieOnce(Materializer):
    """A materializer that kills its own worker process midway through one batch, once.

    The first call anywhere (a marker file decides, atomically) materializes half of the
    batch, then SIGKILLs its process; every other call is plain ``materialize_batch``.
    """

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, batch, dtype):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return materialize_batch(batch, dtype)
        materialize_batch(batch[: max(1, len(batch) // 2)], dtype)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")


class Finite(BatchScheme):
    """The first ``n`` batches of a scheme, so that a Batcher materializes no others."""

    def __init__(self, batches, n: int):
        self.batches = batches
        self.n = n

    def iterate_batch(self, state):
        return None if state.index >= self.n else self.batches.iterate_batch(state)
