"""Peers: ``derive_dataset`` against braindecode's ``preprocess`` on the same EEG.

Four recordings of 19 EEG channels at 256 Hz (1 h each; ``--quick``: 10 min), written
as EDF files (``benchmarks.peers``' band-limited noise, int16 digital values) and read
by both sides:

- ours: the EDF files imported with :func:`~ondabatches.edf.import_edf` (the same int16
  values), then :func:`~ondabatches.transforms.derive_dataset` with ``Bandpass(0.3,
  35) + Notch(50)`` and a resample to 100 Hz, 2 worker processes, written as ``lpcm``
  (float32);
- floor: braindecode's ``preprocess(concat_ds, [...], n_jobs=2)`` over ``RawDataset``s
  of ``mne.io.read_raw_edf(preload=False)`` (braindecode loads each when it filters),
  its result kept in memory (it writes nothing; derive writes its files), in three rows:
  ``iir``, the same filters (``filter(l_freq=0.3, h_freq=35, method="iir",
  iir_params=dict(order=4, ftype="butter", output="sos"))``, the same Butterworth
  design as ``Bandpass``, run as ``sosfiltfilt`` by MNE; ``notch_filter(freqs=50,
  method="iir", iir_params=dict(sos=...))`` given ``Notch(50)``'s own design, since
  MNE's IIR notch is a Butterworth band-stop of another shape) then
  ``resample(sfreq=100)`` (MNE's FFT resample, its default); ``polyphase``, the same
  filters then ``resample(sfreq=100, method="polyphase")`` (MNE's ``resample_poly``:
  the configuration whose values are derive's, see below); ``fir``, MNE's defaults (FIR
  band-pass and notch, the FFT resample).

Both sides are warmed up first (joblib's workers started with MNE imported; one
recording derived, which loads numba's kernels), then the four are timed interleaved
(ours, iir, polyphase, fir in each round), each figure the median of the paired
ratios; goal: derive at least 3x faster than ``iir`` and ``polyphase`` (ratio <= 1/3).

Values (figures in units of the tolerance, 1e-3 of the RMS: <= 1 passes): the largest
difference of any channel of any recording over that channel's RMS, with the filters'
margin (derive's measure of how far an edge's transient reaches, 17.5 s here) left out
at each end, since MNE pads an edge by reflection and scipy by odd extension:

- ``resampled``: derive's files read back against ``iir``'s arrays (MNE resamples by
  FFT, derive with ``resample_poly``: any difference between the two resamplers
  shows here);
- ``filters only``: the same filters without the resample (one recording);
- ``polyphase``: braindecode with ``resample(sfreq=100, method="polyphase")`` (MNE's
  ``resample_poly``) against derive's resampled files (one recording).

Each value figure's name also gives the difference over the whole signal, edges
included. Needs the ``peers`` extra (see ``benchmarks.peers``): run ``bash
scripts/peers --quick``, ``ondabatches bench derive_peers [--quick]`` or ``python -m
benchmarks.derive_peers [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ondabatches._errors import ArgumentError

from ._report import Result, script_main

__all__ = ["run", "worst_relative_difference"]

RATE = 256
LOW_HZ, HIGH_HZ, LINE_HZ, RESAMPLE_HZ = 0.3, 35.0, 50.0, 100.0
WORKERS = 2
TOLERANCE = 1e-3  # of each channel's RMS
GOAL = 3.0  # braindecode's time over derive's, at least


def worst_relative_difference(ours: Any, theirs: Any, edge: int = 0) -> float:
    """The largest ``|ours - theirs|`` of any channel over that channel's RMS in
    ``theirs``, ``edge`` samples at either end left out.

    ``ours`` and ``theirs`` are (channels, time) arrays of one shape. A channel whose
    RMS is 0 counts as its largest absolute difference (so equal zeros give 0).

    Raises
    ------
    ArgumentError
        For arrays of different shapes or not 2-D, or an ``edge`` that leaves nothing.
    """
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ArgumentError(
            f"expected two (channels, time) arrays of one shape, got {a.shape} and {b.shape}"
        )
    if not isinstance(edge, int) or edge < 0 or 2 * edge >= a.shape[1]:
        raise ArgumentError(
            f"edge must be an integer in [0, {(a.shape[1] - 1) // 2}] for {a.shape[1]} "
            f"samples, got {edge!r}"
        )
    a, b = a[:, edge : a.shape[1] - edge], b[:, edge : b.shape[1] - edge]
    rms = np.sqrt(np.mean(b * b, axis=1))
    worst = np.abs(a - b).max(axis=1)
    return float(np.max(np.where(rms > 0, worst / np.where(rms > 0, rms, 1.0), worst)))


def _peers() -> tuple[Any, Any]:
    """braindecode and mne (with ``benchmarks.peers``' install hint)."""
    from .peers import _peers

    os.environ.setdefault("MNE_LOGGING_LEVEL", "ERROR")  # joblib's workers read it
    braindecode, mne, _ = _peers()
    mne.set_log_level("ERROR")
    return braindecode, mne


def _filters() -> list[Any]:
    from ondabatches.transforms import Bandpass, Notch

    return [Bandpass(LOW_HZ, HIGH_HZ), Notch(LINE_HZ)]


def _preprocessors(variant: str, resample: str | None = "fft") -> list[Any]:
    """braindecode's preprocessors: ``iir`` (the same filters as derive's) or ``fir``
    (MNE's defaults), then the resample (``fft``, ``polyphase`` or ``None``)."""
    import warnings

    from braindecode.preprocessing import Preprocessor

    # Preprocessor warns that a method name cannot run on arrays (it runs on the raw).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "apply_on_array", UserWarning)
        if variant == "iir":
            steps = [
                Preprocessor("filter", l_freq=LOW_HZ, h_freq=HIGH_HZ, method="iir",
                             iir_params=dict(order=4, ftype="butter", output="sos")),
                Preprocessor("notch_filter", freqs=LINE_HZ, method="iir",
                             iir_params=dict(sos=_filters()[1]._design(float(RATE)))),
            ]  # fmt: skip
        else:
            steps = [
                Preprocessor("filter", l_freq=LOW_HZ, h_freq=HIGH_HZ),
                Preprocessor("notch_filter", freqs=LINE_HZ),
            ]
        if resample is not None:
            steps.append(Preprocessor("resample", sfreq=RESAMPLE_HZ, method=resample))
    return steps


def _concat(paths: list[Path]) -> Any:
    _, mne = _peers()
    from braindecode.datasets import BaseConcatDataset, RawDataset

    return BaseConcatDataset(
        [RawDataset(mne.io.read_raw_edf(p, preload=False), {"subject": i}) for i, p in
         enumerate(paths)]
    )  # fmt: skip


def _braindecode(paths: list[Path], steps: list[Any], n_jobs: int = WORKERS) -> tuple[float, Any]:
    """Seconds of braindecode's ``preprocess`` over fresh lazy raws, and its result."""
    from braindecode.preprocessing import preprocess

    concat = _concat(paths)  # header reads only: not timed
    started = time.perf_counter()
    preprocess(concat, steps, n_jobs=n_jobs)
    return time.perf_counter() - started, concat


def _warm_up() -> None:
    """Start joblib's worker processes (which import MNE) before any timed call."""
    _, mne = _peers()
    from braindecode.datasets import BaseConcatDataset, RawDataset
    from braindecode.preprocessing import preprocess

    info = mne.create_info(2, float(RATE), "eeg")
    raws = [RawDataset(mne.io.RawArray(np.zeros((2, 60 * RATE)), info), {"subject": i})
            for i in range(WORKERS)]  # fmt: skip
    preprocess(BaseConcatDataset(raws), _preprocessors("iir"), n_jobs=WORKERS)


def _onda(paths: list[Path], root: Path) -> str:
    """The EDF files imported into one Onda dataset; its signals table's path."""
    import pyarrow as pa

    from ondabatches.edf import import_edf
    from ondabatches.onda import read_signals, write_signals

    tables = []
    for i, path in enumerate(paths):
        import_edf(path, root, recording=uuid.UUID(int=i + 1))
        tables.append(read_signals(root / f"{path.stem}.onda.signal.arrow"))  # absolute
    out = root / "all.onda.signal.arrow"
    write_signals(out, pa.concat_tables(tables))
    return str(out)


def _one(signals: str, root: Path) -> str:
    """A signals table of the first recording alone."""
    from ondabatches.onda import read_signals, write_signals

    out = root / "one.onda.signal.arrow"
    write_signals(out, read_signals(signals).slice(0, 1))
    return str(out)


def _derive(signals: str, out: Path, resample: bool = True, workers: int = WORKERS) -> float:
    from ondabatches.transforms import derive_dataset

    started = time.perf_counter()
    derive_dataset(signals, None, str(out), filters=_filters(),
                   resample_hz=RESAMPLE_HZ if resample else None, workers=workers)  # fmt: skip
    return time.perf_counter() - started


def _derived(out: Path) -> dict[uuid.UUID, np.ndarray]:
    """derive's output read back: microvolts by recording."""
    from ondabatches.onda import iter_signals, load, read_signals

    table = read_signals(out / "derived.onda.signal.arrow")
    return {sig.recording: load(sig).data for sig in iter_signals(table)}


def _theirs(concat: Any, i: int) -> np.ndarray:
    return concat.datasets[i].raw.get_data() * 1e6  # volts -> microvolts


def _compare(ours: dict[uuid.UUID, np.ndarray], concat: Any, edge: int) -> tuple[float, float]:
    """The worst relative difference over the recordings: ``edge`` samples from either
    end left out, and over the whole signal."""
    inner, whole = 0.0, 0.0
    for i in range(len(concat.datasets)):
        a, b = ours[uuid.UUID(int=i + 1)], _theirs(concat, i)
        if a.shape != b.shape:
            raise AssertionError(
                f"recording {i}: derive gives {a.shape} samples, braindecode {b.shape}"
            )
        inner = max(inner, worst_relative_difference(a, b, edge))
        whole = max(whole, worst_relative_difference(a, b))
    return inner, whole


def _value(name: str, inner: float, whole: float, edge_s: float) -> Result:
    print(f"figure: {name} (max |diff| / RMS, {edge_s:.3g} s from the edges): ours "
          f"{inner:.4g} vs floor {TOLERANCE:.4g} -> ratio {inner / TOLERANCE:.3f} (goal 1); "
          f"edges included {whole:.4g}", flush=True)  # fmt: skip
    return Result(
        f"derive = braindecode, {name} (edges incl.: {whole:.2g} of RMS)", inner / TOLERANCE,
        1.0, "1e-3 RMS", goal=1.0,
        floor_is=f"the tolerance, 1e-3 of each channel's RMS; {edge_s:.3g} s left out at "
        "each end (the filters' margin)",
    )  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    braindecode, mne = _peers()  # fail early, with the install hint
    from ondabatches.transforms._base import Pipeline

    from .peers import write_edf_recordings

    versions = f"braindecode {braindecode.__version__} (mne {mne.__version__})"
    n_rec, minutes, rounds = (4, 10, 2) if quick else (4, 60, 3)
    margin = Pipeline(_filters()).margin(float(RATE))  # input samples
    edge = -(-margin * int(RESAMPLE_HZ) // RATE) + 64  # output samples, + resampler reach
    with tempfile.TemporaryDirectory(prefix="ondabatches-derive-peers-") as tmp:
        root = Path(tmp)
        (root / "edf").mkdir()
        paths = write_edf_recordings(root / "edf", n_rec, minutes)
        signals = _onda(paths, root / "onda")
        _warm_up()
        # Ours warmed up as well: numba's kernels loaded, as MNE is in joblib's workers.
        one = _one(signals, root)
        _derive(one, root / "warm-up", workers=1)
        times: dict[str, list[float]] = {"ours": [], "iir": [], "polyphase": [], "fir": []}
        concat = None
        for k in range(rounds):
            times["ours"].append(_derive(signals, root / f"ours{k}"))
            t, concat = _braindecode(paths, _preprocessors("iir"))
            times["iir"].append(t)
            times["polyphase"].append(_braindecode(paths, _preprocessors("iir", "polyphase"))[0])
            times["fir"].append(_braindecode(paths, _preprocessors("fir"))[0])
            print(f"round {k}: " + ", ".join(f"{n} {v[-1]:.3g} s" for n, v in times.items()),
                  flush=True)  # fmt: skip
        results = []
        for variant, what, resample in (
            ("iir", "the same IIR filters", "resample(100)"),
            ("polyphase", "the same IIR filters", "resample(100, method='polyphase'), "
             "whose values are derive's"),
            ("fir", "MNE's default FIR", "resample(100)"),
        ):  # fmt: skip
            ratio = statistics.median(
                a / b for a, b in zip(times["ours"], times[variant], strict=True)
            )
            floor = statistics.median(times[variant])
            print(f"figure: derive vs braindecode preprocess ({variant}), {what} (s): ours "
                  f"{floor * ratio:.4g} vs floor {floor:.4g} -> ratio {ratio:.3f} (goal "
                  f"{1 / GOAL:.3f}: braindecode {1 / ratio:.2f}x derive's time)",
                  flush=True)  # fmt: skip
            results.append(
                Result(
                    f"derive vs braindecode preprocess ({variant}), {n_rec} x {minutes} min",
                    floor * ratio, floor, "s", goal=1 / GOAL,
                    floor_is=f"{versions} preprocess(n_jobs={WORKERS}) of the same EDF files "
                    f"(read_raw_edf preload=False): {what} + {resample}, kept in memory; "
                    f"ours: derive_dataset, {WORKERS} workers, written as lpcm; median of "
                    f"{rounds} interleaved rounds",
                )
            )  # fmt: skip
        edge_s = edge / RESAMPLE_HZ
        ours = _derived(root / f"ours{rounds - 1}")
        results.append(_value("resampled (MNE's FFT resample)", *_compare(ours, concat, edge),
                              edge_s))  # fmt: skip
        del concat
        _, poly = _braindecode(paths[:1], _preprocessors("iir", "polyphase"), n_jobs=1)
        results.append(_value("resampled (MNE's polyphase resample)",
                              *_compare(ours, poly, edge), edge_s))  # fmt: skip
        del poly
        _derive(one, root / "filtered", resample=False, workers=1)
        _, filtered = _braindecode(paths[:1], _preprocessors("iir", None), n_jobs=1)
        results.append(_value("filters only, 256 Hz", *_compare(_derived(root / "filtered"),
                              filtered, margin), margin / RATE))  # fmt: skip
        return results


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
