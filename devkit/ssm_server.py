"""An SSM endpoint on 127.0.0.1 (moto's server in a thread), reached over real HTTP, under
SSM's rules that moto lacks (:mod:`devkit.ssm_rules`)."""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from devkit import ssm_rules
from devkit.loopback import free_port

DEFAULT_REGION = "us-east-1"
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": DEFAULT_REGION,
    "AWS_REGION": DEFAULT_REGION,
}


class LocalSsm:
    """A running local SSM endpoint; ``endpoint`` is its URL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        """Forget every parameter (moto's reset API)."""
        url = f"{self.endpoint}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 (loopback http)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            response.read()


@contextmanager
def local_ssm() -> Iterator[LocalSsm]:
    """Start the endpoint and point boto3 at it (``AWS_ENDPOINT_URL_SSM``, fake credentials);
    the previous environment is restored on exit."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ssm_rules.install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {key: os.environ.get(key) for key in (*_ENV, "AWS_ENDPOINT_URL_SSM")}
    os.environ.update(_ENV)
    os.environ["AWS_ENDPOINT_URL_SSM"] = f"http://127.0.0.1:{port}"
    try:
        yield LocalSsm(port)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def ssm_endpoint() -> Iterator[tuple[str, bool]]:
    """The SSM endpoint ``AWS_ENDPOINT_URL_SSM`` names (the lasting local one, or any other:
    its contents are kept), else an embedded one gone at exit. Yields (URL, whether it lasts)."""
    configured = os.environ.get("AWS_ENDPOINT_URL_SSM")
    if configured:
        yield configured, True
        return
    with local_ssm() as endpoint:
        yield endpoint.endpoint, False
