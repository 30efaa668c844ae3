"""Pictures of batches and datasets: what ``ondabatches plot`` draws.

The drawing functions take plain arrays and names, not batch objects, so that any
``(x, y)`` pair (from
[`materialize_batch_item`][ondabatches.materialize.materialize_batch_item], a Batcher, a
notebook) can be drawn; [`plot_modalities`][ondabatches.plot.plot_modalities] draws an
item of a multi-signal batch (a dict of arrays per modality). They write PNG files
through matplotlib's Agg canvas, without pyplot, so nothing global (backend, open
figures) is touched.

Needs the optional extra ``plot`` (matplotlib), imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import ArgumentError, require
from .inspection import SLEEP_STAGES, label_encoding

__all__ = [
    "SLEEP_STAGES",
    "label_encoding",
    "plot_batch_item",
    "plot_item",
    "plot_modalities",
    "plot_overview",
]

_DPI = 100


def _save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG to a local path or any fsspec URL (``s3://...``), atomically."""
    from .onda import filesystem_for
    from .onda._storage import atomic_writer, storage_errors

    url = os.fspath(path)
    fs, fs_path = filesystem_for(url)
    with storage_errors(url, action="write"), atomic_writer(fs, fs_path) as file:
        fig.savefig(file, format="png")


def _panels(fig: Any, ax: Any, size: tuple[int, int], events: int = 0) -> tuple[Any, ...]:
    """``(figure, traces, strip, events strip)``: the given axes, or new ones in ``fig``.

    ``events`` is the number of event label sets: with any, a new figure gets a third
    axes beneath the hypnogram, one row per set; given axes may be a pair (the events
    are then drawn over the traces only) or a triple. The figure returned is the one
    the axes belong to (a subfigure's own figure).
    """
    if ax is not None:
        try:
            traces, strip, *rest = ax
        except (TypeError, ValueError):
            rest = [None, None]
        if len(rest) > 1:
            raise ArgumentError(
                "ax must be a pair of matplotlib Axes (traces, hypnogram strip), or a "
                "triple (traces, hypnogram strip, events strip)"
            )
        return traces.get_figure(root=True), traces, strip, (rest[0] if events and rest else None)
    target = fig if fig is not None else _figure(*size)
    ratios = [4, 1] + ([0.25 + 0.3 * events] if events else [])
    axes = target.subplots(
        len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios}, squeeze=True
    )
    return (axes[0].get_figure(root=True), *axes, *([None] if not events else []))


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


def _trace(ax: Any, t: np.ndarray, values: np.ndarray, level: float, color: Any) -> float:
    """Draw ``values`` scaled to its own range around ``level``; the half range."""
    lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0, 0)
    half = (hi - lo) / 2 or 1.0
    # Each trace fills 90% of its band so that neighbours never touch.
    ax.plot(t, level + 0.45 * (values - (hi + lo) / 2) / half, linewidth=0.4, color=color)
    return half


def _hypnogram(
    strip: Any, y: np.ndarray, label_names: Mapping[int, str], label_rate: float, start: float
) -> np.ndarray:
    """Draw the labels ``y`` as colored bands, one row per code; the epochs' edges (s)."""
    codes = list(label_names)
    unknown = sorted(set(y.tolist()) - set(codes))
    if unknown:
        raise ArgumentError(f"labels {unknown} have no name in label_names {dict(label_names)}")
    colors = _colors(len(codes))
    edges = start + np.arange(y.size + 1) / label_rate
    for i, code in enumerate(codes):
        where = np.flatnonzero(y == code)
        if where.size:
            bars = [(edges[j], edges[j + 1] - edges[j]) for j in where]
            strip.broken_barh(bars, (len(codes) - 1 - i - 0.4, 0.8), color=colors[i])
    strip.set_yticks(range(len(codes)), [str(label_names[c]) for c in reversed(codes)], fontsize=8)
    strip.set_ylim(-0.6, len(codes) - 0.4)
    return edges


def _event_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    # Not tab10: the hypnogram's stages use it, and an event is not a stage.
    cmap = colormaps["Dark2" if n <= 8 else "tab20b"]
    return [cmap(i % cmap.N) for i in range(n)]


def _checked_events(
    events: Mapping[str, Any], classes: Sequence[str] | None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, list[str]]], list[str]]:
    """Each label set's ``(onsets, offsets, names)`` as arrays, checked; the classes in
    colour order (``classes``, or the names found, sorted)."""
    checked = {}
    for name, value in events.items():
        try:
            onsets, offsets, names = value
        except (TypeError, ValueError):
            raise ArgumentError(
                f"events[{name!r}] must be (onsets_s, offsets_s, class_names), got {value!r}"
            ) from None
        on = np.asarray(onsets, dtype=np.float64).reshape(-1)
        off = np.asarray(offsets, dtype=np.float64).reshape(-1)
        names = [str(n) for n in np.asarray(names, dtype=object).reshape(-1)]
        if not len(on) == len(off) == len(names):
            raise ArgumentError(
                f"events[{name!r}] has {len(on)} onset(s), {len(off)} offset(s) and "
                f"{len(names)} class name(s): one of each per event"
            )
        if (off < on).any():
            i = int(np.flatnonzero(off < on)[0])
            raise ArgumentError(
                f"events[{name!r}] event {i} ends before it starts: [{on[i]}, {off[i]}) s"
            )
        checked[str(name)] = (on, off, names)
    found = sorted({n for _, _, names in checked.values() for n in names})
    if classes is None:
        return checked, found
    order = [str(c) for c in classes]
    unknown = sorted(set(found) - set(order))
    if unknown:
        raise ArgumentError(f"events of classes {unknown} are not in event_classes {order}")
    return checked, order


def _draw_events(
    traces: Any,
    strip: Any,
    events: Mapping[str, Any],
    classes: Sequence[str] | None,
    start: float,
) -> None:
    """Draw the events over the traces (shaded spans; an instant as a vertical line) and,
    with a ``strip``, one row per label set; a legend of the classes drawn."""
    from matplotlib.patches import Patch

    checked, order = _checked_events(events, classes)
    color = dict(zip(order, _event_colors(len(order)), strict=True))
    drawn: set[str] = set()
    for row, (on, off, names) in enumerate(checked.values()):
        level = len(checked) - 1 - row  # the first set at the top
        names = np.asarray(names, dtype=object)
        for cls in order:
            of_class = names == cls
            if not of_class.any():
                continue
            drawn.add(cls)
            a, b = start + on[of_class], start + off[of_class]
            spans, instants = b > a, b == a
            for lo, hi in zip(a[spans], b[spans], strict=True):
                traces.axvspan(lo, hi, color=color[cls], alpha=0.25, lw=0, zorder=0)
            if instants.any():
                # As tall as the panel whatever its data range (axes coordinates), and
                # a collection, so that the traces' ``lines`` stay the traces.
                traces.vlines(a[instants], 0, 1, transform=traces.get_xaxis_transform(),
                              color=color[cls], lw=1.5)  # fmt: skip
            if strip is None:
                continue
            if spans.any():
                bars = list(zip(a[spans], b[spans] - a[spans], strict=True))
                strip.broken_barh(bars, (level - 0.4, 0.8), color=color[cls], alpha=0.8)
            if instants.any():
                strip.vlines(a[instants], level - 0.4, level + 0.4, color=color[cls], lw=1.5)
    if strip is not None:
        strip.set_yticks(range(len(checked)), list(reversed(checked)), fontsize=8)
        strip.set_ylim(-0.6, len(checked) - 0.4)
    if drawn:
        handles = [Patch(color=color[c], alpha=0.6, label=c) for c in order if c in drawn]
        traces.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                      fontsize=8, title="events", title_fontsize=8)  # fmt: skip


def plot_item(
    x: np.ndarray,
    y: np.ndarray,
    *,
    channels: Sequence[str],
    sample_rate: float,
    label_rate: float,
    label_names: Mapping[int, str],
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    start: float = 0.0,
    unit: str = "",
    events: Mapping[str, tuple[Any, Any, Sequence[str]]] | None = None,
    event_classes: Sequence[str] | None = None,
    transforms: Any = None,
    key: tuple[int, int] = (0, 0),
    size: tuple[int, int] = (1200, 700),
    fig: Any = None,
    ax: Any = None,
) -> Any:
    """Draw one batch item: the channels' traces over the window and a hypnogram strip.

    Each channel is drawn on its own row, scaled to its own range (the range is
    written next to its name); the labels ``y`` are drawn beneath as colored bands,
    one row per class, sharing the time axis. Events, if given, are shaded over the
    traces (one colour per class, listed in a legend; an instant event is a vertical
    line) and drawn again in a strip beneath the hypnogram, one row per label set.

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
        A PNG file (local path or fsspec URL) to save the figure to; nothing is written
        without it.
    title:
        Drawn above the traces.
    start:
        Seconds from the recording's start to the window's first sample (x-axis origin).
    unit:
        Unit of ``x``, shown with each channel's range.
    events:
        Event label sets to draw, ``{name: (onsets, offsets, class_names)}``: one onset
        and offset in seconds from the window's start (from
        [`window`][ondabatches.labels.EventLabels.window]: ``(onsets_ns - start_ns) / 1e9``) and
        one class name per event. An event with ``offset == onset`` is an instant.
    event_classes:
        Every class the sets may hold, in colour order, so that a class keeps its
        colour from one window to the next (default: the classes found, sorted).
    transforms:
        A transform pipeline (`ondabatches.transforms`, or their dicts): the item
        is then drawn raw, transformed (the last result that is still channels x time,
        after the filters, say) and, where a step gives ``(channels, frequency, time)``
        (a [`Spectrogram`][ondabatches.transforms.Spectrogram]), as one image per channel.
        The transforms see only the window given here, so a filter shows its edge
        effects: [`plot_batch_item`][ondabatches.plot.plot_batch_item] reads the context they need.
    key:
        The ``(seed, batch index)`` that random transforms draw from (the item is item
        0 of that batch).
    size:
        Width and height in pixels of a new figure.
    fig:
        A matplotlib ``Figure`` (or ``SubFigure``) to draw into instead of a new one.
    ax:
        A pair of matplotlib ``Axes`` ``(traces, hypnogram)`` to draw into instead, or
        a triple ``(traces, hypnogram, events)`` (not with ``transforms``: give ``fig``).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into: in a notebook it shows itself. With ``transforms``, its
        axes are the raw traces, the transformed traces (if any step keeps that
        shape), one spectrogram per channel (if any), then the hypnogram.

    Examples
    --------
    >>> x = np.sin(np.linspace(0, 60, 2 * 7680)).reshape(2, 7680)
    >>> fig = plot_item(x, np.array([[1, 2]]), channels=["c3", "c4"], sample_rate=128.0,
    ...                 label_rate=1 / 30, label_names={1: "wake", 2: "rem"})
    >>> [len(ax.lines) for ax in fig.axes]  # two traces, then the hypnogram's bands
    [2, 0]

    Into axes of your own, saving as well:

    >>> import tempfile, os
    >>> from matplotlib.figure import Figure
    >>> mine = Figure()
    >>> pair = mine.subplots(2, 1)
    >>> out = os.path.join(tempfile.mkdtemp(), "item.png")
    >>> plot_item(x, np.array([[1, 2]]), channels=["c3", "c4"], sample_rate=128.0,
    ...           label_rate=1 / 30, label_names={1: "wake", 2: "rem"}, ax=pair,
    ...           path=out) is mine
    True
    >>> os.path.getsize(out) > 0
    True

    With events: an arousal from 10 s to 25 s into the window and an instant at 40 s:

    >>> fig = plot_item(x, np.array([[1, 2]]), channels=["c3", "c4"], sample_rate=128.0,
    ...                 label_rate=1 / 30, label_names={1: "wake", 2: "rem"},
    ...                 events={"arousals": ([10.0, 40.0], [25.0, 40.0], ["arousal"] * 2)})
    >>> traces, hypnogram, strip = fig.axes
    >>> len(traces.patches), [t.get_text() for t in traces.get_legend().get_texts()]
    (1, ['arousal'])

    Raw, band-passed and as a spectrogram:

    >>> from ondabatches.transforms import Bandpass, Spectrogram
    >>> fig = plot_item(x, np.array([[1, 2]]), channels=["c3", "c4"], sample_rate=128.0,
    ...                 label_rate=1 / 30, label_names={1: "wake", 2: "rem"},
    ...                 transforms=[Bandpass(0.3, 35.0), Spectrogram(2.0, 0.5)])
    >>> [ax.get_title(loc="left") for ax in fig.axes][:4]
    ['raw', 'bandpass', 'spectrogram c3', 'spectrogram c4']
    """
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != len(channels):
        raise ArgumentError(
            f"x must be channels x time with one row per channel name; got shape {x.shape} "
            f"for {len(channels)} channel(s)"
        )
    if transforms is not None:
        from .transforms import Pipeline

        pipeline = Pipeline.of(transforms) or Pipeline()
        xt, yt = pipeline.apply_item(
            x.astype(np.float64), y.reshape(1, -1), sample_rate, (0, 0), key, 0
        )
        stages = _batch_stages(xt[None], np.asarray(yt)[None], pipeline, sample_rate, key)
        return _plot_stages(
            x, y, stages, channels=channels, sample_rate=sample_rate,
            label_rate=label_rate, label_names=label_names, path=path, title=title,
            start=start, unit=unit, events=events, event_classes=event_classes,
            size=size, fig=fig, ax=ax,
        )  # fmt: skip
    fig, traces, strip, below = _panels(fig, ax, size, len(events or {}))
    t = start + np.arange(x.shape[1]) / sample_rate
    n = x.shape[0]
    ticks = []
    for row, (name, values) in enumerate(zip(channels, x, strict=True)):
        level = n - 1 - row  # row 0 at the top
        half = _trace(traces, t, values, level, "k")
        ticks.append((level, f"{name}\n±{half:.3g} {unit}".rstrip()))
    traces.set_yticks([lvl for lvl, _ in ticks], [text for _, text in ticks], fontsize=8)
    traces.set_ylim(-0.6, n - 0.4)
    if title:
        traces.set_title(title)

    edges = _hypnogram(strip, y, label_names, label_rate, start)
    if events:
        _draw_events(traces, below, events, event_classes, start)
    strip.set_xlim(start, max(t[-1] if t.size else start, edges[-1]))
    (below or strip).set_xlabel("time (s from recording start)")
    if path is not None:
        _save_png(fig, path)
    return fig


def _batch_stages(
    xb: np.ndarray, yb: Any, pipeline: Any, sample_rate: float, key: tuple[int, int]
) -> dict[str, Any]:
    """The drawable stages of a one-item batch ``xb`` after its item transforms: the
    last result of shape (1, channels, time) and the first of (1, channels, freq, time),
    after the batch transforms run in turn; with each one's name."""
    names = [t.name for _, t in pipeline.item]
    stages: dict[str, Any] = {"filtered": None, "filtered_name": None, "spectrogram": None}
    if names:
        stages["filtered"], stages["filtered_name"] = xb[0], " + ".join(names)
    for i, t in pipeline.batch:
        xb, yb = t.apply(xb, yb, pipeline._rng(t, key, None, i), sample_rate)
        if xb.ndim == 3:
            names.append(t.name)
            stages["filtered"], stages["filtered_name"] = xb[0], " + ".join(names)
        elif xb.ndim == 4 and stages["spectrogram"] is None:
            stages["spectrogram"], stages["spectrogram_step"] = xb[0], t
    return stages


def _plot_stages(
    x: np.ndarray,
    y: np.ndarray,
    stages: dict[str, Any],
    *,
    channels: Sequence[str],
    sample_rate: float,
    label_rate: float,
    label_names: Mapping[int, str],
    path: Any,
    title: str | None,
    start: float,
    unit: str,
    events: Any,
    event_classes: Any,
    size: tuple[int, int],
    fig: Any,
    ax: Any,
) -> Any:
    """[`plot_item`][ondabatches.plot.plot_item]'s picture with transforms: raw,
    transformed, spectrograms."""
    if ax is not None:
        raise ArgumentError("with transforms, plot_item draws several panels: give fig=, not ax=")
    filtered, spec = stages["filtered"], stages["spectrogram"]
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    heights = [3.0] + ([3.0] if filtered is not None else [])
    heights += [1.5] * (0 if spec is None else spec.shape[0])
    heights.append(1.0)
    target = fig if fig is not None else _figure(*size)
    grid = target.subplots(
        len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    axes = list(grid[:, 0])
    figure = axes[0].get_figure(root=True)
    end = start + x.shape[-1] / sample_rate

    def traces(axis: Any, values: np.ndarray, name: str) -> None:
        t = start + np.arange(values.shape[-1]) / sample_rate
        n, ticks = values.shape[0], []
        for row, (channel, v) in enumerate(zip(channels, values, strict=True)):
            half = _trace(axis, t, v, n - 1 - row, "k")
            ticks.append((n - 1 - row, f"{channel}\n±{half:.3g} {unit}".rstrip()))
        axis.set_yticks([lvl for lvl, _ in ticks], [text for _, text in ticks], fontsize=8)
        axis.set_ylim(-0.6, n - 0.4)
        axis.set_title(name, fontsize=9, loc="left")
        if events:
            _draw_events(axis, None, events, event_classes, start)

    traces(axes[0], x, "raw")
    if title:
        figure.suptitle(title)
    k = 1
    if filtered is not None:
        if filtered.shape[0] != len(channels):
            raise ArgumentError(
                f"the transforms give {filtered.shape[0]} row(s) for {len(channels)} channel(s)"
            )
        traces(axes[1], filtered, stages["filtered_name"])
        k = 2
    if spec is not None:
        step = stages["spectrogram_step"]
        scale = "log magnitude" if getattr(step, "log", False) else "magnitude"
        # Each frame drawn over the hop around its centre (its window's middle) where
        # the step says its window and hop; else the frames spread over the window.
        window_s, hop_s = getattr(step, "window_s", None), getattr(step, "hop_s", None)
        left, right = start, end
        if window_s and hop_s:
            left = start + window_s / 2 - hop_s / 2
            right = left + spec.shape[-1] * hop_s
        for channel, image in zip(channels, spec, strict=False):
            axis = axes[k]
            axis.imshow(image, origin="lower", aspect="auto", cmap="magma",
                        extent=(left, right, 0.0, sample_rate / 2))  # fmt: skip
            axis.set_ylabel("Hz", fontsize=8)
            axis.set_title(f"spectrogram {channel}", fontsize=9, loc="left")
            axis.text(1.0, 1.02, scale, transform=axis.transAxes, ha="right", fontsize=7)
            k += 1
    strip = axes[-1]
    edges = _hypnogram(strip, y, label_names, label_rate, start)
    strip.set_xlim(start, max(end, edges[-1]))
    strip.set_xlabel("time (s from recording start)")
    if path is not None:
        _save_png(figure, path)
    return figure


def plot_overview(
    labels: pa.Table | Mapping[str, Mapping[str, int]],
    path: str | os.PathLike[str] | None = None,
    *,
    column: str | None = None,
    title: str | None = None,
    size: tuple[int, int] | None = None,
    ax: Any = None,
) -> Any:
    """Draw the label distribution per recording: one stacked bar (hours) per recording.

    Parameters
    ----------
    labels:
        An annotations table with a label column, or ``{recording: {label: ns}}``
        (see [`ondabatches.inspection.label_durations`][ondabatches.inspection.label_durations]).
    path:
        A PNG file (local path or fsspec URL) to save the figure to; nothing is written
        without it.
    column:
        The annotations' label column (default: ``stage``, else the first string column).
    title:
        Drawn above the bars.
    size:
        Width and height in pixels of a new figure; by default 1000 wide and 40 px per
        recording.
    ax:
        A matplotlib ``Axes`` to draw into instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "overview.png")
    >>> hour = 3600 * 10**9
    >>> fig = plot_overview({"rec-a": {"wake": hour, "rem": 2 * hour}, "rec-b": {"wake": hour}},
    ...                     out)
    >>> os.path.getsize(out) > 0, len(fig.axes[0].patches)  # a bar per recording and label
    (True, 4)
    """
    if isinstance(labels, pa.Table):
        from .inspection import label_durations

        labels = label_durations(labels, column)
    recordings = sorted(labels)
    classes = list(label_encoding(c for per in labels.values() for c in per))
    width, height = size or (1000, 160 + 40 * max(len(recordings), 1))
    own = ax is None
    if own:
        ax = _figure(width, height).subplots()
    fig = ax.get_figure(root=True)
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
        # Beside the bars in a figure of our own; inside axes that the caller laid out.
        if own:
            fig.legend(loc="outside right upper", fontsize=8)
        else:
            ax.legend(fontsize=8)
    ax.set_title(title or f"label distribution of {len(recordings)} recording(s)")
    if path is not None:
        _save_png(fig, path)
    return fig


def plot_batch_item(
    item: Any,
    *,
    label_names: Mapping[int, str],
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    events: Mapping[str, Any] | None = None,
    transforms: Any = None,
    key: tuple[int, int] = (0, 0),
    size: tuple[int, int] = (1200, 700),
    fig: Any = None,
    ax: Any = None,
) -> Any:
    """Materialize a [`BatchItem`][ondabatches.batches.BatchItem] and draw it with
    [`plot_item`][ondabatches.plot.plot_item].

    ``path``, ``fig`` and ``ax`` are as for [`plot_item`][ondabatches.plot.plot_item];
    the figure is returned.

    ``label_names`` maps codes to names: the inverse of the ``encoding`` given to
    [`label_signals`][ondabatches.labels.label_signals].

    ``events`` maps names to event label sets
    ([`EventLabels`][ondabatches.labels.EventLabels], whose events in the item's window
    are read and drawn, each class in the same colour whatever the window) or to
    ``(onsets, offsets, class_names)`` as for [`plot_item`][ondabatches.plot.plot_item].

    ``transforms`` (a pipeline) draws the item raw, transformed and as a spectrogram as
    [`plot_item`][ondabatches.plot.plot_item] does, the transformed window read as a
    batch reads it: with the context its filters need around the window (so it equals
    the whole recording filtered, then cut); ``key`` is the ``(seed, batch index)`` of
    random transforms.

    Examples
    --------
    With ``labeled`` from [`label_signals`][ondabatches.labels.label_signals]::

        batches = RandomBatches(labeled, batch_size=1, batch_duration=300 * 10**9)
        item = batches.draw(seed=0, index=0, size=1)[0]
        fig = plot_batch_item(item, label_names={1: "wake", 5: "rem"}, path="item.png")

    With ``arousals`` from [`label_events`][ondabatches.labels.label_events], its events drawn too::

        plot_batch_item(item, label_names=..., events={"arousals": arousals}, path=...)
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
    drawn, classes = _window_events(events or {}, item.recording, item.window)
    if transforms is not None:
        from .materialize import materialize_batch
        from .transforms import Pipeline

        pipeline = Pipeline.of(transforms) or Pipeline()
        # The item transforms with their context, as a batch reads them (they lead the
        # pipeline, so their positions, and draws, are those of the whole pipeline).
        first = [t for _, t in pipeline.item]
        xb, yb = materialize_batch([item], np.float64, transforms=first, key=key)
        stages = _batch_stages(xb, yb, pipeline, item.info.sample_rate, key)
        return _plot_stages(
            x, y, stages, channels=channels, sample_rate=item.info.sample_rate,
            label_rate=1e9 / epoch, label_names=label_names, path=path, title=title,
            start=item.window.start / 1e9, unit=item.info.sample_unit, events=drawn,
            event_classes=classes, size=size, fig=fig, ax=ax,
        )  # fmt: skip
    return plot_item(
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
        events=drawn,
        event_classes=classes,
        size=size,
        fig=fig,
        ax=ax,
    )


def _window_events(
    events: Mapping[str, Any], recording: Any, window: Any
) -> tuple[dict[str, Any], list[str] | None]:
    """The events of a window (a [`TimeSpan`][ondabatches.onda.TimeSpan] of the recording)
    in the form [`plot_item`][ondabatches.plot.plot_item] takes; the classes of the
    label sets, in order (None where a set is given as arrays)."""
    drawn: dict[str, Any] = {}
    classes: list[str] | None = []
    for name, value in events.items():
        if not hasattr(value, "window"):  # (onsets, offsets, class_names) already
            drawn[name], classes = value, None
            continue
        on, off, codes = value.window(recording, window.start, window.stop)
        names = [value.classes[int(c)] for c in codes]
        drawn[name] = ((on - window.start) / 1e9, (off - window.start) / 1e9, names)
        if classes is not None:
            classes += [c for c in value.classes if c not in classes]
    return drawn, classes


def plot_modalities(
    x: Mapping[str, Any],
    y: np.ndarray,
    *,
    sample_rates: Mapping[str, float],
    label_rate: float,
    label_names: Mapping[int, str],
    channels: Mapping[str, Sequence[str]] | None = None,
    index: int | None = None,
    units: Mapping[str, str] | None = None,
    title: str | None = None,
    events: Mapping[str, tuple[Any, Any, Sequence[str]]] | None = None,
    event_classes: Sequence[str] | None = None,
    fig: Any = None,
    ax: Any = None,
    path: str | os.PathLike[str] | None = None,
    size: tuple[int, int] = (1200, 800),
) -> Any:
    """Draw a multi-modal item: every modality's channels on one time axis, over the labels.

    Each modality is drawn at its own rate, with times in seconds from the window's
    start, so that an event shows at the same abscissa in EEG at 256 Hz and in SpO2
    at 1 Hz. The modalities are stacked top to bottom in ``x``'s order, each channel
    on its own row scaled to its own range (written next to its name), one colour per
    modality; a modality that the item's mask marks absent is drawn in grey and
    labelled so. The labels ``y`` are drawn beneath as a hypnogram, one row per class.

    Parameters
    ----------
    x:
        One item's arrays, ``{name: (channels, samples)}``, and optionally
        ``x["mask"]``, ``{name: bool}`` (True where the modality is present); or a
        whole batch's, ``(batch, channels, samples)`` and ``(batch,)``, with ``index``.
    y:
        The labels, ``(1, label_samples)`` or ``(label_samples,)``, integer codes
        (with ``index``: the batch's ``(batch, 1, label_samples)``).
    sample_rates:
        Each modality's rate in Hz.
    label_rate:
        The labels' rate in Hz (a 30 s epoch is ``1/30`` Hz).
    label_names:
        Name of each code, listed top to bottom in this mapping's order.
    channels:
        Channel names per modality; default ``name 0``, ``name 1``...
    index:
        Which item of a batch to draw.
    units:
        The unit of each modality, shown with each channel's range.
    title:
        Drawn above the traces.
    events, event_classes:
        Event label sets drawn over the traces and beneath the hypnogram, as for
        [`plot_item`][ondabatches.plot.plot_item] (times in seconds from the window's start).
    fig:
        An empty matplotlib ``Figure`` to draw into; default a new one of ``size`` pixels.
    ax:
        A pair of matplotlib ``Axes`` ``(traces, hypnogram)`` to draw into instead, or
        a triple ``(traces, hypnogram, events)``.
    path:
        A PNG file (local path or fsspec URL) to save the figure to; nothing is written
        without it.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: its first axes hold the traces (one line per channel), the second
        the hypnogram.

    Examples
    --------
    >>> x = {"eeg": np.random.default_rng(0).standard_normal((2, 30 * 256)),
    ...      "spo2": np.full((1, 30), 97.0), "mask": {"eeg": True, "spo2": True}}
    >>> fig = plot_modalities(x, np.array([[3]]), sample_rates={"eeg": 256.0, "spo2": 1.0},
    ...                       label_rate=1 / 30, label_names={1: "wake", 3: "nrem2"})
    >>> [len(ax.lines) for ax in fig.axes]  # two EEG channels and one SpO2, then the labels
    [3, 0]
    """
    if index is not None:
        from .serve._tree import map_leaves

        x, y = map_leaves(lambda a: a[index], (dict(x), y))
    mask = x.get("mask", None)
    arrays = {name: np.asarray(a) for name, a in x.items() if name != "mask"}
    y = np.asarray(y).reshape(-1)
    missing = sorted(set(arrays) - set(sample_rates))
    for name, a in arrays.items():
        if a.ndim != 2:
            raise ArgumentError(
                f"modality {name!r} must be channels x samples, got shape {a.shape}"
            )
        names = (channels or {}).get(name)
        if names is not None and len(names) != a.shape[0]:
            raise ArgumentError(
                f"modality {name!r} has {a.shape[0]} channel(s) but {len(names)} name(s)"
            )
    if missing:
        raise ArgumentError(
            f"no sample rate for modalities {missing}; rates are {dict(sample_rates)}"
        )
    fig, traces, strip, below = _panels(fig, ax, size, len(events or {}))
    n = sum(a.shape[0] for a in arrays.values())
    ticks, level, end = [], n - 1, 0.0
    for (name, a), color in zip(arrays.items(), _colors(len(arrays)), strict=True):
        present = True if mask is None or name not in mask else bool(np.asarray(mask[name]))
        names = (channels or {}).get(name) or [f"{name} {i}" for i in range(a.shape[0])]
        t = np.arange(a.shape[1]) / sample_rates[name]
        end = max(end, a.shape[1] / sample_rates[name])
        unit = (units or {}).get(name, "")
        # A band of the modality's colour behind its rows tells the modalities apart.
        traces.axhspan(level - a.shape[0] + 0.5, level + 0.5, color=color, alpha=0.08, lw=0)
        for channel, values in zip(names, a, strict=True):
            half = _trace(traces, t, values, level, color if present else "0.6")
            text = f"{channel}\n±{half:.3g} {unit}".rstrip() if present else f"{channel}\n(absent)"
            ticks.append((level, text))
            level -= 1
    traces.set_yticks([lvl for lvl, _ in ticks], [text for _, text in ticks], fontsize=8)
    traces.set_ylim(-0.6, n - 0.4)
    if title:
        traces.set_title(title)
    edges = _hypnogram(strip, y, label_names, label_rate, 0.0)
    if events:
        _draw_events(traces, below, events, event_classes, 0.0)
    strip.set_xlim(0.0, max(end, edges[-1]))
    (below or strip).set_xlabel("time (s from the window's start)")
    if path is not None:
        _save_png(fig, path)
    return fig
