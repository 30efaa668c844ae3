"""The public surface is exactly the curated names; nothing private leaks out."""

from __future__ import annotations

import importlib

import pytest

import ondabatches

SUBPACKAGES = ["onda", "labels", "batches", "materialize", "serve"]


@pytest.mark.parametrize("name", ["ondabatches", *(f"ondabatches.{p}" for p in SUBPACKAGES)])
def test_all_is_sorted_unique_and_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(set(exported)), f"{name}.__all__ must be sorted and unique"
    for member in exported:
        assert not member.startswith("_"), f"{name} exports private name {member}"
        assert hasattr(module, member), f"{name}.__all__ names {member} but it is missing"


def test_top_level_reexports_every_subpackage_name() -> None:
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"ondabatches.{sub}")
        missing = set(module.__all__) - set(ondabatches.__all__)
        assert not missing, f"ondabatches does not re-export {sorted(missing)} from {sub}"


def test_public_names_are_the_documented_ones() -> None:
    # The names that later work and users build on; a removal is a breaking change.
    required = {
        "TimeSpan", "Samples", "SamplesInfo", "Signal", "encode", "decode",
        "index_from_time", "time_from_index", "sample_range", "window_sample_range",
        "OndaBatchesError", "WorkerError",
    }  # fmt: skip
    assert required <= set(ondabatches.__all__)
