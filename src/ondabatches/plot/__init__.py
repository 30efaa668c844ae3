"""Pictures of batches and datasets: what ``ondabatches plot`` draws.

The drawing functions take plain arrays and names, not batch objects, so that any
``(x, y)`` pair (from
[`materialize_batch_item`][ondabatches.materialize.materialize_batch_item], a Batcher, a
notebook) can be drawn; [`plot_modalities`][ondabatches.plot.plot_modalities] draws an
item of a multi-signal batch (a dict of arrays per modality). They write PNG files
through matplotlib's Agg canvas, without pyplot, so nothing global (backend, open
figures) is touched.

Needs the optional extra ``plot`` (matplotlib), imported on first use.

The pieces: ``_draw`` (what the pictures share), ``_items`` (an item of a batch, and
its transforms' stages), ``_overview`` (a dataset's labels), ``_modalities`` (an item
of a multi-signal batch).
"""

from __future__ import annotations

from ..inspection import SLEEP_STAGES, label_encoding
from ._items import plot_batch_item, plot_item
from ._modalities import plot_modalities
from ._overview import plot_overview

__all__ = [
    "SLEEP_STAGES",
    "label_encoding",
    "plot_batch_item",
    "plot_item",
    "plot_modalities",
    "plot_overview",
]
