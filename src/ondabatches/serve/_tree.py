"""Batches as trees of arrays: a flat tuple of arrays and a small structure to travel.

A materializer's ``x`` may be one array or a dict of them, one per modality (each
with its own number of samples), with a nested ``mask`` dict; any nesting of dicts,
tuples and lists of arrays is accepted. The transports move only a flat tuple of
arrays (one shared-memory segment per batch, the arrays laid out one after the
other) and the structure, a nested tuple of a few bytes that says how to rebuild the
same nesting, of the same arrays, on the other side.

A structure is ``None`` for an array, ``("dict", keys, children)`` for a dict (keys
in their order), ``("tuple", children)`` or ``("list", children)``. Dicts, tuples and
lists are rebuilt as plain ``dict``, ``tuple`` and ``list``; anything else is a leaf,
turned into an array with `numpy.asarray`.

A dozen lines of our own rather than a dependency: optree and jax's tree utilities
sort dict keys (the order of a batch's modalities is the user's), and torch's is
private.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._errors import ArgumentError

__all__: list[str] = []

#: The structure of a single array.
LEAF = None

_END = object()


def is_tree(value: Any) -> bool:
    """Whether ``value`` is a container (dict, tuple, list) rather than an array."""
    return isinstance(value, (dict, tuple, list))


def flatten(tree: Any) -> tuple[list[np.ndarray], Any]:
    """The leaves of ``tree`` as arrays, depth first in key order, and its structure."""
    leaves: list[np.ndarray] = []
    return leaves, _flatten(tree, leaves)


def _flatten(node: Any, leaves: list[np.ndarray]) -> Any:
    if isinstance(node, dict):
        keys = tuple(node)
        return ("dict", keys, tuple(_flatten(node[key], leaves) for key in keys))
    if isinstance(node, (tuple, list)):
        kind = "list" if isinstance(node, list) else "tuple"
        return (kind, tuple(_flatten(child, leaves) for child in node))
    leaves.append(np.asarray(node))
    return LEAF


def unflatten(structure: Any, leaves: Sequence[Any]) -> Any:
    """The tree of ``structure`` holding ``leaves`` (the same objects, not copies)."""
    it = iter(leaves)
    tree = _build(structure, it)
    if next(it, _END) is not _END:
        raise ArgumentError(f"more leaves than the structure {structure!r} holds")
    return tree


def _build(structure: Any, leaves: Iterator[Any]) -> Any:
    if structure is LEAF:
        try:
            return next(leaves)
        except StopIteration:
            raise ArgumentError("fewer leaves than the structure holds") from None
    if structure[0] == "dict":
        return {key: _build(s, leaves) for key, s in zip(*structure[1:], strict=True)}
    children = [_build(s, leaves) for s in structure[1]]
    return children if structure[0] == "list" else tuple(children)


def map_leaves(function: Callable[[np.ndarray], Any], tree: Any) -> Any:
    """``tree`` with ``function`` applied to each of its arrays."""
    leaves, structure = flatten(tree)
    return unflatten(structure, [function(leaf) for leaf in leaves])
