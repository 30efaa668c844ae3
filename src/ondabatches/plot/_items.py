"""One item of a batch: its signal, its labels and its events (``plot_item``,
``plot_batch_item``), with the stages of its transforms."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ArgumentError
from ._draw import _draw_events, _figure, _hypnogram, _panels, _save_png, _trace, _window_events

__all__ = ["plot_batch_item", "plot_item"]


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
        from ..transforms import Pipeline

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
    _draw_traces(traces, t, x, channels, unit)
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


def _draw_traces(
    axis: Any, t: np.ndarray, values: np.ndarray, channels: Sequence[str], unit: str
) -> None:
    """One trace per channel, the first at the top, each labeled with its name and scale."""
    n, ticks = values.shape[0], []
    for row, (name, v) in enumerate(zip(channels, values, strict=True)):
        level = n - 1 - row  # row 0 at the top
        half = _trace(axis, t, v, level, "k")
        ticks.append((level, f"{name}\n±{half:.3g} {unit}".rstrip()))
    axis.set_yticks([lvl for lvl, _ in ticks], [text for _, text in ticks], fontsize=8)
    axis.set_ylim(-0.6, n - 0.4)


def _stage_axes(fig: Any, size: tuple[int, int], filtered: bool, n_spectrograms: int) -> list:
    """The stacked axes of a picture with transforms (raw, filtered, one per spectrogram,
    the hypnogram), on ``fig`` or a new figure of ``size``."""
    heights = [3.0] + ([3.0] if filtered else [])
    heights += [1.5] * n_spectrograms
    heights.append(1.0)
    target = fig if fig is not None else _figure(*size)
    grid = target.subplots(
        len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    return list(grid[:, 0])


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
    axes = _stage_axes(fig, size, filtered is not None, 0 if spec is None else spec.shape[0])
    figure = axes[0].get_figure(root=True)
    end = start + x.shape[-1] / sample_rate

    def traces(axis: Any, values: np.ndarray, name: str) -> None:
        _draw_traces(
            axis, start + np.arange(values.shape[-1]) / sample_rate, values, channels, unit
        )
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
        _draw_spectrograms(
            axes[k:], spec, stages["spectrogram_step"], channels, sample_rate, start, end
        )
    strip = axes[-1]
    edges = _hypnogram(strip, y, label_names, label_rate, start)
    strip.set_xlim(start, max(end, edges[-1]))
    strip.set_xlabel("time (s from recording start)")
    if path is not None:
        _save_png(figure, path)
    return figure


def _draw_spectrograms(
    axes: Sequence[Any],
    spec: np.ndarray,
    step: Any,
    channels: Sequence[str],
    sample_rate: float,
    start: float,
    end: float,
) -> None:
    """One panel per channel's spectrogram, frames placed in time as ``step`` made them."""
    scale = "log magnitude" if getattr(step, "log", False) else "magnitude"
    # Each frame drawn over the hop around its centre (its window's middle) where
    # the step says its window and hop; else the frames spread over the window.
    window_s, hop_s = getattr(step, "window_s", None), getattr(step, "hop_s", None)
    left, right = start, end
    if window_s and hop_s:
        left = start + window_s / 2 - hop_s / 2
        right = left + spec.shape[-1] * hop_s
    for axis, channel, image in zip(axes, channels, spec, strict=False):
        axis.imshow(image, origin="lower", aspect="auto", cmap="magma",
                    extent=(left, right, 0.0, sample_rate / 2))  # fmt: skip
        axis.set_ylabel("Hz", fontsize=8)
        axis.set_title(f"spectrogram {channel}", fontsize=9, loc="left")
        axis.text(1.0, 1.02, scale, transform=axis.transAxes, ha="right", fontsize=7)


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
    from ..materialize import materialize_batch_item

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
        from ..materialize import materialize_batch
        from ..transforms import Pipeline

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
