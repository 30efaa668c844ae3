"""BatchState: immutable, equal-comparable, JSON, bound to a configuration."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches import StateError
from ondabatches.batches import BatchScheme, BatchState
from ondabatches.onda import use_settings


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), index=st.integers(0, 10**12), size=st.integers(1, 4096))
def test_json_and_pickle_round_trip(seed, index, size):
    state = BatchState(seed, index, {"batch_size": size, "scheme": "x", "dims": [1, 2]})
    assert BatchState.from_json(state.to_json()) == state
    assert pickle.loads(pickle.dumps(state)) == state
    assert hash(BatchState.from_json(state.to_json())) == hash(state)


def test_advance_and_immutability():
    state = BatchState(seed=3)
    assert state.advance().index == 1 and state.index == 0
    assert state.advance(10**9).index == 10**9
    with pytest.raises(AttributeError):
        state.index = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        dict(seed=-1),
        dict(seed=2**64),
        dict(seed=1, index=-1),
        dict(seed=1.5),
        dict(seed=1, version=99),
    ],
)
def test_invalid_states_are_refused(bad):
    with pytest.raises(StateError):
        BatchState(**bad)


def test_bind_refuses_another_configuration_showing_both_sides():
    state = BatchState(1, 4, {"batch_size": 8, "scheme": "RandomBatches"})
    assert state.bind({"batch_size": 8, "scheme": "RandomBatches"}) == state
    with pytest.raises(StateError, match=r"batch_size: state has 8, scheme has 16"):
        state.bind({"batch_size": 16, "scheme": "RandomBatches"})
    assert BatchState(1).bind({"a": 1}).config == (("a", 1),)


def test_states_derived_without_validation_equal_validated_ones():
    config = {"scheme": "RandomBatches", "sizes": [1, 2]}
    scheme_pairs = BatchState(0, config=config).config
    state = BatchState(5, 2).bind(scheme_pairs)
    assert state.config is scheme_pairs  # shared, so the next bind is free
    assert state.bind(scheme_pairs) is state
    later = state.advance(3)
    assert later == BatchState(5, 5, config) and later.config is scheme_pairs
    assert BatchState.from_json(later.to_json()) == later
    # Pairs that are not sorted and frozen are normalized, not shared.
    loose = BatchState(5).bind((("sizes", [1, 2]), ("scheme", "RandomBatches")))
    assert loose.config == scheme_pairs
    with pytest.raises(StateError, match="cannot advance"):
        state.advance(-3)
    with pytest.raises(StateError, match="cannot advance"):
        state.advance(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"index": 3}'])
def test_malformed_json_is_a_state_error(text):
    with pytest.raises(StateError):
        BatchState.from_json(text)


def test_the_longest_json_parsed_is_a_setting():
    text = BatchState(seed=1, index=2).to_json()
    padded = text[:-1] + " " * (3000 - len(text)) + "}"  # 3,000 characters, the same state
    assert BatchState.from_json(padded) == BatchState(seed=1, index=2)
    with use_settings(max_state_json=2048):
        with pytest.raises(StateError, match="3000 characters long, more than the limit of 2048"):
            BatchState.from_json(padded)
        assert BatchState.from_json(text) == BatchState(seed=1, index=2)
    with pytest.raises(StateError, match=f"the limit of {1 << 20}"):
        BatchState.from_json(" " * ((1 << 20) + 1))


class FixedList(BatchScheme):
    """A finite scheme over a fixed list of batches, as in OndaBatches' own tests."""

    def __init__(self, batches):
        self.batches = batches

    def iterate_batch(self, state):
        if state.index >= len(self.batches):
            return None
        return self.batches[state.index], state.advance()


def test_a_subclass_implementing_iterate_batch_is_a_scheme():
    scheme = FixedList([["a", "b"], ["c"]])
    assert isinstance(scheme, BatchScheme)
    assert scheme.next_state(BatchState(0)) == BatchState(0).advance()  # the default
    assert scheme.next_state(BatchState(0).advance(2)) is None
    assert (scheme.world_size, scheme.rank, scheme.config, scheme.steps_without_drawing) == (
        1, 0, None, False)  # fmt: skip
    state, seen = BatchState(0), []
    while (out := scheme.iterate_batch(state)) is not None:
        batch, state = out
        seen.append(batch)
    assert seen == [["a", "b"], ["c"]] and state.index == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": 10**5000},
        {"seed": -(10**5000)},
        {"seed": 1, "index": 10**5000},
        {"seed": 1, "version": 10**5000},
        {"seed": 1, "config": {"k": [10**5000]}},
    ],
)
def test_integers_too_long_to_print_are_state_errors(kwargs):
    # Python refuses to print an int of over 4,300 digits (a builtin ValueError): the
    # message must describe it instead.
    with pytest.raises(StateError) as info:
        BatchState(**kwargs)
    assert "digits" in str(info.value) or "too long" in str(info.value)
    with pytest.raises(StateError, match="about 5000 digits"):
        BatchState(seed=1).advance(10**5000)


def test_the_exported_scheme_interface_is_the_declared_one_and_ducks_are_adapted():
    import ondabatches
    import ondabatches.abc
    from ondabatches.batches._state import as_batch_scheme

    class Scheme:
        def iterate_batch(self, state):
            return None

        def next_state(self, state):  # not read: nothing is probed
            raise AssertionError("probed")

    assert ondabatches.BatchScheme is ondabatches.batches.BatchScheme
    assert ondabatches.abc.BatchScheme is ondabatches.BatchScheme
    assert not isinstance(Scheme(), ondabatches.BatchScheme)
    with pytest.warns(DeprecationWarning, match="does not subclass ondabatches.abc.BatchScheme"):
        adapted = as_batch_scheme(Scheme())
    assert isinstance(adapted, ondabatches.BatchScheme) and not adapted.steps_without_drawing
    assert adapted.next_state(BatchState(0)) is None  # through iterate_batch
    with pytest.raises(TypeError, match="must be a batch scheme"):
        as_batch_scheme(object())


def test_a_config_frozen_twice_keeps_its_mappings():
    config = {"transforms": [{"name": "bandpass", "low_hz": 0.3}], "n": 2}
    once = BatchState(seed=1, config=config)
    twice = BatchState(seed=1, config=once.config)
    assert twice == once
    assert twice.to_dict()["config"] == config
