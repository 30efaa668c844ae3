"""A polysomnography-like dataset for montage tests, and an independent decoder.

Its fixtures ``psg`` and ``psg_labeled`` are a pytest plugin of ``tests/conftest.py``.

Recording ``i`` has EEG layout ``i % 4`` (128 Hz int16 lpcm, 256 Hz float32 lpcm.zst,
143.5 Hz int32 lpcm.zst with an offset, 200 Hz uint16 lpcm with an offset), EOG at
64 Hz starting 3 s after the EEG, a chin EMG at 512 Hz starting 70 s after it (so it
misses the first labels), and, on even recordings, ECG at 256 Hz (lpcm.zst).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest
import zstandard

from ondabatches.labels import label_signals, sort_and_trim_spans
from ondabatches.materialize import Bipolar
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, SyntheticDataset, make_dataset

S = 10**9
MONTAGE = {
    "eeg": ("eeg", Bipolar(["c3-m2"])),
    "eog": ("eog", ["eog-l", "eog-r"]),
    "emg": ("emg", None),
    "ecg": "ecg",
}


def make_psg(root) -> SyntheticDataset:
    return make_dataset(
        root, n_recordings=4, duration=8 * 60 * S, eog_every=1, ecg_every=2, emg_every=1,
        offsets={"eog": 3 * S, "emg": 70 * S},
    )  # fmt: skip


def label(ds: SyntheticDataset, signals: pa.Table | None = None) -> pa.Table:
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    return label_signals(
        ds.signals if signals is None else signals, annotations, labels_column="stage",
        epoch=EPOCH, encoding=STAGE_ENCODING, partial_signals=True,
    )  # fmt: skip


@pytest.fixture(scope="session")
def psg(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    return make_psg(tmp_path_factory.mktemp("psg"))


@pytest.fixture(scope="session")
def psg_labeled(psg: SyntheticDataset) -> pa.Table:
    return label(psg)


def decode_file(part) -> np.ndarray:
    """The whole sample file of a part, decoded to float64 with plain numpy and zstandard."""
    with open(part.file_path, "rb") as f:
        raw = f.read()
    if part.file_format == "lpcm.zst":
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(raw), read_across_frames=True
        )
        raw = reader.read()
    info = part.info
    enc = np.frombuffer(raw, dtype=np.dtype(info.sample_type).newbyteorder("<"))
    enc = enc.reshape(-1, len(info.channels)).T
    return enc.astype(np.float64) * info.sample_resolution_in_unit + info.sample_offset_in_unit


def window_rows(part) -> tuple[int, int]:
    """First row and count of the part's window, from the index rules with exact fractions."""
    rate = Fraction(part.info.sample_rate).limit_denominator(1000)
    first = (part.window.start - part.signal_span.start) * rate // S
    return int(first), int(part.window.duration * rate // S)


def select(part, full: np.ndarray) -> np.ndarray:
    """The part's channel selector applied by hand."""
    names = list(part.info.channels)
    sel = part.channels
    if sel is None:
        return full
    if isinstance(sel, Bipolar):
        rows = []
        for d in sel.derivations:
            a, b = d.split("-")
            rows.append(full[names.index(a)] - full[names.index(b)])
        return np.stack(rows)
    return full[[names.index(c) for c in sel]]


def montage_schemes(labeled: pa.Table) -> dict:
    """The schemes of the Batcher's montage conformance suite, by name.

    Random batches with zero-filled modalities (EEG brought to 128 Hz, as its rate
    differs between recordings; the others at their own rates), and 2 ranks of
    sequential batches resampled to 128 Hz and concatenated (recordings without ECG
    excluded).
    """
    import warnings

    from ondabatches import RandomBatches, SequentialBatches
    from ondabatches.batches import ExcludedRecordingsWarning

    random = RandomBatches(labeled, modalities=MONTAGE, missing="zero-fill", batch_size=4,
                           batch_duration=60 * S, resample={"rate": {"eeg": 128}})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        ranks = [
            SequentialBatches(labeled, modalities=MONTAGE, batch_size=3, batch_duration=60 * S,
                              resample={"rate": 128, "concatenate": True}, world_size=2,
                              rank=rank)
            for rank in (0, 1)
        ]  # fmt: skip
    return {"random": random, "rank0": ranks[0], "rank1": ranks[1]}
