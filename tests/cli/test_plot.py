"""``ondabatches plot`` and the drawing functions: real PNGs of the expected size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from ondabatches.batches import RandomBatches  # noqa: E402
from ondabatches.cli import main  # noqa: E402
from ondabatches.labels import label_signals  # noqa: E402
from ondabatches.onda import read_annotations, read_signals  # noqa: E402
from ondabatches.plot import plot_batch_item, plot_item, plot_overview  # noqa: E402
from tests.cli._datasets import EPOCH, NS, make_sleep_dataset  # noqa: E402

STAGE_CODES = {"wake": 1, "nrem1": 2, "nrem2": 3, "nrem3": 4, "rem": 5, "no_stage": 6}


def image(path) -> np.ndarray:
    """The PNG's pixels (height, width, RGBA) after checking the file is a PNG."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def not_blank(pixels: np.ndarray) -> bool:
    """Whether something was drawn: many distinct colours, not one flat background."""
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20


def test_plot_item_image_size_and_content(tmp_path):
    t = np.arange(4 * 128 * 60) / 128
    x = np.stack([np.sin(2 * np.pi * f * t) * a for f, a in [(1, 1), (10, 50), (0.2, 1e-3)]])
    y = np.array([[1, 1, 3, 5, 5, 2, 4, 4]])
    out = tmp_path / "item.png"
    plot_item(
        x, y, channels=["c3", "c4", "ecg"], sample_rate=128.0, label_rate=1 / 30,
        label_names={1: "wake", 2: "nrem1", 3: "nrem2", 4: "nrem3", 5: "rem"},
        path=out, title="test", start=90.0, unit="microvolt", size=(900, 500),
    )  # fmt: skip
    pixels = image(out)
    assert pixels.shape[:2] == (500, 900)
    assert not_blank(pixels)


def test_plot_item_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="one row per channel name"):
        plot_item(np.zeros((2, 10)), np.array([1]), channels=["a"], sample_rate=1.0,
                  label_rate=0.1, label_names={1: "w"}, path=tmp_path / "a.png")  # fmt: skip
    with pytest.raises(ValueError, match=r"labels \[7\] have no name"):
        plot_item(np.zeros((1, 10)), np.array([1, 7]), channels=["a"], sample_rate=1.0,
                  label_rate=0.2, label_names={1: "w"}, path=tmp_path / "a.png")  # fmt: skip
    assert not (tmp_path / "a.png").exists()


def test_plot_overview_from_table_and_mapping(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=3)
    plot_overview(read_annotations(ds.annotations_path), tmp_path / "o.png")
    assert image(tmp_path / "o.png").shape[:2] == (160 + 3 * 40, 1000)
    hour = 3600 * NS
    plot_overview(
        {"a": {"wake": hour}, "b": {"rem": 2 * hour}}, tmp_path / "m.png", size=(640, 320)
    )
    pixels = image(tmp_path / "m.png")
    assert pixels.shape[:2] == (320, 640) and not_blank(pixels)


def test_plot_batch_item(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    labeled = label_signals(
        read_signals(ds.signals_path), read_annotations(ds.annotations_path),
        labels_column="stage", epoch=EPOCH, encoding=STAGE_CODES,
    )  # fmt: skip
    batches = RandomBatches(labeled, n_channels=1, batch_size=1, batch_duration=4 * EPOCH)
    item = batches.draw(3, 0, 1)[0]
    out = tmp_path / "b.png"
    plot_batch_item(
        item, label_names={v: k for k, v in STAGE_CODES.items()}, path=out, size=(800, 400)
    )
    assert image(out).shape[:2] == (400, 800)


def test_cli_item_and_overview_in_process(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds")
    out = tmp_path / "item.png"
    assert main(["plot", str(ds.root), "--seed", "0", "--out", str(out)]) == 0
    assert image(out).shape[:2] == (700, 1200)
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: item 0 of seed 0: recording ")

    # The same seed and index draw the same item; another index another one.
    again = tmp_path / "again.png"
    assert main(["plot", str(ds.root), "--out", str(again)]) == 0
    assert capsys.readouterr().out.split(": ", 1)[1] == said.split(": ", 1)[1]
    assert image(again).tobytes() == image(out).tobytes()

    eeg = tmp_path / "eeg.png"
    args = ["plot", str(ds.signals_path), str(ds.annotations_path), "--sensor", "eeg",
            "--index", "5", "--duration", "60", "--channels", "1", "--size", "640", "360",
            "-o", str(eeg)]  # fmt: skip
    assert main(args) == 0
    assert "· eeg ·" in capsys.readouterr().out and image(eeg).shape[:2] == (360, 640)

    overview = tmp_path / "overview.png"
    assert main(["plot", str(ds.root), "--overview", "--out", str(overview)]) == 0
    assert image(overview).shape[:2] == (160 + 2 * 40, 1000)
    assert "label distribution of 2 recording(s)" in capsys.readouterr().out


def test_cli_bad_input_in_process(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    cases = [
        (["--duration", "45"], "45"),  # not a whole number of 30 s epochs
        (["--sensor", "emg"], "no signals of sensor type 'emg'"),
        (["--label-column", "nope"], "no label column nope"),
    ]
    for extra, needle in cases:
        assert main(["plot", str(ds.root), "-o", str(tmp_path / "x.png"), *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ondabatches plot: error:") and needle in err
    assert not (tmp_path / "x.png").exists()

    ds.annotations_path.unlink()
    assert main(["plot", str(ds.root)]) == 1
    assert "no Onda annotations table" in capsys.readouterr().err


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ondabatches", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


def test_cli_subprocess(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    done = run_cli("plot", str(ds.root), "--seed", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert image(tmp_path / "item.png").shape[:2] == (700, 1200)  # the default --out

    truncated = ds.file("eeg")
    truncated.write_bytes(truncated.read_bytes()[:1000])
    bad = run_cli("plot", str(ds.root), "--sensor", "eeg", "-o", str(tmp_path / "t.png"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("ondabatches plot: error:") and "rec0_eeg.lpcm" in bad.stderr

    missing = run_cli("plot", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr

    helped = run_cli("plot", "--help")
    assert helped.returncode == 0 and "--overview" in helped.stdout and "hypnogram" in helped.stdout


def test_plots_return_figures_draw_into_given_axes_and_save_only_when_asked(tmp_path):
    from matplotlib.figure import Figure

    x = np.stack([np.sin(np.arange(3840) / 10), np.cos(np.arange(3840) / 7)])
    y = np.array([[1, 5]])
    kwargs = dict(channels=["c3", "c4"], sample_rate=64.0, label_rate=1 / 30,
                  label_names={1: "wake", 5: "rem"})  # fmt: skip
    fig = plot_item(x, y, **kwargs)
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []
    traces, strip = fig.axes
    assert len(traces.lines) == 2 and np.allclose(traces.lines[0].get_xdata()[:2], [0, 1 / 64])
    # Into a notebook user's own axes: the figure they belong to comes back.
    mine = Figure()
    left, right = mine.subplots(1, 2)
    assert plot_item(x, y, **kwargs, ax=(left, right)) is mine
    assert len(left.lines) == 2
    with pytest.raises(ValueError, match="pair of matplotlib Axes"):
        plot_item(x, y, **kwargs, ax=left)
    hour = 3600 * 10**9
    ax = Figure().subplots()
    over = plot_overview({"a": {"wake": hour}, "b": {"rem": hour}}, ax=ax)
    assert over is ax.get_figure() and len(ax.patches) == 4  # a bar per recording and label
    assert list(tmp_path.iterdir()) == []
    plot_overview({"a": {"wake": hour}}, tmp_path / "o.png")
    assert not_blank(image(tmp_path / "o.png"))


# -- events ---------------------------------------------------------------------------

FLAT = dict(channels=["c3", "c4"], sample_rate=64.0, label_rate=1 / 30,
            label_names={1: "wake", 5: "rem"}, size=(900, 600))  # fmt: skip
EVENTS = {"arousals": ([10.0], [20.0], ["arousal"]), "marks": ([40.0], [40.0], ["spindle"])}


def pixel(pixels: np.ndarray, fig, ax, t: float, level: float) -> np.ndarray:
    """The RGB of the saved image at data point ``(t, level)`` of ``ax``."""
    x, y = ax.transData.transform((t, level))
    return pixels[int(round(fig.bbox.height - y)), int(round(x)), :3]


def test_plot_item_shades_events_where_they_are_and_nowhere_else(tmp_path):
    from matplotlib import colormaps

    x, y = np.zeros((2, 60 * 64)), np.array([[1, 5]])  # flat traces: white between rows
    plain, shaded = tmp_path / "plain.png", tmp_path / "events.png"
    fig0 = plot_item(x, y, **FLAT, path=plain)
    fig = plot_item(x, y, **FLAT, events=EVENTS, path=shaded)
    before, after = image(plain), image(shaded)
    assert after.shape[:2] == (600, 900) and not_blank(after)
    arousal, spindle = (np.array(c[:3]) for c in colormaps["Dark2"].colors[:2])
    traces0, traces = fig0.axes[0], fig.axes[0]
    # Between the two traces (level 0.5): inside the arousal, its colour at alpha 0.25
    # over white; outside any event, and anywhere without events, white.
    assert np.allclose(pixel(after, fig, traces, 15.0, 0.5), 0.75 + 0.25 * arousal, atol=0.02)
    assert np.allclose(pixel(before, fig0, traces0, 15.0, 0.5), 1.0)
    assert np.allclose(pixel(after, fig, traces, 30.0, 0.5), 1.0)
    # The instant at 40 s: a vertical line of the spindle's colour across the traces.
    line = pixel(after, fig, traces, 40.0, 0.5)
    assert np.abs(line - spindle).max() < 0.1, line
    assert np.allclose(pixel(before, fig0, traces0, 40.0, 0.5), 1.0)
    # The strip beneath the hypnogram: one row per label set, first at the top.
    strip = fig.axes[2]
    assert [t.get_text() for t in strip.get_yticklabels()] == ["marks", "arousals"]
    assert np.allclose(pixel(after, fig, strip, 15.0, 1.0), 0.2 + 0.8 * arousal, atol=0.02)
    assert np.allclose(pixel(after, fig, strip, 15.0, 0.0), 1.0)  # the marks' row
    legend = [t.get_text() for t in traces.get_legend().get_texts()]
    assert legend == ["arousal", "spindle"]
    assert len(traces.patches) == 1 and len(traces.collections) == 1 and len(traces.lines) == 2


def test_plot_item_events_empty_window_classes_in_order_and_bad_input(tmp_path):
    x, y = np.zeros((2, 60 * 64)), np.array([[1, 5]])
    fig = plot_item(x, y, **FLAT, events={"arousals": ([], [], [])})
    traces, _, strip = fig.axes
    assert len(traces.patches) == len(traces.collections) == 0 and traces.get_legend() is None
    assert [t.get_text() for t in strip.get_yticklabels()] == ["arousals"]
    # event_classes fixes the colours: the same class, the same colour in any window.
    first = plot_item(x, y, **FLAT, events=EVENTS, event_classes=["spindle", "arousal"])
    alone = plot_item(x, y, **FLAT, events={"a": EVENTS["arousals"]},
                      event_classes=["spindle", "arousal"])  # fmt: skip
    default = plot_item(x, y, **FLAT, events=EVENTS)  # the classes found, sorted
    colour = [f.axes[0].patches[0].get_facecolor()[:3] for f in (first, alone, default)]
    assert colour[0] == colour[1] != colour[2]
    assert [t.get_text() for t in first.axes[0].get_legend().get_texts()] == ["spindle", "arousal"]
    cases = [
        ({"a": ([1.0], [2.0, 3.0], ["x"])}, None, "1 onset.*2 offset"),
        ({"a": ([5.0], [2.0], ["x"])}, None, r"ends before it starts: \[5.0, 2.0\)"),
        ({"a": ([1.0], [2.0], ["x"])}, ["y"], r"classes \['x'\] are not in event_classes"),
        ({"a": [1.0, 2.0]}, None, r"events\['a'\] must be \(onsets_s, offsets_s"),
    ]
    for events, classes, needle in cases:
        with pytest.raises(ValueError, match=needle):
            plot_item(x, y, **FLAT, events=events, event_classes=classes,
                      path=tmp_path / "bad.png")  # fmt: skip
    assert not (tmp_path / "bad.png").exists()


def test_plot_item_events_into_given_axes(tmp_path):
    from matplotlib.figure import Figure

    x, y = np.zeros((2, 60 * 64)), np.array([[1, 5]])
    mine = Figure()
    three = mine.subplots(3, 1)
    assert plot_item(x, y, **FLAT, events=EVENTS, ax=three) is mine
    # Over the traces a span; in the strip the arousal's bar and the instant's line.
    assert len(three[0].patches) == 1 and len(three[2].collections) == 2
    pair = Figure().subplots(2, 1)  # a pair: the events over the traces only
    plot_item(x, y, **FLAT, events=EVENTS, ax=pair)
    assert len(pair[0].patches) == 1 and pair[0].get_legend() is not None
    with pytest.raises(ValueError, match="or a triple"):
        plot_item(x, y, **FLAT, ax=Figure().subplots(4, 1))


def write_events(ds, out, *, every_s: int = 20) -> str:
    """An arousal of 5 s every ``every_s`` seconds and an instant "mark" between them,
    in every recording of ``ds``: any window of 30 s or more holds some."""
    import uuid

    from ondabatches import label_events
    from ondabatches.onda import annotations_table

    rows = []
    for rec in sorted({s.recording for s in ds.signals}):
        for t in range(0, 600 - every_s, every_s):
            for kind, span in (("arousal", (t * NS, (t + 5) * NS)),
                               ("mark", ((t + 9) * NS, (t + 9) * NS))):  # fmt: skip
                rows.append({"recording": rec, "id": uuid.uuid4(), "span": span, "event": kind})
    annotations = annotations_table(rows)
    label_events(read_signals(ds.signals_path), annotations, column="event",
                 classes=["arousal", "mark"], out=str(out))  # fmt: skip
    return str(out)


def test_plot_batch_item_reads_its_windows_events(tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    from ondabatches.labels import load_event_labels

    events = load_event_labels(write_events(ds, tmp_path / "arousals") + "/events.json")
    labeled = label_signals(
        read_signals(ds.signals_path), read_annotations(ds.annotations_path),
        labels_column="stage", epoch=EPOCH, encoding=STAGE_CODES,
    )  # fmt: skip
    item = RandomBatches(labeled, n_channels=1, batch_size=1, batch_duration=4 * EPOCH).draw(
        3, 0, 1
    )[0]
    on, off, classes = events.window(item.recording, item.window.start, item.window.stop)
    out = tmp_path / "b.png"
    fig = plot_batch_item(
        item, label_names={v: k for k, v in STAGE_CODES.items()}, events={"arousals": events},
        path=out, size=(800, 500),
    )  # fmt: skip
    assert image(out).shape[:2] == (500, 800)
    traces, _, strip = fig.axes
    # Each arousal a span at its place on the recording's time axis, each mark a line.
    spans = sorted(p.get_x() for p in traces.patches)
    assert spans == sorted(on[(classes == 0) & (off > on)] / NS) and len(spans) >= 5
    (marks,) = traces.collections
    assert len(marks.get_segments()) == int((classes == 1).sum()) >= 5
    assert [t.get_text() for t in traces.get_legend().get_texts()] == ["arousal", "mark"]


def test_cli_item_with_events(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds")
    arousals = write_events(ds, tmp_path / "arousals")
    plain, shaded = tmp_path / "plain.png", tmp_path / "events.png"
    assert main(["plot", str(ds.root), "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["plot", str(ds.root), "--events", arousals, "--out", str(shaded)]) == 0
    said = capsys.readouterr().out
    assert "; arousals: " in said and " event(s) in the window" in said
    assert int(said.split("; arousals: ")[1].split()[0]) >= 5
    before, after = image(plain), image(shaded)
    assert after.shape == before.shape == (700, 1200, 4)
    assert after.tobytes() != before.tobytes()
    # The manifest itself names the set too; with --modalities, the events are drawn alike.
    both = tmp_path / "both.png"
    args = ["plot", str(ds.root), "--modalities", "eeg,ecg", "--events",
            f"{arousals}/events.json", "-o", str(both)]  # fmt: skip
    assert main(args) == 0
    assert "; arousals: " in capsys.readouterr().out and image(both).shape[:2] == (800, 1200)


def test_cli_events_errors_name_the_path(tmp_path, capsys):
    ds = make_sleep_dataset(tmp_path / "ds", n_recordings=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "events.json").write_text("not json")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "events.json").write_text('{"classes": ["a"]}')
    cases = [
        (str(tmp_path / "nowhere"), f"--events {tmp_path / 'nowhere'}: no event label set"),
        (str(bad), f"{bad}/events.json is not an events manifest"),
        (str(keys), f"{keys}/events.json is not an events manifest"),
    ]
    for path, needle in cases:
        out = tmp_path / "x.png"
        assert main(["plot", str(ds.root), "--events", path, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ondabatches plot: error:") and needle in err, err
        assert not out.exists()
