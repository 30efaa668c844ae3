"""EDF served in place against its imported lpcm copy: 32 x 30 s x 19 ch batches.

The same recordings (EDF+ files of 19 EEG channels at 256 Hz in 1 s data records,
written with pyedflib) served two ways: in place (``file_format`` ``"edf"``, from
:func:`ondabatches.importing.edf_signals`) and as the ``lpcm`` copy that
``import_dataset`` writes. The same batch specifications (``RandomBatches``, 32 random
30 s windows of all 19 channels) are materialized inline from each, interleaved
(edf, lpcm, edf, lpcm, ...); the figure is the median ratio of throughput, edf over
lpcm; goal at least 0.7x. Both give the same arrays (checked first).

EDF interleaves its signals record by record (19 x 256 samples per record), so a
window reads ~31 records and gathers each channel's pieces, where lpcm reads one
contiguous block of interleaved samples.

Run ``python -m benchmarks.edf [--quick]`` or ``ondabatches bench edf``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa

from ondabatches.batches import RandomBatches
from ondabatches.importing import edf_signals, import_dataset
from ondabatches.labels import label_signals
from ondabatches.materialize import materialize_batch
from ondabatches.onda import Signal, annotations_table, read_signals

from ._report import Result, script_main

__all__ = ["run"]

NS = 10**9
EPOCH = 30 * NS
RATE = 256
N_CHANNELS = 19
BATCH = 32


def _write_edf(path: str, minutes: int, seed: int) -> None:
    import pyedflib

    rng = np.random.default_rng(seed)
    n = RATE * 60 * minutes
    headers = [
        {"label": f"EEG E{k}", "dimension": "uV", "sample_frequency": RATE,
         "physical_max": 500.0, "physical_min": -500.0, "digital_max": 32767,
         "digital_min": -32768, "transducer": "", "prefilter": ""}
        for k in range(N_CHANNELS)
    ]  # fmt: skip
    writer = pyedflib.EdfWriter(path, N_CHANNELS, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.writeSamples([rng.normal(0, 50, n).clip(-499, 499) for _ in range(N_CHANNELS)])
    finally:
        writer.close()


def _labeled(signals: pa.Table) -> pa.Table:
    rows = []
    for sig in map(Signal.from_row, signals.to_pylist()):
        for k in range(sig.span.stop // EPOCH):
            rows.append({"recording": sig.recording, "id": uuid.uuid4(), "stage": "wake",
                         "span": {"start": k * EPOCH, "stop": (k + 1) * EPOCH}})  # fmt: skip
    return label_signals(
        signals, annotations_table(rows), labels_column="stage", epoch=EPOCH, encoding={"wake": 1}
    )


def run(quick: bool = False) -> list[Result]:
    """Measure; see the module docstring."""
    n_files, minutes, n, rounds = (3, 10, 8, 5) if quick else (6, 60, 20, 9)
    with tempfile.TemporaryDirectory(prefix="ondabatches-edf-") as tmp:
        folder = os.path.join(tmp, "edf")
        os.makedirs(folder)
        paths = []
        for k in range(n_files):
            paths.append(os.path.join(folder, f"night{k}.edf"))
            _write_edf(paths[-1], minutes, k)
        report = import_dataset(folder, os.path.join(tmp, "lpcm"), workers=1)
        specs = {
            "edf": RandomBatches(_labeled(edf_signals(paths)[0]), batch_size=BATCH,
                                 batch_duration=EPOCH),
            "lpcm": RandomBatches(_labeled(read_signals(report.signals)), batch_size=BATCH,
                                  batch_duration=EPOCH),
        }  # fmt: skip
        states = [specs["edf"].initial_state(seed=1).advance(k) for k in range(n)]
        batches = {fmt: [spec.iterate_batch(s)[0] for s in states] for fmt, spec in specs.items()}
        for a, b in zip(batches["edf"][:2], batches["lpcm"][:2], strict=True):
            x_edf, x_lpcm = materialize_batch(a)[0], materialize_batch(b)[0]
            if x_edf.shape != (BATCH, N_CHANNELS, 30 * RATE) or not np.array_equal(x_edf, x_lpcm):
                raise AssertionError("edf in place and its lpcm copy give different batches")

        def rate(fmt: str) -> float:
            started = time.perf_counter()
            for batch in batches[fmt]:
                materialize_batch(batch)
            return n / (time.perf_counter() - started)

        rate("edf"), rate("lpcm")  # page cache, header cache, allocators
        ratios, edf_rates, lpcm_rates = [], [], []
        for _ in range(rounds):
            e, p = rate("edf"), rate("lpcm")
            edf_rates.append(e)
            lpcm_rates.append(p)
            ratios.append(e / p)
    ratio = statistics.median(ratios)
    e_med, p_med = statistics.median(edf_rates), statistics.median(lpcm_rates)
    print(
        f"figure: edf in place vs lpcm, 32 x 30 s x 19 ch (batches/s): ours {e_med:.4g} vs "
        f"floor {p_med:.4g}, median ratio {ratio:.3g}x of lpcm's throughput (goal >= 0.7) "
        f"over {rounds} interleaved rounds",
        flush=True,
    )
    return [
        Result(
            "edf in place vs its lpcm copy, materialize_batch 32 x 30 s x 19 ch",
            p_med * ratio,
            p_med,
            "batches/s",
            goal=1 / 0.7,
            higher_is_better=True,
            floor_is=f"the imported lpcm copy of the same files, same batches; median ratio "
            f"of {rounds} interleaved rounds (goal: >= 0.7x its throughput)",
        )
    ]


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
