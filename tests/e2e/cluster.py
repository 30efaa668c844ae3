"""A multi-node Ray cluster on loopback: a head and worker nodes, each its own ``ray start``.

Each node is one ``ray start --block`` process started in a session of its own, so that
stopping the cluster ends exactly the processes it started (the node's GCS, raylet,
agents and workers all stay in that session), never other Ray instances of the machine
as ``ray stop`` would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the nodes and drivers: no token auth, no usage stats, on loopback."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        **(extra or {}),
    }


def _session_processes(sids: set[int]) -> list[int]:
    """Live (not zombie) processes whose session is one of ``sids``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, sid = fields[0], int(fields[3])
        if sid in sids and state != "Z":
            pids.append(int(entry))
    return pids


class LocalCluster:
    """Start with :meth:`add_node`; :meth:`stop` (or leaving the ``with`` block) ends all."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.temp_dir = tempfile.mkdtemp(prefix="obray")  # short: Ray's socket paths are limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def add_node(self, num_cpus: int = 1, timeout: float = 60.0) -> None:
        """Start the head (first call) or a worker node, and wait until the cluster has it."""
        common = [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            "--object-store-memory=100000000",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            "--block",
        ]
        if not self.nodes:
            args = [RAY, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                    f"--ray-client-server-port={free_port()}", "--disable-usage-stats",
                    f"--temp-dir={self.temp_dir}", *common]  # fmt: skip
        else:
            args = [RAY, "start", f"--address={self.address}", *common]
        log = open(os.path.join(self.temp_dir, f"node{len(self.nodes)}.log"), "wb")
        with log:
            node = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.nodes.append(node)
        self._wait_for_nodes(len(self.nodes), timeout)

    def _wait_for_nodes(self, n: int, timeout: float) -> None:
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        deadline = time.monotonic() + timeout
        while True:
            dead = [node.args for node in self.nodes if node.poll() is not None]
            if dead:
                raise RuntimeError(f"ray start exited: {dead}; logs in {self.temp_dir}")
            result = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                                    capture_output=True, text=True, timeout=timeout)  # fmt: skip
            if result.returncode == 0 and int(result.stdout.split()[-1]) >= n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not reach {n} nodes: {result.stderr[-2000:]}")
            time.sleep(0.5)

    def leftover_processes(self) -> list[int]:
        return _session_processes({node.pid for node in self.nodes})

    def stop(self) -> None:
        """Stop every node: SIGTERM first (Ray shuts its processes down), then SIGKILL."""
        for node in reversed(self.nodes):
            _signal_group(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(50):
            left = self.leftover_processes()
            if not left:
                break
            for node in self.nodes:
                _signal_group(node.pid, signal.SIGKILL)
            for pid in left:  # a process that left the group, still in the session
                _kill(pid)
            time.sleep(0.1)
        for node in self.nodes:
            node.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
