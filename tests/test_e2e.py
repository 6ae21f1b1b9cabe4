"""End to end: lambda_handler with complete CloudFormation events, SSM over real HTTP (moto's
server on 127.0.0.1) and the response PUT over real HTTPS to a local receiver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devkit.events import LambdaContext, event
from devkit.receiver import Receiver, response_receiver
from devkit.ssm_server import LocalSsm, local_ssm
from handler import app
from handler.certificates import signed_by
from handler.codec import certificate_from_stored
from handler.names import BundleNames, Item
from handler.store import ParameterStore

GENERATOR, GETTER = app.GENERATOR, app.GETTER
RACK = "e2e-rack"
NAMES = BundleNames.for_rack(RACK)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalSsm, Receiver, Any]]:
    with local_ssm() as endpoint, response_receiver() as receiver:
        monkeypatch.setattr(app, "store", ParameterStore())  # a real client, from the env
        yield endpoint, receiver, boto3.client("ssm", endpoint_url=endpoint.endpoint)


def _send(
    receiver: Receiver,
    request_type: str,
    resource_type: str,
    properties: dict[str, Any],
    **kwargs: Any,
) -> dict[str, Any]:
    body = event(
        request_type, resource_type, "Res", properties, response_url=receiver.url(), **kwargs
    )
    app.lambda_handler(body, LambdaContext())
    responses = receiver.responses(body["ResponseURL"])
    assert len(responses) == 1
    response = responses[0]
    assert response["RequestId"] == body["RequestId"]
    assert response["StackId"] == body["StackId"]
    assert response["LogicalResourceId"] == "Res"
    assert response["PhysicalResourceId"]
    return response


def test_a_stack_lifecycle_over_http(
    stack: tuple[LocalSsm, Receiver, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _, receiver, ssm = stack
    props = {
        "Rack": RACK,
        "Version": "1",
        "KeyAlgorithm": "ECDSA-P256",
        "ServerSubjectAltNames": "localhost,127.0.0.1,10.0.0.5",
    }
    caplog.set_level(logging.DEBUG)
    created = _send(receiver, "Create", GENERATOR, props)
    assert created["Status"] == "SUCCESS"
    physical = created["PhysicalResourceId"]
    assert physical == RACK.encode().hex()
    update = _send(
        receiver,
        "Update",
        GENERATOR,
        {**props, "Version": "2"},
        physical_id=physical,
        old_properties=props,
    )
    assert update["Data"]["Action"] == "reused"
    assert update["Data"]["CAFingerprint"] == created["Data"]["CAFingerprint"]

    ca_value = _send(
        receiver, "Create", GETTER, {"Rack": RACK, "ParameterKey": created["Data"]["CACertSSMKey"]}
    )
    server_cert = _send(
        receiver,
        "Create",
        GETTER,
        {"Rack": RACK, "ParameterKey": created["Data"]["ServerCertSSMKey"]},
    )
    server_key = _send(
        receiver,
        "Create",
        GETTER,
        {"Rack": RACK, "ParameterKey": created["Data"]["ServerKeySSMKey"]},
    )
    assert server_key["NoEcho"] is True
    assert ca_value["Data"]["Value"] == created["Data"]["CACertificate"]
    ca = certificate_from_stored(ca_value["Data"]["Value"])
    assert signed_by(certificate_from_stored(server_cert["Data"]["Value"]), ca)

    deleted = _send(receiver, "Delete", GENERATOR, {**props, "Version": "2"}, physical_id=physical)
    assert deleted["Status"] == "SUCCESS"
    assert ssm.get_parameters(Names=list(NAMES.everything))["Parameters"] == []
    getter_delete = _send(
        receiver,
        "Delete",
        GETTER,
        {"Rack": RACK, "ParameterKey": NAMES.key(Item.SERVER)},
        physical_id=NAMES.key(Item.SERVER),
    )
    assert getter_delete["Status"] == "SUCCESS"

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "X-Amz-Signature=local" not in logged
    assert server_key["Data"]["Value"] not in logged
    assert "response delivered" in logged


def test_a_refused_response_is_logged_as_an_error(
    stack: tuple[LocalSsm, Receiver, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, receiver, _ = stack
    receiver.status = 403
    monkeypatch.setattr("handler.cfn.time.sleep", lambda _: None)
    body = event(
        "Create",
        GENERATOR,
        "Res",
        {"Rack": RACK, "KeyAlgorithm": "ECDSA-P256"},
        response_url=receiver.url(),
    )
    with caplog.at_level(logging.INFO):
        app.lambda_handler(body, LambdaContext())
    attempts = receiver.responses(body["ResponseURL"])
    assert 1 < len(attempts) <= 4  # retried, but bounded
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused" in r.getMessage() for r in errors)
    assert all("X-Amz-Signature" not in r.getMessage() for r in caplog.records)
    assert all("X-Amz-Signature" not in str(getattr(r, "url", "")) for r in caplog.records)
