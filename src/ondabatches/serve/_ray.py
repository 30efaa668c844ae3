"""Ray: materialization on Ray worker actors, and a Batcher living in a Ray actor.

Ray is an optional extra (``pip install 'ondabatches[ray]'``), imported only when one
of these is used. Ray itself is not started here: call ``ray.init(...)`` (or
``ray.init(address=...)`` to join a cluster) first, or let Ray start a local instance
on first use.
"""

from __future__ import annotations

import functools
import math
import multiprocessing.connection
import os
import secrets
import selectors
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .._errors import require
from ..onda._formats import user_formats
from ..onda._settings import Settings, current_settings
from ._pools import _PREFETCH
from ._processes import PumpedPool, _PumpedFuture, send_task
from ._ray_worker import _ACCEPT_SECONDS, _HANDSHAKE_SECONDS, _RayWorker, _Shipped
from ._shm import SegmentPool
from ._tasks import Materialize, WorkerLostError, unpack_result

__all__: list[str] = []

#: About what a Ray call costs in CPU, on each side.
_CALL_SECONDS = 1e-3


@dataclass(slots=True)
class _Call:
    """One Ray call to a worker actor: the tasks it carries, in order."""

    index: int  # of the actor
    targets: list[Future]
    segments: list[str | None]


@dataclass(slots=True)
class _Channel:
    """The connection to a worker actor on this node, and the tasks sent over it."""

    conn: multiprocessing.connection.Connection
    task_ids: set[int] = field(default_factory=set)
    installed: dict[int, Materialize] = field(default_factory=dict)  # see send_task


class RayPool(PumpedPool):
    """Run batches on ``workers`` Ray actors of one CPU each, spread over the cluster.

    Work goes only to actors that have started, so asking for more workers than the
    cluster has free CPUs still runs, on fewer. An actor that dies is restarted by
    Ray; the batches it held fail and the Batcher retries them.

    - An actor that shares this machine's shared memory takes its batches over a local
      socket (a *channel*), ``prefetch`` at a time, exactly as a worker process does: a
      Ray call costs about a millisecond of CPU on each side, as much as a light
      batch's decoding. It writes the arrays into shared-memory segments leased here,
      so they come back writable and without a copy. The thread that waits for a
      batch receives the channels' results, as with worker processes (no hand-over
      between threads). Without ``channels`` it gets Ray calls but still writes into
      shared memory; an actor that cannot be reached on its channel
      (``accept_timeout``) falls back to the same.
    - An actor elsewhere (or every actor, without ``shared_memory``) gets Ray calls of
      up to ``chunk`` batches each, two calls at a time, and its arrays come back as
      read-only views of Ray's object store.

    Every actor gets ``settings`` (default: this process's
    [`Settings`][ondabatches.onda.Settings] now) before its first batch, and gets them
    again when Ray restarts it, whatever the environment of its node.
    """

    lazy = False
    #: A materialize callable reaches each actor once (see `_Shipped`).
    sends_once = True

    def __init__(
        self,
        *,
        workers: int,
        chunk: int = 1,
        prefetch: int = _PREFETCH,
        channels: bool = True,
        shared_memory: bool = True,
        accept_timeout: float = _ACCEPT_SECONDS,
        settings: Settings | None = None,
    ):
        self._ray = require("ray", "ray")
        self._shipped: dict[int, tuple[Materialize, _Shipped]] = {}
        self._actor_class = self._ray.remote(
            num_cpus=1,
            max_restarts=-1,
            # A call lost with its actor fails over to the Batcher's own retries, as a
            # lost worker process does (Ray's retries would also fire, noisily, for
            # the calls that close() kills).
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        )(_RayWorker)
        self._lock = threading.Lock()
        self._closed = False
        self._chunk = chunk
        self._per_batch: float | None = None  # seconds, as the actors report
        self._prefetch = prefetch
        self._use_channels = channels
        self._accept_timeout = accept_timeout
        self._pending: deque[tuple[Future, Materialize, Any, Any]] = deque()
        self._calls: dict[int, tuple[_Call, Any]] = {}  # by id: each call and its ref
        # Free segments kept for reuse: as for worker processes, plus a chunk, since a
        # chunk leases its segments at once while the consumer frees them one by one.
        self._segments = SegmentPool(keep=workers + 2 + chunk)
        # An actor that sees this segment shares our machine's shared memory (the node
        # id alone would not tell, e.g. with Ray Client or separate containers).
        self._probe = self._segments.lease()[0] if shared_memory else None
        self._settings = settings or current_settings()
        self._actors = [
            self._actor_class.remote(user_formats(), self._settings) for _ in range(workers)
        ]
        # Actors taken out by resize(): no new work; each is killed once it holds none.
        self._retired: set[int] = set()
        self._dismissed: set[int] = set()
        self._load = [0] * workers  # calls (or, over a channel, tasks) in flight per actor
        self._started: list[int] = []
        self._local: dict[int, int] = {}  # actors on this node: their process ids
        # Channels: the thread waiting for a batch reads them (see _pump), and connects
        # new ones.
        self._authkey = secrets.token_bytes(32)
        self._channels: dict[int, _Channel] = {}
        self._tasks: dict[int, tuple[Future, str, int]] = {}  # id: target, segment, actor
        self._next_id = 0
        self._serving: list[Any] = []  # the refs of the actors' serve() calls
        self._connect: deque[tuple[int, int, Any]] = deque()  # actor, pid, address
        self._pump_lock = threading.Lock()  # one thread receives at a time
        self._selector = selectors.DefaultSelector()
        # Wakes the receiving thread: a channel to connect, a Ray call's result, close().
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_writer, False)  # a full pipe wakes it already
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        for i in range(workers):
            self._start(i)

    def _start(self, index: int) -> None:
        """Ask actor ``index`` where it runs (Ray answers once it is up or restarted)."""
        ready = self._actors[index].where.remote(self._probe)
        ready.future().add_done_callback(functools.partial(self._ready, index))

    def _ready(self, index: int, source: Future) -> None:
        if self._restarting(index, source):
            return
        if source.cancelled() or source.exception() is not None:
            return  # killed at close, or never came up: it gets no work
        local, pid = source.result()
        if local and self._use_channels:
            listening = self._actors[index].listen.remote(
                self._authkey, self._accept_timeout, _HANDSHAKE_SECONDS
            )
            listening.future().add_done_callback(functools.partial(self._listening, index, pid))
            return
        self._take_calls(index, pid if local else None)

    def _take_calls(self, index: int, pid: int | None) -> None:
        """Actor ``index`` gets Ray calls; ``pid`` if it shares our shared memory."""
        with self._lock:
            if self._closed or index in self._retired:
                self._wake()  # a retired actor that came up: the receiving thread ends it
                return
            self._started.append(index)
            if pid is not None:
                self._local[index] = pid
        self._launch()

    def _restarting(self, index: int, source: Future) -> bool:
        """Whether Ray is restarting actor ``index``: then it is asked again."""
        if source.cancelled() or self._closed or index in self._retired:
            return False
        # Right after an actor dies, Ray may still send it calls, which fail with this:
        # the restart comes soon after.
        if isinstance(source.exception(), self._ray.exceptions.ActorUnavailableError):
            self._start(index)
            return True
        return False

    def _listening(self, index: int, pid: int, source: Future) -> None:
        if self._restarting(index, source):
            return
        error = None if source.cancelled() else source.exception()
        if source.cancelled() or isinstance(error, self._ray.exceptions.RayActorError):
            return  # it died for good (killed at close)
        if error is not None:  # no local socket there: Ray calls it is
            self._take_calls(index, pid)
            return
        with self._lock:
            if self._closed or index in self._retired:
                self._wake()
                return
            self._serving.append(self._actors[index].serve.remote())
            # Connecting waits for the actor to accept: the receiving thread does it.
            self._connect.append((index, pid, source.result()))
            self._wake()

    def _wake(self) -> None:
        # Called with self._lock held, which close() holds when it closes the pipe.
        if not self._closed:
            try:
                os.write(self._wake_writer, b"w")
            except BlockingIOError:
                pass

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        target: Future = _PumpedFuture(self)
        with self._lock:
            self._pending.append((target, materialize, batch, dtype))
        self._launch()
        return target

    def _fill(self, index: int) -> float:
        """How full actor ``index`` is: 1 when it holds all it may."""
        if index in self._channels:
            return self._load[index] / self._prefetch
        return self._load[index] / _PREFETCH

    def _launch(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending or not self._started:
                    return
                index = min(self._started, key=self._fill)
                if self._fill(index) >= 1:
                    return
                channel = self._channels.get(index)
                if channel is not None:
                    self._send(index, channel)
                    continue
                # A busy actor's next call waits for a full chunk of tasks.
                chunk = self._chunk_size()
                if self._load[index] and len(self._pending) < chunk:
                    return
                call, ref = self._call(index, chunk)
                if ref is None:
                    continue
            ref.future().add_done_callback(functools.partial(self._finished, call))

    def _chunk_size(self) -> int:
        """How many batches a call carries: enough that the call's own cost is at most
        about a tenth of theirs (one until the actors have reported their time)."""
        if not self._per_batch:
            return 1
        return max(1, min(self._chunk, math.ceil(_CALL_SECONDS / (0.1 * self._per_batch))))

    def _call(self, index: int, chunk: int) -> tuple[_Call, Any]:
        """Send up to ``chunk`` pending tasks to actor ``index`` in one Ray call."""
        call, materialize, tasks = _Call(index, [], []), None, []
        while self._pending and len(tasks) < chunk:
            target, task_materialize, batch, dtype = self._pending[0]
            if materialize is not None and task_materialize is not materialize:
                break  # one callable per call
            self._pending.popleft()
            if not target.set_running_or_notify_cancel():  # cancelled while waiting
                continue
            materialize = task_materialize
            segment = self._segments.lease() if index in self._local else None
            call.targets.append(target)
            call.segments.append(None if segment is None else segment[0])
            tasks.append((batch, dtype, segment))
        if not tasks:
            return call, None
        ref = self._actors[index].run.remote(self._ship(materialize), tasks)
        self._load[index] += 1
        self._calls[id(call)] = (call, ref)
        return call, ref

    def _send(self, index: int, channel: _Channel) -> None:
        """Send the next pending task to actor ``index`` over its channel."""
        target, materialize, batch, dtype = self._pending.popleft()
        if not target.set_running_or_notify_cancel():  # cancelled while waiting
            return
        segment = self._segments.lease()
        task_id = self._next_id
        self._next_id += 1
        try:
            # Pickled by value where need be, as Ray pickles: a callable defined in the
            # trainer's __main__ cannot be imported on the actor.
            send_task(
                channel.conn, channel.installed, task_id, segment, materialize, batch, dtype,
                dumps=self._ray.cloudpickle.dumps,
            )  # fmt: skip
        except Exception as exc:  # an unpicklable batch, or the actor went away
            self._segments.abandon(segment[0])
            target.set_exception(exc)
            return
        self._tasks[task_id] = (target, segment[0], index)
        channel.task_ids.add(task_id)
        self._load[index] += 1

    def _ship(self, materialize: Materialize) -> _Shipped:
        entry = self._shipped.get(id(materialize))
        if entry is None:
            ref = self._ray.put(materialize)
            # The callable is held with its handle, so that its id is not reused.
            entry = self._shipped[id(materialize)] = (materialize, _Shipped(ref.hex(), [ref]))
        return entry[1]

    def _finished(self, call: _Call, source: Future) -> None:
        with self._lock:
            self._calls.pop(id(call), None)
            self._load[call.index] -= 1
            closed = self._closed
        try:
            for i, (target, segment) in enumerate(zip(call.targets, call.segments, strict=True)):
                if closed:  # nobody takes it; close() unlinks its segment
                    target.cancel() or target.set_exception(WorkerLostError("the pool was closed"))
                    continue
                if source.cancelled():
                    target.set_exception(WorkerLostError("the Ray call was cancelled"))
                    result = None
                elif source.exception() is not None:
                    target.set_exception(source.exception())
                    result = None
                else:
                    results, seconds = source.result()
                    result = results[i]
                    if i == 0:
                        self._timed(seconds / len(results))
                self._resolve(target, segment, result)
        finally:
            with self._lock:
                self._wake()  # a thread may be waiting in _pump for these
            self._launch()

    def _timed(self, per_batch: float) -> None:
        # A moving average: the last few calls count.
        previous = self._per_batch
        self._per_batch = per_batch if previous is None else 0.75 * previous + 0.25 * per_batch

    def _resolve(self, target: Future, segment: str | None, result: Any) -> None:
        if segment is not None and (result is None or result[0] != "shm"):
            self._segments.abandon(segment)
        if result is None:
            return
        try:
            # Zero-copy either way: arrays over a segment, or read-only views of the
            # object store that keep the object alive while held (copying a batch here
            # would cost the manager as much CPU as a worker spends on it).
            target.set_result(unpack_result(result, self._segments))
        except BaseException as exc:  # a TaskError: materialize itself failed
            target.set_exception(exc)

    # -- channels (actors on this node) -------------------------------------------------

    def _receive_ready(self, timeout: float | None) -> None:
        if self._retired:
            self._dismiss_idle()
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                os.read(self._wake_reader, 512)
                if self._closed:
                    return
                self._open_channels()
                continue
            index = key.data
            channel = self._channels[index]
            try:
                task_id, result = channel.conn.recv()
            except (EOFError, OSError):
                self._lose_channel(index)
                continue
            with self._lock:
                target, segment, _ = self._tasks.pop(task_id)
                channel.task_ids.discard(task_id)
                self._load[index] -= 1
            self._resolve(target, segment, result)
            self._launch()

    def _open_channels(self) -> None:
        while self._connect:
            index, pid, address = self._connect.popleft()
            try:
                conn = multiprocessing.connection.Client(
                    address, family="AF_UNIX", authkey=self._authkey
                )
            except (OSError, EOFError, multiprocessing.AuthenticationError):
                # Died meanwhile (Ray calls then wait for its restart), or unreachable
                # (its serve() gives up waiting, then it takes Ray calls).
                self._take_calls(index, pid)
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                if index in self._retired:  # retired while it came up: it takes no work
                    conn.close()
                    continue
                self._channels[index] = _Channel(conn)
                self._selector.register(conn, selectors.EVENT_READ, index)
                self._local[index] = pid
                self._started.append(index)
        self._launch()

    def _lose_channel(self, index: int) -> None:
        """Actor ``index`` died: fail its batches, then wait for Ray to restart it."""
        with self._lock:
            channel = self._channels.pop(index)
            self._selector.unregister(channel.conn)
            channel.conn.close()
            self._started.remove(index)
            pid = self._local.pop(index, None)
            lost = [self._tasks.pop(i) for i in channel.task_ids]
            self._load[index] = 0
            closed = self._closed
        for target, segment, _ in lost:
            self._segments.abandon(segment)
            target.set_exception(
                WorkerLostError(f"Ray worker actor (process {pid}) died while it held a batch")
            )
        if not closed and index not in self._retired:
            self._start(index)
        self._launch()

    # -- resizing ------------------------------------------------------------------------

    def resize(self, workers: int) -> None:
        """Start actors, or retire the last ones: they get no new work, and are killed
        once the batches they hold are back (by the thread that receives results)."""
        with self._lock:
            if self._closed:
                return
            active = [i for i in range(len(self._actors)) if i not in self._retired]
            new = []
            for _ in range(workers - len(active)):
                self._actors.append(self._actor_class.remote(user_formats(), self._settings))
                self._load.append(0)
                new.append(len(self._actors) - 1)
            for index in active[workers:] if workers < len(active) else ():
                self._retired.add(index)
                if index in self._started:
                    self._started.remove(index)
        for index in new:
            self._start(index)
        self._dismiss_idle()
        self._launch()

    def _dismiss_idle(self) -> None:
        """Kill the retired actors that hold no batch (in the thread that receives)."""
        with self._lock:
            idle = [i for i in self._retired - self._dismissed if self._load[i] == 0]
            channels = []
            for index in idle:
                self._dismissed.add(index)
                self._local.pop(index, None)
                channel = self._channels.pop(index, None)
                if channel is not None:
                    self._selector.unregister(channel.conn)
                    channels.append(channel)
        for channel in channels:
            channel.conn.close()  # its serve() returns
        for index in idle:
            self._ray.kill(self._actors[index], no_restart=True)

    def cancel(self, future: Future) -> None:
        # A task still waiting here never runs; one sent to an actor runs to its end
        # (its result is dropped): Ray cannot interrupt a running actor call.
        future.cancel()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            pending, self._pending = list(self._pending), deque()
            calls = [ref for _, ref in self._calls.values()] + self._serving
            # Actors that start from now on get no work, so no segment: not waited for.
            local = list(self._local.values())
            self._wake()  # a thread waiting for results lets go
            self._closed = True
        # It may be connecting to an actor that is slow to accept: the kill below ends that.
        held = self._pump_lock.acquire(timeout=timeout)
        for actor in self._actors:
            # Kills a worker stuck in a batch; its calls fail, nobody waits for them.
            self._ray.kill(actor, no_restart=True)
        held = held or self._pump_lock.acquire(timeout=timeout)
        for channel in self._channels.values():
            channel.conn.close()
        self._selector.close()
        with self._lock:
            os.close(self._wake_reader)
            os.close(self._wake_writer)
        if held:
            self._pump_lock.release()
        for target, *_ in pending:
            target.cancel()
        for target, _, _ in self._tasks.values():
            target.cancel() or target.set_exception(WorkerLostError("the pool was closed"))
        # Ray reports an actor dead before its process is gone and its CPU free: wait
        # for the processes on this node, so that a pool started next (or a trainer
        # task) finds the CPUs free, as it does after closing worker processes.
        deadline = time.monotonic() + timeout
        for pid in local:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._ray.wait(calls, num_returns=len(calls), timeout=max(deadline - time.monotonic(), 0))
        # Every segment name goes, leased or free; arrays the consumer holds stay valid.
        self._segments.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it exists
        return True
    return True
