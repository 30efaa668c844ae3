"""The value comparison of benchmarks.derive_peers (runs without braindecode)."""

import numpy as np
import pytest

from benchmarks.derive_peers import worst_relative_difference
from ondabatches._errors import ArgumentError


def test_equal_arrays_differ_by_nothing():
    x = np.random.default_rng(0).normal(size=(3, 200))
    assert worst_relative_difference(x, x.copy()) == 0.0


def test_the_worst_channel_over_its_own_rms():
    rng = np.random.default_rng(1)
    theirs = rng.normal(size=(2, 1000)) * np.array([[1.0], [100.0]])
    ours = theirs.copy()
    ours[0, 500] += 0.01  # 1e-2 of channel 0's scale
    ours[1, 500] += 0.5  # 5e-3 of channel 1's
    rms0 = np.sqrt(np.mean(theirs[0] ** 2))
    assert worst_relative_difference(ours, theirs) == pytest.approx(0.01 / rms0)


def test_edges_left_out():
    theirs = np.ones((1, 100))
    ours = theirs.copy()
    ours[0, :10] += 5.0
    ours[0, -10:] -= 5.0
    assert worst_relative_difference(ours, theirs) == pytest.approx(5.0)
    assert worst_relative_difference(ours, theirs, 9) == pytest.approx(5.0)
    assert worst_relative_difference(ours, theirs, 10) == 0.0


def test_a_silent_channel_counts_its_absolute_difference():
    theirs = np.zeros((1, 10))
    ours = theirs.copy()
    ours[0, 3] = 2e-3
    assert worst_relative_difference(ours, theirs) == pytest.approx(2e-3)


@pytest.mark.parametrize(
    ("ours", "theirs", "edge"),
    [
        (np.zeros((2, 10)), np.zeros((2, 11)), 0),
        (np.zeros(10), np.zeros(10), 0),
        (np.zeros((2, 10)), np.zeros((2, 10)), 5),
        (np.zeros((2, 10)), np.zeros((2, 10)), -1),
    ],
)
def test_bad_input_is_refused(ours, theirs, edge):
    with pytest.raises(ArgumentError):
        worst_relative_difference(ours, theirs, edge)
