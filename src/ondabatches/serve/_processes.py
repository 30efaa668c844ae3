"""Worker processes: `ProcessPool`, the Batcher's ``"processes"`` backend.

Each worker process runs `serve_tasks` on its end of a pipe (and dies with its
manager: `die_with`); the manager sends tasks with `send_task` (a materializer goes
to each worker once) and pumps the pipes for results (`PumpedPool`, which the Ray pool
shares). Arrays come back through shared memory; a dead worker is replaced and its
batch fails over to the Batcher's retry.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import selectors
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any

from .._errors import ArgumentError, BatcherError
from ..onda._formats import install_formats, user_formats
from ..onda._settings import Settings, current_settings, use_settings
from ._pools import _PREFETCH, _TURN, Pool
from ._shm import SegmentPool
from ._tasks import Materialize, WorkerLostError, run_task, unpack_result

__all__: list[str] = []


def _worker_main(
    conn: multiprocessing.connection.Connection,
    environ: dict[str, str],
    manager: int | None = None,
    formats: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> None:
    """Loop of one worker process: receive a task, run it, send the result back."""
    if manager is not None:
        die_with(manager)
    # A forkserver child has the environment of the forkserver, which may predate
    # settings made since (storage options, AWS_* credentials): take the manager's.
    os.environ.clear()
    os.environ.update(environ)
    use_settings(settings)  # the manager's, not what this process would read itself
    install_formats(formats)  # the manager's plug-in formats
    serve_tasks(conn)


#: Seconds between two looks at the manager where it cannot be waited on (no pidfd).
_WATCH_SECONDS = 1.0


def die_with(manager: int) -> None:
    """End this worker process as soon as process ``manager`` is gone, whatever it is doing.

    A worker blocked inside a task (a read that never returns) would not notice that
    its pipe closed, and would outlive a SIGKILLed trainer. A parent-death signal
    (``prctl(PR_SET_PDEATHSIG)``) is not enough: a forkserver child's parent is the
    forkserver, and a fork child's is the *thread* that started it, which may end
    long before the manager. So a daemon thread waits on the manager itself: on a
    pidfd where Linux has one (no pid-reuse race, no polling), else by polling.
    """
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(manager)
        except OSError:  # gone already (ESRCH), or no pidfd in this kernel
            if not _alive(manager):
                os._exit(1)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the process has exited
        else:
            while _alive(manager):
                time.sleep(_WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="ondabatches-manager-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, and someone else's
        return True
    return True


def serve_tasks(conn: multiprocessing.connection.Connection) -> None:
    """Run the tasks that arrive on ``conn``, sending each result back, until it closes.

    A message is ``("install", key, pickled)``: a materialize callable, pickled apart so
    that a callable that cannot be unpickled here fails its tasks rather than this
    loop (each arrives once, see ``ProcessPool._send_next``);
    ``(task_id, segment, key, batch, dtype)``; or None to stop. With the settings'
    ``worker_tasks`` above 1, up to that many tasks run at once, each in a thread of
    its own, and each result goes back as soon as it is done (the manager matches
    results to tasks by id).
    """
    installed: dict[Any, Materialize] = {}
    broken: dict[Any, str] = {}  # keys whose callable could not be unpickled: why
    at_once = current_settings().worker_tasks
    pool = None if at_once == 1 else ThreadPoolExecutor(at_once, "ondabatches-task")
    send_lock = threading.Lock()

    def run(task_id: Any, key: Any, batch: Any, dtype: Any, segment: Any) -> bool:
        if key in broken:
            why = f"the materialize callable could not be unpickled in the worker:\n{broken[key]}"
            result: Any = ("error", why, True)
        else:
            result = run_task(installed[key], batch, dtype, segment)
        try:
            with send_lock:
                conn.send((task_id, result))
        except OSError:  # the manager went away meanwhile
            return False
        return True

    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the manager went away
                return
            if message is None:
                return
            if message[0] == "install":
                try:
                    installed[message[1]] = pickle.loads(message[2])
                except Exception:
                    broken[message[1]] = traceback.format_exc()
                continue
            task_id, segment, key, batch, dtype = message
            if pool is not None:
                pool.submit(run, task_id, key, batch, dtype, segment)
            elif not run(task_id, key, batch, dtype, segment):
                return
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def send_task(
    conn: multiprocessing.connection.Connection,
    installed: dict[int, Materialize],
    task_id: int,
    segment: tuple[str, int],
    materialize: Materialize,
    batch: Any,
    dtype: Any,
    dumps: Callable[[Any], Any] = ForkingPickler.dumps,
) -> None:
    """Send a task to `serve_tasks` on the other end of ``conn``.

    A callable may be heavy (one that draws batches holds the whole batch scheme): each
    worker gets it once, pickled apart with ``dumps``, and tasks name it by key.
    ``installed`` holds the callables that worker has; holding them also keeps their
    keys (ids) from being reused.
    """
    key = id(materialize)
    if key not in installed:
        conn.send(("install", key, bytes(dumps(materialize))))
        installed[key] = materialize
    conn.send((task_id, segment, key, batch, dtype))


@dataclass(slots=True)
class _Task:
    future: Future
    materialize: Materialize
    batch: Any
    dtype: Any
    segment: tuple[str, int] | None = None  # leased when the task goes to a worker


@dataclass(slots=True)
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    task_ids: deque[int] = field(default_factory=deque)  # sent, in the order sent
    installed: dict[int, Materialize] = field(default_factory=dict)  # see send_task


class _PumpedFuture(Future):
    """A future of a `PumpedPool`'s task: waiting on it receives the results.

    The pool has no thread of its own: the thread that waits for a batch reads the
    workers' results (and, for processes, replaces dead workers) meanwhile, so a batch
    reaches its consumer without a hand-over between threads.
    """

    def __init__(self, pool: PumpedPool):
        super().__init__()
        self._pool = pool

    def result(self, timeout: float | None = None):
        self._pool.pump_until(self, timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None):
        self._pool.pump_until(self, timeout)
        return super().exception(0)


class PumpedPool(Pool):
    """A pool whose results are received by the threads that wait for them.

    A subclass has ``_closed`` and ``_pump_lock`` and receives, in
    ``_receive_ready(timeout)``, what has arrived within ``timeout`` seconds; its
    futures are `_PumpedFuture` of it.
    """

    _closed: bool
    _pump_lock: threading.Lock

    def pump_until(self, future: Future, timeout: float | None) -> None:
        """Receive results until ``future`` is done or ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if self._closed:  # close() resolves every future it leaves
                wait([future], remaining)
                return
            self._pump(remaining)

    def _pump(self, timeout: float | None) -> None:
        # Another thread receiving means this one has nothing to do but wait its turn,
        # briefly: that thread may receive this one's result, then wait for its own.
        if not self._pump_lock.acquire(timeout=_TURN if timeout is None else min(timeout, _TURN)):
            return
        try:
            if not self._closed:
                self._receive_ready(timeout)
        finally:
            self._pump_lock.release()

    def _receive_ready(self, timeout: float | None) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        self._pump(0)


class ProcessPool(PumpedPool):
    """Worker processes fed tasks ahead; arrays come back through shared memory.

    ``submit`` sends each task to a worker at once, up to ``prefetch`` per worker,
    with a segment leased from a `SegmentPool` (recycled once the consumer
    drops a batch's arrays). Waiting on a task's future receives the results that
    have arrived (mapping their arrays without copying), sends pending tasks to the
    workers they freed, and replaces any worker that died: its tasks fail with
    `WorkerLostError` and their segments are unlinked. Every worker, a replacement
    too, installs ``settings`` (default: this process's now) before its first task.
    """

    lazy = False
    #: A materialize callable travels to each worker once, not with every task.
    sends_once = True

    def __init__(
        self,
        workers: int,
        context: Any = None,
        *,
        prefetch: int = _PREFETCH,
        settings: Settings | None = None,
    ):
        if workers < 1 or prefetch < 1:
            raise ArgumentError(
                f"a process pool needs at least 1 worker and a prefetch of at least 1, got "
                f"{workers} and {prefetch}"
            )
        self._context = context or multiprocessing.get_context("forkserver")
        self._prefetch = prefetch
        # Every worker, a replacement too, starts with these (the manager's at start).
        self._settings = settings or current_settings()
        self._lock = threading.Lock()
        self._pump_lock = threading.Lock()  # one thread receives at a time
        self._pending: deque[int] = deque()
        self._tasks: dict[int, _Task] = {}
        self._next_id = 0
        self._closed = False
        # Free segments kept for reuse: about one per worker covers the steady state
        # (batches are dropped by the consumer and leased again at the same pace);
        # more would only hold memory, since a free segment keeps its pages.
        # Once the first batch tells their size, leased segments are sized ahead of
        # their tasks (see SegmentPool), so that the first batches are not slower.
        self._segments = SegmentPool(keep=workers + 2, prepare=True)
        self._selector = selectors.DefaultSelector()
        # close() interrupts a thread waiting for results through this pipe.
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._workers = [self._spawn() for _ in range(workers)]
        # Workers taken out by resize(): no new tasks; each ends once its tasks are back.
        self._retiring: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child, dict(os.environ), os.getpid(), user_formats(), self._settings),
            name="ondabatches-worker",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._selector.register(parent, selectors.EVENT_READ, ("result", worker))
        self._selector.register(process.sentinel, selectors.EVENT_READ, ("dead", worker))
        return worker

    def submit(self, materialize: Materialize, batch: Any, dtype: Any) -> Future:
        future = _PumpedFuture(self)
        with self._lock:
            if self._closed:
                raise BatcherError("the process pool is closed")
            task_id = self._next_id
            self._next_id += 1
            self._tasks[task_id] = _Task(future, materialize, batch, dtype)
            self._pending.append(task_id)
            self._assign()
        return future

    def settle(self) -> None:
        """Size now the segments the steady state uses (see ``SegmentPool.settle``)."""
        self._segments.settle(spare=2)

    def cancel(self, future: Future) -> None:
        # A pending task is dropped when it would be sent; a running one is
        # let finish (its arrays are read and freed as usual).
        future.cancel()

    def resize(self, workers: int) -> None:
        """Start workers, or retire the last ones: they get no new task, and end once
        they have sent back the ones they hold."""
        if workers < 1:
            raise ArgumentError(f"a process pool needs at least 1 worker, got {workers}")
        with self._lock:
            if self._closed:
                return
            while len(self._workers) < workers:
                self._workers.append(self._spawn())
            # Free segments kept for reuse: about one per worker, as at the start.
            self._segments._keep = max(self._segments._keep, workers + 2)
            while len(self._workers) > workers:
                worker = self._workers.pop()
                self._retiring.append(worker)
                if not worker.task_ids:
                    self._dismiss(worker)
            self._assign()

    def _dismiss(self, worker: _Worker) -> None:
        # Its sentinel then tells the receiving thread that it ended (see _replace).
        try:
            worker.conn.send(None)
        except OSError:  # it died meanwhile: its sentinel reports that too
            pass

    def _receive_ready(self, timeout: float | None) -> None:
        dead = []
        for key, _ in self._selector.select(timeout):
            if key.data is None:  # close() wants the lock
                return
            kind, worker = key.data
            if kind == "result":
                self._receive(worker)
            else:
                dead.append(worker)
        for worker in dead:
            self._selector.unregister(worker.conn)
            self._selector.unregister(worker.process.sentinel)
            self._replace(worker)
        with self._lock:
            self._assign()

    def _assign(self) -> None:
        # Up to `prefetch` tasks per worker: the next ones wait in the worker's pipe, so
        # a worker never idles for the round trip between a result and its next task.
        # Breadth first, so that every worker gets work before any gets a second task.
        for depth in range(self._prefetch):
            for worker in self._workers:
                if len(worker.task_ids) > depth:
                    continue
                self._send_next(worker)

    def _send_next(self, worker: _Worker) -> None:
        while self._pending:
            task_id = self._pending.popleft()
            task = self._tasks[task_id]
            if not task.future.set_running_or_notify_cancel():
                del self._tasks[task_id]
                continue
            if task.segment is None:
                task.segment = self._segments.lease()
            try:
                send_task(
                    worker.conn, worker.installed, task_id, task.segment,
                    task.materialize, task.batch, task.dtype,
                )  # fmt: skip
            except Exception as exc:  # e.g. an unpicklable batch or materializer
                del self._tasks[task_id]
                self._segments.abandon(task.segment[0])
                task.future.set_exception(exc)
                continue
            worker.task_ids.append(task_id)
            return

    def _receive(self, worker: _Worker) -> None:
        """One result from ``worker`` (the selector reports the pipe again if it has more)."""
        try:
            task_id, result = worker.conn.recv()
        except (EOFError, OSError):
            return  # the worker died; its sentinel reports it
        with self._lock:
            task = self._tasks.pop(task_id)
            worker.task_ids.remove(task_id)
            if not worker.task_ids and worker in self._retiring:
                self._dismiss(worker)
        if result[0] != "shm" and task.segment is not None:
            self._segments.abandon(task.segment[0])
        try:
            task.future.set_result(unpack_result(result, self._segments))
        except BaseException as exc:
            task.future.set_exception(exc)

    def _replace(self, dead: _Worker) -> None:
        dead.process.join()
        dead.conn.close()
        with self._lock:
            lost = [self._tasks.pop(i) for i in dead.task_ids if i in self._tasks]
            if dead in self._retiring:  # dismissed (or died while it retired)
                self._retiring.remove(dead)
                dead.process.close()
            elif not self._closed:
                self._workers[self._workers.index(dead)] = self._spawn()
        for task in lost:
            if task.segment is not None:
                self._segments.abandon(task.segment[0])
            task.future.set_exception(
                WorkerLostError(
                    f"worker process {dead.process.pid} died "
                    f"(exit code {dead.process.exitcode}) while it held a batch"
                )
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake_writer.send_bytes(b"")  # a thread waiting for results lets go
        with self._pump_lock:
            # Workers may be blocked inside a task: kill them rather than wait.
            self._workers += self._retiring
            for worker in self._workers:
                worker.process.kill()
            for worker in self._workers:
                worker.process.join()
                worker.conn.close()
                worker.process.close()
            self._selector.close()
            self._wake_reader.close()
            self._wake_writer.close()
        for task in self._tasks.values():
            if not task.future.cancel() and not task.future.done():
                task.future.set_exception(
                    WorkerLostError("the pool was closed before the batch was done")
                )
        self._tasks.clear()
        self._pending.clear()
        # Every segment name goes, leased or free; arrays the consumer holds stay valid.
        self._segments.close()
