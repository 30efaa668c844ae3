"""The trainer of the multi-node test: joins the cluster, takes batches, prints JSON.

``python -m tests.e2e.cluster_driver ADDRESS LABELED_ARROW N_BATCHES NODES_DIR`` runs a
Batcher with the Ray backend over the labeled table (whose files are on S3), checks
nothing itself, and prints ``{"seconds": ..., "batches": ..., "digest": ...}``; each
batch task records the node it ran on as a file in NODES_DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import ray

from ondabatches import Batcher
from ondabatches.abc import Materializer
from ondabatches.labels import read_labeled_signals
from ondabatches.materialize import materialize_batch
from ondabatches.onda import storage_env

from .pipeline import Finite, scheme

ROOT = Path(__file__).resolve().parents[2]


class RecordNode(Materializer):
    """``materialize_batch``, noting in a folder which node and process ran it."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, batch, dtype):
        node = ray.get_runtime_context().get_node_id()
        Path(self.folder, f"{node}-{os.getpid()}").touch()
        return materialize_batch(batch, dtype)


def main(address: str, labeled_path: str, n_batches: int, nodes_dir: str) -> None:
    env = {**storage_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    ray.init(address=address, runtime_env={"env_vars": env}, logging_level="ERROR")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    batches = scheme(read_labeled_signals(labeled_path), batch_size=16)
    state = batches.initial_state(0)
    digest = hashlib.sha256()
    with Batcher(Finite(batches, n_batches + 1), backend="ray", workers=cpus,
                 buffer=4 * cpus, materialize=RecordNode(nodes_dir)) as batcher:  # fmt: skip
        batcher.start(state)
        (x, y), state = batcher.take(state)  # warm-up: workers start, caches fill
        digest.update(x.tobytes() + y.tobytes())
        t = time.perf_counter()
        for _ in range(n_batches):
            (x, y), state = batcher.take(state)
            digest.update(x.tobytes() + y.tobytes())
        seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "batches": n_batches, "cpus": cpus,
                      "digest": digest.hexdigest()}))  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
