"""A faulty S3 endpoint for tests: a :class:`FaultyProxy` in front of the moto server.

Enable with ``pytest_plugins = ["tests.faults"]`` (after ``tests.s3server``); tests then
take ``faulty_s3``, which routes every S3 client of the test, in this process and in
worker processes started during the test, through the proxy::

    def test_x(faulty_s3):
        faulty_s3.proxy.faults = Faults(error_rate=0.05, seed=1)
        ...
        assert faulty_s3.proxy.counts.failed > 0

Client settings under the proxy are short (1 s connect and read timeouts, botocore's
standard retries, 5 attempts) so that a hanging request costs a second, not the
production default of 30.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from benchmarks._proxy import Faults, FaultyProxy
from tests.s3server import S3Server

#: botocore settings of clients that go through the proxy.
TEST_CONFIG = {
    "connect_timeout": 1,
    "read_timeout": 1,
    "retries": {"mode": "standard", "max_attempts": 5},
}


@dataclass(frozen=True)
class FaultyS3:
    """The session's S3 server seen through a faulty proxy."""

    s3: S3Server
    proxy: FaultyProxy

    @property
    def storage_options(self) -> dict:
        return {
            **self.s3.storage_options,
            "client_kwargs": {
                **self.s3.storage_options["client_kwargs"],
                "endpoint_url": self.proxy.endpoint,
            },
            "config_kwargs": TEST_CONFIG,
        }

    def env(self) -> dict[str, str]:
        """Environment variables that send every S3 client through the proxy."""
        return {
            "AWS_ENDPOINT_URL": self.proxy.endpoint,
            "FSSPEC_S3": json.dumps(self.storage_options, sort_keys=True),
        }


@pytest.fixture(scope="session")
def faulty_proxy(s3_session: S3Server) -> Iterator[FaultyProxy]:
    with FaultyProxy(s3_session.endpoint) as proxy:
        yield proxy


@pytest.fixture
def faulty_s3(
    s3: S3Server, faulty_proxy: FaultyProxy, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultyS3]:
    """S3 through the proxy for this test; no faults and zero counts at the start."""
    faulty = FaultyS3(s3, faulty_proxy)
    for name, value in faulty.env().items():
        monkeypatch.setenv(name, value)
    faulty_proxy.faults = Faults()
    faulty_proxy.reset_counts()
    yield faulty
    faulty_proxy.faults = Faults()
