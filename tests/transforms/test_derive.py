"""derive_dataset: streamed filtered/re-referenced/resampled copies equal to the same scipy
calls over the whole recording; annotations carried over; resumable; typed errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

scipy_signal = pytest.importorskip("scipy.signal")

from ondabatches import label_signals  # noqa: E402
from ondabatches.errors import BatchSpecError  # noqa: E402
from ondabatches.onda import _kernels, iter_signals, load, read_annotations, read_signals  # noqa: E402
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset  # noqa: E402
from ondabatches.transforms import Bandpass, Notch, SignFlip, _derive, derive_dataset  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    ds = make_dataset(root, n_recordings=2, duration=10 * 60 * 10**9, sample_rate=256.0,
                      eog_every=1)  # fmt: skip
    from ondabatches.onda import write_annotations, write_signals

    write_signals(root / "d.onda.signal.arrow", ds.signals)
    write_annotations(root / "d.onda.annotation.arrow", ds.annotations)
    return root / "d.onda.signal.arrow", root / "d.onda.annotation.arrow"


def _expected(sig, filters, reference, up, down):
    x = load(sig).data.astype(np.float64)
    for f in filters:
        x = scipy_signal.sosfiltfilt(f._design(sig.info.sample_rate), x, axis=-1)
    if reference == "average":
        x = x - x.mean(axis=0, keepdims=True)
    if up != down:
        x = scipy_signal.resample_poly(x, up, down, axis=-1)
    return x


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("resample_hz", [None, 100.0])
def test_derived_signals_equal_the_whole_recording_processed(
    source, tmp_path, resample_hz, kernels, monkeypatch
):
    if not kernels:  # scipy's calls, block by block
        monkeypatch.setattr(_kernels, "ENABLED", False)
    signals, annotations = source
    filters = [Bandpass(0.5, 25.0), Notch(16.0)]  # below the 64 Hz EOG's Nyquist
    # Small blocks: many block edges inside each recording.
    out_signals, out_annotations = derive_dataset(
        str(signals), str(annotations), str(tmp_path / "out"), filters=filters,
        reference="average", resample_hz=resample_hz, block_samples=20_000,
    )  # fmt: skip
    derived = list(iter_signals(read_signals(out_signals)))
    originals = list(iter_signals(read_signals(signals)))
    assert len(derived) == len(originals) >= 3
    for sig, orig in zip(derived, originals, strict=True):
        rate = orig.info.sample_rate
        up, down = (1, 1) if resample_hz is None else (
            int(resample_hz * 1000) // np.gcd(int(resample_hz * 1000), int(rate * 1000)),
            int(rate * 1000) // np.gcd(int(resample_hz * 1000), int(rate * 1000)))  # fmt: skip
        want = _expected(orig, filters, "average", up, down)
        got = load(sig).data
        assert sig.info.sample_type == "float32"
        assert sig.info.sample_rate == (resample_hz or rate)
        assert got.shape == want.shape
        rms = np.sqrt(np.mean(want**2))
        assert np.max(np.abs(got - want)) <= 1e-3 * rms
    assert read_annotations(out_annotations).num_rows == read_annotations(annotations).num_rows
    provenance = json.loads((tmp_path / "out" / "derived.json").read_text())
    assert provenance["filters"][0]["name"] == "bandpass" and provenance["source_digest"]
    # The annotations carried over label the derived signals.
    labeled = label_signals(
        read_signals(out_signals), read_annotations(out_annotations), labels_column="stage",
        epoch=EPOCH, encoding=STAGE_ENCODING,
    )  # fmt: skip
    assert labeled.num_rows == len(derived)


def _compiled():
    """Skip where the kernels do not run (the bits below are the compiled path's)."""
    pytest.importorskip("numba")
    if not _kernels._enabled():
        pytest.skip("kernels turned off")


@pytest.mark.parametrize(("block", "padding"), [(997, 0), (4096, 3), (20_011, 1), (1 << 20, 0)])
def test_the_compiled_resample_gives_the_whole_recordings_bits_at_any_block(
    source, tmp_path, block, padding, monkeypatch
):
    _compiled()
    # Columns of zeros beside the channels (as 19 channels get 20) change none of them.
    monkeypatch.setattr(_derive, "_columns", lambda channels: channels + padding)
    signals, _ = source
    out, _ = derive_dataset(str(signals), None, str(tmp_path / "out"), resample_hz=100.0,
                            block_samples=block)  # fmt: skip
    derived = list(iter_signals(read_signals(out)))
    for sig, orig in zip(derived, iter_signals(read_signals(signals)), strict=True):
        g = np.gcd(100, int(orig.info.sample_rate))
        up, down = 100 // g, int(orig.info.sample_rate) // g
        want = scipy_signal.resample_poly(load(orig).data.astype(np.float64), up, down, axis=-1)
        got = load(sig).data.astype(np.float32)  # float32 stored: exact
        assert got.tobytes() == want.astype(np.float32).tobytes(), (block, orig)


@pytest.mark.parametrize("padding", [0, 2])
def test_filters_over_one_block_give_scipys_bits(source, tmp_path, padding, monkeypatch):
    _compiled()
    monkeypatch.setattr(_derive, "_columns", lambda channels: channels + padding)
    signals, _ = source
    filters = [Bandpass(0.5, 25.0), Notch(16.0)]
    out, _ = derive_dataset(str(signals), None, str(tmp_path / "out"), filters=filters,
                            block_samples=1 << 24)  # fmt: skip
    for sig, orig in zip(iter_signals(read_signals(out)), iter_signals(read_signals(signals)),
                         strict=True):  # fmt: skip
        want = _expected(orig, filters, None, 1, 1).astype(np.float32)
        assert load(sig).data.astype(np.float32).tobytes() == want.tobytes(), orig
    # Referenced: numpy's mean over the channels alone, not the padding's zeros.
    out, _ = derive_dataset(str(signals), None, str(tmp_path / "ref"), filters=filters,
                            reference="average", block_samples=1 << 24)  # fmt: skip
    for sig, orig in zip(iter_signals(read_signals(out)), iter_signals(read_signals(signals)),
                         strict=True):  # fmt: skip
        want = _expected(orig, filters, "average", 1, 1)
        got = load(sig).data
        assert np.max(np.abs(got - want)) <= 1e-6 * np.sqrt(np.mean(want**2)), orig


def test_buffer_columns_pad_to_whole_vectors_where_that_adds_little():
    assert [_derive._columns(c) for c in (1, 2, 6, 7, 8, 11, 18, 19, 20, 25, 64)] == [
        1, 2, 6, 7, 8, 12, 20, 20, 20, 28, 64,
    ]  # fmt: skip


def test_rerun_skips_finished_signals_and_bad_input(source, tmp_path):
    signals, annotations = source
    out = tmp_path / "out"
    derive_dataset(str(signals), None, str(out), filters=[Bandpass(0.5, 30.0)], workers=2)
    files = sorted(out.glob("*.lpcm"))
    stamps = [f.stat().st_mtime_ns for f in files]
    files[0].unlink()  # one signal "killed" before its marker was written
    (out / ".derive" / f"{files[0].name}.done.json").unlink()
    files[1].unlink()  # and one whose marker outlived its file
    derive_dataset(str(signals), None, str(out), filters=[Bandpass(0.5, 30.0)])
    again = sorted(out.glob("*.lpcm"))
    assert len(again) == len(files)
    kept = [f.stat().st_mtime_ns for f in again]
    assert [a == b for a, b in zip(stamps, kept, strict=True)] == [False, False] + [True] * (
        len(files) - 2
    )
    with pytest.raises(BatchSpecError, match="filters only"):
        derive_dataset(str(signals), None, str(tmp_path / "x"), filters=[SignFlip()])
    with pytest.raises(BatchSpecError, match="Nyquist"):
        derive_dataset(str(signals), None, str(tmp_path / "x"), filters=[Bandpass(1.0, 140.0)])
    with pytest.raises(BatchSpecError, match="reference"):
        derive_dataset(str(signals), None, str(tmp_path / "x"), reference="bipolar")


def test_cli_derive(source, tmp_path, capsys):
    from ondabatches.cli import main

    signals, _ = source
    code = main(["derive", str(signals), str(tmp_path / "cli"), "--bandpass", "0.3,25",
                 "--notch", "16", "--reference", "average", "--resample", "128",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    derived = list(iter_signals(read_signals(tmp_path / "cli" / "derived.onda.signal.arrow")))
    assert {s.info.sample_rate for s in derived} == {128.0}
    assert (tmp_path / "cli" / "derived.onda.annotation.arrow").exists()
    with pytest.raises(SystemExit):
        main(["derive", str(signals), str(tmp_path / "bad"), "--bandpass", "0.3"])
