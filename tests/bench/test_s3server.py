"""The S3 link benchmark's server: moto and the proxy in processes of their own, and
moto's ranged GETs made to cost the range."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from benchmarks._proxy import Faults


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_kept_bytes_answer_ranges_and_follow_rewrites():
    from moto.s3.models import FakeKey

    from benchmarks._s3server import ranged_gets_without_whole_copies

    plain = FakeKey.value
    try:
        ranged_gets_without_whole_copies()
        ranged_gets_without_whole_copies()  # twice: wraps once
        assert FakeKey.value.fget.keeps_bytes
        assert FakeKey.value.fget is not plain.fget
        key = FakeKey("k", b"abcdef", account_id="123456789012", region_name="us-east-1")
        assert key.value == b"abcdef"
        assert key.value is key.value  # kept: no copy per read
        key.value = b"xyz"
        assert key.value == b"xyz"  # a rewrite drops what was kept
        key.dispose()
    finally:
        FakeKey.value = plain


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_server_and_proxy_processes_serve_ranges_and_stop():
    from benchmarks._s3server import s3_behind_proxy_process
    from ondabatches.onda import filesystem_for, set_storage_options

    before = set(mp.active_children())
    saved = dict(os.environ)
    with s3_behind_proxy_process() as (proxy, _tmp):
        assert len(set(mp.active_children()) - before) == 2  # moto, proxy
        set_storage_options("s3", client_kwargs={"endpoint_url": proxy.endpoint})
        try:
            fs, _ = filesystem_for("s3://ondabatches-test-s3server/")
            fs.makedirs("ondabatches-test-s3server", exist_ok=True)
            data = bytes(range(256)) * 1024
            fs.pipe_file("s3://ondabatches-test-s3server/a.bin", data)
            proxy.faults = Faults(latency=0.001, bandwidth=50e6)
            assert proxy.faults.latency == 0.001
            proxy.reset_counts()
            got = fs.cat_file("s3://ondabatches-test-s3server/a.bin", start=1000, end=70000)
            assert got == data[1000:70000]
            assert proxy.counts.body_bytes == 69000
        finally:
            set_storage_options("s3")
    assert set(mp.active_children()) - before == set()
    assert dict(os.environ) == saved
