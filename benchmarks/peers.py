"""Peers: ondabatches against braindecode + torch ``DataLoader`` on the same EDF files.

The everyday workload (random 30 s windows of 19 EEG channels at 256 Hz, batches of
32), on EDF files written here with pyedflib, read by both sides:

- braindecode (1.x): the EDF files opened lazily with MNE (``mne.io.read_raw_edf(path,
  preload=False)``), each wrapped in a ``RawDataset``, cut into 30 s windows with
  ``create_fixed_length_windows`` (``preload=False``: each window is read from the EDF
  when it is drawn, through ``EEGWindowsDataset``), drawn in a random order by a torch
  ``DataLoader`` with 2 worker processes, batches of 32;
- ondabatches: the same EDF files imported with :func:`~ondabatches.edf.import_edf`
  (digital values kept bit for bit, the EDF's scaling as the Onda encoding), random
  30 s windows from ``RandomBatches``, materialized by a ``Batcher`` with 2 worker
  processes (exact float32 values).

Before timing, the same window (the 3rd 30 s window of the 2nd recording) is loaded by
both sides and compared in physical units (MNE gives volts, Onda the EDF's
microvolts). Both are timed in steady state (after their first batches), interleaved,
and the figure is windows per second; goal: ondabatches at least 6x braindecode.

Needs the optional extra ``peers`` (``pip install 'ondabatches[peers]'``: braindecode,
torchaudio, mne, torch, pyedflib), with torch installed first and alone (the README's
install section): braindecode imports torchaudio, whose compiled part must come from
the same build as torch (PyPI's Linux x86_64 torchaudio is a CUDA build, which does not
load beside the CPU torch: take both from PyTorch's CPU index, or a CUDA torch).
Run ``ondabatches bench peers [--quick]`` or ``python -m benchmarks.peers [--quick]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ondabatches._errors import MissingDependencyError, require

from ._report import Result, script_main

__all__ = ["run", "write_edf_recordings"]

RATE = 256
CHANNELS = tuple(
    "Fp1 Fp2 F7 F3 Fz F4 F8 T3 C3 Cz C4 T4 T5 P3 Pz P4 T6 O1 O2".split()
)  # the 10-20 system's 19 EEG electrodes
WINDOW_S = 30
BATCH = 32
WORKERS = 2
# Digital -32768..32767 onto -3276.8..3276.7 uV: 0.1 uV per step, offset 0.
_PHYSICAL = (-3276.8, 3276.7)
_DIGITAL = (-32768, 32767)


def _peers() -> tuple[Any, Any, Any]:
    """braindecode, mne and torch, or an error saying what to install."""
    import warnings

    torch = require("torch", "peers")
    try:
        with warnings.catch_warnings():  # its models' import-time FutureWarnings (MNE's)
            warnings.simplefilter("ignore", FutureWarning)
            braindecode = require("braindecode", "peers")
            for module in ("braindecode.datasets", "braindecode.preprocessing"):
                require(module, "peers")
    except OSError as exc:  # braindecode imports torchaudio, whose library did not load
        raise MissingDependencyError(
            f"braindecode could not import torchaudio beside torch {torch.__version__}: "
            f"{exc}. torchaudio's compiled library must come from the same build as "
            "torch (PyPI's Linux x86_64 torchaudio is a CUDA build): install both from "
            "one index, e.g. PyTorch's CPU wheel index for a CPU torch"
        ) from exc
    return braindecode, require("mne", "peers"), torch


def write_edf_recordings(folder: Path, n_recordings: int, minutes: int) -> list[Path]:
    """EDF files of 19 EEG channels at 256 Hz: band-limited noise of EEG amplitude."""
    import pyedflib

    paths = []
    n = minutes * 60 * RATE
    for i in range(n_recordings):
        rng = np.random.default_rng([7, i])
        noise = rng.normal(0, 300, (len(CHANNELS), n + 8))
        digital = np.clip(np.rint(sum(noise[:, k : k + n] for k in range(8)) / 8), -32768, 32767)
        path = folder / f"rec{i:02d}.edf"
        writer = pyedflib.EdfWriter(str(path), len(CHANNELS), file_type=pyedflib.FILETYPE_EDF)
        try:
            writer.setSignalHeaders(
                [
                    {
                        "label": f"EEG {ch}", "dimension": "uV", "sample_frequency": RATE,
                        "physical_min": _PHYSICAL[0], "physical_max": _PHYSICAL[1],
                        "digital_min": _DIGITAL[0], "digital_max": _DIGITAL[1],
                        "transducer": "", "prefilter": "",
                    }
                    for ch in CHANNELS
                ]
            )  # fmt: skip
            writer.writeSamples(list(digital.astype(np.int32)), digital=True)
        finally:
            writer.close()
        paths.append(path)
    return paths


def _onda_side(paths: list[Path], root: Path):
    """Import the EDF files; a labeled table with one label per 30 s epoch."""
    import pyarrow as pa

    from ondabatches.edf import import_edf
    from ondabatches.labels import label_signals
    from ondabatches.onda import TimeSpan, annotations_table, read_signals

    epoch = WINDOW_S * 10**9
    signals, annotations = [], []
    for i, path in enumerate(paths):
        recording = uuid.UUID(int=i + 1)
        import_edf(path, root, recording=recording)
        table = read_signals(root / f"{path.stem}.onda.signal.arrow")  # absolute paths
        signals.append(table)
        n_epochs = TimeSpan.from_value(table.column("span")[0].as_py()).stop // epoch
        annotations += [
            dict(recording=recording, id=uuid.UUID(int=(i << 32) + k),
                 span=(k * epoch, (k + 1) * epoch), stage="n2")
            for k in range(n_epochs)
        ]  # fmt: skip
    return label_signals(
        pa.concat_tables(signals), annotations_table(annotations), labels_column="stage",
        epoch=epoch, encoding={"n2": 1},
    )  # fmt: skip


def _braindecode_side(paths: list[Path]):
    """30 s windows of the EDF files, read lazily: braindecode 1.x's ``RawDataset`` over
    ``read_raw_edf(preload=False)``, then ``create_fixed_length_windows(preload=False)``."""
    _, mne, _ = _peers()
    from braindecode.datasets import BaseConcatDataset, RawDataset
    from braindecode.preprocessing import create_fixed_length_windows

    mne.set_log_level("ERROR")
    raws = [
        RawDataset(mne.io.read_raw_edf(p, preload=False), {"subject": i})
        for i, p in enumerate(paths)
    ]
    return create_fixed_length_windows(
        BaseConcatDataset(raws),
        window_size_samples=WINDOW_S * RATE,
        window_stride_samples=WINDOW_S * RATE,
        on_last_window="drop",
        preload=False,
    )


#: The window compared on both sides: the 3rd 30 s window of the 2nd recording (not at
#: either file's start, so an offset error on either side shows).
_CHECKED = (1, 2)


def _check_same_window(labeled, windows) -> None:
    """The same window from both sides, in microvolts: equal to float32 precision."""
    from ondabatches.batches import BatchItem
    from ondabatches.labels._labeled import iter_labeled_signals
    from ondabatches.materialize import materialize_batch_item
    from ondabatches.onda import TimeSpan

    recording, k = _CHECKED
    row = next(
        r
        for r in iter_labeled_signals(labeled)
        if r.signal.recording == uuid.UUID(int=recording + 1)
    )
    epoch = WINDOW_S * 10**9
    item = BatchItem(
        row.signal.recording, row.signal.file_path, row.signal.file_format, row.signal.span,
        row.signal.info, TimeSpan(k * epoch, (k + 1) * epoch), None, np.zeros(1, dtype=np.uint8),
    )  # fmt: skip
    ours, _ = materialize_batch_item(item)
    x, _, crop = windows.datasets[recording][k]
    start = k * WINDOW_S * RATE
    if list(crop[1:]) != [start, start + WINDOW_S * RATE]:
        raise AssertionError(
            f"braindecode's window {k} of recording {recording} spans samples {crop[1:]}, "
            f"expected [{start}, {start + WINDOW_S * RATE}]"
        )
    theirs = np.asarray(x, dtype=np.float64) * 1e6  # volts -> microvolts
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-6, atol=1e-3):
        worst = np.abs(ours - theirs).max() if ours.shape == theirs.shape else "-"
        raise AssertionError(
            f"window {k} of recording {recording} differs between ondabatches {ours.shape} "
            f"and braindecode {theirs.shape} (largest difference {worst} uV)"
        )


def _time_ours(labeled, n: int) -> float:
    """Windows per second through a 2-worker Batcher, after its first 4 batches."""
    from ondabatches.batches import RandomBatches
    from ondabatches.serve import Batcher

    spec = RandomBatches(labeled, batch_size=BATCH, batch_duration=WINDOW_S * 10**9)
    state = spec.initial_state(seed=5)
    with Batcher(spec, backend="processes", workers=WORKERS) as batcher:
        batcher.start(state)
        for _ in range(4):
            _, state = batcher.take(state)
        started = time.perf_counter()
        for _ in range(n):
            _, state = batcher.take(state)
        return n * BATCH / (time.perf_counter() - started)


def _time_theirs(windows, n: int) -> float:
    """Windows per second through a 2-worker DataLoader, after its first 4 batches."""
    _, _, torch = _peers()
    loader = torch.utils.data.DataLoader(
        windows, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    batches = iter(loader)
    for _ in range(4):
        next(batches)
    started = time.perf_counter()
    got = 0
    for _ in range(n):
        try:
            x, *_ = next(batches)
        except StopIteration:  # a short epoch: start another
            batches = iter(loader)
            x, *_ = next(batches)
        got += len(x)
    rate = got / (time.perf_counter() - started)
    del batches  # the workers stop
    return rate


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    braindecode, mne, torch = _peers()  # fail early, with the install hint
    versions = f"{braindecode.__version__} (mne {mne.__version__}, torch {torch.__version__})"
    n_rec, minutes, n, rounds = (4, 20, 10, 2) if quick else (8, 60, 40, 3)
    with tempfile.TemporaryDirectory(prefix="ondabatches-peers-") as tmp:
        root = Path(tmp)
        paths = write_edf_recordings(root, n_rec, minutes)
        labeled = _onda_side(paths, root / "onda")
        windows = _braindecode_side(paths)
        _check_same_window(labeled, windows)
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_time_ours(labeled, n))
            theirs.append(_time_theirs(windows, n))
    ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    return [
        Result(
            f"windows/s, {WORKERS} workers: ondabatches vs braindecode (goal >= 6x)",
            statistics.median(theirs) * ratio,
            statistics.median(theirs),
            "windows/s",
            goal=1 / 6,
            higher_is_better=True,
            floor_is=f"braindecode {versions} 30 s windows of the same EDF files "
            f"(RawDataset over MNE's preload=False, create_fixed_length_windows) + torch "
            f"DataLoader, {WORKERS} workers, batches of {BATCH}; median of {rounds} "
            "interleaved rounds",
        )
    ]


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
