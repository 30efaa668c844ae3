"""Session-scoped fixtures: a synthetic Onda dataset and its labeled tables (eager and lazy).

Import the fixtures into a test module with
``from tests.dataset import dataset, labeled, lazy_labeled  # noqa: F401``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ondabatches.labels import label_signals, sort_and_trim_spans, store_labels
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, SyntheticDataset, make_dataset

N_RECORDINGS = 5
DURATION = 12 * 60 * 10**9


def make_labeled(ds: SyntheticDataset) -> pa.Table:
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    return label_signals(
        ds.signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )


def eeg_rows_at(table: pa.Table, rate: float) -> pa.Table:
    """The rows of ``table`` sampled at ``rate`` (so that their items stack)."""
    return table.filter(pc.equal(table.column("sample_rate"), rate))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    return make_dataset(
        tmp_path_factory.mktemp("onda"), n_recordings=N_RECORDINGS, duration=DURATION
    )


@pytest.fixture(scope="session")
def labeled(dataset: SyntheticDataset) -> pa.Table:
    return make_labeled(dataset)


@pytest.fixture(scope="session")
def lazy_labeled(labeled: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    return store_labels(labeled, tmp_path_factory.mktemp("labels"))


@pytest.fixture(scope="session", params=["eager", "lazy"])
def any_labeled(
    request: pytest.FixtureRequest, labeled: pa.Table, lazy_labeled: pa.Table
) -> pa.Table:
    return labeled if request.param == "eager" else lazy_labeled
