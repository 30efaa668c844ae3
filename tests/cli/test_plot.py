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
