"""Pictures of one item raw, transformed and as a spectrogram (``plot --transforms``)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

from ondabatches import materialize_batch  # noqa: E402
from ondabatches.batches import RandomBatches  # noqa: E402
from ondabatches.cli import main  # noqa: E402
from ondabatches.labels import label_signals  # noqa: E402
from ondabatches.onda import read_annotations, read_signals  # noqa: E402
from ondabatches.plot import plot_batch_item, plot_item  # noqa: E402
from ondabatches.transforms import Bandpass, SignFlip, Spectrogram  # noqa: E402
from tests.cli._datasets import EPOCH, make_sleep_dataset  # noqa: E402
from tests.cli.test_plot import STAGE_CODES, image, not_blank  # noqa: E402

NAMES = {v: k for k, v in STAGE_CODES.items()}
PIPELINE = [Bandpass(0.3, 35.0), Spectrogram(2.0, 0.5)]


def scaled(values: np.ndarray, level: float) -> np.ndarray:
    """A trace as plot_item draws it: scaled to its own range around its row."""
    lo, hi = values.min(), values.max()
    return level + 0.45 * (values - (hi + lo) / 2) / ((hi - lo) / 2)


@pytest.fixture
def item(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    signals = read_signals(ds.signals_path)
    signals = signals.filter(pc.equal(signals.column("sensor_type"), "eeg"))
    labeled = label_signals(
        signals, read_annotations(ds.annotations_path),
        labels_column="stage", epoch=EPOCH, encoding=STAGE_CODES,
    )  # fmt: skip
    batches = RandomBatches(labeled, n_channels=2, batch_size=1, batch_duration=4 * EPOCH)
    return batches.draw(3, 0, 1)[0]


def test_batch_item_drawn_raw_filtered_with_its_context_and_as_a_spectrogram(item, tmp_path):
    out = tmp_path / "t.png"
    fig = plot_batch_item(item, label_names=NAMES, transforms=PIPELINE, path=out, size=(900, 800))
    assert image(out).shape[:2] == (800, 900) and not_blank(image(out))
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    channels = list(item.channels)
    assert titles[:2] == ["raw", "bandpass"]
    assert titles[2:4] == [f"spectrogram {c}" for c in channels]
    raw, _ = materialize_batch([item], np.float64)
    filtered, _ = materialize_batch([item], np.float64, transforms=PIPELINE[:1])
    spec, _ = materialize_batch([item], np.float64, transforms=PIPELINE)
    for panel, want in ((fig.axes[0], raw[0]), (fig.axes[1], filtered[0])):
        for row, (line, values) in enumerate(zip(panel.lines, want, strict=True)):
            np.testing.assert_allclose(line.get_ydata(), scaled(values, len(want) - 1 - row))
    # The filter read its context: not the window filtered alone (edge effects).
    from scipy.signal import sosfiltfilt

    alone = sosfiltfilt(PIPELINE[0]._design(item.info.sample_rate), raw[0], axis=-1)
    assert np.abs(alone - filtered[0]).max() > 1e-3 * np.abs(filtered[0]).max()
    for k in range(len(channels)):
        np.testing.assert_allclose(fig.axes[2 + k].images[0].get_array(), spec[0, k])
    assert fig.axes[-1].get_xlim()[0] == item.window.start / 1e9


def test_plot_item_with_transforms_and_bad_input():
    x = np.random.default_rng(0).standard_normal((2, 60 * 128))
    kw = dict(channels=["a", "b"], sample_rate=128.0, label_rate=1 / 30,
              label_names={1: "wake", 2: "rem"})  # fmt: skip
    fig = plot_item(x, np.array([[1, 2]]), transforms=[SignFlip(p=1.0)], key=(4, 2), **kw)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["raw", "sign_flip", ""]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), scaled(-x[0], 1))
    fig = plot_item(x, np.array([[1, 2]]), transforms=[Spectrogram(2.0, 1.0)], **kw)
    assert len(fig.axes) == 4 and fig.axes[1].images  # raw, 2 spectrograms, labels
    with pytest.raises(ValueError, match="give fig="):
        plot_item(x, np.array([[1, 2]]), transforms=PIPELINE, ax=(None, None), **kw)


def test_cli_transforms_as_json_or_file(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    plain, drawn, again = tmp_path / "plain.png", tmp_path / "t.png", tmp_path / "f.png"
    config = json.dumps([t.to_dict() for t in PIPELINE])
    base = ["plot", str(ds.root), "--sensor", "eeg", "--channels", "2"]
    assert main([*base, "-o", str(plain)]) == 0
    capsys.readouterr()
    assert main([*base, "--transforms", config, "-o", str(drawn)]) == 0
    assert "· bandpass + spectrogram" in capsys.readouterr().out
    pixels = image(drawn)
    assert pixels.shape[:2] == (900 + 2 * 120, 1200) and not_blank(pixels)
    assert pixels.shape != image(plain).shape
    (tmp_path / "pipeline.json").write_text(config)
    assert main([*base, "--transforms", str(tmp_path / "pipeline.json"), "-o", str(again)]) == 0
    assert image(again).tobytes() == pixels.tobytes()
    cases = [
        ("[{", "--transforms: not JSON"),
        (str(tmp_path / "nowhere.json"), "neither JSON"),
        ('[{"name": "no-such"}]', "unknown transform 'no-such'"),
        ('["bandpass"]', "a list of transforms"),
        ('[{"name": "lowpass", "cutoff_hz": 500}]', "Nyquist"),
    ]
    for text, needle in cases:
        out = tmp_path / "x.png"
        assert main([*base, "--transforms", text, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ondabatches plot: error:") and needle in err, err
        assert not out.exists()
    assert main(["plot", str(ds.root), "--modalities", "eeg", "--transforms", config]) == 1
    err = capsys.readouterr().err
    assert "Spectrogram(" in err and "--sensor TYPE rather than --modalities" in err


def test_cli_transforms_with_modalities_draw_each_modality_raw_then_transformed(
    tmp_path, capsys, monkeypatch
):
    # eeg: band-passed (it alone) and flipped; ecg: flipped only. Each modality is
    # drawn raw, then transformed beneath it, its window read as a montage batch reads
    # it: the band-pass equals sosfiltfilt over the whole eeg signal, then cut.
    from scipy.signal import sosfiltfilt

    from ondabatches import plot
    from ondabatches.onda import TimeSpan, iter_signals, load

    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1, minutes=6)
    figures = []
    drawing = plot.plot_modalities
    monkeypatch.setattr(
        plot, "plot_modalities", lambda *a, **kw: figures.append(drawing(*a, **kw)) or figures[-1]
    )
    band = Bandpass(0.5, 30.0, modalities=["eeg"])
    config = json.dumps([band.to_dict(), SignFlip(p=1.0).to_dict()])
    out = tmp_path / "mm.png"
    args = ["plot", str(ds.root), "--modalities", "eeg,ecg", "--transforms", config,
            "--seed", "1", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "· eeg, ecg ·" in said and "· bandpass + sign_flip" in said
    assert not_blank(image(out))
    (fig,) = figures
    traces, _ = fig.axes
    ticks = [t.get_text().split("\n")[0] for t in traces.get_yticklabels()]
    assert ticks == ["c3", "c4", "c3", "c4", "ecg", "ecg"]
    start, stop = (float(v) for v in said.split(" · ")[2].split(" s ")[0].split("-"))
    window = TimeSpan(round(start * 1e9), round(stop * 1e9))
    want = []
    for signal in iter_signals(read_signals(ds.signals_path)):  # eeg, then ecg
        raw = load(signal, window.translate(-signal.span.start)).data.astype(np.float64)
        want += list(raw)
        if signal.info.sensor_type == "eeg":
            whole = load(signal, TimeSpan(0, signal.span.duration)).data.astype(np.float64)
            first = round(window.start / 1e9 * signal.sample_rate)
            whole = sosfiltfilt(band._design(signal.sample_rate), whole, axis=-1)
            want += list(-whole[:, first : first + raw.shape[-1]])
        else:
            want += list(-raw)
    assert len(traces.lines) == len(want) == 6
    for line, values in zip(traces.lines, want, strict=True):
        assert line.get_ydata().size == values.size
        # (the raw eeg's correlation with its band-passed window is about 0.99)
        assert np.corrcoef(line.get_ydata(), values)[0, 1] > 0.99999
    # A transform naming a modality the drawing lacks: a typed error, nothing written.
    other = tmp_path / "other.png"
    bad = json.dumps([Bandpass(0.5, 30.0, modalities=["emg"]).to_dict()])
    assert main([*args[:5], bad, "-o", str(other)]) == 1
    assert "'emg'" in capsys.readouterr().err and not other.exists()
