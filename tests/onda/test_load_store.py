"""load / load_rows / store on local disk, storage configuration and errors."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import fsspec
import fsspec.config
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches import StorageError
from ondabatches.errors import (
    MissingDependencyError,
    SampleFileNotFoundError,
    SpanError,
    UnknownFormatError,
)
from ondabatches.onda import (
    SAMPLE_TYPES,
    STORAGE_OPTIONS_ENV,
    LPCMZstFormat,
    Samples,
    Settings,
    TimeSpan,
    _io,
    current_settings,
    decode,
    filesystem_for,
    get_storage_options,
    load,
    load_rows,
    set_storage_options,
    storage_env,
    store,
    time_from_index,
    use_settings,
)

from .samplefiles import (
    bitwise_equal,
    lpcm_bytes,
    make_info,
    make_signal,
    multi_frame_zst,
    random_encoded,
    single_frame_zst,
)

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def signal_files(draw, tmp_path_factory):
    """Encoded samples of any sample type, and the same samples in every file layout."""
    sample_type = draw(st.sampled_from(sorted(SAMPLE_TYPES)))
    info = make_info(
        sample_type,
        draw(st.integers(1, 4)),
        rate=draw(st.sampled_from([1.0, 128.0, 143.5, 250.0])),
        sample_resolution_in_unit=draw(st.sampled_from([1.0, 0.25, -3.0])),
        sample_offset_in_unit=draw(st.sampled_from([0.0, 1.5])),
    )
    n = draw(st.integers(0, 400))
    enc = random_encoded(info, n, seed=draw(st.integers(0, 2**32 - 1)))
    folder = tmp_path_factory.mktemp("files")
    signals = {}
    for name, fmt in [("a.lpcm", "lpcm"), ("b.lpcm.zst", "lpcm.zst")]:
        store(folder / name, Samples(enc, info, encoded=True))
        signals[name] = make_signal(folder / name, fmt, info, n)
    small_frames = folder / "c.lpcm.zst"
    with open(small_frames, "wb") as f:
        LPCMZstFormat(frame_bytes=draw(st.integers(1, 300))).write(f, enc, info)
    signals["seekable, small frames"] = make_signal(small_frames, "lpcm.zst", info, n)
    raw = lpcm_bytes(enc, info)
    (folder / "d.lpcm.zst").write_bytes(single_frame_zst(raw))
    signals["single frame"] = make_signal(folder / "d.lpcm.zst", "lpcm.zst", info, n)
    (folder / "e.lpcm.zst").write_bytes(multi_frame_zst(raw, draw(st.integers(1, 500))))
    signals["frames and skippable frames"] = make_signal(folder / "e.lpcm.zst", "lpcm.zst", info, n)
    return enc, info, signals


@SETTINGS
@given(data=st.data())
def test_any_window_equals_full_load_then_slice(tmp_path_factory, data):
    enc, info, signals = data.draw(signal_files(tmp_path_factory))
    n = enc.shape[1]
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    for name, sig in signals.items():
        full = load(sig, encoded=True)
        assert bitwise_equal(full.data, enc), name
        window = load_rows(sig, range(a, b), encoded=True)
        assert bitwise_equal(window.data, enc[:, a:b]), name
        span = TimeSpan(time_from_index(a, info.sample_rate), time_from_index(b, info.sample_rate))
        assert bitwise_equal(load(sig, span, encoded=True).data, enc[:, a:b]), name
        with np.errstate(over="ignore", invalid="ignore"):  # random float64 bits overflow float32
            decoded = load_rows(sig, range(a, b), dtype=np.float32)
            assert bitwise_equal(decoded.data, decode(enc[:, a:b], info, np.float32)), name
        assert not decoded.encoded


@SETTINGS
@given(
    sample_type=st.sampled_from(sorted(SAMPLE_TYPES)),
    dtype=st.sampled_from([np.float32, np.float64]),
    resolution=st.sampled_from([1.0, 0.1, -2.5]),
    offset=st.sampled_from([0.0, -1.0, 1e3]),
)
def test_one_pass_decode_equals_decode(sample_type, dtype, resolution, offset):
    info = make_info(
        sample_type, 3, sample_resolution_in_unit=resolution, sample_offset_in_unit=offset
    )
    enc = random_encoded(info, 64, seed=7)
    with np.errstate(over="ignore", invalid="ignore"):  # random float64 bits overflow float32
        expected = decode(enc, info, dtype)
        got = _io.decode_into(enc, info, dtype)
    assert bitwise_equal(got, expected)


@SETTINGS
@given(sample_type=st.sampled_from(sorted(SAMPLE_TYPES)), n=st.integers(0, 100))
def test_store_decoded_samples_encodes_them(tmp_path_factory, sample_type, n):
    info = make_info(sample_type, 2, sample_resolution_in_unit=0.5, sample_offset_in_unit=1.0)
    enc = random_encoded(info, n, seed=n)
    if info.dtype.kind == "f":
        enc = np.nan_to_num(enc, nan=0.0, posinf=0.0, neginf=0.0)
    decoded = Samples(decode(enc, info), info)
    path = tmp_path_factory.mktemp("s") / "x.lpcm.zst"
    store(path, decoded)
    assert load(make_signal(path, "lpcm.zst", info, n)).info == info
    assert bitwise_equal(
        load(make_signal(path, "lpcm.zst", info, n), encoded=True).data, decoded.encode().data
    )


def test_load_accepts_a_row_and_returns_samples(tmp_path):
    info = make_info("int16", 2, sample_resolution_in_unit=0.25, sample_offset_in_unit=2.0)
    enc = random_encoded(info, 300)
    store(tmp_path / "x.lpcm", Samples(enc, info, encoded=True))
    sig = make_signal(tmp_path / "x.lpcm", "lpcm", info, 300)
    got = load(sig.to_row(), TimeSpan(10**9, 2 * 10**9), dtype=np.float32)
    assert got.info == info and got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, enc[:, 128:256].astype(np.float32) * 0.25 + 2)


def test_span_outside_the_signal_names_it(tmp_path):
    info = make_info("int16", 2, rate=100.0)
    store(tmp_path / "x.lpcm", Samples(random_encoded(info, 1000), info, encoded=True))
    sig = make_signal(tmp_path / "x.lpcm", "lpcm", info, 1000)
    with pytest.raises(
        SpanError,
        match=rf"TimeSpan\(5 s, 11 s\).*'eeg' of recording {sig.recording}.*TimeSpan\(0 s, 10 s\)",
    ):
        load(sig, TimeSpan(5 * 10**9, 11 * 10**9))
    with pytest.raises(SpanError, match="not inside"):
        load(sig, TimeSpan(-1, 10))
    with pytest.raises(SpanError, match=r"samples 990\.\.1000 are not inside .*1000 samples"):
        load_rows(sig, range(990, 1001))
    assert load(sig, TimeSpan(9 * 10**9, 10 * 10**9)).n_samples == 100


def test_unknown_format_and_missing_file(tmp_path):
    info = make_info("int16", 2)
    with pytest.raises(UnknownFormatError, match="'wav'"):
        load(make_signal(tmp_path / "x.wav", "wav", info, 10))
    missing = tmp_path / "missing.lpcm"
    for fmt in ("lpcm", "lpcm.zst"):
        with pytest.raises(SampleFileNotFoundError, match=rf"{missing}.*recording"):
            load(make_signal(missing, fmt, info, 10))
    with pytest.raises(UnknownFormatError, match="cannot infer"):
        store(tmp_path / "x.bin", Samples(random_encoded(info, 3), info, encoded=True))


class Boom(Exception):
    pass


@pytest.mark.parametrize("name", ["x.lpcm", "x.lpcm.zst"])
def test_failed_store_leaves_nothing(tmp_path, monkeypatch, name):
    info = make_info("int16", 2)
    enc = random_encoded(info, 10_000)
    path = tmp_path / "sub" / name
    store(path, Samples(enc, info, encoded=True))
    before = path.read_bytes()

    def failing_chunks(data, info, chunk_bytes=1 << 24):
        yield memoryview(b"\x00" * 1000)
        raise Boom("disk on fire")

    for module in ("ondabatches.onda._lpcm", "ondabatches.onda._zst"):
        monkeypatch.setattr(f"{module}.interleaved_chunks", failing_chunks)
    with pytest.raises(Boom):
        store(path, Samples(enc[:, :50], info, encoded=True))
    assert os.listdir(path.parent) == [name]  # no temporary file left
    assert path.read_bytes() == before  # the old file is untouched
    with pytest.raises(Boom):
        store(tmp_path / "new" / name, Samples(enc, info, encoded=True))
    assert os.listdir(tmp_path / "new") == []


def test_store_respects_umask(tmp_path):
    info = make_info("int8", 1)
    store(tmp_path / "x.lpcm", Samples(random_encoded(info, 3), info, encoded=True))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.lpcm").stat().st_mode & 0o777 == 0o666 & ~umask


def test_relative_paths_follow_the_working_directory(tmp_path, monkeypatch):
    # A relative path is resolved where it is used, not where it was first seen.
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        _, path = filesystem_for("item.png")
        assert path == str(tmp_path / name / "item.png")


def test_filesystem_for_local_paths(tmp_path):
    fs, path = filesystem_for(f"file://{tmp_path}/a.lpcm")
    assert path == f"{tmp_path}/a.lpcm" and type(fs).__name__ == "LocalFileSystem"
    fs2, path2 = filesystem_for(tmp_path / "a.lpcm")
    assert fs2 is fs and path2 == path


def test_filesystem_for_is_cached_per_options():
    a, _ = filesystem_for("memory://x/a", {"ondabatches_test": 3})
    b, _ = filesystem_for("memory://x/b", {"ondabatches_test": 3})
    c, _ = filesystem_for("memory://x/b", {"ondabatches_test": 4})
    assert a is b and a is not c


def test_storage_options_go_over_fsspec_configuration_and_reach_child_processes(monkeypatch):
    monkeypatch.delenv("FSSPEC_S3", raising=False)
    # fsspec's own configuration (its files, FSSPEC_* at its import) stays underneath.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"anon": True, "key": "k"})
    set_storage_options("s3", client_kwargs={"endpoint_url": "http://127.0.0.1:1"}, anon=False)
    try:
        ours = {"anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
        assert dict(current_settings().storage_options["s3"]) == ours
        assert get_storage_options("s3") == {**ours, "key": "k"}  # ours win, key by key
        assert fsspec.config.conf["s3"] == {"anon": True, "key": "k"}  # left as it was
        assert "FSSPEC_S3" not in os.environ  # the settings, not the environment
        # A process started otherwise gets them through storage_env().
        assert json.loads(storage_env()["FSSPEC_S3"]) == {**ours, "key": "k"}
        code = "from ondabatches.onda import get_storage_options as g; print(g('s3')['anon'])"
        child = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **storage_env()},
        )
        assert child.stdout.strip() == "False"
    finally:
        set_storage_options("s3")
    assert "s3" not in current_settings().storage_options
    assert get_storage_options("s3") == {"anon": True, "key": "k"}
    with pytest.raises(TypeError, match="JSON"):
        set_storage_options("s3", session=object())


def test_the_0_1_environment_variable_still_works_with_a_deprecation_warning(monkeypatch):
    monkeypatch.setenv(STORAGE_OPTIONS_ENV, json.dumps({"memory": {"ondabatches_test": 7}}))
    with pytest.warns(DeprecationWarning, match="FSSPEC_MEMORY"):
        from_env = Settings.from_env()  # read once, as current_settings() does first
    with use_settings(from_env):
        fs, _ = filesystem_for("memory://bucket/key")
        # Forwarded as the variable that replaces it.
        assert json.loads(storage_env()["FSSPEC_MEMORY"]) == {"ondabatches_test": 7}
    assert fs.storage_options == {"ondabatches_test": 7}


def test_storage_options_reach_the_filesystem(monkeypatch):
    monkeypatch.delenv("FSSPEC_MEMORY", raising=False)
    set_storage_options("memory", ondabatches_test=1)
    try:
        fs, _ = filesystem_for("memory://bucket/key")
        assert fs.storage_options == {"ondabatches_test": 1}
        fs2, _ = filesystem_for("memory://bucket/key", {"ondabatches_test": 2})
        assert fs2.storage_options == {"ondabatches_test": 2}  # a call's options win
    finally:
        set_storage_options("memory")


def test_bad_environment_json_is_a_storage_error(monkeypatch):
    monkeypatch.setenv(STORAGE_OPTIONS_ENV, "{nope")
    with pytest.raises(StorageError, match=STORAGE_OPTIONS_ENV):
        Settings.from_env()


def test_missing_s3fs_gives_the_install_hint(monkeypatch):
    registry = importlib.import_module("fsspec.registry")
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now raises ImportError
    monkeypatch.delitem(registry._registry, "s3", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ondabatches\[s3\]'"):
        filesystem_for("s3://bucket/key.lpcm", {"anon": True})


def test_unknown_protocol_is_a_storage_error():
    with pytest.raises(StorageError, match="nosuchproto"):
        filesystem_for("nosuchproto://a/b")


def test_foreign_errors_are_wrapped(tmp_path):
    info = make_info("int16", 2)
    folder = tmp_path / "locked"
    folder.mkdir()
    store(folder / "x.lpcm", Samples(random_encoded(info, 10), info, encoded=True))
    if os.geteuid() == 0:
        # root ignores permissions: make the read fail with a directory instead.
        sig = make_signal(folder, "lpcm", info, 10)
    else:
        (folder / "x.lpcm").chmod(0)
        sig = make_signal(folder / "x.lpcm", "lpcm", info, 10)
    with pytest.raises(StorageError, match=rf"cannot read {folder}") as excinfo:
        load(sig)
    assert isinstance(excinfo.value.__cause__, OSError)
