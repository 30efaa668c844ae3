"""An item of a multi-signal batch, one panel per modality (``plot_modalities``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ArgumentError
from ._draw import _colors, _draw_events, _hypnogram, _panels, _save_png, _trace

__all__ = ["plot_modalities"]


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
        from ..serve._tree import map_leaves

        x, y = map_leaves(lambda a: a[index], (dict(x), y))
    mask = x.get("mask", None)
    arrays = {name: np.asarray(a) for name, a in x.items() if name != "mask"}
    y = np.asarray(y).reshape(-1)
    _check_modalities(arrays, sample_rates, channels)
    fig, traces, strip, below = _panels(fig, ax, size, len(events or {}))
    end = _draw_modalities(traces, arrays, mask, sample_rates, channels, units)
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


def _check_modalities(
    arrays: Mapping[str, np.ndarray],
    sample_rates: Mapping[str, float],
    channels: Mapping[str, Sequence[str]] | None,
) -> None:
    """Every modality channels x samples, with as many names as channels and a rate."""
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


def _draw_modalities(
    traces: Any,
    arrays: Mapping[str, np.ndarray],
    mask: Any,
    sample_rates: Mapping[str, float],
    channels: Mapping[str, Sequence[str]] | None,
    units: Mapping[str, str] | None,
) -> float:
    """Each modality's rows on ``traces`` in its own colour (grey where ``mask`` says it is
    absent), top to bottom; return the end of the longest, in seconds."""
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
    return end
