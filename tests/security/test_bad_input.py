"""Every bad input gets one of our exceptions, naming the column, row or key."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ondabatches import (
    BatchState,
    OndaBatchesError,
    RandomBatches,
    SchemaError,
    StateError,
    label_signals,
)
from ondabatches.labels import read_labeled_signals
from ondabatches.labels._schema import check_labeled
from ondabatches.onda import signals_table
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, make_dataset

MIN = 60 * 10**9


# ----------------------------------------------------------------------------- states


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"seed":1,"index":0,"config":"abc"}', r"config must be a mapping .* got str 'abc'"),
        ('{"seed":' + "9" * 5000 + ',"index":0}', r"not valid JSON: Exceeds the limit"),
        (f'{{"seed":1,"index":{2**70}}}', r"index must be in \[0, 2\*\*63\), got 11805"),
        ('{"seed":1,"index":0,"config":{"a":' + "[" * 100_000 + "]" * 100_000 + "}}",
         r"not valid JSON: maximum recursion depth"),
        ('{"seed":1,"index":0,"config":{"a":' + "[" * 20 + "]" * 20 + "}}",
         r"config\['a'\] nests deeper than 16"),
        ('{"seed":1,"index":0,"config":{"a":"' + "x" * (2 << 20) + '"}}',
         r"JSON is 2097\d+ characters long, more than the limit of 1048576"),
        ('{"index":0}', r"key 'seed' is missing"),
        ('{"seed":1,"index":0,"config":[[1,2]]}', r"config keys must be strings, got 1"),
        ('{"seed":1,"index":0,"config":[1,2]}', r"mapping or \(key, value\) pairs; found 1"),
        ('{"seed":1,"index":0,"config":{"a":{"1":{"b":1e400}}}}', None),  # inf is JSON-ish
        ('[1]', r"must be an object, got list"),
        (b"\xff\xfe", r"not valid JSON"),
    ],
)  # fmt: skip
def test_bad_state_json_is_a_state_error_naming_the_key(text, message):
    if message is None:
        BatchState.from_json(text)
        return
    with pytest.raises(StateError, match=message):
        BatchState.from_json(text)


def test_a_nested_dict_in_config_is_hashable_and_round_trips():
    text = (
        '{"config":{"channels":{"kind":"names","names":["c3","c4"]}},'
        '"index":3,"seed":1,"version":1}'
    )
    state = BatchState.from_json(text)
    assert hash(state) == hash(BatchState.from_json(text))
    assert state.to_json() == text
    assert state.bind({"channels": {"names": ["c3", "c4"], "kind": "names"}}) == state
    with pytest.raises(StateError, match="channels: state has"):
        state.bind({"channels": {"names": ["c3"], "kind": "names"}})


def test_state_values_that_are_not_json_are_refused_by_key():
    with pytest.raises(StateError, match=r"config\['f'\] must hold JSON values, got function"):
        BatchState(1, config={"f": lambda: 0})
    with pytest.raises(StateError, match=r"seed must be an int, got \[+\.\.\.\]+$"):
        deep: list = []
        for _ in range(100_000):
            deep = [deep]
        BatchState(deep)
    with pytest.raises(StateError, match="must be a mapping, got str"):
        BatchState.from_dict("seed")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(
    st.sampled_from(["seed", "index", "config", "version", "x"]) | st.text(max_size=4),
    json_values, max_size=5,
))  # fmt: skip
def test_fuzzed_states_raise_only_our_errors(d):
    try:
        state = BatchState.from_dict(d)
    except OndaBatchesError:
        pass
    else:
        assert BatchState.from_json(state.to_json()) == state
        hash(state)
    try:
        BatchState.from_json(json.dumps(d))
    except OndaBatchesError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_fuzzed_state_text_raises_only_our_errors(text):
    try:
        BatchState.from_json(text)
    except OndaBatchesError:
        pass


# ----------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    ds = make_dataset(root, n_recordings=2, duration=2 * MIN, sample_rate=128.0, eog_every=0)
    labeled = label_signals(
        ds.signals, ds.annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    return ds, labeled


def _replaced(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


def _int64_spans(table, name):
    span = table.column(name).combine_chunks()
    span = span.storage if isinstance(span, pa.ExtensionArray) else span
    return span.field("start").cast(pa.int64())


@pytest.mark.parametrize(
    ("column", "make", "message"),
    [
        ("span", lambda t: _int64_spans(t, "span"), r"column 'span' has type int64, expected"),
        ("label_span", lambda t: _int64_spans(t, "label_span"), r"'label_span' has type int64"),
        ("file_path", lambda t: pa.array([None, "a.lpcm"], pa.string()),
         r"column 'file_path' row 0: missing value"),
        ("recording", lambda t: pa.array(["x", "y"]), r"'recording' has type string"),
        ("channels", lambda t: pa.array([[1], [2]]), r"'channels' has type list<item: int64>"),
        ("channels", lambda t: pa.array([["a"], [None]], pa.list_(pa.string())),
         r"a channel name in row 1: missing value"),
        ("labels", lambda t: pa.array([b"\x00garbage", b"zz"]), r"'labels' has type binary"),
        ("sample_rate", lambda t: pa.array([128.0, -1.0]),
         r"column 'sample_rate' row 1: expected a positive finite rate"),
        ("sample_type", lambda t: pa.array(["int16", "int3"]), r"'sample_type' row 1: unknown"),
    ],
)  # fmt: skip
def test_bad_labeled_tables_are_schema_errors_naming_the_column(dataset, column, make, message):
    _, labeled = dataset
    bad = _replaced(labeled, column, make(labeled))
    with pytest.raises(SchemaError, match=message):
        check_labeled(bad)
    with pytest.raises(SchemaError, match=message):
        RandomBatches(bad, batch_size=2, batch_duration=MIN)


def test_labels_without_data_or_file_are_named_by_row(dataset):
    _, labeled = dataset
    labels = labeled.column("labels").combine_chunks()
    data = pa.array([None, labels.field("data")[1].as_py()], pa.large_binary())
    fields = [data if f.name == "data" else labels.field(f.name) for f in labels.type]
    bad = _replaced(labeled, "labels", pa.StructArray.from_arrays(fields, fields=list(labels.type)))
    with pytest.raises(SchemaError, match=r"'labels' row 0: neither labels data nor a file_path"):
        check_labeled(bad)


def test_a_garbage_labeled_table_file_is_a_schema_error(tmp_path):
    path = tmp_path / "labeled.arrow"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(SchemaError, match=r"labeled\.arrow is not an Arrow IPC file"):
        read_labeled_signals(path)


def test_bad_signal_tables_are_schema_errors_naming_the_column(dataset):
    ds, _ = dataset
    signals = ds.signals
    with pytest.raises(SchemaError, match=r"column 'span': expected JuliaLang.TimeSpan"):
        signals_table(_replaced(signals, "span", pa.array([1, 2], pa.int64())))
    with pytest.raises(SchemaError, match=r"column 'file_path' row 1: missing value"):
        signals_table(_replaced(signals, "file_path", pa.array(["a", None], pa.string())))


_COLUMN_VALUES = {
    "recording": st.sampled_from([None, "x", b"0123456789abcdef"]),
    "file_path": st.sampled_from([None, "", "a.lpcm", "/dev/zero", 3]),
    "file_format": st.sampled_from([None, "lpcm", "lpcm.zst", "flac", 1.5]),
    "span": st.sampled_from([None, 1, {"start": 5, "stop": 1}, {"start": 0, "stop": 10**10}]),
    "channels": st.sampled_from([None, [], ["a"], [None], [1], "a"]),
    "sample_type": st.sampled_from([None, "int16", "int3", 16]),
    "sample_rate": st.sampled_from([None, 128.0, -1.0, float("nan"), 0.0, "fast", 1e300]),
    "sample_resolution_in_unit": st.sampled_from([None, 1.0, 0.0, float("inf")]),
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(sorted(_COLUMN_VALUES)), st.none(), min_size=1, max_size=3),
       st.data())  # fmt: skip
def test_fuzzed_tables_raise_only_our_errors(dataset, columns, data):
    ds, labeled = dataset
    for name in columns:
        columns[name] = data.draw(_COLUMN_VALUES[name], label=name)

    def batches(t):
        return RandomBatches(t, batch_size=2, batch_duration=MIN)

    for table, check in ((ds.signals, signals_table), (labeled, batches)):
        rows = table.to_pylist()
        for row in rows:
            row.update(columns)
        try:
            bad = pa.Table.from_pylist(rows, metadata=table.schema.metadata)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # Values Arrow cannot even hold together: replace one column instead.
            name, value = next(iter(columns.items()))
            try:
                bad = _replaced(table, name, pa.array([value] * table.num_rows))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                continue
        try:
            check(bad)
        except OndaBatchesError:
            pass
    assert pc is not None and np is not None
