"""``inspect`` and ``plot`` on datasets in S3 (a moto server): reading and writing URLs."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ondabatches.cli import main
from ondabatches.inspection import find_tables, inspect_dataset
from tests.cli._datasets import make_sleep_dataset

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_dataset(s3, tmp_path):
    ds = make_sleep_dataset(tmp_path / "ds")
    for path in sorted(ds.root.rglob("*")):
        if path.is_file():
            s3.fs.put_file(str(path), s3.url(f"ds/{path.relative_to(ds.root)}"))
    return ds, s3.url("ds")


def test_inspect_s3_equals_local(s3_dataset, capsys):
    ds, url = s3_dataset
    signals, annotations = find_tables(url)
    assert signals == [f"{url}/sleep.onda.signal.arrow"]
    assert annotations == [f"{url}/sleep.onda.annotation.arrow"]
    remote, local = inspect_dataset(url), inspect_dataset(ds.root)
    assert remote.ok, remote.problems
    for field in ("recordings", "sensors", "n_signals", "n_annotations", "label_counts",
                  "label_durations", "recording_duration"):  # fmt: skip
        assert getattr(remote, field) == getattr(local, field), field
    assert main(["inspect", url]) == 0
    assert "problems: none" in capsys.readouterr().out


def test_inspect_s3_finds_missing_and_short_files(s3_dataset, s3):
    ds, url = s3_dataset
    files = sorted(p for p in s3.fs.find(url) if not p.endswith(".arrow"))
    s3.fs.rm(files[0])
    s3.fs.pipe(files[1], b"\0" * 10)
    kinds = sorted(p.kind for p in inspect_dataset(url).problems)
    assert kinds == ["missing_sample_file", "sample_file_size"]


def test_plot_reads_and_writes_s3(s3_dataset, s3, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib import image as mpimg

    _, url = s3_dataset
    out = s3.url("pictures/item.png")
    assert main(["plot", url, "--seed", "0", "--out", out]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: item 0 of seed 0")
    picture = mpimg.imread(io.BytesIO(s3.fs.cat_file(out)), format="png")
    assert picture.shape[:2] == (700, 1200) and np.ptp(picture) > 0
    overview = s3.url("pictures/overview.png")
    assert main(["plot", url, "--overview", "-o", overview]) == 0
    assert s3.fs.cat_file(overview)[:8] == b"\x89PNG\r\n\x1a\n"
