"""BatchDataset over batches whose ``x`` is a dict per modality: dicts of tensors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ondabatches.materialize import FunctionMaterializer
from ondabatches.serve._tree import flatten
from ondabatches.torch import BatchDataset
from tests.serve.test_trees import assert_in_segments, reference
from tests.serve.toy import MODALITIES, ToyScheme, toy_dict_materialize

pytestmark = [pytest.mark.torch, pytest.mark.timeout(60)]


def assert_tensor_tree(got, want):
    """``got`` is ``want``'s structure with a tensor of the same values for each array."""
    assert flatten(got)[1] == flatten(want)[1]  # the same nesting, keys in the same order
    for tensor, array in zip(_leaves(got), flatten(want)[0], strict=True):
        assert isinstance(tensor, torch.Tensor)
        np.testing.assert_array_equal(tensor.numpy(), array, strict=True)


def _leaves(tree):
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, (tuple, list)):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [tree]


def test_dict_batches_become_dicts_of_tensors_sharing_the_shared_memory(no_leaks):
    scheme = ToyScheme(batch_size=3)
    with BatchDataset(
        scheme, 0, backend="processes", workers=2, materialize=toy_dict_materialize
    ) as dataset:
        got = list(itertools.islice(iter(dataset), 3))
        segments = dataset._batcher._pool._segments
        for x, y in got:
            # torch.from_numpy of the segment's views: the tensors are the shared memory.
            assert_in_segments((x, y), segments)
    for (x, y), ((wx, wy), _) in zip(got, reference(scheme, 0, 3), strict=True):
        assert list(x) == [*MODALITIES, "mask"]
        assert x["eeg"].dtype == torch.float32 and x["eeg"].shape == (3, 2, 16)
        assert all(m.dtype == torch.bool and m.shape == (3,) for m in x["mask"].values())
        assert isinstance(y, torch.Tensor) and y.dtype == torch.uint8
        assert_tensor_tree((x, y), (wx, wy))


def _read_only(batch, dtype):
    x, y = toy_dict_materialize(batch, dtype)
    for leaf in _leaves((x, y)):
        leaf.flags.writeable = False
    return x, y


def test_read_only_dict_arrays_become_tensors_without_warning_through_a_dataloader():
    # As a RayBatcher's arrays from Ray's object store: copied, since tensors are writable.
    scheme = ToyScheme()
    with BatchDataset(
        scheme, 0, backend="inline", materialize=FunctionMaterializer(_read_only)
    ) as dataset:
        loader = torch.utils.data.DataLoader(dataset, batch_size=None)
        got = list(itertools.islice(iter(loader), 2))
    for (x, y), ((wx, wy), _) in zip(got, reference(scheme, 0, 2), strict=True):
        assert_tensor_tree((x, y), (wx, wy))
