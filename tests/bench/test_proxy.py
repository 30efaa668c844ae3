"""The benchmark proxy's bandwidth limit: one link shared by every connection."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from benchmarks._proxy import Faults, FaultyProxy

_BODY = 256 * 1024


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(_BODY))
        self.end_headers()
        self.wfile.write(b"x" * _BODY)


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _fetch(endpoint: str, n: int) -> int:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    got = 0
    try:
        for _ in range(n):
            conn.request("GET", "/object")
            got += len(conn.getresponse().read())
    finally:
        conn.close()
    return got


@pytest.mark.parametrize("connections", [1, 8])
def test_bandwidth_is_shared_and_accurate(upstream, connections):
    rate = 4e6  # bytes/s
    per_connection = 16 // connections  # 16 bodies of 256 KiB in all: about 1 s
    with FaultyProxy(upstream, Faults(bandwidth=rate)) as proxy:
        _fetch(proxy.endpoint, 1)  # connect once before timing
        # The proxy counts a body once it has sent its last chunk, which the client may
        # have read before that: wait for the count before resetting it.
        deadline = time.monotonic() + 5
        while proxy.counts.body_bytes < _BODY and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.reset_counts()
        t = time.perf_counter()
        with ThreadPoolExecutor(connections) as pool:
            got = sum(
                pool.map(_fetch, [proxy.endpoint] * connections, [per_connection] * connections)
            )
        seconds = time.perf_counter() - t
        assert got == 16 * _BODY == proxy.counts.body_bytes
    measured = got / seconds
    # Never faster than the link; slower only by what a loaded machine adds.
    assert 0.75 * rate <= measured <= 1.1 * rate, (measured, rate)


def test_no_limit_by_default(upstream):
    with FaultyProxy(upstream) as proxy:
        t = time.perf_counter()
        got = _fetch(proxy.endpoint, 16)
        assert got / (time.perf_counter() - t) > 2 * 4e6  # far above the limit tested above


def test_negative_bandwidth_is_refused():
    with pytest.raises(ValueError, match="bandwidth"):
        Faults(bandwidth=-1)
