"""Reliability: a whole lifecycle with every logger at DEBUG leaks nothing.

SSM over real HTTP (moto's server; botocore at DEBUG logs every request and response body,
SecureString values included) and the responses over real HTTPS to a local receiver. Afterwards
no log record (caplog's records, their extra fields and tracebacks), no line the JSON handler
wrote, nothing on stdout/stderr, and no generator response may hold a private key (PEM, its
base64, or any 48-character piece of either), a SecureString value, the session token, a SigV4
signature or the ResponseURL's signed query.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.events import LambdaContext, event
from devkit.receiver import Receiver, response_receiver
from handler import app, logs
from handler.names import BundleNames
from handler.store import ParameterStore
from tests.reliability_support import Record, figure, http_client, shared_ssm

RACK = "secrets"
NAMES = BundleNames.for_rack(RACK)
HEX = NAMES.prefix
BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENthatMustNeverBeLogged0123456789"
LOGGERS = ["", "botocore", "boto3", "urllib3", "handler", "s3transfer"]


@pytest.fixture
def lifecycle_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, Any]]:
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    endpoint = shared_ssm()
    endpoint.reset()
    with response_receiver() as receiver:
        client = http_client(endpoint)  # production config; botocore logs at DEBUG
        monkeypatch.setattr(app, "store", ParameterStore(client))
        yield receiver, client


def _forms(value: str) -> tuple[str, list[str]]:
    """A stored value's encodings: itself and its PEM body; and the PEM's lines."""
    pem = base64.b64decode(value).decode()
    lines = pem.splitlines()
    return value, ["".join(line for line in lines if not line.startswith("-----")), *lines]


def _secrets(client: Any) -> set[str]:
    """Every secret value stored now, and pieces of it that would still be a leak.

    A private key's encoding also holds its public key (SEC1 and PKCS#1 carry it), which the
    certificates hold too: a piece that also occurs in a stored certificate is public, and
    finding it in a response is no leak (an ECDSA CA's response matched one such piece in
    about one run of a hundred)."""
    found = client.get_parameters(Names=list(NAMES.material), WithDecryption=True)["Parameters"]
    public = [
        form
        for p in found
        if not NAMES.is_key(p["Name"])
        for form in (_forms(p["Value"])[0], *_forms(p["Value"])[1])
    ]
    pieces: set[str] = set()
    for parameter in found:
        if not NAMES.is_key(parameter["Name"]):
            continue
        value, (body, *lines) = _forms(parameter["Value"])
        for text in (value, body):
            pieces.add(text)
            pieces.update(text[i : i + 48] for i in range(0, max(len(text) - 48, 1), 24))
        pieces.update(line for line in lines if len(line) >= 40)
    return {piece for piece in pieces if not any(piece in text for text in public)}


def test_a_debug_lifecycle_logs_and_returns_no_secret(
    lifecycle_env: tuple[Receiver, Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    record_property: Record,
) -> None:
    receiver, client = lifecycle_env
    json_lines = io.StringIO()
    json_handler = logging.StreamHandler(json_lines)
    json_handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(json_handler)
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:  # after the handler's own setup, which quiets botocore
        logging.getLogger(name).setLevel(logging.DEBUG)
    secrets: set[str] = set()
    urls: list[str] = []
    generator_responses: list[dict[str, Any]] = []

    def send(request_type: str, resource_type: str, properties: dict[str, Any], **kw: Any) -> Any:
        url = receiver.url()
        urls.append(url)
        body = event(request_type, resource_type, "Res", properties, response_url=url, **kw)
        app.lambda_handler(body, LambdaContext())
        (response,) = receiver.responses(url)
        assert response["Status"] == "SUCCESS", response["Reason"]
        if resource_type == app.GENERATOR:
            generator_responses.append(response)
        secrets.update(_secrets(client))
        return response

    try:
        created = send("Create", app.GENERATOR, BASE)
        assert created["Data"]["Action"] == "created"
        update = {**BASE, "Version": "2"}
        assert (
            send("Update", app.GENERATOR, update, physical_id=HEX, old_properties=BASE)["Data"][
                "Action"
            ]
            == "reused"
        )
        renewed = {**update, "ServerSubjectAltNames": "docker.internal,10.0.0.7"}
        assert (
            send("Update", app.GENERATOR, renewed, physical_id=HEX, old_properties=update)["Data"][
                "Action"
            ]
            == "renewed"
        )
        rotated = {**renewed, "RotationToken": "2027"}
        assert (
            send("Update", app.GENERATOR, rotated, physical_id=HEX, old_properties=renewed)["Data"][
                "Action"
            ]
            == "rotated"
        )
        for name in NAMES.material:
            got = send("Create", app.GETTER, {"Rack": RACK, "ParameterKey": name})
            assert got["NoEcho"] is NAMES.is_key(name)
        send("Delete", app.GENERATOR, rotated, physical_id=HEX)
    finally:
        root.removeHandler(json_handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

    out, err = capfd.readouterr()
    texts: dict[str, str] = {"stdout": out, "stderr": err, "json handler": json_lines.getvalue()}
    for index, record in enumerate(caplog.records):
        parts = [record.getMessage(), *(str(v) for v in vars(record).values())]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        texts[f"record {index} ({record.name})"] = "\n".join(parts)
    for index, response in enumerate(generator_responses):
        texts[f"generator response {index}"] = str(response)
    assert sum(1 for r in caplog.records if r.name.startswith("botocore")) > 50  # DEBUG was on
    signed_queries = [url.split("?", 1)[1] for url in urls]
    assert len(secrets) > 100
    leaks = []
    for where, text in texts.items():
        if "PRIVATE KEY" in text:
            leaks.append((where, "PEM"))
        leaks.extend((where, "secret value") for secret in secrets if secret in text)
        leaks.extend((where, "signed query") for query in signed_queries if query in text)
        if SESSION_TOKEN in text:
            leaks.append((where, "session token"))
        if re.search(r"Signature=[0-9a-f]{64}", text) or re.search(
            r"Signature:\s*[0-9a-f]{64}", text
        ):
            leaks.append((where, "SigV4 signature"))
    assert not leaks, sorted(set(leaks))[:20]
    figure(
        record_property,
        "secrets",
        "no key, SecureString, token, signature or signed query in logs or responses",
        invocations=len(urls),
        log_records=len(caplog.records),
        secret_pieces_checked=len(secrets),
    )
