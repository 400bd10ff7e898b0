"""The embedded AWS: moto's server in this process on 127.0.0.1, with the compatibility patches.

Real boto3 code paths point at `endpoint_url`; nothing else knows it is moto. Typical use:

    with EmbeddedAws() as aws:
        sagemaker = aws.client("sagemaker")          # dummy credentials, right region
        build_controller(config, endpoint_url=aws.endpoint_url, ...)

With `export_env=True` the context also sets AWS_ENDPOINT_URL and dummy credentials in
os.environ (restored on exit), so code that builds its own clients lands here too.

For tests: `embedded_aws()` (a server, for code that takes an endpoint URL) and
`patched_mock_aws()` (in-process mock_aws with the patches, no HTTP) are context managers to
wrap in a pytest fixture; tests/toolkit/local/conftest.py shows both.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from toolkit.local import compat

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
ACCOUNT_ID = "123456789012"  # moto's default account


class EmbeddedAws:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port, patched by toolkit.local.compat."""

    def __init__(self, region: str = "us-east-1", *, async_updates: bool = False, export_env: bool = False,
                 reset: bool = True, port: int = 0) -> None:
        self.region = region
        self.port = port
        self.async_updates = async_updates
        self.export_env = export_env
        self.reset = reset
        self.endpoint_url = ""
        self.account_id = ACCOUNT_ID
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> EmbeddedAws:
        compat.apply()
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO: thousands of lines in a demo.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Port 0 (the default): the OS picks a free port, so parallel test workers never collide.
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        if self.reset:  # one process shares moto's backends: start from an empty account
            request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
            with urllib.request.urlopen(request, timeout=10):
                pass
        compat.set_async_updates(self.async_updates)
        if self.export_env:
            values = {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url,
                      "AWS_DEFAULT_REGION": self.region, "AWS_EC2_METADATA_DISABLED": "true"}
            for key, value in values.items():
                self._saved_env[key] = os.environ.get(key)
                os.environ[key] = value
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        compat.set_async_updates(False)
        if self._server is not None:
            self._server.stop()
            self._server = None

    def hold_updates(self, enabled: bool) -> None:
        """Endpoint updates stay `Updating` until settle_endpoint() (as on AWS, where they take minutes)."""
        self.async_updates = enabled
        compat.set_async_updates(enabled)

    def settle_endpoint(self, endpoint_name: str, counts: dict[str, int] | None = None) -> bool:
        """The simulated fleet finished the pending update (Current* := Desired*, InService)."""
        return compat.settle_endpoint(endpoint_name, counts)

    def session(self) -> Any:
        import boto3

        return boto3.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        """A boto3 client for this embedded AWS (dummy credentials, this region, this endpoint)."""
        return self.session().client(service, endpoint_url=self.endpoint_url)


@contextmanager
def embedded_aws(region: str = "us-east-1", **kwargs: Any) -> Iterator[EmbeddedAws]:
    """`with embedded_aws() as aws:`; wrap in a pytest fixture (yield inside the with)."""
    with EmbeddedAws(region, **kwargs) as aws:
        yield aws


@contextmanager
def patched_mock_aws() -> Iterator[None]:
    """moto's in-process mock_aws with the compatibility patches (unit tests without a server)."""
    compat.apply()
    from moto import mock_aws

    saved = {key: os.environ.get(key) for key in DUMMY_CREDENTIALS}
    os.environ.update(DUMMY_CREDENTIALS)
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
