"""A faulty HTTP proxy on loopback, in front of an S3 endpoint, for fault and latency tests.

:class:`FaultyProxy` forwards every request to the real endpoint (a moto server, say)
and, on the way, adds latency and injects faults at the rates of its :class:`Faults`:
HTTP 500/503 answers, connections reset before the answer, answers cut mid-body, and
requests that hang without an answer. Which request gets a fault comes from a seeded
random generator. It counts requests, faults and the bytes it sends back, so tests and
benchmarks can check what reached the wire.

Point a client at it like at any S3 endpoint (``AWS_ENDPOINT_URL`` or
``client_kwargs={"endpoint_url": proxy.endpoint}``); it keeps connections alive as
S3 does, so latency is paid per request, not per connection.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["Faults", "FaultyProxy", "ProxyCounts"]

# Hop-by-hop headers: they describe one connection, not the message.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>injected by FaultyProxy</Message><RequestId>faulty</RequestId></Error>"
)


@dataclass(frozen=True, slots=True)
class Faults:
    """What the proxy does to requests.

    Parameters
    ----------
    latency:
        Seconds added before each request is answered.
    error_rate, reset_rate, cut_rate, hang_rate:
        Fractions of eligible requests answered with HTTP 500 or 503 (alternately),
        reset (TCP RST) before any answer, answered with headers and half the body
        then reset, or left without an answer for ``hang_seconds`` then reset.
    hang_first:
        The first this-many eligible requests hang, whatever the rates.
    methods:
        The HTTP methods of eligible requests (latency applies to all).
    path_contains:
        Only requests whose path contains this string are eligible ("" for all).
    seed:
        Seed of the generator that picks the faulty requests.
    hang_seconds:
        How long a hanging request hangs (it ends early when the proxy stops).
    bandwidth:
        Bytes per second of the link, shared by every connection (0: unlimited). It
        paces response bodies as they are sent, in chunks, so that all the bodies in
        flight together never go faster than this.

    Examples
    --------
    >>> Faults(error_rate=0.1).draws_faults
    True
    """

    latency: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    cut_rate: float = 0.0
    hang_rate: float = 0.0
    hang_first: int = 0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    path_contains: str = ""
    seed: int = 0
    hang_seconds: float = 60.0
    bandwidth: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.reset_rate, self.cut_rate, self.hang_rate)
        if min(rates) < 0 or sum(rates) > 1 or self.latency < 0 or self.bandwidth < 0:
            raise ValueError(
                f"fault rates must be >= 0 and sum to <= 1, latency and bandwidth >= 0: {self}"
            )

    @property
    def draws_faults(self) -> bool:
        return self.hang_first > 0 or any(
            (self.error_rate, self.reset_rate, self.cut_rate, self.hang_rate)
        )


@dataclass(slots=True)
class ProxyCounts:
    """What the proxy saw since it started or was last reset."""

    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0  # status lines, headers and bodies sent back to clients
    body_bytes: int = 0  # response bodies only

    @property
    def failed(self) -> int:
        return sum(self.faults.values())

    def copy(self) -> ProxyCounts:
        return replace(self, by_method=dict(self.by_method), faults=dict(self.faults))


#: Bytes of a response body sent per turn on a bandwidth-limited link: 3.3 ms of a 20 MB/s
#: link. Each turn costs the proxy a wake-up; at 16 KiB its own pacing slowed the link.
_CHUNK = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a batch opens dozens of connections at once
    proxy: FaultyProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per request otherwise

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, OSError, ValueError):
            self.close_connection = True  # the client went away, or we reset it

    def finish(self) -> None:
        try:
            super().finish()
        except (ConnectionError, OSError, ValueError):
            pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: a "connection reset by peer".
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
              *, body_limit: int | None = None) -> None:  # fmt: skip
        head = [f"HTTP/1.1 {status} {reason}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers]
        head.append("\r\n")
        raw_head = "".join(head).encode("latin-1")
        sent_body = body if body_limit is None else body[:body_limit]
        rate = self.server.proxy.faults.bandwidth
        if not rate:
            self.wfile.write(raw_head + sent_body)
        else:
            self.wfile.write(raw_head)
            view = memoryview(sent_body)
            for start in range(0, len(view), _CHUNK):
                chunk = view[start : start + _CHUNK]
                self.server.proxy._pace(len(chunk), rate)
                self.wfile.write(chunk)
        self.wfile.flush()
        self.server.proxy._count_sent(len(raw_head) + len(sent_body), len(sent_body))

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        fault, faults = proxy._draw(self.command, self.path)
        if faults.latency:
            time.sleep(faults.latency)
        if fault == "hang":
            proxy._stopping.wait(faults.hang_seconds)
            self._reset()
            return
        if fault == "reset":
            self._reset()
            return
        if fault in ("500", "503"):
            code = "InternalError" if fault == "500" else "ServiceUnavailable"
            data = _ERROR_BODY.format(code=code).encode()
            headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(data)))]
            reason = "Internal Server Error" if fault == "500" else "Service Unavailable"
            self._send(int(fault), reason, headers, b"" if self.command == "HEAD" else data)
            return
        status, reason, headers, data = proxy._forward(self.command, self.path, self.headers, body)
        if fault == "cut" and len(data) > 1:
            self._send(status, reason, headers, data, body_limit=len(data) // 2)
            self._reset()
            return
        self._send(status, reason, headers, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815


class FaultyProxy:
    """An HTTP proxy on ``127.0.0.1`` that forwards to ``upstream`` and injects faults.

    Use as a context manager, or call :meth:`stop`. :attr:`faults` may be replaced at
    any time (the generator restarts from the new seed); :meth:`reset_counts` zeroes
    the counters.

    Examples
    --------
    >>> with FaultyProxy("http://127.0.0.1:5000", Faults(latency=0.02)) as proxy:  # doctest: +SKIP
    ...     fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": proxy.endpoint})
    ...     fs.cat_file("bucket/key", start=0, end=10)
    ...     proxy.counts.requests
    1
    """

    def __init__(self, upstream: str, faults: Faults | None = None):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream
        self._upstream_address = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._local = threading.local()
        self._upstream_conns: list[http.client.HTTPConnection] = []  # closed by stop()
        self.faults = faults or Faults()
        self._counts = ProxyCounts()
        self._link_free_at = 0.0  # perf_counter time the link has sent all it was given
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="faulty-proxy", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._hangs_left = faults.hang_first

    @property
    def counts(self) -> ProxyCounts:
        """A snapshot of the counters."""
        with self._lock:
            return self._counts.copy()

    def reset_counts(self) -> None:
        with self._lock:
            self._counts = ProxyCounts()

    def _draw(self, method: str, path: str) -> tuple[str | None, Faults]:
        with self._lock:
            faults = self._faults
            counts = self._counts
            counts.requests += 1
            counts.by_method[method] = counts.by_method.get(method, 0) + 1
            fault = None
            if method in faults.methods and faults.path_contains in path:
                if self._hangs_left > 0:
                    self._hangs_left -= 1
                    fault = "hang"
                elif faults.draws_faults:
                    fault = self._pick(faults)
            if fault is not None:
                counts.faults[fault] = counts.faults.get(fault, 0) + 1
            return fault, faults

    def _pick(self, faults: Faults) -> str | None:
        u = self._rng.random()
        for name, rate in (
            ("error", faults.error_rate),
            ("reset", faults.reset_rate),
            ("cut", faults.cut_rate),
            ("hang", faults.hang_rate),
        ):
            if u < rate:
                if name == "error":
                    return self._rng.choice(("500", "503"))
                return name
            u -= rate
        return None

    def _pace(self, n: int, rate: float) -> None:
        """Wait for ``n`` bytes' turn on the shared link of ``rate`` bytes/s.

        The link is one queue: each chunk reserves the next ``n / rate`` seconds after
        the chunks reserved before it, whichever connection sent them, and is sent when
        its slot ends. An idle link earns no credit, so no burst exceeds the rate.
        """
        with self._lock:
            start = max(time.perf_counter(), self._link_free_at)
            self._link_free_at = end = start + n / rate
        delay = end - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def _count_sent(self, total: int, body: int) -> None:
        with self._lock:
            self._counts.bytes_sent += total
            self._counts.body_bytes += body

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self._upstream_address, timeout=60)
            self._local.conn = conn
            with self._lock:
                self._upstream_conns.append(conn)
        return conn

    def _forward(self, method: str, path: str, headers, body: bytes):
        """Send the request upstream; ``(status, reason, headers, body)`` of the answer."""
        for attempt in (0, 1):  # a kept-alive upstream connection may have been closed
            conn = self._connection()
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        if method != "HEAD":
            out = [(k, v) for k, v in out if k.lower() != "content-length"]
            out.append(("Content-Length", str(len(data))))
        return response.status, response.reason, out, data

    def stop(self) -> None:
        """Stop serving; hanging requests end at once."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        with self._lock:
            conns, self._upstream_conns = self._upstream_conns, []
        for conn in conns:
            conn.close()

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
