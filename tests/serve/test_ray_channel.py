"""The Ray actors' channel cannot be blocked by another local connection."""

from __future__ import annotations

import multiprocessing.connection
import os
import socket
import stat
import threading

import pytest

from ondabatches.serve import _ray
from ondabatches.serve._ray import RayPool, _RayWorker

from .test_ray import _run_batches

pytestmark = pytest.mark.timeout(60)


def _silent(address):
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(address)
    return peer


def test_the_channel_is_a_socket_in_a_folder_only_its_user_can_enter():
    worker = _RayWorker()
    address = worker.listen(b"k" * 32, timeout=0.2)
    folder = os.path.dirname(address)
    assert not address.startswith("\0")  # not an abstract name listed in /proc/net/unix
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(address).st_mode)
    worker.serve()  # nobody connects: it gives up at the deadline, and cleans up
    assert not os.path.exists(folder)


def test_a_silent_or_wrong_peer_first_does_not_keep_the_pool_out():
    key = os.urandom(32)
    worker = _RayWorker()
    address = worker.listen(key, timeout=30, handshake=0.5)
    server = threading.Thread(target=worker.serve)
    server.start()
    silent = _silent(address)  # first in line, never says a word
    with pytest.raises(multiprocessing.AuthenticationError):
        multiprocessing.connection.Client(address, family="AF_UNIX", authkey=b"wrong" * 8)
    conn = multiprocessing.connection.Client(address, family="AF_UNIX", authkey=key)
    conn.send(None)  # serve_tasks: stop
    server.join(10)
    assert not server.is_alive()
    conn.close()
    silent.settimeout(5)
    while silent.recv(4096):  # the challenge it never answered, then the end:
        pass  # it was dropped at its deadline
    silent.close()


@pytest.mark.ray
def test_the_pool_gets_its_batches_when_another_connection_arrives_first(
    ray_session, monkeypatch, no_leaks
):
    monkeypatch.setattr(_ray, "_HANDSHAKE_SECONDS", 1.0)
    silent = []
    real = RayPool._open_channels

    def squatter_first(self):
        # Another local process connects to each actor's channel first and stays silent.
        silent.extend(_silent(address) for _, _, address in list(self._connect))
        real(self)

    monkeypatch.setattr(RayPool, "_open_channels", squatter_first)
    pool = RayPool(workers=1)
    try:
        _run_batches(pool, 4, writeable=True)
        assert silent and pool._channels  # the channel, not the Ray-call fallback
    finally:
        pool.close()
        for peer in silent:
            peer.close()
