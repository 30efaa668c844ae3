"""A local S3 server (moto) behind a :class:`~benchmarks._proxy.FaultyProxy`, each in a
process of its own.

In the benchmark's own process, the server and the proxy (Python threads) share its
interpreter lock with the consumer that takes batches, so on a 2-core machine they
slow each other down and the figure measures that contention as much as the link; in
one child together, moto's request handling and the proxy's pacing of the link still
take turns on one lock. :func:`s3_behind_proxy_process` runs each in a child of its own
and hands back a :class:`RemoteProxy` with the proxy's interface (``endpoint``,
``faults``, ``counts``, ``reset_counts``), each a message over a pipe. moto's ranged
GETs are made to cost their range (:func:`ranged_gets_without_whole_copies`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ondabatches._errors import require

from ._proxy import Faults, FaultyProxy, ProxyCounts

__all__ = ["RemoteProxy", "ranged_gets_without_whole_copies", "s3_behind_proxy_process"]


def ranged_gets_without_whole_copies() -> None:
    """Make moto's ranged GETs cost the range, not the object.

    moto (5.x) answers every GET, ranged or not, by reading its key's whole buffer
    into a new bytes object and then slicing it: about 23 ms of server CPU per 90 KiB
    range of a 40 MiB object here, so a benchmark measured the server's copies, not the
    link. This keeps each key's bytes (immutable) after the first read and drops them
    when the key is written again; the responses are unchanged. Call it in the server's
    process before it starts.
    """
    models = require("moto.s3.models", "test")
    plain = models.FakeKey.value
    if getattr(plain.fget, "keeps_bytes", False):
        return  # done before in this process

    def get(key: Any) -> bytes:
        kept = key.__dict__.get("_kept_value")
        if kept is None:
            kept = key.__dict__["_kept_value"] = plain.fget(key)
        return kept

    def put(key: Any, value: bytes) -> None:
        key.__dict__.pop("_kept_value", None)
        plain.fset(key, value)

    get.keeps_bytes = True  # type: ignore[attr-defined]
    models.FakeKey.value = property(get, put)


def _serve_moto(conn: Any) -> None:  # in a child: moto alone, until "stop"
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ranged_gets_without_whole_copies()
    moto_server = require("moto.server", "test")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        conn.send(f"http://{host}:{port}")
        conn.recv()
    finally:
        server.stop()
        conn.close()


def _serve_proxy(conn: Any, target: str) -> None:  # in a child: the proxy, commands until "stop"
    with FaultyProxy(target) as proxy:
        conn.send(proxy.endpoint)
        while True:
            command, arg = conn.recv()
            if command == "stop":
                break
            if command == "faults":
                proxy.faults = arg
            elif command == "reset":
                proxy.reset_counts()
            conn.send(proxy.counts if command == "counts" else proxy.faults)
    conn.close()


class RemoteProxy:
    """The proxy of a child process (see the module): the same members as FaultyProxy's
    that the benchmarks use."""

    def __init__(self, conn: Any, endpoint: str):
        self._conn, self.endpoint = conn, endpoint

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    @property
    def faults(self) -> Faults:
        return self._ask("get")

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._ask("faults", faults)

    @property
    def counts(self) -> ProxyCounts:
        return self._ask("counts")

    def reset_counts(self) -> None:
        self._ask("reset")


class _Child:
    """A spawned child process serving ``target(conn, *args)``, with its end of a pipe."""

    def __init__(self, target: Any, *args: Any):
        context = mp.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, *args), daemon=True)
        self.process.start()
        theirs.close()

    def first_message(self, what: str) -> Any:
        if not self.conn.poll(120):
            raise TimeoutError(f"the {what} process did not start within 120 s")
        return self.conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("stop", None))
            except OSError:
                pass
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.conn.close()


@contextmanager
def s3_behind_proxy_process() -> Iterator[tuple[RemoteProxy, str]]:
    """Like :func:`benchmarks.s3.s3_behind_proxy`, with the server and the proxy each
    in a child process of its own (each has its own interpreter lock): ``(proxy,
    tmp)``, the AWS variables pointing at the proxy. The children are stopped and
    joined, and the environment restored, on the way out."""
    from .s3 import _fake_aws_env

    s3fs = require("s3fs", "s3")
    saved_env = dict(os.environ)
    children: list[_Child] = []
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        children.append(_Child(_serve_moto))
        target = children[0].first_message("S3 server")
        children.append(_Child(_serve_proxy, target))
        proxy = RemoteProxy(children[1].conn, children[1].first_message("proxy"))
        with tempfile.TemporaryDirectory() as tmp:
            _fake_aws_env(proxy.endpoint)
            yield proxy, tmp
    finally:
        for child in reversed(children):
            child.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.clear()
        os.environ.update(saved_env)
