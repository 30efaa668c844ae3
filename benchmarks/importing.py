"""Benchmark of ``ondabatches import``: memory bounded by the block, speed against raw reads.

Writes two EDF+ files of 8 channels at 256 Hz: a short one (10 min) and a long one
(4 h, ~59 MB of samples; ``--quick``: 1 h), then, each in a fresh process, interleaved:

* peak RSS of importing the long file against the short one: the import streams
  blocks of ``block_bytes`` (8 MB), so the long file should need no more memory.
  Goal: ratio <= 1.25. The contrast: reading the long file's channels whole (what the
  importer did before) grows with the file;
* time of importing the long file against the floor: pyedflib reading every channel
  (digital) plus writing the same bytes, in one process. Goal: ratio <= 2.

Usage: ``python -m benchmarks.importing [--quick]`` or ``ondabatches bench importing``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ._report import Result, script_main

RATE = 256
CHANNELS = 8

_IMPORT = """
import json, resource, sys, time
from ondabatches.importing import import_dataset
t0 = time.perf_counter()
import_dataset(sys.argv[1], sys.argv[2], workers=1)
dt = time.perf_counter() - t0
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "s": dt}))
"""

_FLOOR = """
import json, resource, sys, time
import numpy as np, pyedflib
t0 = time.perf_counter()
reader = pyedflib.EdfReader(sys.argv[1])
data = np.stack([reader.readSignal(i, digital=True).astype("<i2")
                 for i in range(reader.signals_in_file)])
reader.close()
with open(sys.argv[2], "wb") as f:
    f.write(np.ascontiguousarray(data.T).tobytes())
dt = time.perf_counter() - t0
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "s": dt}))
"""


def write_edf(path: Path, seconds: int) -> Path:
    import pyedflib

    rng = np.random.default_rng(0)
    writer = pyedflib.EdfWriter(str(path), CHANNELS, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(
            [
                dict(label=f"EEG C{i}", dimension="uV", sample_frequency=RATE, physical_min=-500.0,
                     physical_max=500.0, digital_min=-32768, digital_max=32767, transducer="",
                     prefilter="")
                for i in range(CHANNELS)
            ]
        )  # fmt: skip
        # Written a minute at a time, so that writing the long file stays small too.
        for _ in range(seconds // 60):
            block = rng.integers(-32768, 32767, (CHANNELS, RATE * 60), dtype=np.int32)
            writer.writeSamples(list(block), digital=True)
    finally:
        writer.close()
    return path


def _measure(script: str, source: Path, out: Path) -> dict[str, float]:
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(out)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Result]:
    reps = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-import-") as tmp:
        root = Path(tmp)
        long_s = 3600 if quick else 4 * 3600
        short = write_edf(root / "short.edf", 600)
        long = write_edf(root / "long.edf", long_s)
        rss_short, rss_long, rss_whole, t_ours, t_floor = [], [], [], [], []
        for _ in range(reps):  # interleaved
            rss_short.append(_measure(_IMPORT, short, root / "o-short")["rss"])
            ours = _measure(_IMPORT, long, root / "o-long")
            floor = _measure(_FLOOR, long, root / "floor.lpcm")
            rss_long.append(ours["rss"])
            t_ours.append(ours["s"])
            t_floor.append(floor["s"])
            rss_whole.append(floor["rss"])
    mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    s_rss, l_rss, w_rss = (statistics.median(x) * mb for x in (rss_short, rss_long, rss_whole))
    m_ours, m_floor = statistics.median(t_ours), statistics.median(t_floor)
    size_mb = long_s * RATE * CHANNELS * 2 / 1e6
    print(
        f"figure: peak RSS importing {long_s / 3600:g} h ({size_mb:.0f} MB) {l_rss:.0f} MiB vs "
        f"10 min {s_rss:.0f} MiB -> ratio {l_rss / s_rss:.2f} (goal <= 1.25); reading "
        f"the channels whole instead: {w_rss:.0f} MiB"
    )
    print(
        f"figure: import of the long file {m_ours:.2f} s vs floor {m_floor:.2f} s -> ratio "
        f"{m_ours / m_floor:.2f} (goal <= 2); {size_mb / m_ours:.0f} MB/s"
    )
    return [
        Result(
            f"import peak RSS, {long_s / 3600:g} h vs 10 min file",
            l_rss,
            s_rss,
            "MiB",
            1.25,
            floor_is=f"the 10-min file's peak RSS (channels read whole: {w_rss:.0f} MiB)",
        ),
        Result(
            f"import time, {long_s / 3600:g} h file",
            m_ours,
            m_floor,
            "s",
            2.0,
            floor_is="pyedflib digital reads of every channel + one write of the bytes",
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(script_main(run, __doc__.split("\n\n")[0]))
