"""The fingerprint identifies the data by content: moved data binds, changed data is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ondabatches import RandomBatches, SequentialBatches, StateError, store_labels
from ondabatches.labels._labeled import _with_labels
from tests.dataset import dataset, labeled  # noqa: F401

MINUTE = 60 * 10**9


def with_column(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def moved(table: pa.Table, prefix: str) -> pa.Table:
    """The same rows with every sample file somewhere else (another disk, a bucket)."""
    paths = [f"{prefix}/{p.rsplit('/', 1)[-1]}" for p in table.column("file_path").to_pylist()]
    return with_column(table, "file_path", paths)


def schemes(table: pa.Table):
    return [
        RandomBatches(table, n_channels=2, batch_size=3, batch_duration=MINUTE),
        SequentialBatches(table, batch_size=3, batch_duration=MINUTE),
    ]


def test_moving_the_sample_files_keeps_checkpoints_valid(labeled):  # noqa: F811
    elsewhere = moved(labeled, "s3://bucket/moved")
    for before, after in zip(schemes(labeled), schemes(elsewhere), strict=True):
        assert before.config == after.config
        state = before.initial_state(seed=4).advance(7)
        assert after.iterate_batch(state)[1].index == 8  # binds: no error


def test_config_names_each_component(labeled):  # noqa: F811
    keys = {k for k in RandomBatches(labeled, batch_size=2, batch_duration=MINUTE).config}
    assert {
        "digest.recordings", "digest.spans", "digest.channels", "digest.rates",
        "digest.encodings", "digest.labels", "digest.weights",
    } <= keys  # fmt: skip
    assert not any("path" in k for k in keys)


def changed_labels(table: pa.Table) -> pa.Table:
    """One label code of row 0 changed, nothing else."""
    from ondabatches.labels import iter_labeled_signals

    rows = list(iter_labeled_signals(table))
    samples = []
    for i, row in enumerate(rows):
        s = row.labels
        if i == 0:
            data = np.array(s.data, copy=True)
            data[0, 0] = data[0, 0] % 6 + 1
            s = type(s)(data, s.info, encoded=True)
        samples.append(s)
    base = table.drop_columns(["labels", "label_span"])
    return _with_labels(base, [r.label_span for r in rows], samples)


@pytest.mark.parametrize(
    "change, component",
    [
        (changed_labels, "labels"),
        (lambda t: with_column(t, "channels", [["x", *c[1:]] for c in
                                               t.column("channels").to_pylist()]), "channels"),
        (lambda t: with_column(t, "sample_resolution_in_unit",
                               pc.multiply(t.column("sample_resolution_in_unit"), 2.0)),
         "encodings"),
        (lambda t: with_column(t, "sample_rate",
                               pc.multiply(t.column("sample_rate"), 2.0)), "rates"),
    ],
)  # fmt: skip
def test_a_real_change_is_refused_naming_what_changed(labeled, change, component):  # noqa: F811
    other = change(labeled)
    for before, after in zip(schemes(labeled), schemes(other), strict=True):
        state = before.initial_state(seed=1).advance(2)
        with pytest.raises(StateError) as info:
            after.iterate_batch(state)
        message = str(info.value)
        assert f"the data changed: its {component} differ" in message, message
        assert f"digest.{component}: state has" in message
        others = {"labels", "channels", "encodings", "rates", "recordings", "spans"} - {component}
        assert not any(f"digest.{o}:" in message for o in others), message


def test_stored_labels_count_by_value_and_read_no_file(labeled, tmp_path):  # noqa: F811
    lazy = store_labels(labeled, tmp_path / "a")
    config = RandomBatches(lazy, batch_size=2, batch_duration=MINUTE).config
    # The values count, whether the labels are in memory or stored.
    assert config == RandomBatches(labeled, batch_size=2, batch_duration=MINUTE).config
    # The label files moved (and the old place is gone): the same fingerprint, and
    # building the scheme read no label file.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    labels = lazy.column("labels").combine_chunks()
    paths = [p.replace(str(tmp_path / "a"), str(tmp_path / "b")) for p in
             labels.field("file_path").to_pylist()]  # fmt: skip
    fields = [labels.field(f.name) for f in labels.type]
    fields[labels.type.get_field_index("file_path")] = pa.array(paths)
    relocated = lazy.set_column(
        lazy.schema.get_field_index("labels"), lazy.schema.field("labels"),
        pa.StructArray.from_arrays(fields, fields=list(labels.type)),
    )  # fmt: skip
    assert RandomBatches(lazy, batch_size=2, batch_duration=MINUTE).config == config
    assert RandomBatches(relocated, batch_size=2, batch_duration=MINUTE).config == config
    # In memory, the values count: a changed label is refused.
    eager = RandomBatches(labeled, batch_size=2, batch_duration=MINUTE)
    changed = RandomBatches(changed_labels(labeled), batch_size=2, batch_duration=MINUTE)
    with pytest.raises(StateError, match="its labels differ"):
        changed.iterate_batch(eager.initial_state())


def test_an_old_path_based_state_is_refused_with_a_hint(labeled):  # noqa: F811
    from ondabatches import BatchState

    scheme = RandomBatches(labeled, batch_size=2, batch_duration=MINUTE)
    old = {k: v for k, v in scheme.config.items() if not k.startswith("digest.")}
    old["table_digest"] = "0123456789abcdef"
    with pytest.raises(StateError, match="older ondabatches"):
        scheme.iterate_batch(BatchState(seed=0, config=old))


def test_stored_label_values_count_and_a_changed_file_is_refused(labeled, tmp_path):  # noqa: F811
    from ondabatches.labels._stored import LABEL_DIGESTS_KEY

    lazy = store_labels(labeled, tmp_path / "a")
    changed = store_labels(changed_labels(labeled), tmp_path / "b")
    before = RandomBatches(lazy, batch_size=2, batch_duration=MINUTE)
    after = RandomBatches(changed, batch_size=2, batch_duration=MINUTE)
    with pytest.raises(StateError, match="its labels differ"):
        after.iterate_batch(before.initial_state())
    # Building them read no label file: the digests were recorded when they were written.
    shutil.rmtree(tmp_path / "a")
    assert RandomBatches(lazy, batch_size=2, batch_duration=MINUTE).config == before.config
    # A stored table without recorded digests (a DataFrame round trip drops them)
    # counts its files by reference: it still builds, with its own fingerprint.
    bare = lazy.replace_schema_metadata(
        {k: v for k, v in lazy.schema.metadata.items() if k != LABEL_DIGESTS_KEY}
    )
    fallback = RandomBatches(bare, batch_size=2, batch_duration=MINUTE).config
    assert fallback["digest.labels"] != before.config["digest.labels"]
    assert {k: v for k, v in fallback.items() if k != "digest.labels"} == {
        k: v for k, v in before.config.items() if k != "digest.labels"
    }


def test_labels_stored_while_labeling_count_like_labels_in_memory(dataset, tmp_path):  # noqa: F811
    from ondabatches import label_signals
    from ondabatches.synthetic import EPOCH, STAGE_ENCODING

    kwargs = dict(labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING)
    eager = label_signals(dataset.signals, dataset.annotations, **kwargs)
    stored = label_signals(dataset.signals, dataset.annotations, **kwargs, store=tmp_path)
    assert (
        RandomBatches(stored, batch_size=2, batch_duration=MINUTE).config
        == RandomBatches(eager, batch_size=2, batch_duration=MINUTE).config
    )
