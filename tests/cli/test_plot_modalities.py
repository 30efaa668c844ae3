"""plot_modalities: a multi-modal item on one time axis over its hypnogram, as a Figure."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

from ondabatches.plot import plot_modalities  # noqa: E402
from tests.cli.test_plot import image, not_blank  # noqa: E402

RATES = {"eeg": 256.0, "eog": 128.0, "spo2": 1.0}
NAMES = {1: "wake", 2: "nrem1", 3: "nrem2", 4: "nrem3", 5: "rem"}


def batch(n=2, seconds=60):
    """A batch of two items in the multi-signal layout: a dict per modality, a mask dict."""
    rng = np.random.default_rng(5)
    shapes = {"eeg": 2, "eog": 1, "spo2": 1}
    x = {
        name: rng.standard_normal((n, shapes[name], int(seconds * rate))).astype(np.float32)
        for name, rate in RATES.items()
    }
    x["mask"] = {name: np.array([True, name != "eog"]) for name in RATES}
    y = np.array([[[1, 3]], [[5, 2]]], dtype=np.uint8)
    return x, y


def test_every_modality_is_drawn_at_its_own_rate_over_the_hypnogram(tmp_path):
    x, y = batch()
    out = tmp_path / "item.png"
    fig = plot_modalities(
        x, y, index=1, sample_rates=RATES, label_rate=1 / 30, label_names=NAMES,
        channels={"eeg": ["c3-m2", "c4-m1"], "eog": ["eog-l"], "spo2": ["spo2"]},
        units={"eeg": "uV"}, title="item 1", path=out, size=(900, 600),
    )  # fmt: skip
    assert isinstance(fig, Figure)
    pixels = image(out)
    assert pixels.shape[:2] == (600, 900) and not_blank(pixels)
    traces, strip = fig.axes
    rows = [(name, values) for name in RATES for values in x[name][1]]
    assert len(traces.lines) == len(rows) == 4
    for line, (name, values) in zip(traces.lines, rows, strict=True):
        # Seconds from the window's start at the modality's own rate...
        np.testing.assert_array_equal(line.get_xdata(), np.arange(values.size) / RATES[name])
        # ...and the samples themselves, scaled into the channel's band.
        drawn = np.asarray(line.get_ydata())
        assert np.corrcoef(drawn, values)[0, 1] > 0.999999
    # Top to bottom in x's order; the absent modality (eog of item 1) says so, in grey.
    labels = [t.get_text() for t in traces.get_yticklabels()]
    assert labels[0].startswith("c3-m2") and "uV" in labels[0]
    assert "(absent)" in labels[2] and "(absent)" not in labels[1]
    assert traces.lines[2].get_color() == "0.6"
    assert traces.lines[0].get_color() != traces.lines[3].get_color()
    # The hypnogram: item 1's labels rem then nrem1, one 30 s epoch each.
    spans = {}
    for collection in strip.collections:
        (path,) = collection.get_paths()
        xs, ys = path.vertices[:, 0], path.vertices[:, 1]
        spans[round(float(ys.mean()))] = (float(xs.min()), float(xs.max()))
    assert spans == {len(NAMES) - 5: (0.0, 30.0), len(NAMES) - 2: (30.0, 60.0)}
    assert strip.get_xlim() == (0.0, 60.0)


def test_saves_only_when_asked_and_draws_into_a_given_figure(tmp_path):
    x, y = batch()
    item = {name: a[0] for name, a in x.items() if name != "mask"}  # no mask: all present
    fig = Figure()
    got = plot_modalities(
        item, y[0], sample_rates=RATES, label_rate=1 / 30, label_names=NAMES, fig=fig
    )
    assert got is fig and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 4 and "(absent)" not in str(
        [t.get_text() for t in fig.axes[0].get_yticklabels()]
    )
    assert list(tmp_path.iterdir()) == []


def test_refuses_bad_input():
    x, y = batch()
    with pytest.raises(ValueError, match="no sample rate for modalities \\['spo2'\\]"):
        plot_modalities(x, y, index=0, sample_rates={"eeg": 256.0, "eog": 128.0},
                        label_rate=1 / 30, label_names=NAMES)  # fmt: skip
    with pytest.raises(ValueError, match="'eeg' has 2 channel\\(s\\) but 1 name"):
        plot_modalities(x, y, index=0, sample_rates=RATES, label_rate=1 / 30,
                        label_names=NAMES, channels={"eeg": ["c3"]})  # fmt: skip
    with pytest.raises(ValueError, match="channels x samples"):
        plot_modalities(x, y, sample_rates=RATES, label_rate=1 / 30, label_names=NAMES)


def test_cli_draws_the_modalities_of_the_items_recording(tmp_path, capsys, monkeypatch):
    from ondabatches import plot
    from ondabatches.cli import main
    from ondabatches.onda import TimeSpan, iter_signals, load, read_signals
    from tests.cli._datasets import make_sleep_dataset

    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=2)
    figures = []
    drawing = plot.plot_modalities
    monkeypatch.setattr(
        plot, "plot_modalities", lambda *a, **kw: figures.append(drawing(*a, **kw)) or figures[-1]
    )
    out = tmp_path / "mm.png"
    args = ["plot", str(ds.root), "--modalities", "eeg,ecg", "--seed", "2", "-o", str(out)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: item 0 of seed 2: recording ") and "· eeg, ecg ·" in said
    assert image(out).shape[:2] == (800, 1200)
    # Both modalities of the item's recording over its window: 2 EEG rows at 128 Hz, then
    # the ECG at 256 Hz, each the samples load() gives for that window.
    (fig,) = figures
    traces, _ = fig.axes
    recording = said.split("recording ")[1].split(" ")[0]
    start, stop = (float(v) for v in said.split(" · ")[2].split(" s ")[0].split("-"))
    rows = []
    for signal in iter_signals(read_signals(ds.signals_path)):
        if str(signal.recording) == recording:
            span = TimeSpan(round(start * 1e9), round(stop * 1e9)).translate(-signal.span.start)
            rows += [(signal.sample_rate, r) for r in load(signal, span).data]
    assert [rate for rate, _ in rows] == [128.0, 128.0, 256.0]
    assert len(traces.lines) == 3
    for line, (rate, values) in zip(traces.lines, rows, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(values.size) / rate)
        assert np.corrcoef(line.get_ydata(), values)[0, 1] > 0.999999

    assert main(["plot", str(ds.root), "--modalities", "eeg,emg", "-o", str(out)]) == 1
    assert "no signals of sensor type(s) ['emg']" in capsys.readouterr().err
