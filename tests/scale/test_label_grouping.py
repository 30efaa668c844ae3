"""label_signals groups column-wise (Arrow hashing, no Python object per row): the
result must not depend on how annotation rows of different recordings interleave."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ondabatches.labels import label_signals, sort_and_trim_spans
from ondabatches.onda import read_annotations, read_signals
from ondabatches.scale import make_scale_dataset
from ondabatches.synthetic import EPOCH, STAGE_ENCODING


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    ds = make_scale_dataset(
        tmp_path_factory.mktemp("grouping"), n_recordings=6, n_samples=10**6, run_epochs=(2, 9)
    )
    return read_signals(ds.signals_path), read_annotations(ds.annotations_path)


def _label(signals, annotations, **kw):
    return label_signals(
        signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING, **kw
    )


def _interleave(owner: np.ndarray, seed: int) -> np.ndarray:
    """A row order that mixes recordings but keeps each recording's rows in order."""
    keys = np.random.default_rng(seed).permutation(len(owner))
    order = np.empty(len(owner), dtype=np.int64)
    for rec in np.unique(owner):
        rows = np.flatnonzero(owner == rec)
        order[np.sort(keys[rows])] = rows
    return order


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_interleaved_annotations_give_the_same_labels(tables, seed):
    signals, annotations = tables
    expected = _label(signals, annotations)
    owner = np.unique(annotations.column("recording").chunk(0).storage.to_numpy(
        zero_copy_only=False), return_inverse=True)[1]  # fmt: skip
    shuffled = annotations.take(pa.array(_interleave(owner, seed)))
    assert _label(signals, shuffled).equals(expected)
    # Signals in another order: rows follow the signals, labels follow the recordings.
    reverse = pa.array(np.arange(signals.num_rows)[::-1])
    assert _label(signals.take(reverse), shuffled).equals(expected.take(reverse))


def test_grouping_by_several_columns_and_nulls(tables):
    signals, annotations = tables
    n_sig, n_ann = signals.num_rows, annotations.num_rows
    # Every recording split in two "sites" is the same grouping as before.
    sig = signals.append_column("site", pa.array(["a"] * n_sig))
    ann = annotations.append_column("site", pa.array(["a"] * n_ann))
    assert (
        _label(sig, ann, groups=["recording", "site"])
        .drop_columns(["site"])
        .equals(_label(signals, annotations))
    )
    # A null is a group value of its own: grouped by site alone, all rows share one key.
    sig = signals.append_column("site", pa.nulls(n_sig, pa.string()))
    ann = annotations.slice(0, 4).append_column("site", pa.nulls(4, pa.string()))
    labeled = _label(sig, ann, groups="site")
    assert labeled.num_rows == n_sig  # every signal gets the first recording's labels
    codes = labeled.column("labels").combine_chunks().field("data").to_pylist()
    assert len(set(codes)) == 1


def test_sort_and_trim_spans_keeps_groups_in_first_appearance_order(tables):
    _, annotations = tables
    reverse = annotations.take(pa.array(np.arange(annotations.num_rows)[::-1]))
    out = sort_and_trim_spans(reverse, epoch=EPOCH, by="recording")
    firsts = list(dict.fromkeys(out.column("recording").to_pylist()))
    assert firsts == list(dict.fromkeys(reverse.column("recording").to_pylist()))
    assert out.num_rows == annotations.num_rows  # only the last spans were trimmed
