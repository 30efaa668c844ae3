"""The worker actor of the Ray pool: `_RayWorker`, and its local channel.

An actor on the trainer's node listens on a Unix socket (`_RayWorker.listen`), admits the
pool's connection after an authentication handshake (`_authenticated`), and then serves
batches over it as a worker process does (`serve_tasks`), through shared memory; an actor
on another node runs batches in Ray calls (`_RayWorker.run`), with the materializer
shipped once per actor (`_Shipped`).
"""

from __future__ import annotations

import multiprocessing.connection
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..onda._formats import install_formats
from ..onda._settings import Settings, use_settings
from ._processes import serve_tasks
from ._shm import segment_exists
from ._tasks import Materialize, run_task

__all__: list[str] = []


#: Seconds an actor waits for the pool to connect to its channel before giving up (it
#: then takes Ray calls).
_ACCEPT_SECONDS = 10.0

#: Seconds a connection to an actor's channel has to prove the key before it is dropped
#: (another connection may be waiting behind it: the pool's).
_HANDSHAKE_SECONDS = 5.0

# AF_UNIX socket paths hold at most 107 bytes on Linux (103 on macOS).
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class _Shipped:
    """A materialize callable put in the object store once; calls pass this small handle.

    The reference sits in a list so that Ray passes it as is rather than resolving it
    for every call.
    """

    key: str
    refs: list


class _RayWorker:
    """The body of one worker actor: batches one after the other, as a worker process does.

    An actor on the pool's node serves a channel (``listen`` then ``serve``); others
    get their batches through Ray calls (``run``).
    """

    def __init__(
        self, formats: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> None:
        self._callables: dict[str, Materialize] = {}
        self._listening: tuple[socket.socket, bytes] | None = None
        # The pool's settings (Ray passes the same ones again when it restarts the actor).
        use_settings(settings)
        install_formats(formats)  # the pool's process's plug-in formats

    def where(self, probe: str | None) -> tuple[bool, int]:
        """Whether this actor shares the pool's machine (it sees the shared-memory
        segment ``probe``), and its process id."""
        return probe is not None and segment_exists(probe), os.getpid()

    def listen(
        self,
        authkey: bytes,
        timeout: float = _ACCEPT_SECONDS,
        handshake: float = _HANDSHAKE_SECONDS,
    ) -> str:
        """Open a local socket for the pool's channel; its address.

        The socket is a file in a new folder that only this user can enter (0700), not
        an abstract name that any local user can see in ``/proc/net/unix`` and connect to.
        """
        folder = tempfile.mkdtemp(prefix="ondabatches-")  # mode 0700
        address = os.path.join(folder, "channel")
        if len(address) > _MAX_SOCKET_PATH:  # a long TMPDIR: AF_UNIX paths are short
            shutil.rmtree(folder, ignore_errors=True)
            folder = tempfile.mkdtemp(prefix="ondabatches-", dir="/tmp")
            address = os.path.join(folder, "channel")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(8)
        self._listening = (listener, authkey, time.monotonic() + timeout, handshake)
        return address

    def serve(self) -> None:
        """Run the tasks that the pool sends over its channel until it closes the channel.

        Connections are accepted one after the other until one proves the key within
        ``handshake`` seconds: a peer that connects first and stays silent (or fails the
        handshake) is dropped at its deadline, and the pool's connection, queued behind
        it, is served next. Returns if none succeeds within the ``timeout`` given to
        `listen` (the pool then sends Ray calls instead).
        """
        assert self._listening is not None, "listen() comes first"
        (listener, authkey, deadline, handshake), self._listening = self._listening, None
        try:
            conn = None
            while conn is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                listener.settimeout(remaining)
                try:
                    accepted, _ = listener.accept()
                except TimeoutError:
                    return
                conn = _authenticated(accepted, authkey, min(handshake, max(remaining, 0.1)))
        finally:
            address = listener.getsockname()
            listener.close()
            shutil.rmtree(os.path.dirname(address), ignore_errors=True)
        with conn:
            serve_tasks(conn)

    def run(self, shipped: _Shipped, tasks: list[tuple[Any, Any, tuple[str, int] | None]]):
        """Run ``(batch, dtype, segment)`` tasks one after the other.

        Returns their results, in order, and the seconds they took.
        """
        materialize = self._callables.get(shipped.key)
        if materialize is None:  # first use, or this actor was restarted
            import ray

            materialize = self._callables[shipped.key] = ray.get(shipped.refs[0])
        started = time.perf_counter()
        results = [run_task(materialize, batch, dtype, segment) for batch, dtype, segment in tasks]
        return results, time.perf_counter() - started


def _authenticated(
    accepted: socket.socket, authkey: bytes, seconds: float
) -> multiprocessing.connection.Connection | None:
    """The connection, once the peer has proven ``authkey`` within ``seconds``; else
    None (the socket is closed)."""
    accepted.settimeout(None)
    if hasattr(socket, "SO_PEERCRED"):  # Linux: only this user (or root) may be the pool
        creds = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] not in (os.getuid(), 0):
            accepted.close()
            return None
    conn = multiprocessing.connection.Connection(os.dup(accepted.fileno()))
    lock = threading.Lock()
    state = {"done": False}

    def expire() -> None:
        # Shutting the socket down ends a read that waits for a silent (or slow) peer.
        with lock:
            if not state["done"]:
                state["done"] = True
                accepted.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        # The handshake of multiprocessing's Listener: each side proves the key.
        multiprocessing.connection.deliver_challenge(conn, authkey)
        multiprocessing.connection.answer_challenge(conn, authkey)
        with lock:
            ok, state["done"] = not state["done"], True
    except (OSError, EOFError, multiprocessing.AuthenticationError):
        ok = False
    finally:
        timer.cancel()
        accepted.close()  # the connection holds its own descriptor
    if not ok:
        conn.close()
        return None
    return conn
