"""A local HTTPS endpoint standing in for CloudFormation's presigned response URL.

Its certificate comes from this project's own CA code, and the Lambda's response sender is
told to trust that CA through ``DOCKER_TLS_RESPONSE_CA_BUNDLE``: the response travels over a
real TLS connection, as it does to S3.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose
from handler.cfn import RESPONSE_CA_BUNDLE_ENV
from handler.codec import certificate_pem


class Receiver:
    """Collects the bodies PUT to it, one list per URL path."""

    def __init__(self, server: ThreadingHTTPServer, ca_file: Path) -> None:
        self._server = server
        self.ca_file = ca_file  # the CA a sender must trust (its server certificate's issuer)
        self._lock = threading.Lock()
        self._bodies: dict[str, list[dict[str, Any]]] = {}
        self.status = 200  # what to answer; tests set 403 to see the sender log an error

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self) -> str:
        """A fresh presigned-looking URL; its query must never reach a log."""
        path = f"/cfn-response/{uuid.uuid4()}"
        return f"https://127.0.0.1:{self.port}{path}?X-Amz-Signature=local{uuid.uuid4().hex}"

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._bodies.setdefault(path, []).append(body)

    def responses(self, url: str) -> list[dict[str, Any]]:
        """Every body received for ``url`` (CloudFormation expects exactly one)."""
        path = url.split("//", 1)[1].split("/", 1)[1].split("?", 1)[0]
        with self._lock:
            return list(self._bodies.get("/" + path, []))


def _handler_class(receiver_ref: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver = receiver_ref[0]
            receiver.record(self.path.split("?", 1)[0], body)
            self.send_response(receiver.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the request line holds the signed query; keep it out of output

    return Handler


@contextmanager
def response_receiver() -> Iterator[Receiver]:
    """Serve HTTPS on 127.0.0.1 and make the handler's sender trust it."""
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=2, now=now)
    leaf = ca.issue(
        Purpose.SERVER,
        KeyAlgorithm.ECDSA_P256,
        validity_days=1,
        now=now,
        subject_alt_names=("127.0.0.1", "localhost"),
    )
    with tempfile.TemporaryDirectory(prefix="cfn-receiver-") as tmp:
        directory = Path(tmp)
        (directory / "ca.pem").write_bytes(certificate_pem(ca.cert))
        (directory / "cert.pem").write_bytes(leaf.cert_pem())
        (directory / "key.pem").write_bytes(leaf.key_pem())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        ref: list[Receiver] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(ref))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        receiver = Receiver(server, directory / "ca.pem")
        ref.append(receiver)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        saved = os.environ.get(RESPONSE_CA_BUNDLE_ENV)
        os.environ[RESPONSE_CA_BUNDLE_ENV] = str(directory / "ca.pem")
        try:
            yield receiver
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            if saved is None:
                os.environ.pop(RESPONSE_CA_BUNDLE_ENV, None)
            else:
                os.environ[RESPONSE_CA_BUNDLE_ENV] = saved
