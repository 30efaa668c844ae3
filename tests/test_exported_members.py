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


def test_top_level_reexports_every_subpackage_name() -> None:
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"ondabatches.{sub}")
        missing = set(module.__all__) - set(ondabatches.__all__)
        assert not missing, f"ondabatches does not re-export {sorted(missing)} from {sub}"


# The public surface, exactly: adding a name is a decision, removing one breaks users.
PUBLIC = [
    "ALLOWED_STORAGE_ENV",
    "ANNOTATION_SCHEMA",
    "Annotation",
    "ArgumentError",
    "ArgumentTypeError",
    "AutoWorkers",
    "BatchItem",
    "BatchScheme",
    "BatchShapeError",
    "BatchSpecError",
    "BatchState",
    "BatchTimeoutError",
    "Batcher",
    "BatcherError",
    "Bipolar",
    "CACHE_ENV",
    "CacheError",
    "ChannelSelection",
    "ChannelSelector",
    "DatasetExistsError",
    "EdfFormat",
    "EvenOddCompartments",
    "EventLabels",
    "EventsWarning",
    "ExcludedRecordingsWarning",
    "JuliaUUIDType",
    "LABELED_SCHEMA",
    "LPCMFormat",
    "LPCMZstFormat",
    "LabelError",
    "LabeledSignal",
    "MissingDependencyError",
    "MissingLabelsWarning",
    "MissingModality",
    "Modality",
    "MultiBatchItem",
    "OndaBatchesError",
    "OutOfRangeError",
    "RandomBatches",
    "RayBatcher",
    "ReadOnlyFormatError",
    "S3_CONFIG_DEFAULTS",
    "SAMPLE_TYPES",
    "SIGNAL_SCHEMA",
    "STATE_VERSION",
    "STORAGE_OPTIONS_ENV",
    "SampleFileError",
    "SampleFileNotFoundError",
    "SampleFormat",
    "Samples",
    "SamplesInfo",
    "SchemaError",
    "SequentialBatches",
    "SharedMemoryError",
    "Signal",
    "SignalLike",
    "SizeLimitError",
    "SourceFileError",
    "SpanError",
    "StateError",
    "StorageError",
    "StoredLabels",
    "TimeLike",
    "TimeSpan",
    "TimeSpanType",
    "UnknownFormatError",
    "UnknownNameError",
    "UntrustedPathError",
    "WorkerError",
    "ZeroFillMontage",
    "allowed_storage",
    "annotations_table",
    "cache_stats",
    "class_balanced_weights",
    "decode",
    "duration_weights",
    "encode",
    "event_list",
    "event_lists",
    "event_mask",
    "event_masks",
    "event_summary",
    "event_weights",
    "filesystem_for",
    "get_cache",
    "get_format",
    "get_storage_options",
    "index_from_time",
    "inverse_frequency_label_weights",
    "iter_annotations",
    "iter_labeled_signals",
    "iter_signals",
    "label_events",
    "label_info",
    "label_signals",
    "labeled_signals_table",
    "load",
    "load_event_labels",
    "load_labeled_signal",
    "load_rows",
    "materialize_batch",
    "materialize_batch_item",
    "multi_hot",
    "multi_hots",
    "n_samples",
    "nanoseconds",
    "read_annotations",
    "read_labeled_signals",
    "read_signals",
    "register_format",
    "register_selector",
    "registered_formats",
    "sample_dtype",
    "sample_range",
    "selector_from_dict",
    "selector_to_dict",
    "set_cache",
    "set_storage_options",
    "signals_from_table",
    "signals_table",
    "sort_and_trim_spans",
    "storage_env",
    "store",
    "store_labels",
    "sub_label_span",
    "time_from_index",
    "to_pandas",
    "to_polars",
    "window_sample_range",
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
