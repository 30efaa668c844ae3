"""Pictures of batches and datasets: what ``ondabatches plot`` draws.

The drawing functions take plain arrays and names, not batch objects, so that any
``(x, y)`` pair (from :func:`~ondabatches.materialize_batch_item`, a Batcher, a
notebook) can be drawn. They write PNG files through matplotlib's Agg canvas,
without pyplot, so nothing global (backend, open figures) is touched.

Needs the optional extra ``plot`` (matplotlib), imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import require

__all__ = ["SLEEP_STAGES", "label_encoding", "plot_batch_item", "plot_item", "plot_overview"]

_DPI = 100

#: Sleep stages in OndaBatches' tour order (encoded 1..6 there).
SLEEP_STAGES = ("wake", "nrem1", "nrem2", "nrem3", "rem", "no_stage")


def _save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG to a local path or any fsspec URL (``s3://...``), atomically."""
    from .onda import filesystem_for
    from .onda._storage import atomic_writer, storage_errors

    url = os.fspath(path)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url, action="write"), atomic_writer(fs, fs_path) as file:
        fig.savefig(file, format="png")


def label_encoding(labels: Iterable[str]) -> dict[str, int]:
    """Codes 1..n for ``labels``: the tour's sleep-stage codes if all are stages, else sorted.

    >>> label_encoding(["rem", "wake"])
    {'wake': 1, 'nrem1': 2, 'nrem2': 3, 'nrem3': 4, 'rem': 5, 'no_stage': 6}
    >>> label_encoding(["spindle", "arousal", "spindle"])
    {'arousal': 1, 'spindle': 2}
    """
    found = set(labels)
    if found <= set(SLEEP_STAGES):
        return {stage: i for i, stage in enumerate(SLEEP_STAGES, 1)}
    return {label: i for i, label in enumerate(sorted(found), 1)}


def _short_names(names: Sequence[str]) -> list[str]:
    """The shortest prefixes (at least 8 characters) that tell the names apart."""
    for n in (8, 13, 18, 23):
        short = [name[:n] for name in names]
        if len(set(short)) == len(set(names)):
            return short
    return list(names)


def _figure(width: int, height: int) -> Any:
    require("matplotlib", "plot")
    from matplotlib.figure import Figure

    # A Figure made directly (not through pyplot) renders with Agg when saved to PNG.
    return Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_item(
    x: np.ndarray,
    y: np.ndarray,
    *,
    channels: Sequence[str],
    sample_rate: float,
    label_rate: float,
    label_names: Mapping[int, str],
    path: str | os.PathLike[str],
    title: str | None = None,
    start: float = 0.0,
    unit: str = "",
    size: tuple[int, int] = (1200, 700),
) -> None:
    """Draw one batch item: the channels' traces over the window and a hypnogram strip.

    Each channel is drawn on its own row, scaled to its own range (the range is
    written next to its name); the labels ``y`` are drawn beneath as colored bands,
    one row per class, sharing the time axis.

    Parameters
    ----------
    x:
        Samples, channels x time, decoded.
    y:
        Labels, ``(1, label_samples)`` or ``(label_samples,)``, integer codes.
    channels:
        One name per row of ``x``.
    sample_rate, label_rate:
        Rates of ``x`` and ``y`` in Hz (a 30 s epoch is ``1/30`` Hz).
    label_names:
        Name of each code (``{1: "wake", 2: "nrem1", ...}``); the strip lists the
        codes in this mapping's order, top to bottom.
    path:
        The PNG file to write.
    title:
        Drawn above the traces.
    start:
        Seconds from the recording's start to the window's first sample (x-axis origin).
    unit:
        Unit of ``x``, shown with each channel's range.
    size:
        Width and height of the image in pixels.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "item.png")
    >>> x = np.sin(np.linspace(0, 60, 2 * 7680)).reshape(2, 7680)
    >>> plot_item(x, np.array([[1, 2]]), channels=["c3", "c4"], sample_rate=128.0,
    ...           label_rate=1 / 30, label_names={1: "wake", 2: "rem"}, path=out)
    >>> os.path.getsize(out) > 0
    True
    """
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != len(channels):
        raise ValueError(
            f"x must be channels x time with one row per channel name; got shape {x.shape} "
            f"for {len(channels)} channel(s)"
        )
    fig = _figure(*size)
    traces, strip = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]}, squeeze=True
    )
    t = start + np.arange(x.shape[1]) / sample_rate
    n = x.shape[0]
    ticks = []
    for row, (name, values) in enumerate(zip(channels, x, strict=True)):
        lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0, 0)
        half = (hi - lo) / 2 or 1.0
        # Row 0 at the top; each trace fills 90% of its band so that neighbours never touch.
        level = n - 1 - row
        traces.plot(t, level + 0.45 * (values - (hi + lo) / 2) / half, linewidth=0.4, color="k")
        ticks.append((level, f"{name}\n±{half:.3g} {unit}".rstrip()))
    traces.set_yticks([lvl for lvl, _ in ticks], [text for _, text in ticks], fontsize=8)
    traces.set_ylim(-0.6, n - 0.4)
    if title:
        traces.set_title(title)

    codes = list(label_names)
    unknown = sorted(set(y.tolist()) - set(codes))
    if unknown:
        raise ValueError(f"labels {unknown} have no name in label_names {dict(label_names)}")
    colors = _colors(len(codes))
    edges = start + np.arange(y.size + 1) / label_rate
    for i, code in enumerate(codes):
        where = np.flatnonzero(y == code)
        if where.size:
            bars = [(edges[j], edges[j + 1] - edges[j]) for j in where]
            strip.broken_barh(bars, (len(codes) - 1 - i - 0.4, 0.8), color=colors[i])
    strip.set_yticks(range(len(codes)), [str(label_names[c]) for c in reversed(codes)], fontsize=8)
    strip.set_ylim(-0.6, len(codes) - 0.4)
    strip.set_xlim(start, max(t[-1] if t.size else start, edges[-1]))
    strip.set_xlabel("time (s from recording start)")
    _save_png(fig, path)


def plot_overview(
    labels: pa.Table | Mapping[str, Mapping[str, int]],
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    title: str | None = None,
    size: tuple[int, int] | None = None,
) -> None:
    """Draw the label distribution per recording: one stacked bar (hours) per recording.

    Parameters
    ----------
    labels:
        An annotations table with a label column, or ``{recording: {label: ns}}``
        (see :func:`ondabatches.inspection.label_durations`).
    path:
        The PNG file to write.
    column:
        The annotations' label column (default: ``stage``, else the first string column).
    title:
        Drawn above the bars.
    size:
        Width and height in pixels; by default 1000 wide and 40 px per recording.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "overview.png")
    >>> hour = 3600 * 10**9
    >>> plot_overview({"rec-a": {"wake": hour, "rem": 2 * hour}, "rec-b": {"wake": hour}}, out)
    >>> os.path.getsize(out) > 0
    True
    """
    if isinstance(labels, pa.Table):
        from .inspection import label_durations

        labels = label_durations(labels, column)
    recordings = sorted(labels)
    classes = list(label_encoding(c for per in labels.values() for c in per))
    width, height = size or (1000, 160 + 40 * max(len(recordings), 1))
    fig = _figure(width, height)
    ax = fig.subplots()
    left = np.zeros(len(recordings))
    rows = np.arange(len(recordings))
    for label, color in zip(classes, _colors(len(classes)), strict=True):
        hours = np.array([labels[r].get(label, 0) / 3.6e12 for r in recordings])
        if not hours.any():
            continue
        ax.barh(rows, hours, left=left, color=color, label=label, height=0.8)
        left += hours
    ax.set_yticks(rows, _short_names(recordings), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("hours")
    if classes:
        fig.legend(loc="outside right upper", fontsize=8)
    ax.set_title(title or f"label distribution of {len(recordings)} recording(s)")
    _save_png(fig, path)


def plot_batch_item(
    item: Any,
    *,
    label_names: Mapping[int, str],
    path: str | os.PathLike[str],
    title: str | None = None,
    size: tuple[int, int] = (1200, 700),
) -> None:
    """Materialize a :class:`~ondabatches.BatchItem` and draw it with :func:`plot_item`.

    ``label_names`` maps codes to names: the inverse of the ``encoding`` given to
    :func:`~ondabatches.label_signals`.

    Examples
    --------
    With ``labeled`` from :func:`~ondabatches.label_signals`::

        batches = RandomBatches(labeled, batch_size=1, batch_duration=300 * 10**9)
        item = batches.draw(seed=0, index=0, size=1)[0]
        plot_batch_item(item, label_names={1: "wake", 5: "rem"}, path="item.png")
    """
    from .materialize import materialize_batch_item

    x, y = materialize_batch_item(item, dtype=np.float64)
    names = item.info.channels
    if item.channels is None:
        channels = list(names)
    elif isinstance(item.channels, (tuple, list)):
        channels = [names[c] if isinstance(c, (int, np.integer)) else str(c) for c in item.channels]
    else:  # a selector object: its output rows have no names of their own
        channels = [f"row {i}" for i in range(x.shape[0])]
    epoch = item.window.duration / max(y.shape[-1], 1)
    plot_item(
        x,
        y,
        channels=channels,
        sample_rate=item.info.sample_rate,
        label_rate=1e9 / epoch,
        label_names=label_names,
        path=path,
        title=title,
        start=item.window.start / 1e9,
        unit=item.info.sample_unit,
        size=size,
    )
