"""Batcher.stats(): counts match what was taken; waits and occupancy point at the bottleneck;
retries and repositioning are counted and logged; logging is silent unless configured."""

from __future__ import annotations

import logging
import time

import pytest

from ondabatches import Batcher
from tests.serve.toy import ToyScheme, toy_materialize

pytestmark = pytest.mark.timeout(60)


def toy_batcher(scheme, **kwargs):
    return Batcher(scheme, materialize=toy_materialize, **kwargs)


def take_n(batcher, state, n, pause=0.0):
    out = []
    for _ in range(n):
        arrays, state = batcher.take(state)
        out.append(arrays)
        time.sleep(pause)
    return out


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_counts_match_what_was_taken(backend, no_leaks):
    with toy_batcher(ToyScheme(), backend=backend, workers=2) as batcher:
        assert batcher.stats()["batches"] == 0
        batcher.start(0)
        got = take_n(batcher, 0, 5)
        stats = batcher.stats()
    assert stats["batches"] == 5
    assert stats["bytes"] == sum(x.nbytes + y.nbytes for x, y in got)
    assert stats["mb_per_s"] == pytest.approx(stats["bytes"] / 1e6 / stats["wall_s"], rel=0.5)
    assert 0.0 <= stats["wait_s"] <= stats["wall_s"]
    assert 0.0 <= stats["wait_fraction"] <= 1.0 and 0.0 <= stats["worker_busy"] <= 1.0
    assert stats["workers"] == 2 and stats["retries"] == 0 and stats["repositions"] == 0
    assert 0 <= stats["buffered"] <= batcher.buffer


def test_waits_and_occupancy_point_at_the_bottleneck(no_leaks):
    # Slow batches, eager consumer: the consumer waits and the workers are busy.
    slow = ToyScheme(actions=tuple((k, ("sleep", 0.1)) for k in range(8)))
    with toy_batcher(slow, backend="threads", workers=1, buffer=2) as batcher:
        batcher.start(0)
        take_n(batcher, 0, 6)
        starved = batcher.stats()
    assert starved["wait_fraction"] > 0.5 and starved["worker_busy"] > 0.5, starved
    # Fast batches, slow consumer: nobody waits for data and the workers idle.
    with toy_batcher(ToyScheme(), backend="threads", workers=1, buffer=2) as batcher:
        batcher.start(0)
        take_n(batcher, 0, 6, pause=0.05)
        fed = batcher.stats()
    assert fed["wait_fraction"] < 0.5 and fed["worker_busy"] < 0.5, fed


def test_retries_and_repositions_are_counted_and_logged(tmp_path, caplog, no_leaks):
    scheme = ToyScheme(actions=((1, ("fail_times", (str(tmp_path / "n"), 2))),))
    with caplog.at_level(logging.DEBUG, logger="ondabatches"):
        with toy_batcher(scheme, backend="threads", workers=2, backoff=0.01) as batcher:
            batcher.start(0)
            take_n(batcher, 0, 3)
            batcher.take(7)  # another state: repositions
            stats = batcher.stats()
    assert stats["retries"] == 2 and stats["repositions"] == 1
    by_level = {}
    for record in caplog.records:
        by_level.setdefault(record.levelname, []).append(record.getMessage())
    assert any("Batcher started" in m for m in by_level["INFO"])
    assert sum("retrying" in m for m in by_level["WARNING"]) == 2
    assert any("repositioning" in m for m in by_level["WARNING"])
    assert sum("taken after waiting" in m for m in by_level["DEBUG"]) == 4


def test_interval_logging(caplog, no_leaks):
    with caplog.at_level(logging.INFO, logger="ondabatches"):
        with toy_batcher(ToyScheme(), backend="inline", log_interval=1e-9) as batcher:
            batcher.start(0)
            take_n(batcher, 0, 2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Batcher: ")]
    assert len(lines) == 2 and "batches/s" in lines[0] and "workers busy" in lines[0]
    with pytest.raises(ValueError, match="log_interval"):
        toy_batcher(ToyScheme(), log_interval=0)


def test_the_library_logger_has_a_null_handler():
    import ondabatches  # noqa: F401

    handlers = logging.getLogger("ondabatches").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
