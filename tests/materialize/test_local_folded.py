"""Batches with folded augmentations on the local lpcm path: the general folded path's
bits and errors, every augmentation, lpcm and lpcm.zst, windows at random starts."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow.compute as pc
import pytest

from ondabatches.batches import RandomBatches
from ondabatches.errors import OndaBatchesError, SampleFileError, SampleFileNotFoundError
from ondabatches.materialize import _transformed, materialize_batch
from ondabatches.onda import TimeSpan, _kernels
from ondabatches.transforms import (
    AmplitudeScale,
    ChannelDropout,
    GaussianNoise,
    Pipeline,
    SignFlip,
    TimeReverse,
)
from tests.dataset import dataset, eeg_rows_at, labeled  # noqa: F401
from tests.materialize.test_local import _one_lpcm_batch, local_batches
from tests.transforms.test_fold import _random_pipeline

MIN = 60 * 10**9


def _counted(batch, dtype=np.float32, exact=True, **options):
    """`materialize_batch` of ``batch``, and the items the general path read in
    `_transformed` (by file format)."""
    calls: list = []
    general = _transformed._x_at

    def counted(item, *args, **kwargs):
        calls.append(item.file_format)
        return general(item, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(_transformed, "_x_at", counted)
        return materialize_batch(batch, dtype, exact=exact, **options), calls


def _general(batch, pipeline, key, dtype=np.float32, exact=True):
    """The batch with every item left to the general (item by item) folded path."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_transformed, "decode_local", lambda items, *a, **k: list(range(len(items))))
        return materialize_batch(batch, dtype, exact=exact, transforms=pipeline, key=key)


def _random_starts(batch, rng):
    """The items at random nanosecond starts inside their signal (not epoch-aligned)."""
    out = []
    for item in batch:
        span, duration = item.signal_span, item.window.duration
        start = int(rng.integers(span.start, span.stop - duration))
        out.append(dataclasses.replace(item, window=TimeSpan(start, start + duration)))
    return out


@pytest.mark.parametrize("kernels", [True, False], ids=["kernel", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("exact", [True, False])
def test_folded_local_batches_are_the_general_paths_bits(
    labeled,  # noqa: F811
    kernels,
    dtype,
    exact,
    monkeypatch,
):
    monkeypatch.setattr(_kernels, "ENABLED", kernels)
    rng = np.random.default_rng(7)
    folded = 0
    for case, batch in local_batches(labeled, 8, 2, seed=3):
        batch = _random_starts(batch, rng)
        pipeline = _random_pipeline(rng)
        key = (folded, int(rng.integers(0, 1000)))
        (x, y), calls = _counted(batch, dtype, exact, transforms=pipeline, key=key)
        assert calls == []  # every window decoded (and folded) the local way
        want_x, want_y = _general(batch, pipeline, key, dtype, exact)
        where = f"{case}: {pipeline!r} key {key}"
        assert x.dtype == want_x.dtype and x.shape == want_x.shape, where
        assert x.tobytes() == want_x.tobytes(), where  # signed zeros too
        np.testing.assert_array_equal(y, want_y, err_msg=where)
        folds = pipeline.fold_batch(key, len(batch), x.shape[1], x.dtype)
        integers = any(it.info.dtype.kind in "iu" for it in batch)
        folded += integers and folds is not None and not folds.trivial
    assert folded > 10  # the folds did something: gains, reversals, zeroed rows


def test_every_augmentation_alone_and_all_four(labeled):  # noqa: F811
    lpcm = labeled.filter(pc.equal(labeled.column("file_format"), "lpcm"))
    table = eeg_rows_at(lpcm, lpcm.column("sample_rate")[0].as_py())
    spec = RandomBatches(table, n_channels=3, batch_size=16, batch_duration=MIN)
    batch, _ = spec.iterate_batch(spec.initial_state(seed=4))
    four = [AmplitudeScale(0.5, 2.0), SignFlip(), TimeReverse(), ChannelDropout(0.2)]
    for steps in [[t] for t in four] + [four, [*four, GaussianNoise(1.0)]]:
        pipeline = Pipeline(steps)
        (x, y), calls = _counted(batch, transforms=pipeline, key=(1, 2))
        assert calls == []
        want_x, want_y = _general(batch, pipeline, (1, 2))
        assert x.tobytes() == want_x.tobytes(), pipeline
        np.testing.assert_array_equal(y, want_y)
        assert y.flags.writeable and y.dtype == want_y.dtype


@pytest.mark.parametrize("fmt", ["lpcm", "lpcm.zst"])
def test_a_damaged_or_missing_file_gets_the_general_paths_error(labeled, tmp_path, fmt):  # noqa: F811
    batch, copy = _one_lpcm_batch(labeled, tmp_path, fmt=fmt)
    pipeline = Pipeline([AmplitudeScale(p=1.0), SignFlip(p=1.0), TimeReverse(p=1.0)])
    (good, _), calls = _counted(batch, transforms=pipeline, key=(0, 0))
    assert calls == []
    size = copy.stat().st_size
    os.truncate(copy, size - 2 if fmt == "lpcm" else size // 3)  # zst: frames lost too
    with pytest.raises(OndaBatchesError) as local:
        _counted(batch, transforms=pipeline, key=(0, 0))
    with pytest.raises(OndaBatchesError) as general:
        _general(batch, pipeline, (0, 0))
    assert type(local.value) is type(general.value)
    assert str(local.value) == str(general.value) and str(copy) in str(local.value)
    if fmt == "lpcm":
        assert isinstance(local.value, SampleFileError)
        assert f"{size - 2} bytes" in str(local.value)
    copy.unlink()
    with pytest.raises(SampleFileNotFoundError, match=f"not found: {copy}"):
        materialize_batch(batch, transforms=pipeline, key=(0, 0))
    assert good.shape[0] == len(batch)
