"""A local S3 server (moto) for tests marked ``s3``.

Enable it with ``pytest_plugins = ["tests.s3server"]`` in ``tests/conftest.py``; tests
then take the ``s3`` fixture::

    @pytest.mark.s3
    def test_x(s3):
        url = s3.url("my/key.lpcm")           # "s3://<bucket>/<test-unique prefix>/my/key.lpcm"
        ... load(..., storage_options=s3.storage_options)

The server runs once per session on a free port of 127.0.0.1. ``s3.storage_options``
are the fsspec options for it; the session also sets ``AWS_*`` environment variables
(fake credentials, region, ``AWS_ENDPOINT_URL``) so that worker processes started by
a test reach the same server without further configuration.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

BUCKET = "ondabatches-test"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server with one bucket."""

    endpoint: str
    bucket: str
    storage_options: dict[str, Any]
    fs: Any  # s3fs.S3FileSystem
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex)

    def url(self, key: str) -> str:
        """An ``s3://`` URL under this test's own prefix."""
        return f"s3://{self.bucket}/{self.prefix}/{key.lstrip('/')}"


@pytest.fixture(scope="session")
def s3_session() -> Iterator[S3Server]:
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        # Never consult ~/.aws or the instance metadata service.
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        fs = s3fs.S3FileSystem(**options)
        fs.call_s3("create_bucket", Bucket=BUCKET)
        try:
            yield S3Server(endpoint, BUCKET, options, fs)
        finally:
            server.stop()


@pytest.fixture
def s3(s3_session: S3Server) -> S3Server:
    """The session's S3 server, with a key prefix of this test's own."""
    return S3Server(
        s3_session.endpoint, s3_session.bucket, s3_session.storage_options, s3_session.fs
    )
