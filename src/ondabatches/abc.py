"""The extension points of ondabatches, each one declared interface.

Subclass one to plug in your own; declare what your plug-in can do by overriding the
interface's members (the library reads them and never probes for others), and check
it with the conformance suites of :mod:`ondabatches.testing`. A plug-in that passes
its suite works in every backend (inline, threads, processes, Ray) with no other
change.

- :class:`SampleFormat`: how a ``file_format``'s files are read, written and
  size-checked (register it with :func:`~ondabatches.register_format`);
- :class:`ChannelSelector`: a decoded window -> an item's ``x`` (make it JSON-able
  with :func:`~ondabatches.register_selector`);
- :class:`BatchScheme`: state -> ``(batch, next state)``, with what the scheme can
  do declared (``steps_without_drawing``, ``next_state``, ``remaining``, ``config``,
  ``world_size`` and ``rank``);
- :class:`Transform`: a featurization or augmentation step
  (:func:`~ondabatches.transforms.register_transform`), run by ``materialize_batch``;
- :class:`Pool`: an executor backend of the Batcher (``submit``, ``cancel``,
  ``close``, ``settle``; ``lazy`` and ``sends_once`` declared).

Objects that only quack like a :class:`BatchScheme` or a :class:`SampleFormat` are
still accepted, with a ``DeprecationWarning``, through their required methods alone.
"""

from __future__ import annotations

from .batches._selectors import ChannelSelector
from .batches._state import BatchScheme
from .onda._format_base import SampleFormat
from .serve._pools import Pool
from .transforms._base import Transform

__all__ = ["BatchScheme", "ChannelSelector", "Pool", "SampleFormat", "Transform"]
