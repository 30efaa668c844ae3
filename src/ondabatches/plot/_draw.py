"""What the pictures share: figures and panels, traces, hypnograms, event spans, PNG files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ArgumentError, require

__all__ = []


_DPI = 100


def _save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG to a local path or any fsspec URL (``s3://...``), atomically."""
    from ..onda import filesystem_for
    from ..onda._storage import atomic_writer, storage_errors

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
