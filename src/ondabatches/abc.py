"""The extension points of ondabatches, each one declared interface.

Subclass one to plug in your own; declare what your plug-in can do by overriding the
interface's members (the library reads them and never probes for others), and check
it with the conformance suites of `ondabatches.testing`. A plug-in that passes
its suite works in every backend (inline, threads, processes, Ray) with no other
change.

- [`SampleFormat`][ondabatches.abc.SampleFormat]: how a ``file_format``'s files are
  read, written and size-checked (register it with
  [`register_format`][ondabatches.onda.register_format]);
- [`ChannelSelector`][ondabatches.abc.ChannelSelector]: a decoded window -> an item's
  ``x`` (make it JSON-able with
  [`register_selector`][ondabatches.batches.register_selector]);
- [`BatchScheme`][ondabatches.abc.BatchScheme]: state -> ``(batch, next state)``, with
  what the scheme can do declared (``steps_without_drawing``, ``next_state``,
  ``remaining``, ``config``, ``world_size`` and ``rank``);
- [`Sampler`][ondabatches.abc.Sampler]: which windows of a layout each batch holds, and
  [`Layout`][ondabatches.abc.Layout]: what the windows are of (one signal, a montage),
  composed with sharding options into a scheme by
  [`compose`][ondabatches.batches.compose];
- [`Transform`][ondabatches.abc.Transform]: a featurization or augmentation step
  ([`register_transform`][ondabatches.transforms.register_transform]), run by ``materialize_batch``;
- [`Materializer`][ondabatches.abc.Materializer]: a batch -> ``(x, y)`` arrays, with
  ``allocates`` and ``runs_transforms`` declared (the built-in one is
  [`BatchMaterializer`][ondabatches.materialize.BatchMaterializer]; a plain function
  declares them through
  [`FunctionMaterializer`][ondabatches.materialize.FunctionMaterializer]);
- [`Target`][ondabatches.abc.Target]: what an event label set makes of each window's
  events in [`EventTargets`][ondabatches.transforms.EventTargets], with its output shape
  and dtype declared
  ([`register_target`][ondabatches.transforms.register_target]);
- [`Pool`][ondabatches.abc.Pool]: an executor backend of the Batcher (``submit``, ``cancel``,
  ``close``, ``settle``; ``lazy`` and ``sends_once`` declared).

Objects that only quack like a [`BatchScheme`][ondabatches.abc.BatchScheme] or a
[`SampleFormat`][ondabatches.abc.SampleFormat], and plain functions given as a
materializer, are still accepted, with a ``DeprecationWarning``, through their required
methods alone.
"""

from __future__ import annotations

from .batches._layout import Layout
from .batches._sampler import Sampler
from .batches._selectors import ChannelSelector
from .batches._state import BatchScheme
from .materialize._materializer import Materializer
from .onda._format_base import SampleFormat
from .serve._pools import Pool
from .transforms._base import Transform
from .transforms._target import Target

__all__ = [
    "BatchScheme",
    "ChannelSelector",
    "Layout",
    "Materializer",
    "Pool",
    "SampleFormat",
    "Sampler",
    "Target",
    "Transform",
]
