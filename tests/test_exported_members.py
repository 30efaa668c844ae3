"""The public surface is exactly the curated names; nothing private leaks out."""

from __future__ import annotations

import importlib

import pytest

import ondabatches

SUBPACKAGES = ["onda", "labels", "batches", "materialize", "serve"]


# ondabatches.importing stands beside the pipeline (files in, an Onda dataset out): its
# names are its own, not re-exported at the top.
@pytest.mark.parametrize(
    "name",
    [
        "ondabatches",
        *(f"ondabatches.{p}" for p in SUBPACKAGES),
        "ondabatches.importing",
        "ondabatches.transforms",
    ],
)
def test_all_is_sorted_unique_and_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(set(exported)), f"{name}.__all__ must be sorted and unique"
    for member in exported:
        assert not member.startswith("_"), f"{name} exports private name {member}"
        assert hasattr(module, member), f"{name}.__all__ names {member} but it is missing"


def test_top_level_reexports_no_private_object() -> None:
    for name in ondabatches.__all__:
        home = importlib.import_module(ondabatches._MOVED.get(name, "ondabatches"))
        assert getattr(ondabatches, name) is getattr(home, name)
        assert any(
            getattr(importlib.import_module(f"ondabatches.{sub}"), name, None)
            is getattr(ondabatches, name)
            for sub in [*SUBPACKAGES, "errors"]
        ), f"ondabatches.{name} is in no subpackage"


# Every name the top level once re-exported (0.1): still there, the same object, with a
# DeprecationWarning that says where to import it from, until the next release. Names
# that came later live in their subpackage only.
@pytest.mark.parametrize("sub", [*SUBPACKAGES, "errors"])
def test_moved_names_are_deprecated_aliases_of_the_subpackage_names(sub: str) -> None:
    module = importlib.import_module(f"ondabatches.{sub}")
    for name in module.__all__:
        if name in ondabatches.__all__:
            continue
        if name not in ondabatches._MOVED:
            assert not hasattr(ondabatches, name), f"ondabatches.{name} is new: not at the top"
            continue
        with pytest.warns(DeprecationWarning, match=rf"use ondabatches\.\w+\.{name}$"):
            alias = getattr(ondabatches, name)
        assert alias is getattr(importlib.import_module(ondabatches._MOVED[name]), name)


def test_every_moved_name_has_a_home() -> None:
    assert len(ondabatches._MOVED) == 88
    for name, home in ondabatches._MOVED.items():
        assert name in importlib.import_module(home).__all__, (name, home)


def test_from_import_of_a_moved_name_warns_and_unknown_names_still_fail() -> None:
    with pytest.warns(DeprecationWarning, match=r"ondabatches\.SpanError is deprecated"):
        from ondabatches import SpanError  # noqa: F401
    with pytest.raises(AttributeError, match="no_such_name"):
        ondabatches.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from ondabatches import no_such_name  # noqa: F401
    assert len(ondabatches.__all__) <= 45


def test_the_api_page_block_on_moved_names_runs() -> None:
    from tests.pages import ROOT, page_blocks, run_blocks

    page = ROOT / "docs" / "api" / "index.md"
    blocks = page_blocks(page)
    assert len(blocks) == 1
    namespace: dict = {"__name__": "__docs__"}
    run_blocks(page, blocks, namespace)
    assert namespace["caught"]


# The public surface, exactly: adding a name is a decision, removing one breaks users.
PUBLIC = [
    "Annotation",
    "BatchItem",
    "BatchScheme",
    "BatchState",
    "Batcher",
    "BatcherError",
    "ChannelSelector",
    "EventLabels",
    "LabelError",
    "LabeledSignal",
    "Modality",
    "MultiBatchItem",
    "OndaBatchesError",
    "RandomBatches",
    "RayBatcher",
    "SampleFileError",
    "SampleFormat",
    "Samples",
    "SchemaError",
    "SequentialBatches",
    "Signal",
    "StateError",
    "StorageError",
    "TimeSpan",
    "WorkerError",
    "allowed_storage",
    "label_events",
    "label_signals",
    "load",
    "materialize_batch",
    "materialize_batch_item",
    "read_annotations",
    "read_labeled_signals",
    "read_signals",
    "register_format",
    "register_selector",
    "set_cache",
    "set_storage_options",
    "store",
    "store_labels",
    "write_annotations",
    "write_labeled_signals",
    "write_signals",
]


def test_public_names_are_exactly_the_curated_ones() -> None:
    assert ondabatches.__all__ == PUBLIC


def test_torch_adapter_surface() -> None:
    pytest.importorskip("torch", reason="the torch extra is not installed")
    import ondabatches.torch

    assert ondabatches.torch.__all__ == [
        "BatchDataset",
        "BatchMapDataset",
        "DeviceFeed",
        "InterleavedBatches",
        "shard_batches",
    ]


def test_importing_ondabatches_does_not_import_heavy_extras() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ondabatches; "
        "print(sorted(m for m in ('torch', 'ray', 'matplotlib', 'pyedflib', 's3fs', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
