"""``ondabatches convert``: lpcm/lpcm.zst -> pco -> lpcm.zst, the samples unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from ondabatches._errors import DatasetExistsError
from ondabatches.cli import main
from ondabatches.onda import load, read_signals
from ondabatches.synthetic import make_dataset

pytest.importorskip("pcodec", reason="the pco format needs pcodec (the codecs extra)")


def _all_samples(table_path):
    table = read_signals(table_path)
    return table, {
        (str(r["recording"]), r["sensor_label"]): load(r, encoded=True).data
        for r in table.to_pylist()
    }


def test_convert_to_pco_and_back(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_recordings=2, duration=120 * 10**9)
    _, before = _all_samples(ds.signals_path)
    assert main(["convert", str(ds.signals_path), str(tmp_path / "pco"), "--format", "pco"]) == 0
    table, mid = _all_samples(tmp_path / "pco" / "signals.arrow")
    assert set(table.column("file_format").to_pylist()) == {"pco"}
    assert main(["convert", str(tmp_path / "pco" / "signals.arrow"), str(tmp_path / "zst"),
                 "--format", "lpcm.zst"]) == 0  # fmt: skip
    table, after = _all_samples(tmp_path / "zst" / "signals.arrow")
    assert set(table.column("file_format").to_pylist()) == {"lpcm.zst"}
    assert before.keys() == mid.keys() == after.keys()
    for key, data in before.items():
        assert np.array_equal(mid[key], data) and np.array_equal(after[key], data), key
        assert mid[key].dtype == data.dtype
    assert "wrote" in capsys.readouterr().out


def test_convert_refuses_a_folder_that_holds_a_table(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_recordings=1, duration=60 * 10**9)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "signals.arrow").write_bytes(b"")
    with pytest.raises(DatasetExistsError, match="signals.arrow exists"):
        from ondabatches.cli._convert import run

        run(type("A", (), {"src": str(ds.signals_path), "out": str(tmp_path / "out"),
                           "file_format": "pco"})())  # fmt: skip
