"""A feed that copies batches to a CUDA device ahead of the training step."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .._errors import ArgumentError, BatcherError, require
from ..serve._stats import DataPathMeter, IntervalLogger
from ._tensors import map_tensors

torch = require("torch", "torch")

__all__ = ["DeviceFeed"]

logger = logging.getLogger("ondabatches")


def _pinned(t):
    return t if t.is_pinned() else t.pin_memory()


class DeviceFeed:
    """Batches of ``source`` moved to ``device``, copied ``ahead`` batches before they are needed.

    On a CUDA device each batch is copied into pinned host memory (unless already
    pinned, e.g. by ``DataLoader(pin_memory=True)``) and on to the device on a side
    stream with ``non_blocking=True``; the training stream waits for that copy only when
    it uses the batch, so the copies overlap the training steps. On a CPU device
    batches are passed through unchanged (no copy). Either way
    [`stats`][ondabatches.torch.DeviceFeed.stats] says how much of the wall time the
    training loop spent waiting for data.

    Parameters
    ----------
    source:
        Any iterable of tensors, tuples/lists/dicts of tensors (a DataLoader, a
        dataset).
    device:
        Where batches go; default: the current CUDA device if CUDA is available, else CPU.
    ahead:
        How many batches are fetched and copied beyond the one being trained on.
    log_interval:
        Seconds between INFO lines of [`stats`][ondabatches.torch.DeviceFeed.stats] (None: none).

    Notes
    -----
    The batches fetched ahead are not yet trained on: a checkpoint taken in the loop
    should name the first of them, ``dataset.state_dict(unconsumed=feed.pending)``.

    Examples
    --------
    >>> source = [(torch.ones(2, 3), torch.zeros(2, dtype=torch.int64)) for _ in range(4)]
    >>> feed = DeviceFeed(source, device="cpu", ahead=2)
    >>> [x.device.type for x, y in feed]
    ['cpu', 'cpu', 'cpu', 'cpu']
    >>> feed.stats()["batches"], 0.0 <= feed.stats()["wait_fraction"] <= 1.0
    (4, True)
    """

    def __init__(
        self,
        source: Iterable[Any],
        device: Any = None,
        *,
        ahead: int = 2,
        log_interval: float | None = None,
    ):
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
            raise ArgumentError(f"ahead must be a non-negative int, got {ahead!r}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BatcherError(
                f"DeviceFeed to {self.device} but CUDA is not available in this torch "
                f"({torch.__version__}); use device='cpu'"
            )
        self.source = source
        self.ahead = ahead
        self.pending = 0
        self._meter = DataPathMeter()
        self._log = IntervalLogger(logger, log_interval, "DeviceFeed")

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        iterator = iter(self.source)
        queue: deque[tuple[Any, Any]] = deque()
        self._meter.reset()

        def fetch() -> bool:
            try:
                batch = next(iterator)
            except StopIteration:
                return False
            if cuda:
                with torch.cuda.stream(stream):
                    moved = map_tensors(
                        batch, lambda t: _pinned(t).to(self.device, non_blocking=True)
                    )
                    event = torch.cuda.Event()
                    event.record(stream)
                queue.append((moved, event))
            else:
                queue.append((map_tensors(batch, lambda t: t.to(self.device)), None))
            return True

        try:
            while True:
                began = time.perf_counter()
                while len(queue) <= self.ahead and fetch():
                    pass
                if not queue:
                    return
                batch, event = queue.popleft()
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    # The batch was allocated on the side stream: tell the caching
                    # allocator it is used on this one, so its memory is not reused early.
                    map_tensors(batch, lambda t, s=current: t.record_stream(s))
                self.pending = len(queue)
                now = time.perf_counter()
                self._meter.took(batch, now - began)
                self._log.maybe(now, self.stats)
                yield batch
        finally:
            queue.clear()
            self.pending = 0

    def stats(self) -> dict[str, Any]:
        """Figures since the last iteration began: ``wait_fraction`` is the share of wall
        time the training loop spent waiting for the next batch (fetching from the
        source, pinning and queuing the copy), as in
        [`Batcher.stats`][ondabatches.serve.Batcher.stats]."""
        return self._meter.snapshot()
