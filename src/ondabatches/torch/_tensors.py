"""Arrays to tensors, labels as models want them, and the ranks torch.distributed runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._errors import ArgumentError, ArgumentTypeError, LabelError, require
from ..serve._tree import map_leaves

torch = require("torch", "torch")

LABEL_MODES = ("codes", "classes")


def distributed_rank() -> tuple[int, int]:
    """``(world_size, rank)`` of ``torch.distributed`` where it is initialized, else ``(1, 0)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def tensor(array: np.ndarray):
    """``array`` as a tensor, sharing its memory where it is writable."""
    # torch.from_numpy shares memory; read-only arrays (Ray's zero-copy reads through
    # a RayBatcher) must be copied, since torch tensors are always writable.
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def tensors(value: Any):
    """A tensor for an array; for a dict (one array per modality, a nested ``mask``
    dict of bools), tuple or list of them, the same structure of tensors."""
    if isinstance(value, np.ndarray):
        return tensor(value)
    return map_leaves(tensor, value)


def check_labels(labels: str, label_dtype: Any) -> None:
    """Refuse a ``labels`` mode or ``label_dtype`` that the datasets do not know."""
    if labels not in LABEL_MODES:
        raise ArgumentError(f"labels must be one of {list(LABEL_MODES)}, got {labels!r}")
    if label_dtype is not None:
        if not isinstance(label_dtype, torch.dtype):
            raise ArgumentTypeError(f"label_dtype must be a torch.dtype, got {label_dtype!r}")
        if labels == "classes":
            raise ArgumentError('label_dtype applies to labels="codes"; classes are always int64')


def labels_as(y, labels: str, label_dtype: Any, where: Any):
    """``y`` (a tensor of codes, ``(batch, 1, label_samples)``) as the model wants it."""
    if labels == "classes":
        if y.ndim != 3 or y.shape[1] != 1:
            raise LabelError(
                f"labels='classes' needs codes shaped (batch, 1, label_samples), got "
                f"{tuple(y.shape)} for {where}"
            )
        classes = y[:, 0, :].to(torch.int64) - 1
        if classes.numel() and int(classes.min()) < 0:
            raise LabelError(
                f"labels='classes' turns codes 1, 2, ... into classes 0, 1, ..., but the batch "
                f"of {where} holds code 0; use labels='codes' for encodings that use 0"
            )
        return classes
    return y if label_dtype is None else y.to(label_dtype)


def map_tensors(batch: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to every tensor of a tensor or nested dict/tuple/list of them."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(v, fn) for v in batch)
    return batch
