"""A local S3 server (moto) behind a :class:`~benchmarks._proxy.FaultyProxy`, in a process
of its own.

In the benchmark's own process, the server and the proxy (Python threads) share its
interpreter lock with the consumer that takes batches, so on a 2-core machine they
slow each other down and the figure measures that contention as much as the link.
:func:`s3_behind_proxy_process` runs both in a child process instead and hands back a
:class:`RemoteProxy` with the proxy's interface (``endpoint``, ``faults``, ``counts``,
``reset_counts``), each a message over a pipe.
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

__all__ = ["RemoteProxy", "s3_behind_proxy_process"]


def _serve(conn: Any) -> None:  # in the child: moto, the proxy, then commands until "stop"
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_server = require("moto.server", "test")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with FaultyProxy(f"http://{host}:{port}") as proxy:
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
    finally:
        server.stop()
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


@contextmanager
def s3_behind_proxy_process() -> Iterator[tuple[RemoteProxy, str]]:
    """Like :func:`benchmarks.s3.s3_behind_proxy`, with the server and the proxy in a
    child process: ``(proxy, tmp)``, the AWS variables pointing at the proxy. The child
    is stopped and joined, and the environment restored, on the way out."""
    from .s3 import _fake_aws_env

    s3fs = require("s3fs", "s3")
    saved_env = dict(os.environ)
    ours, theirs = mp.get_context("spawn").Pipe()
    child = mp.get_context("spawn").Process(target=_serve, args=(theirs,), daemon=True)
    child.start()
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        if not ours.poll(120):
            raise TimeoutError("the S3 server process did not start within 120 s")
        proxy = RemoteProxy(ours, ours.recv())
        with tempfile.TemporaryDirectory() as tmp:
            _fake_aws_env(proxy.endpoint)
            yield proxy, tmp
    finally:
        if child.is_alive():
            try:
                ours.send(("stop", None))
            except OSError:
                pass
            child.join(30)
            if child.is_alive():
                child.kill()
                child.join()
        ours.close()
        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.clear()
        os.environ.update(saved_env)
