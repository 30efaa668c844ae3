"""The raw ranged GETs of the S3 link benchmark's floor fetch exactly the bytes asked."""

from __future__ import annotations

import pytest

from benchmarks._proxy import FaultyProxy
from benchmarks._rawget import RawGetter, presigned


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_raw_getter_fetches_the_ranges_through_the_proxy(s3):
    url = s3.url("raw/a.bin")
    s3.fs.pipe_file(url, bytes(range(256)) * 64)
    batches = [[(url, 0, 100), (url, 1000, 5000)], [(url, 7, 8)], [(url, 16000, 16384)]]
    with FaultyProxy(s3.endpoint) as proxy, RawGetter(proxy.endpoint, 2, 4) as raw:
        body, seconds = raw.run(raw.prepare(batches))
        assert body == 100 + 4000 + 1 + 384
        assert seconds > 0
        assert proxy.counts.body_bytes == body
        assert proxy.counts.by_method == {"GET": 4}


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_a_short_answer_fails(s3):
    url = s3.url("raw/b.bin")
    s3.fs.pipe_file(url, b"x" * 10)
    with RawGetter(s3.endpoint, 1, 1) as raw, pytest.raises(RuntimeError, match="206"):
        raw.run([[(presigned(s3.endpoint, {url})[url], 0, 20)]])
