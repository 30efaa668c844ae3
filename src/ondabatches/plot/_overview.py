"""A dataset at a glance: its label distribution per recording (``plot_overview``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from ..inspection import label_encoding
from ._draw import _colors, _figure, _save_png, _short_names

__all__ = ["plot_overview"]


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
        from ..inspection import label_durations

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
