"""The declared extension points (ondabatches.abc) and their conformance suites
(ondabatches.testing): the built-ins pass them, broken plug-ins fail them, and a plug-in
that passes works on every backend with no other change."""

from __future__ import annotations

import functools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

import ondabatches
from ondabatches import (
    Batcher,
    RandomBatches,
    SequentialBatches,
    materialize_batch,
    register_format,
)
from ondabatches.abc import (
    BatchScheme,
    ChannelSelector,
    Layout,
    Pool,
    SampleFormat,
    Sampler,
    Transform,
)
from ondabatches.batches import (
    InterleavedBatches,
    MontageLayout,
    RandomSampler,
    SequentialSampler,
    SignalLayout,
)
from ondabatches.materialize import BatchMaterializer, Bipolar
from ondabatches.onda import LPCMFormat, LPCMZstFormat, _formats
from ondabatches.serve._pools import ExecutorPool, InlinePool
from ondabatches.serve._processes import ProcessPool
from ondabatches.testing import (
    ConformanceError,
    check_batch_scheme,
    check_channel_selector,
    check_pool,
    check_sample_format,
    labeled_table,
)
from ondabatches.transforms import Bandpass, TransformedBatches
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401

S = 10**9


class NpyFormat(SampleFormat):
    """A user's format: one .npy file holding the channels x time matrix."""

    def read(self, fs, path, info, rows, n_total):
        from ondabatches import SampleFileError

        with fs.open(path, "rb") as f:
            try:
                return np.load(f, mmap_mode=None)[:, rows.start : rows.stop]
            except ValueError as exc:
                raise SampleFileError(f"{path}: not a whole .npy file ({exc})") from None

    def write(self, file, data, info):
        np.save(file, data)

    def check_size(self, fs, path, info, n_total):
        from ondabatches import SampleFileError

        with fs.open(path, "rb") as f:
            try:
                shape = np.load(f, mmap_mode=None).shape
            except ValueError as exc:
                raise SampleFileError(f"{path}: not a whole .npy file ({exc})") from None
        if shape != (info.n_channels, n_total):
            raise SampleFileError(f"{path} holds {shape}, expected {(info.n_channels, n_total)}")


class Every(BatchScheme):
    """A user's finite scheme: batch k is the first items of the k-th group of a
    SequentialBatches, declared finite and stepping without drawing."""

    steps_without_drawing = True

    def __init__(self, inner, keep):
        self.inner = inner
        self.keep = keep

    @property
    def config(self):
        return {**self.inner.config, "keep": self.keep}

    def initial_state(self, seed=0):
        return ondabatches.BatchState(seed=seed, index=0, config=self.config)

    def _inner(self, state):
        return ondabatches.BatchState(state.seed, state.index, self.inner.config)

    def iterate_batch(self, state):
        step = self.inner.iterate_batch(self._inner(state.bind(self.config)))
        return None if step is None else (step[0][: self.keep], state.advance())

    def next_state(self, state):
        after = self.inner.next_state(self._inner(state.bind(self.config)))
        return None if after is None else state.advance()

    def remaining(self, state):
        return self.inner.remaining(self._inner(state))


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(_formats, "_FORMATS", dict(_formats._FORMATS))


def test_abc_lists_the_interfaces_and_the_built_ins_implement_them():
    assert ondabatches.abc.__all__ == [
        "BatchScheme", "ChannelSelector", "Layout", "Materializer", "Pool", "SampleFormat",
        "Sampler", "Target", "Transform"]  # fmt: skip
    assert isinstance(LPCMFormat(), SampleFormat) and isinstance(LPCMZstFormat(), SampleFormat)
    assert issubclass(RandomBatches, BatchScheme) and issubclass(SequentialBatches, BatchScheme)
    assert issubclass(TransformedBatches, BatchScheme)
    assert issubclass(InterleavedBatches, BatchScheme)
    assert issubclass(RandomSampler, Sampler) and issubclass(SequentialSampler, Sampler)
    assert issubclass(SignalLayout, Layout) and issubclass(MontageLayout, Layout)
    assert issubclass(ProcessPool, Pool) and issubclass(InlinePool, Pool)
    assert issubclass(Bandpass, Transform) and isinstance(Bipolar(["a-b"]), ChannelSelector)


def test_built_in_schemes_pass_the_scheme_suite():
    table = labeled_table(3, duration=600 * S)
    random = RandomBatches(table, batch_size=3, batch_duration=30 * S)
    check_batch_scheme(random)
    seq = SequentialBatches(table, batch_size=4, batch_duration=60 * S)
    check_batch_scheme(seq, steps=len(seq) + 2)  # to its end: remaining, next_state None
    check_batch_scheme(seq, seq.initial_state().advance(len(seq) - 1), steps=3)
    shard = SequentialBatches(table, batch_size=4, batch_duration=60 * S, world_size=2, rank=1)
    check_batch_scheme(shard, steps=len(shard) + 1)
    check_batch_scheme(TransformedBatches(seq, [Bandpass(0.5, 20.0)]), steps=len(seq) + 1)
    check_batch_scheme(InterleavedBatches(seq, 3, 2), seq.initial_state(), steps=len(seq))
    check_batch_scheme(Every(seq, 2), steps=len(seq) + 1)


def test_built_in_formats_selectors_and_pools_pass_their_suites():
    check_sample_format(LPCMFormat(), suffix=".lpcm")
    check_sample_format(LPCMZstFormat(), suffix=".lpcm.zst")
    check_sample_format(NpyFormat(), suffix=".npy")
    check_channel_selector(Bipolar(["c0-c1", "c2-c3"]))
    check_pool(InlinePool)
    check_pool(lambda: ExecutorPool(ThreadPoolExecutor(2), owned=True))
    check_pool(lambda: ProcessPool(2))


class _Impure(BatchScheme):
    def __init__(self):
        self.calls = 0

    def iterate_batch(self, state):
        self.calls += 1
        return [self.calls], state.advance()


class _Overcounting(Every):
    def remaining(self, state):
        return super().remaining(state) + 1


class _IgnoresRows(NpyFormat):
    def read(self, fs, path, info, rows, n_total):
        return super().read(fs, path, info, range(0, len(rows)), n_total)


class _TrustsAnything(SampleFormat):
    """Reads whatever bytes there are, zero-padded: wrong samples from a short file."""

    def read(self, fs, path, info, rows, n_total):
        with fs.open(path, "rb") as f:
            raw = f.read()
        data = np.zeros(info.n_channels * n_total, dtype=info.dtype)
        got = np.frombuffer(raw[: data.nbytes], dtype=info.dtype)
        data[: len(got)] = got
        return data.reshape(n_total, info.n_channels).T[:, rows.start : rows.stop].copy()

    def write(self, file, data, info):
        file.write(np.ascontiguousarray(data.T).tobytes())


class _NotTime(ChannelSelector):
    def select(self, samples):
        return samples.data.sum(axis=1)


def test_broken_plug_ins_fail_their_suites_naming_the_check():
    table = labeled_table(2, duration=600 * S)
    seq = SequentialBatches(table, batch_size=4, batch_duration=60 * S)
    with pytest.raises(ConformanceError, match="differs when drawn again"):
        check_batch_scheme(_Impure(), ondabatches.BatchState(0))
    with pytest.raises(ConformanceError, match=r"remaining said \d+, it yielded"):
        check_batch_scheme(_Overcounting(seq, 1), steps=len(seq) + 1)
    with pytest.raises(ConformanceError, match="does not subclass abc.BatchScheme"):
        check_batch_scheme(object())
    with pytest.raises(ConformanceError, match=r"read\(int16, rows \d+\.\.\d+\)"):
        check_sample_format(_IgnoresRows())
    with pytest.raises(ConformanceError, match="a file cut short was read without an error"):
        check_sample_format(_TrustsAnything())
    with pytest.raises(ConformanceError, match="last axis"):
        check_channel_selector(_NotTime())


def plugged_scheme(labeled, tmp_path):  # noqa: F811
    """A user's format (registered here: in this process only) holding a copy of the
    128 Hz EEG, and a user's scheme over it that passes `check_batch_scheme`; with the
    first 3 batches as read inline from the original files, the copies and the table."""
    register_format("npy-plugin", NpyFormat())
    table = eeg_rows_at(labeled, 128.0)
    from ondabatches.onda import iter_signals, load_rows

    paths, formats = [], []
    for sig in iter_signals(table.drop_columns(["labels", "label_span"])):
        data = load_rows(sig, range(sig.n_samples), encoded=True).data
        new = str(tmp_path / f"{len(paths)}-{os.path.basename(sig.file_path)}.npy")
        with open(new, "wb") as f:
            np.save(f, data)
        paths.append(new)
        formats.append("npy-plugin")
    plugged = table.set_column(table.schema.get_field_index("file_path"), "file_path",
                               pa.array(paths))  # fmt: skip
    plugged = plugged.set_column(plugged.schema.get_field_index("file_format"), "file_format",
                                 pa.array(formats))  # fmt: skip
    plain = Every(SequentialBatches(table, batch_size=4, batch_duration=60 * S), 3)
    scheme = Every(SequentialBatches(plugged, batch_size=4, batch_duration=60 * S), 3)
    check_batch_scheme(scheme, steps=3)
    want = [materialize_batch(plain.iterate_batch(plain.initial_state().advance(k))[0])
            for k in range(3)]  # fmt: skip
    return scheme, want, paths, plugged


def test_a_plug_in_that_passes_works_on_every_backend(dataset, labeled, tmp_path, registry):  # noqa: F811
    """A user's format (registered in this process only) and scheme, on inline,
    threads and worker processes: the same batches as read inline."""
    scheme, want, paths, plugged = plugged_scheme(labeled, tmp_path)
    state = scheme.initial_state()
    for backend in ("inline", "threads", "processes"):  # Ray: tests/serve/test_ray.py
        with Batcher(scheme, backend=backend, workers=2) as batcher:
            batcher.start(state)
            s = state
            for k in range(3):
                (x, y), s = batcher.take(s)
                np.testing.assert_array_equal(x, want[k][0], err_msg=f"{backend} batch {k}")
                np.testing.assert_array_equal(y, want[k][1])
    # A file cut short is refused on a worker by the plug-in's own check.
    shutil.copy(paths[0], paths[0] + ".bak")
    with open(paths[0], "r+b") as f:
        f.truncate(os.path.getsize(paths[0]) // 2)
    fresh = Every(SequentialBatches(plugged, batch_size=8, batch_duration=60 * S), 8)
    with Batcher(fresh, backend="processes", workers=1, retries=0) as batcher:
        batcher.start(fresh.initial_state())
        with pytest.raises(ondabatches.SampleFileError, match="not a whole .npy file"):
            for k in range(len(fresh.inner)):
                _, s = batcher.take(fresh.initial_state().advance(k))


def test_duck_typed_formats_still_register_with_a_deprecation(registry, caplog):
    class Duck:
        def read(self, fs, path, info, rows, n_total):
            return np.zeros((info.n_channels, len(rows)))

        def write(self, file, data, info):
            file.write(b"")

    duck = Duck()
    with pytest.warns(DeprecationWarning, match="does not subclass ondabatches.abc.SampleFormat"):
        register_format("duck", duck)
    fmt = _formats.get_format("duck")
    assert isinstance(fmt, SampleFormat) and fmt.fmt is duck
    with pytest.warns(DeprecationWarning):
        register_format("duck", duck)  # the same object again: no clash
    # A local class does not pickle: workers do not get it, and the log says so.
    with caplog.at_level("WARNING", logger="ondabatches"):
        shipped = _formats.user_formats()
    assert "duck" not in shipped and "lpcm" not in shipped
    assert "format 'duck' (_DuckFormat) does not pickle" in caplog.text
    register_format("npy-shipped", NpyFormat())
    assert set(_formats.user_formats()) == {"npy-shipped"}
    with pytest.raises(TypeError, match="needs read"):
        register_format("bad", object())


def test_materialize_partial_still_serves_a_plug_in_scheme(labeled):  # noqa: F811
    table = eeg_rows_at(labeled, 128.0)
    scheme = Every(SequentialBatches(table, batch_size=4, batch_duration=60 * S), 2)
    fast = functools.partial(materialize_batch, exact=False)
    with pytest.warns(DeprecationWarning, match="BatchMaterializer"):
        batcher = Batcher(scheme, backend="threads", workers=2, materialize=fast)
    assert batcher.materialize == BatchMaterializer(exact=False)
    with batcher:
        batcher.start(scheme.initial_state())
        (x, _), _ = batcher.take(scheme.initial_state())
    assert x.shape[0] == 2
