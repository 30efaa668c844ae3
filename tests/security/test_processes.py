"""Nothing outlives a killed trainer: workers, forkserver, resource tracker, segments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ondabatches import SampleFileError
from ondabatches.onda import load_rows
from ondabatches.serve import _shm, _shm_names

from ..e2e.cluster import _session_processes
from ..onda.samplefiles import make_info, make_signal

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="counts processes in /proc, segments in /dev/shm",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (the trainer's, and all it started)."""
    return _session_processes({sid})


def _segments(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"ondabatches_{pid}_")]


def _start_trainer():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "tests.security.trainer"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert trainer.stdout.readline().strip() == b"ready"
    # The trainer, 2 workers, the forkserver and the resource tracker.
    assert len(_session(trainer.pid)) >= 5
    assert _segments(trainer.pid)
    return trainer


def _wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_killing_the_trainer_alone_ends_its_workers_and_helpers():
    trainer = _start_trainer()
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    trainer.stdout.close()
    # A worker is blocked in a batch that sleeps for an hour: it must go anyway.
    assert _wait_for(lambda: not _session(trainer.pid)), _session(trainer.pid)
    # Its resource tracker unlinked the segments, or the next pool's sweep does.
    _shm.SegmentPool(keep=1).close()
    assert _segments(trainer.pid) == []


def test_killing_the_whole_tree_leaves_segments_that_the_next_pool_sweeps():
    trainer = _start_trainer()
    os.killpg(trainer.pid, signal.SIGKILL)  # what a cgroup OOM kill or a scheduler does
    trainer.wait()
    trainer.stdout.close()
    assert _wait_for(lambda: not _session(trainer.pid))
    left = _segments(trainer.pid)
    assert left  # nobody was left to unlink them
    mine = _shm.SegmentPool(keep=1)  # a new pool sweeps them
    try:
        assert _segments(trainer.pid) == []
    finally:
        mine.close()


def test_the_sweep_leaves_segments_of_live_processes_and_other_names(tmp_path):
    from multiprocessing import shared_memory

    live = shared_memory.SharedMemory(name=_shm.new_segment_name(), create=True, size=10)
    old_style = shared_memory.SharedMemory(name=f"ondabatches_999999999_{'ab' * 8}", create=True,
                                           size=10)  # fmt: skip
    # A dead owner with this very name format: pid 2**22 + 1 is above any pid_max.
    pid, tag = 2**22 + 1, _shm_names._owner_tag()
    dead = shared_memory.SharedMemory(name=f"ondabatches_{pid}_{tag}_{'cd' * 8}", create=True,
                                      size=10)  # fmt: skip
    # Reused pid: our own pid with another start time.
    start, ns = tag.split(".")
    reused = shared_memory.SharedMemory(
        name=f"ondabatches_{os.getpid()}_{int(start) - 1}.{ns}_{'ef' * 8}", create=True, size=10
    )
    # A pid namespace other than ours: no way to tell, so left alone.
    elsewhere = shared_memory.SharedMemory(
        name=f"ondabatches_{pid}_{start}.{int(ns) + 1}_{'01' * 8}", create=True, size=10
    )
    try:
        removed = set(_shm.sweep_dead_segments())
        assert {dead.name, reused.name} <= removed
        assert not {live.name, old_style.name, elsewhere.name} & removed
        assert _shm.segment_exists(live.name) and _shm.segment_exists(elsewhere.name)
    finally:
        for segment in (live, old_style, dead, reused, elsewhere):
            segment.close()
            _shm.unlink_shared(segment.name)


def test_a_fifo_as_file_path_is_an_error_not_a_hang(tmp_path):
    info = make_info("int16", 1)
    fifo = tmp_path / "x.lpcm"
    os.mkfifo(fifo)
    for fmt in ("lpcm", "lpcm.zst"):
        sig = make_signal(fifo, fmt, info, 10)
        with pytest.raises(SampleFileError, match=r"x\.lpcm is not a regular file \(a FIFO\)"):
            load_rows(sig, range(0, 5), encoded=True)
    sig = make_signal("/dev/zero", "lpcm", info, 10)
    with pytest.raises(SampleFileError, match="not a regular file .a character device"):
        load_rows(sig, range(0, 5), encoded=True)
