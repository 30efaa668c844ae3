"""The per-batch path of local EDF/BDF files served in place: the general path's bits.

Windows at random starts (inside a record, across several records) of every signal of
an EDF+ and a BDF+ file, with all channels and a subset, into float32 and float64,
exact or not, with the compiled kernel and with numpy's fallback, must equal the
general path (`EdfFormat.read` then the decode plan) item by item, bit for bit.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from ondabatches.batches._item import BatchItem
from ondabatches.errors import SampleFileError
from ondabatches.importing import edf_signals
from ondabatches.materialize import _materialize, materialize_batch
from ondabatches.onda import Signal, TimeSpan, _edf_kernels, _kernels
from tests.materialize.test_local import _counting
from tests.onda.test_edf_in_place import write_synthetic

pytest.importorskip("pyedflib")

NS = 10**9
DURATION = 5 * NS // 2  # 2.5 one-second records: windows cover 3 or 4 records


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("edf-local")
    return {
        "edf": write_synthetic(str(root / "synthetic.edf")),
        "bdf": write_synthetic(str(root / "synthetic.bdf"), bdf=True, seed=1),
    }


def _batches(path: str, seed: int) -> list[list[BatchItem]]:
    """A batch per signal of ``path`` and channel choice, of 12 windows at random ns."""
    signals, _ = edf_signals(path)
    rng = np.random.default_rng(seed)
    batches = []
    for sig in map(Signal.from_row, signals.to_pylist()):
        stop = sig.span.stop - DURATION
        starts = [0, NS // 3, 1] + [int(s) for s in rng.integers(0, stop, 9)]
        picks = (None, tuple(int(c) for c in rng.permutation(len(sig.info.channels))[:3]))
        for channels in picks:
            batches.append([
                BatchItem(sig.recording, sig.file_path, sig.file_format, sig.span, sig.info,
                          TimeSpan(s, s + DURATION), channels, np.zeros(1, np.uint8))
                for s in starts
            ])  # fmt: skip
    return batches


@pytest.mark.parametrize("kernels", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["edf", "bdf"])
def test_windows_equal_the_general_path(files, kind, dtype, exact, kernels, monkeypatch):
    monkeypatch.setattr(_kernels, "ENABLED", kernels)
    calls = _counting(monkeypatch)
    for batch in _batches(files[kind], seed=len(kind)):
        calls.clear()
        x, _ = materialize_batch(batch, dtype, exact=exact)
        assert calls == []  # every window by the per-batch path
        want = np.stack([_materialize._x(it, np.dtype(dtype), exact=exact) for it in batch])
        assert x.dtype == want.dtype and x.tobytes() == want.tobytes(), batch[0].file_path


def test_compiled_kernel_is_used_when_enabled(files, monkeypatch):
    monkeypatch.setattr(_kernels, "ENABLED", True)
    if not _kernels.available():
        pytest.skip("numba is not installed here")  # the numpy case runs regardless
    batch = _batches(files["edf"], seed=0)[0]
    used = []
    real = _edf_kernels.deinterleave
    monkeypatch.setattr(_edf_kernels, "deinterleave", lambda *a: used.append(1) or real(*a))
    materialize_batch(batch)
    assert used == []
    monkeypatch.setattr(_kernels, "ENABLED", False)
    materialize_batch(batch)
    assert len(used) == len(batch)


@pytest.mark.parametrize("kind", ["edf", "bdf"])
def test_truncated_file_raises_naming_it(files, kind, tmp_path):
    path = str(tmp_path / os.path.basename(files[kind]))
    shutil.copy(files[kind], path)
    batch = _batches(path, seed=3)[0]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(SampleFileError) as info:
        materialize_batch(batch)
    assert path in str(info.value) and str(size - 1000) in str(info.value)
