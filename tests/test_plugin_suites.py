"""The conformance suites of transforms, targets and materializers: every built-in
passes, a user's plug-in written against `ondabatches.abc` passes, and broken ones fail
with a ConformanceError naming what failed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ondabatches.abc import Materializer, Target, Transform
from ondabatches.materialize import BatchMaterializer, materialize_batch
from ondabatches.testing import (
    ConformanceError,
    check_materializer,
    check_target,
    check_transform,
)
from ondabatches.transforms import (
    AmplitudeScale,
    Bandpass,
    ChannelDropout,
    EventList,
    EventMask,
    GaussianNoise,
    Highpass,
    Lowpass,
    Mixup,
    MultiHot,
    Normalize,
    Notch,
    SignFlip,
    Spectrogram,
    TimeReverse,
    TimeShift,
    register_target,
    register_transform,
    target_from_dict,
)

pytestmark = pytest.mark.timeout(600)

BUILT_IN_TRANSFORMS = [
    Bandpass(0.5, 30.0), Highpass(0.5), Lowpass(30.0), Notch(20.0), Normalize(),
    Spectrogram(2.0, 1.0), AmplitudeScale(), SignFlip(), TimeReverse(), ChannelDropout(),
    GaussianNoise(0.1), Mixup(), TimeShift(1.0),
]  # fmt: skip


@pytest.mark.parametrize("transform", BUILT_IN_TRANSFORMS, ids=lambda t: t.name)
def test_built_in_transforms_pass_the_transform_suite(transform):
    check_transform(transform)


@pytest.mark.parametrize("target", [EventMask(2.0), MultiHot(30.0), EventList(8)], ids=repr)
def test_built_in_targets_pass_the_target_suite(target):
    check_target(target)


def test_the_built_in_materializer_passes_the_materializer_suite():
    check_materializer(BatchMaterializer())
    check_materializer(BatchMaterializer(exact=False))


# A user's plug-ins, top-level so that worker processes unpickle them.


@register_transform
class Offset(Transform):
    """Adds a random constant per item."""

    name = "test_plugin_offset"
    random = True

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def params(self):
        return {"scale": self.scale}

    def apply(self, x, y, rng, sample_rate):
        return x + np.float32(self.scale * rng.standard_normal()), y


@register_transform
class NotRandom(Offset):
    """Says it is random but draws nothing."""

    name = "test_plugin_not_random"

    def apply(self, x, y, rng, sample_rate):
        return x + np.float32(self.scale), y


@register_transform
class Forgetful(Offset):
    """Its to_dict loses its parameter."""

    name = "test_plugin_forgetful"

    def params(self):
        return {}


@register_target
@dataclass(frozen=True)
class Count(Target):
    """The number of events of each class in the window."""

    name = "test_plugin_count"

    def compute(self, found, starts, stops, n_classes):
        item, _, _, cls = found
        out = np.zeros((len(starts), n_classes), dtype=np.int32)
        np.add.at(out, (item, cls.astype(np.int64)), 1)
        return out

    def output(self, duration, n_classes):
        return (n_classes,), np.dtype(np.int32)


@register_target
@dataclass(frozen=True)
class MisDeclared(Count):
    """Declares another dtype than it makes."""

    name = "test_plugin_misdeclared"

    def output(self, duration, n_classes):
        return (n_classes,), np.dtype(np.int64)


class Doubled(Materializer):
    """materialize_batch's x, doubled in place in the array it is given."""

    allocates = True

    def __call__(self, batch, dtype=np.float32, *, allocate=None):
        x, y = materialize_batch(batch, dtype, allocate=allocate)
        x *= 2
        return x, y


class Copying(Doubled):
    """Declares allocates but ignores allocate."""

    def __call__(self, batch, dtype=np.float32, **options):
        return super().__call__(batch, dtype)


def test_a_user_transform_passes_and_broken_ones_fail_naming_the_check():
    check_transform(Offset(2.0), modalities=False)
    with pytest.raises(ConformanceError, match="drew the same"):
        check_transform(NotRandom(), modalities=False)
    with pytest.raises(ConformanceError, match="transform_from_dict"):
        check_transform(Forgetful(3.0), modalities=False)


def test_a_user_target_passes_round_trips_by_name_and_a_broken_one_fails():
    check_target(Count())
    assert target_from_dict({"kind": "test_plugin_count"}) == Count()
    with pytest.raises(ConformanceError, match="declared"):
        check_target(MisDeclared())


def test_a_user_materializer_passes_and_a_broken_one_fails():
    check_materializer(Doubled())
    with pytest.raises(ConformanceError, match="allocates"):
        check_materializer(Copying())


def _plain(batch, dtype, allocate=None):
    assert allocate is None, "a plain function declares nothing: it never gets allocate"
    return np.full((len(batch), 1, 4), 1.5, dtype), np.zeros((len(batch), 1, 1), np.uint8)


def test_a_plain_function_is_still_served_with_a_deprecation_warning():
    from ondabatches.batches import SequentialBatches
    from ondabatches.errors import ArgumentTypeError, BatchSpecError
    from ondabatches.materialize import FunctionMaterializer
    from ondabatches.serve import Batcher
    from ondabatches.synthetic import labeled_table

    scheme = SequentialBatches(labeled_table(1, duration=120 * 10**9), batch_size=2,
                               batch_duration=30 * 10**9)  # fmt: skip
    with pytest.warns(DeprecationWarning, match="FunctionMaterializer"):
        batcher = Batcher(scheme, backend="inline", materialize=_plain)
    assert batcher.materialize == FunctionMaterializer(_plain)
    assert not batcher.materialize.allocates and not batcher.materialize.runs_transforms
    with batcher:
        batcher.start(scheme.initial_state())
        (x, _), _ = batcher.take(scheme.initial_state())
    np.testing.assert_array_equal(x, np.full((2, 1, 4), 1.5, np.float32), strict=True)
    with pytest.raises(ArgumentTypeError, match="Materializer"):
        Batcher(scheme, backend="inline", materialize=3)
    with pytest.raises(BatchSpecError, match="runs_transforms"):
        Batcher(scheme, materialize=FunctionMaterializer(_plain), transforms=[SignFlip()])
