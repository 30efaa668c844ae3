"""Benchmark of ``derive_dataset``: a plain script, not a test.

Recordings of 19 int16 channels at 256 Hz (``benchmarks.windows``' data), derived with
``Bandpass(0.3, 35) + Notch(50)``, an average reference and a resample to 100 Hz:

- ``time``: ``derive_dataset`` (streamed in blocks, one worker) against the floor of
  the same scipy calls on each whole recording loaded in memory, written with
  ``store``; interleaved runs, the median of the paired ratios;
- ``memory``: the peak RSS of a process deriving a short recording and one 12x longer
  (goal: flat, at most 1.25x), each in a fresh process; with ``--hours H`` (full run:
  24), also one of ``H`` hours against the 10 min one (the long one written in blocks,
  840 MB of int16 for 24 h: it never is in memory, here or in derive).

Run ``python -m benchmarks.derive [--quick]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._report import Result, script_main

__all__ = ["run"]

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
_CHILD = """
import sys
from ondabatches.transforms import Bandpass, Notch, derive_dataset
derive_dataset(sys.argv[1], None, sys.argv[2], filters=[Bandpass(0.3, 35.0), Notch(50.0)],
               reference="average", resample_hz=100.0)
print([ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1])
"""


def _tables(root: Path, minutes: int) -> str:
    from ondabatches.onda import write_signals

    from .windows import make_recordings

    labeled = make_recordings(root, n_recordings=1, minutes=minutes)["lpcm"]
    path = root / "d.onda.signal.arrow"
    write_signals(path, labeled.select(labeled.column_names[:12]))
    return str(path)


def _long_table(root: Path, hours: float) -> str:
    """One recording of ``hours`` of 19 int16 channels at 256 Hz, written a block at a
    time (band-limited noise, as ``make_recordings``), and its signals table."""
    import uuid

    from ondabatches.onda import SamplesInfo, TimeSpan, signals_table, write_signals

    from .windows import CHANNELS, NS, RATE

    root.mkdir(parents=True, exist_ok=True)
    n = int(hours * 3600 * RATE)
    path = root / "long.lpcm"
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for start in range(0, n, 1 << 20):
            m = min(1 << 20, n - start)
            noise = rng.normal(0, 300, (m + 8, len(CHANNELS)))
            smooth = sum(noise[k : k + m] for k in range(8)) / 8
            np.clip(np.rint(smooth), -32768, 32767).astype("<i2").tofile(f)
    info = SamplesInfo("eeg", CHANNELS, "microvolt", 0.1, 0.0, "int16", RATE)
    table = signals_table([dict(recording=uuid.UUID(int=7), file_path=str(path),
                                file_format="lpcm", span=TimeSpan(0, int(n / RATE * NS)),
                                sensor_label="eeg", **info.to_dict())])  # fmt: skip
    out = root / "long.onda.signal.arrow"
    write_signals(out, table)
    return str(out)


def _day(root: Path, hours: float, rss_small: float) -> Result:
    """The peak RSS of deriving an ``hours`` recording against ``rss_small`` (10 min)."""
    rss_day = _peak_rss_mb(_long_table(root / "day", hours), str(root / "rd"))
    print(f"figure: derive peak RSS, {hours:g} h vs 10 min recording (MB): ours "
          f"{rss_day:.4g} vs floor {rss_small:.4g} -> ratio {rss_day / rss_small:.3f} "
          f"(goal 1.25)")  # fmt: skip
    return Result(f"derive peak RSS, {hours:g} h recording vs 10 min", rss_day, rss_small,
                  "MB", goal=1.25, floor_is="the same derive of the 10 min recording")  # fmt: skip


def _peak_rss_mb(signals: str, out: str) -> float:
    run = subprocess.run([sys.executable, "-c", _CHILD, signals, out],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(run.stdout.split()[-1]) / 1024


def _floor(signals: str, out: Path) -> None:
    """The same scipy calls on each whole recording in memory, stored whole."""
    from scipy.signal import resample_poly, sosfiltfilt

    from ondabatches.onda import Samples, iter_signals, load, read_signals, store
    from ondabatches.transforms import Bandpass, Notch

    for sig in iter_signals(read_signals(signals)):
        x = load(sig).data.astype("float64")
        for f in (Bandpass(0.3, 35.0), Notch(50.0)):
            x = sosfiltfilt(f._design(sig.info.sample_rate), x, axis=-1)
        x = resample_poly(x - x.mean(axis=0, keepdims=True), 25, 64, axis=-1).astype("float32")
        info = sig.info.__class__(
            sig.info.sensor_type, sig.info.channels, sig.info.sample_unit, 1.0, 0.0,
            "float32", 100.0,
        )  # fmt: skip
        store(out / f"{sig.recording}.lpcm", Samples(x, info, encoded=True))


def run(quick: bool = False, hours: float | None = None) -> list[Result]:
    from ondabatches.transforms import Bandpass, Notch, derive_dataset

    hours = (0 if quick else 24) if hours is None else hours
    # The short recording holds more than one block (2**17 samples, 8.5 min at 256 Hz).
    short, long = (10, 60) if quick else (10, 120)
    with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
        root = Path(tmp)
        (root / "s").mkdir()
        (root / "l").mkdir()
        small, large = _tables(root / "s", short), _tables(root / "l", long)
        rounds = 3 if quick else 5
        ours, floor = [], []
        for k in range(rounds):
            started = time.perf_counter()
            derive_dataset(large, None, str(root / f"ours{k}"),
                           filters=[Bandpass(0.3, 35.0), Notch(50.0)],
                           reference="average", resample_hz=100.0)  # fmt: skip
            ours.append(time.perf_counter() - started)
            (root / f"floor{k}").mkdir()
            started = time.perf_counter()
            _floor(large, root / f"floor{k}")
            floor.append(time.perf_counter() - started)
        ratio = statistics.median(a / b for a, b in zip(ours, floor, strict=True))
        t_ours, t_floor = statistics.median(ours), statistics.median(floor)
        print(f"figure: derive {long} min of 19 ch at 256 Hz (s): ours {t_ours:.4g} vs floor "
              f"{t_floor:.4g} -> ratio {ratio:.3f}")  # fmt: skip
        rss_small = _peak_rss_mb(small, str(root / "rs"))
        rss_large = _peak_rss_mb(large, str(root / "rl"))
        print(f"figure: derive peak RSS, {long} min vs {short} min recording (MB): ours "
              f"{rss_large:.4g} vs floor {rss_small:.4g} -> ratio {rss_large / rss_small:.3f} "
              f"(goal 1.25)")  # fmt: skip
        day = [_day(root, hours, rss_small)] if hours else []
        return day + [
            Result(f"derive, {long} min x 19 ch @ 256 Hz: band-pass + notch + avg ref + 100 Hz",
                   t_ours, t_floor, "s", floor_is="the same scipy calls on the whole recording "
                   "in memory, stored whole"),
            Result(f"derive peak RSS, {long} min recording vs {short} min", rss_large, rss_small,
                   "MB", goal=1.25, floor_is="the same derive of the short recording"),
        ]  # fmt: skip


if __name__ == "__main__":
    if "--hours" in sys.argv:  # python -m benchmarks.derive --hours 24: that figure alone
        at = sys.argv.index("--hours")
        hours = float(sys.argv[at + 1])
        with tempfile.TemporaryDirectory(prefix="ondabatches-bench-") as tmp:
            (Path(tmp) / "s").mkdir()
            _day(Path(tmp), hours, _peak_rss_mb(_tables(Path(tmp) / "s", 10), tmp + "/rs"))
        raise SystemExit(0)
    raise SystemExit(script_main(run, __doc__.splitlines()[0]))
