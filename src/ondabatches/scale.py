"""A production-scale Onda dataset in seconds: sparse sample files, real tables and labels.

[`make_scale_dataset`][ondabatches.scale.make_scale_dataset] writes what a sleep lab's
archive looks like to the library (thousands of multichannel recordings of ~10^8
samples, sleep-stage annotations over every recording, labels stored lazily) while
costing almost no disk: each sample file is a *sparse* file, truncated to its full size,
with real bytes only in a few known blocks. Reading a hole gives zeros; reading a known
block gives values that
[`ScaleDataset.expected`][ondabatches.scale.ScaleDataset.expected] predicts, so tests
can check every byte a batch read.

Everything is a pure function of the arguments.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ._errors import ArgumentError
from .labels._labels import label_signals
from .labels._stored import write_labeled_signals
from .onda._arrow import timespan_array, uuid_array_from_bytes
from .onda._samples import SamplesInfo, sample_dtype
from .onda._table_files import write_annotations, write_signals
from .onda._tables import annotations_table, signals_table
from .onda._timespan import TimeSpan, index_from_time, time_from_index
from .synthetic import EPOCH, STAGE_ENCODING, STAGES, _eeg_rows

__all__ = ["ScaleDataset", "known_pattern", "make_scale_dataset"]

_META = "scale.json"

#: The channels of a scale recording: the 10-20 system's 19 EEG electrodes, then numbered.
CHANNELS_10_20 = (
    "fp1", "fp2", "f7", "f3", "fz", "f4", "f8", "t3", "c3", "cz",
    "c4", "t4", "t5", "p3", "pz", "p4", "t6", "o1", "o2",
)  # fmt: skip


def _channel_names(n: int) -> tuple[str, ...]:
    if n <= len(CHANNELS_10_20):
        return CHANNELS_10_20[:n]
    return CHANNELS_10_20 + tuple(f"ch{i}" for i in range(len(CHANNELS_10_20), n))


def known_pattern(recording_index: int, n_channels: int, rows: range) -> np.ndarray:
    """The values written at sample ``rows`` of a known block (channels x time, int64).

    Values are 1..127: they fit every sample type and are never 0, which a hole reads as.
    """
    j = np.arange(rows.start, rows.stop, dtype=np.int64)
    ch = np.arange(n_channels, dtype=np.int64)[:, None]
    return (recording_index * 31 + ch * 7 + j) % 127 + 1


@dataclass(frozen=True)
class ScaleDataset:
    """What [`make_scale_dataset`][ondabatches.scale.make_scale_dataset] wrote (paths
    only: the tables are read on demand).

    Attributes
    ----------
    root:
        The dataset folder.
    signals_path, annotations_path:
        The ``onda.signal@2`` and ``onda.annotation@1`` (with ``stage``) tables.
    labeled_path:
        The labeled table with labels stored lazily
        ([`store_labels`][ondabatches.labels.store_labels]), readable with
        [`read_labeled_signals`][ondabatches.labels.read_labeled_signals].
    labels_root:
        The folder of the label files.
    recordings:
        The recordings' UUIDs, in table order.
    info:
        The [`SamplesInfo`][ondabatches.onda.SamplesInfo] every signal shares.
    n_samples:
        Samples per channel of every signal.
    known_spans:
        Spans (relative to each recording, on label epochs) holding known values in the
        first ``known_recordings`` recordings; everywhere else the files are holes.
    """

    root: Path
    signals_path: Path
    annotations_path: Path
    labeled_path: Path
    labels_root: Path
    recordings: tuple[uuid.UUID, ...]
    info: SamplesInfo
    n_samples: int
    known_spans: tuple[TimeSpan, ...]
    known_recordings: int

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> ScaleDataset:
        """The dataset [`make_scale_dataset`][ondabatches.scale.make_scale_dataset]
        wrote under ``root`` (from its ``scale.json``).

        Examples
        --------
        >>> written = make_scale_dataset("scale", n_recordings=2, n_samples=10**6)
        >>> ds = ScaleDataset.open("scale")
        >>> ds == written, ds.n_recordings, ds.n_samples
        (True, 2, 1000000)
        """
        root = Path(root).resolve()
        meta = json.loads((root / _META).read_text())
        return cls(
            root=root,
            signals_path=root / "signals.arrow",
            annotations_path=root / "annotations.arrow",
            labeled_path=root / "labeled.arrow",
            labels_root=root / "labels",
            recordings=tuple(uuid.UUID(r) for r in meta["recordings"]),
            info=SamplesInfo.from_dict(meta["info"]),
            n_samples=meta["n_samples"],
            known_spans=tuple(TimeSpan.from_value(s) for s in meta["known_spans"]),
            known_recordings=meta["known_recordings"],
        )

    def _save(self) -> None:
        meta = {
            "recordings": [str(r) for r in self.recordings],
            "info": self.info.to_dict(),
            "n_samples": self.n_samples,
            "known_spans": [s.to_dict() for s in self.known_spans],
            "known_recordings": self.known_recordings,
        }
        (self.root / _META).write_text(json.dumps(meta))

    @property
    def n_recordings(self) -> int:
        return len(self.recordings)

    @property
    def file_bytes(self) -> int:
        """The apparent size of one sample file."""
        return self.n_samples * self.info.bytes_per_sample

    def sample_path(self, index: int) -> Path:
        """The sample file of recording ``index``."""
        return self.root / str(self.recordings[index]) / "eeg.lpcm"

    def expected(self, recording: uuid.UUID | int, window: TimeSpan) -> np.ndarray:
        """The encoded samples (channels x time) that loading ``window`` must give.

        ``window`` is relative to the recording, as a batch item's; it selects exactly
        ``floor(duration * rate)`` samples from the sample at its start, as batches do.
        Known blocks give [`known_pattern`][ondabatches.scale.known_pattern]; holes give zeros.

        Examples
        --------
        >>> ds = make_scale_dataset("scale", n_recordings=2, n_samples=10**6)
        >>> ds.known_spans[0], ds.info.sample_rate
        (TimeSpan(0 s, 60 s), 256.0)
        >>> ds.expected(ds.recordings[0], ds.known_spans[0]).shape
        (19, 15360)
        """
        from .onda._timespan import window_sample_range

        index = recording if isinstance(recording, int) else self.recordings.index(recording)
        rows = window_sample_range(window, self.info.sample_rate)
        out = np.zeros((self.info.n_channels, len(rows)), dtype=self.info.dtype)
        if index >= self.known_recordings:
            return out
        for span in self.known_spans:
            block = window_sample_range(span, self.info.sample_rate)
            lo, hi = max(rows.start, block.start), min(rows.stop, block.stop)
            if lo < hi:
                out[:, lo - rows.start : hi - rows.start] = known_pattern(
                    index, self.info.n_channels, range(lo, hi)
                )
        return out


def _uuid_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUIDs as canonical bytes, shape ``(n, 16)``."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _runs(rng: np.random.Generator, n_epochs: int, run_epochs: tuple[int, int]) -> np.ndarray:
    """Run lengths (epochs) of contiguous same-stage annotations covering ``n_epochs``."""
    low, high = run_epochs
    lengths = rng.integers(low, high + 1, size=n_epochs // low + 1)
    ends = np.cumsum(lengths)
    count = int(np.searchsorted(ends, n_epochs)) + 1
    lengths = lengths[:count]
    lengths[-1] -= ends[count - 1] - n_epochs
    return lengths[lengths > 0]


def _stage_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Stage indices for ``n`` consecutive runs, each differing from the previous one."""
    n_stages = len(STAGES) - 1  # no_stage is left out: every epoch is scored
    steps = rng.integers(1, n_stages, size=n)
    return np.cumsum(steps) % n_stages


def _write_sparse(path: Path, size: int, blocks: list[range], pattern, info: SamplesInfo) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for rows in blocks:
            data = np.ascontiguousarray(pattern(rows).T, dtype=info.dtype)
            os.pwrite(f.fileno(), data.tobytes(), rows.start * info.bytes_per_sample)


def _known_blocks(
    n_epochs: int, known_blocks: int, block_epochs: int, sample_rate: float
) -> tuple[tuple[TimeSpan, ...], list[range]]:
    """The spans of the blocks of known values, spread evenly from the first labeled
    epoch to the last, and their sample rows."""
    last = n_epochs - block_epochs
    firsts = sorted({last * b // max(known_blocks - 1, 1) for b in range(known_blocks)})
    known_spans = tuple(TimeSpan(e * EPOCH, (e + block_epochs) * EPOCH) for e in firsts)
    block_rows = [
        range(index_from_time(s.start, sample_rate), index_from_time(s.stop, sample_rate))
        for s in known_spans
    ]

    return known_spans, block_rows


def _scale_annotations(
    rng: np.random.Generator,
    canonical: np.ndarray,
    n_epochs: int,
    run_epochs: tuple[int, int],
    span: TimeSpan,
) -> pa.Table:
    """Stage annotations of each recording (``canonical``: their ids' bytes) end to end,
    built column-wise: ~200 runs per 10^8-sample recording."""
    lengths = [_runs(rng, n_epochs, run_epochs) for _ in range(len(canonical))]
    counts = np.array([len(x) for x in lengths])
    owner = np.repeat(np.arange(len(canonical)), counts)
    length_ns = np.concatenate(lengths).astype(np.int64) * EPOCH
    ends = np.cumsum(length_ns)
    group_end = np.cumsum(counts)
    stops = ends - np.repeat(np.r_[0, ends[group_end[:-1] - 1]], counts)  # from each recording's 0
    starts = stops - length_ns
    stops[group_end - 1] = span.stop  # the last run ends with the signal, mid-epoch
    stages = np.concatenate([_stage_codes(rng, int(c)) for c in counts])
    stage_column = pa.DictionaryArray.from_arrays(
        pa.array(stages, pa.int32()), pa.array(STAGES)
    ).cast(pa.string())
    return annotations_table(
        pa.table(
            {
                "recording": uuid_array_from_bytes(canonical[owner]),
                "id": uuid_array_from_bytes(_uuid_bytes(rng, len(owner))),
                "span": timespan_array(starts, stops),
                "stage": stage_column,
            }
        )
    )


def _check_scale_size(n_recordings: int, n_channels: int) -> None:
    if n_recordings < 1 or n_channels < 1:
        raise ArgumentError(
            f"need at least one recording and channel, got {n_recordings} and {n_channels}"
        )


def _check_scale_epochs(n_epochs: int, n_samples: int, sample_rate: float, least: int) -> None:
    if n_epochs < least:
        raise ArgumentError(
            f"{n_samples} samples at {sample_rate} Hz hold {n_epochs} epochs of 30 s; "
            f"need at least {least}"
        )


def _write_scale_signals(
    root: Path,
    recordings: tuple[uuid.UUID, ...],
    info: SamplesInfo,
    n_samples: int,
    span: TimeSpan,
    block_rows: list[range],
    known_recordings: int,
) -> pa.Table:
    """Write each recording's sparse ``eeg.lpcm`` (known blocks in the first
    ``known_recordings``) and return their signals table."""
    n_channels = len(info.channels)
    for i, rec in enumerate(recordings):
        (root / str(rec)).mkdir(exist_ok=True)
        blocks = block_rows if i < known_recordings else []
        _write_sparse(
            root / str(rec) / "eeg.lpcm",
            n_samples * info.bytes_per_sample,
            blocks,
            lambda rows, i=i: known_pattern(i, n_channels, rows),
            info,
        )
    return signals_table(_eeg_rows(recordings, span, info))


def _write_scale_tables(
    root: Path, signals: pa.Table, annotations: pa.Table
) -> tuple[Path, Path, Path, Path]:
    """Write the signals and annotations tables, label the signals with their labels
    stored under ``root / "labels"``, and write the labeled table; return the paths."""
    signals_path, annotations_path = root / "signals.arrow", root / "annotations.arrow"
    write_signals(signals_path, signals)
    write_annotations(annotations_path, annotations)
    labels_root = root / "labels"
    labeled = label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING,
        store=labels_root,
    )  # fmt: skip
    labeled_path = root / "labeled.arrow"
    write_labeled_signals(labeled_path, labeled)
    return signals_path, annotations_path, labeled_path, labels_root


def make_scale_dataset(
    root: str | os.PathLike[str],
    *,
    n_recordings: int,
    n_channels: int = 19,
    n_samples: int = 10**8,
    sample_rate: float = 256.0,
    sample_type: str = "int16",
    seed: int = 0,
    run_epochs: tuple[int, int] = (10, 120),
    known_blocks: int = 2,
    block_epochs: int = 2,
    known_recordings: int | None = 8,
) -> ScaleDataset:
    """Write a large, sparse Onda dataset with lazily stored labels under ``root``.

    Each recording has one signal ``<recording>/eeg.lpcm`` of ``n_channels`` x
    ``n_samples`` starting at the recording's start, written as a sparse file of full
    size (``10^8`` int16 samples x 19 channels: 3.8 GB apparent, a few kB on disk).
    The first ``known_recordings`` recordings (all if None) hold known values
    ([`known_pattern`][ondabatches.scale.known_pattern]) in ``known_blocks`` blocks of
    ``block_epochs`` label epochs, spread evenly from the first labeled epoch to the
    last.

    Sleep stages annotate every recording end to end, in contiguous runs of
    ``run_epochs`` (inclusive range) 30 s epochs, each a different stage from the
    last; the final annotation ends with the signal, off an epoch boundary, as real
    scorings do. The labels are computed by [`label_signals`][ondabatches.labels.label_signals] and
    stored as they are (``store=``: one small file per recording), which gives the
    table [`store_labels`][ondabatches.labels.store_labels] would.

    Writes ``signals.arrow``, ``annotations.arrow``, ``labeled.arrow``,
    ``labels/<recording>/labels_eeg.lpcm`` and ``scale.json`` (what
    [`ScaleDataset.open`][ondabatches.scale.ScaleDataset.open] reads back); sample
    ``file_path`` values are relative.

    Parameters
    ----------
    root:
        The folder to write (created if needed).
    n_recordings, n_channels, n_samples, sample_rate, sample_type:
        The size and layout of every signal.
    seed:
        Recording ids, annotation ids and stages are a pure function of it.
    run_epochs:
        The shortest and longest run of one stage, in epochs.
    known_blocks, block_epochs, known_recordings:
        Where real bytes are written (see above).

    Examples
    --------
    >>> import tempfile
    >>> ds = make_scale_dataset(tempfile.mkdtemp(), n_recordings=2, n_samples=10**6)
    >>> ds.sample_path(0).stat().st_size == 10**6 * 19 * 2
    True
    """
    _check_scale_size(n_recordings, n_channels)
    info = SamplesInfo(
        "eeg", _channel_names(n_channels), "microvolt", 0.5, 0.0, sample_type, sample_rate
    )
    sample_dtype(sample_type, where="make_scale_dataset")
    # Absolute: the stored labels' paths must not depend on the working directory.
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    span = TimeSpan(0, time_from_index(n_samples, sample_rate))
    n_epochs = span.duration // EPOCH
    _check_scale_epochs(n_epochs, n_samples, sample_rate, max(run_epochs[0], block_epochs))
    known_recordings = min(
        n_recordings if known_recordings is None else known_recordings, n_recordings
    )
    known_spans, block_rows = _known_blocks(n_epochs, known_blocks, block_epochs, sample_rate)

    rng = np.random.default_rng(seed)
    canonical = _uuid_bytes(rng, n_recordings)
    recordings = tuple(uuid.UUID(bytes=bytes(row)) for row in canonical)
    signals = _write_scale_signals(
        root, recordings, info, n_samples, span, block_rows, known_recordings
    )
    annotations = _scale_annotations(rng, canonical, n_epochs, run_epochs, span)

    signals_path, annotations_path, labeled_path, labels_root = _write_scale_tables(
        root, signals, annotations
    )
    dataset = ScaleDataset(
        root=root,
        signals_path=signals_path,
        annotations_path=annotations_path,
        labeled_path=labeled_path,
        labels_root=labels_root,
        recordings=recordings,
        info=info,
        n_samples=n_samples,
        known_spans=known_spans,
        known_recordings=known_recordings,
    )
    dataset._save()
    return dataset
