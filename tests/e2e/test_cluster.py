"""Beyond one machine: a Ray cluster of separate node processes on loopback, reading S3.

A head node and then a worker node are started with ``ray start`` (one CPU each); a
trainer process joins with ``ray.init(address=...)`` and takes batches from a Batcher
on the Ray backend, whose tasks read the samples and lazy labels from S3 (moto on
127.0.0.1). Throughput is measured with one node, then with two; the batches are the
same as those materialized from local disk, and tasks did run on the second node.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from benchmarks._proxy import Faults
from ondabatches.labels import write_labeled_signals
from ondabatches.materialize import materialize_batch

from .cluster import LocalCluster, cluster_env
from .pipeline import at_rate, scheme

pytestmark = [pytest.mark.s3, pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]

N_BATCHES = 20
LATENCY = 0.25  # seconds added to every S3 request: far more than the local server needs


def _reference_digest(table) -> str:
    batches = scheme(table, batch_size=16)
    state = batches.initial_state(0)
    digest = hashlib.sha256()
    for _ in range(N_BATCHES + 1):
        batch, state = batches.iterate_batch(state)
        x, y = materialize_batch(batch)
        digest.update(x.tobytes() + y.tobytes())
    return digest.hexdigest()


def _drive(cluster: LocalCluster, labeled_path, nodes_dir) -> dict:
    nodes_dir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.cluster_driver", cluster.address, str(labeled_path),
         str(N_BATCHES), str(nodes_dir)],
        env=cluster.env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["nodes"] = {p.name.split("-")[0] for p in nodes_dir.iterdir()}
    out["rate"] = out["batches"] / out["seconds"]
    return out


def test_batches_scale_across_nodes(s3_labeled_table, reference_labeled, faulty_s3, tmp_path):
    """Two workloads: bytes-bound (lpcm.zst, CPU for decompression and for the S3 server)
    and latency-bound (lpcm, every S3 request delayed by the proxy, as S3 is far away)."""
    workloads = {"lpcm.zst, no added latency": ("lpcm.zst", 0.0),
                 f"lpcm, {LATENCY * 1000:.0f} ms per request": ("lpcm", LATENCY)}  # fmt: skip
    paths, digests = {}, {}
    for name, (fmt, _) in workloads.items():
        paths[name] = tmp_path / f"{fmt}.arrow"
        write_labeled_signals(paths[name], at_rate(s3_labeled_table, fmt))
        digests[name] = _reference_digest(at_rate(reference_labeled, fmt))
    runs: dict[str, list[dict]] = {name: [] for name in workloads}
    cluster = LocalCluster(cluster_env(faulty_s3.env()))
    try:
        for n_nodes in (1, 2):
            cluster.add_node(num_cpus=1)
            for i, (name, (_, latency)) in enumerate(workloads.items()):
                faulty_s3.proxy.faults = Faults(latency=latency)
                runs[name].append(_drive(cluster, paths[name], tmp_path / f"nodes{n_nodes}-{i}"))
    finally:
        cluster.stop()
    assert cluster.leftover_processes() == []
    for name, (one, two) in runs.items():
        print(
            f"\n{name}: 1 node {one['rate']:.2f} batches/s, 2 nodes {two['rate']:.2f} "
            f"batches/s ({two['rate'] / one['rate']:.2f}x); batch = 16 x 60 s x 6 channels"
        )
        assert one["digest"] == digests[name] and two["digest"] == digests[name]
        assert (one["cpus"], two["cpus"]) == (1, 2)
        assert len(one["nodes"]) == 1 and len(two["nodes"]) == 2  # the second node did work
    # Latency-bound batches scale with nodes; the bytes-bound ones share these two cores
    # with the S3 server and the trainer, so they are only reported.
    one, two = runs[f"lpcm, {LATENCY * 1000:.0f} ms per request"]
    assert two["rate"] > 1.3 * one["rate"]
