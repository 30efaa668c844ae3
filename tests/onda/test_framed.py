"""The framed sample formats ``dbp`` and ``pco``: frames with an index and a CRC-32 each."""

from __future__ import annotations

import builtins
import os

import fsspec
import numpy as np
import pytest

from ondabatches._errors import MissingDependencyError, SampleFileError
from ondabatches.onda import get_format, load_rows, store
from ondabatches.onda._dbp import DbpFormat
from ondabatches.onda._framed import parse_index
from ondabatches.onda._pco import PcoFormat
from ondabatches.onda._samples import Samples

from .samplefiles import make_info, make_signal

FRAME = 64
_NO_PCODEC = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pcodec") is None,
    reason="the pco format needs pcodec (the codecs extra)",
)
FORMATS = [pytest.param(DbpFormat, id="dbp"), pytest.param(PcoFormat, id="pco", marks=_NO_PCODEC)]


@pytest.fixture(params=FORMATS)
def fmt_cls(request):
    return request.param


def _index(fmt_cls, raw, url):
    return parse_index(len(raw), lambda a, b: raw[a:b], url, fmt_cls.MAGIC, fmt_cls.NAME)


def _eeg_like(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 40, size=(channels, n)), axis=1)
    return np.clip(walk, -32768, 32767).astype(np.int16)


def _written(tmp_path, fmt_cls, n=FRAME * 5 + 17, channels=3):
    info = make_info("int16", n_channels=channels)
    data = _eeg_like(n, channels)
    path = tmp_path / f"x.{fmt_cls.NAME}"
    with open(path, "wb") as f:
        fmt_cls(frame_samples=FRAME).write(f, data, info)
    return path, info, data


def test_the_format_is_registered_and_stores_by_extension(tmp_path, fmt_cls):
    name = fmt_cls.NAME
    assert isinstance(get_format(name), fmt_cls)
    info = make_info("int16")
    data = _eeg_like(5000, 3)
    store(tmp_path / f"s.{name}", Samples(data, info, encoded=True))
    sig = make_signal(tmp_path / f"s.{name}", name, info, 5000)
    assert np.array_equal(load_rows(sig, range(0, 5000), encoded=True).data, data)


def test_exact_round_trip_at_random_starts_boundaries_and_last_frame(tmp_path, fmt_cls):
    path, info, data = _written(tmp_path, fmt_cls)
    n = data.shape[1]
    fs = fsspec.filesystem("file")
    fmt = fmt_cls(frame_samples=FRAME)
    rng = np.random.default_rng(1)
    starts = [0, FRAME - 1, FRAME, 2 * FRAME, n - 17, n - 1, *rng.integers(0, n, 20)]
    for a in starts:
        for length in (1, FRAME, FRAME + 1, n - int(a)):
            b = min(n, int(a) + length)
            got = fmt.read(fs, str(path), info, range(int(a), b), n)
            assert np.array_equal(got, data[:, a:b]), (a, b)
    assert fmt.read(fs, str(path), info, range(3, 3), n).shape == (3, 0)
    assert os.path.getsize(path) < 0.8 * data.nbytes  # it compresses


def test_one_ranged_read_per_window(tmp_path, monkeypatch, fmt_cls):
    path, info, data = _written(tmp_path, fmt_cls)
    fs = fsspec.filesystem("file")
    fmt = fmt_cls(frame_samples=FRAME)
    fmt.check_size(fs, str(path), info, data.shape[1])  # the index, cached
    from ondabatches.onda import _framed

    calls = []
    real = _framed.read_range
    monkeypatch.setattr(_framed, "read_range", lambda *a: calls.append(a[2:]) or real(*a))
    fmt.read(fs, str(path), info, range(FRAME - 3, 3 * FRAME + 5), data.shape[1])
    assert len(calls) == 1
    a, b = calls[0]
    index = _index(fmt_cls, path.read_bytes(), str(path))
    assert (a, b) == (index.offsets[0], index.offsets[4])  # frames 0..3 and no more


def test_a_corrupted_frame_is_an_error_naming_the_file_and_frame(tmp_path, fmt_cls):
    path, info, data = _written(tmp_path, fmt_cls)
    raw = bytearray(path.read_bytes())
    index = _index(fmt_cls, raw, str(path))
    raw[int(index.offsets[2]) + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    fs = fsspec.filesystem("file")
    fmt = fmt_cls(frame_samples=FRAME)
    n = data.shape[1]
    assert np.array_equal(fmt.read(fs, str(path), info, range(0, 2 * FRAME), n),
                          data[:, : 2 * FRAME])  # fmt: skip
    with pytest.raises(SampleFileError, match=rf"{path}.* frame 2 .*CRC-32"):
        fmt.read(fs, str(path), info, range(2 * FRAME + 1, 2 * FRAME + 2), n)


@pytest.mark.parametrize("cut", [1, 10, 200])
def test_a_truncated_file_is_refused_naming_it(tmp_path, cut, fmt_cls):
    path, info, data = _written(tmp_path, fmt_cls)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(SampleFileError, match=str(path)):
        fmt_cls().read(fsspec.filesystem("file"), str(path), info, range(0, 10), data.shape[1])


def test_a_file_of_other_samples_is_refused(tmp_path, fmt_cls):
    path, info, data = _written(tmp_path, fmt_cls)
    with pytest.raises(SampleFileError, match="expected 10 samples"):
        fmt_cls().check_size(fsspec.filesystem("file"), str(path), info, 10)


def test_a_file_of_the_other_framed_format_is_refused_naming_its_magic(tmp_path, fmt_cls):
    path, info, data = _written(tmp_path, DbpFormat)
    other = PcoFormat.MAGIC if fmt_cls is DbpFormat else DbpFormat.MAGIC
    path.write_bytes(path.read_bytes()[:-4] + other)  # the footer ends with the magic
    with pytest.raises(SampleFileError, match=rf"{path}.*{other!r}.*{fmt_cls.MAGIC!r}"):
        fmt_cls().check_size(fsspec.filesystem("file"), str(path), info, data.shape[1])


@_NO_PCODEC
def test_without_pcodec_the_error_says_what_to_install(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_pcodec(name, *args, **kw):
        if name == "pcodec" or name.startswith("pcodec."):
            raise ImportError("No module named 'pcodec'")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pcodec)
    monkeypatch.delitem(__import__("sys").modules, "pcodec", raising=False)
    info = make_info("int16")
    with pytest.raises(MissingDependencyError, match=r"ondabatches\[codecs\]"):
        with open(tmp_path / "x.pco", "wb") as f:
            PcoFormat().write(f, np.zeros((3, 10), np.int16), info)


@pytest.mark.parametrize("other", ["lpcm", "lpcm.zst"])
def test_convert_between_framed_and_onda_jl_formats_both_ways(tmp_path, other, fmt_cls):
    from ondabatches.onda._convert import convert_signal

    info = make_info("int16")
    data = _eeg_like(3000, 3)
    store(tmp_path / f"a.{other}", Samples(data, info, encoded=True))
    sig = make_signal(tmp_path / f"a.{other}", other, info, 3000)
    pco = convert_signal(sig, tmp_path / f"b.{fmt_cls.NAME}")
    assert pco.file_format == fmt_cls.NAME and pco.span == sig.span
    assert np.array_equal(load_rows(pco, range(0, 3000), encoded=True).data, data)
    back = convert_signal(pco, tmp_path / f"c.{other}")
    assert back.file_format == other
    assert (tmp_path / f"c.{other}").read_bytes() == (tmp_path / f"a.{other}").read_bytes()


def test_materialize_batch_reads_framed_files_like_lpcm(tmp_path, fmt_cls):
    from ondabatches.batches import RandomBatches
    from ondabatches.labels import label_signals, sort_and_trim_spans
    from ondabatches.materialize import materialize_batch
    from ondabatches.onda import read_signals, signals_table, write_signals
    from ondabatches.onda._convert import convert_signal
    from ondabatches.onda._signal import Signal
    from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

    ds = make_dataset(tmp_path / "ds", n_recordings=2, duration=300 * 10**9, eeg_layout=0,
                      eog_every=0)  # fmt: skip
    rows = [Signal.from_row(r) for r in ds.signals.to_pylist()]
    name = fmt_cls.NAME
    converted = [convert_signal(s, tmp_path / f"{k}.{name}") for k, s in enumerate(rows)]
    write_signals(tmp_path / "framed.arrow", signals_table(converted))
    tables = {"lpcm": ds.signals, "pco": read_signals(tmp_path / "framed.arrow")}
    assert set(tables["pco"].column("file_format").to_pylist()) == {name}
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    out = {}
    for name, table in tables.items():
        labeled = label_signals(table, annotations, labels_column="stage", epoch=EPOCH,
                                encoding=STAGE_ENCODING)  # fmt: skip
        spec = RandomBatches(labeled, batch_size=4, batch_duration=2 * EPOCH)
        state = spec.initial_state(seed=3)
        out[name] = [materialize_batch(spec.iterate_batch(state.advance(k))[0]) for k in range(3)]
    for (x_l, y_l), (x_p, y_p) in zip(out["lpcm"], out["pco"], strict=True):
        assert x_l.shape == (4, 6, 2 * 30 * 128)
        assert np.array_equal(x_l, x_p) and np.array_equal(y_l, y_p)
