"""A trainer run as its own session by test_processes: it holds batches (segments) and
has one worker blocked in a batch that never ends; it prints ``ready`` then waits."""

from __future__ import annotations

import sys
import time

from ondabatches import Batcher

from ..serve.toy import ToyScheme, toy_materialize


def main() -> None:
    scheme = ToyScheme(batch_size=2, shape=(64, 1024), actions=((2, ("sleep", 3600)),))
    batcher = Batcher(scheme, workers=2, backend="processes", materialize=toy_materialize)
    batcher.start(0)
    held = [batcher.take(0)[0], batcher.take(1)[0]]  # noqa: F841 - keeps their segments
    print("ready", flush=True)
    time.sleep(3600)
    sys.exit(1)


if __name__ == "__main__":
    main()
