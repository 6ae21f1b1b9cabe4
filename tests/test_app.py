"""The Lambda entry point driven with CloudFormation-shaped events (in-process moto)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from devkit.events import LambdaContext, event, stack_arn
from handler import app
from handler.certificates import fingerprint
from handler.cfn import MAX_RESPONSE_BYTES, response_body
from handler.codec import certificate_from_stored
from handler.event import parse
from handler.names import BundleNames, Item
from tests import legacy
from tests.conftest import (
    GENERATOR,
    GETTER,
    NOW,
    Invoke,
    RecordingClient,
    client_error,
    ssm_versions,
)

RACK = "convox"
HEX = "636f6e766f78"
NAMES = BundleNames.for_rack(RACK)
BASE = {"Rack": RACK, "Version": "20260101000000", "KeyAlgorithm": "ECDSA-P256"}
DATA_KEYS = {
    "CACertSSMKey",
    "CAKeySSMKey",
    "ServerCertSSMKey",
    "ServerKeySSMKey",
    "CertSSMKey",
    "KeySSMKey",
    "CACertificate",
    "CAFingerprint",
    "TrustedCAFingerprints",
    "CANotAfter",
    "Action",
}


def _key_values(ssm: Any) -> list[str]:
    names = [NAMES.key(item) for item in Item]
    found = ssm.get_parameters(Names=names, WithDecryption=True)["Parameters"]
    return [p["Value"] for p in found]


def test_create_returns_names_and_public_ca_facts_only(invoke: Invoke, ssm: Any) -> None:
    response = invoke("Create", BASE)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == HEX == RACK.encode().hex()
    data = response["Data"]
    assert set(data) == DATA_KEYS
    assert data["CACertSSMKey"] == f"{HEX}-docker-tls-ca-cert"
    assert data["CAKeySSMKey"] == f"{HEX}-docker-tls-ca-key"
    assert data["ServerCertSSMKey"] == f"{HEX}-docker-tls-server-cert"
    assert data["ServerKeySSMKey"] == f"{HEX}-docker-tls-server-key"
    assert data["CertSSMKey"] == f"{HEX}-docker-tls-cert"
    assert data["KeySSMKey"] == f"{HEX}-docker-tls-key"
    assert data["Action"] == "created"
    assert all(isinstance(v, str) for v in data.values())
    ca = certificate_from_stored(data["CACertificate"])
    assert data["CAFingerprint"] == fingerprint(ca)
    assert data["TrustedCAFingerprints"] == fingerprint(ca)  # one CA outside a rotation
    assert data["CANotAfter"] == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert response["NoEcho"] is False
    text = json.dumps(response)
    assert len(text.encode()) <= MAX_RESPONSE_BYTES
    assert "PRIVATE KEY" not in base64.b64decode(data["CACertificate"]).decode()
    for key_value in _key_values(ssm):
        assert key_value not in text
        assert base64.b64decode(key_value).decode()[:40] not in text


def test_updates_reuse_the_bundle_with_zero_writes(invoke: Invoke, ssm: Any) -> None:
    created = invoke("Create", BASE)
    before = ssm_versions(ssm, list(NAMES.everything))
    new = {**BASE, "Version": "20260202000000"}
    update = invoke("Update", new, physical_id=HEX, old_properties=BASE)
    retry = invoke("Create", BASE)  # Lambda retrying the original Create
    rollback = invoke("Update", BASE, physical_id=HEX, old_properties=new)
    for response in (update, retry, rollback):
        assert response["Status"] == "SUCCESS"
        assert response["Data"]["Action"] == "reused"
        assert response["Data"]["CAFingerprint"] == created["Data"]["CAFingerprint"]
        assert response["PhysicalResourceId"] == HEX
    assert ssm_versions(ssm, list(NAMES.everything)) == before


def test_a_changed_rotation_token_rotates(invoke: Invoke) -> None:
    created = invoke("Create", BASE)
    rotated = invoke(
        "Update", {**BASE, "RotationToken": "2027"}, physical_id=HEX, old_properties=BASE
    )
    assert rotated["Data"]["Action"] == "rotated"
    assert rotated["Data"]["CAFingerprint"] != created["Data"]["CAFingerprint"]
    same = invoke(
        "Update",
        {**BASE, "RotationToken": "2027", "Version": "9"},
        physical_id=HEX,
        old_properties={**BASE, "RotationToken": "2027"},
    )
    assert same["Data"]["Action"] == "reused"
    assert same["Data"]["CAFingerprint"] == rotated["Data"]["CAFingerprint"]


@pytest.mark.parametrize(
    ("properties", "name"),
    [
        ({"Version": "1"}, "Rack"),
        ({**BASE, "ValidityDays": "forever"}, "ValidityDays"),
        ({**BASE, "KeyAlgorithm": "DSA-1024"}, "KeyAlgorithm"),
        ({**BASE, "ServerSubjectAltNames": ["ok.example", "bad host"]}, "ServerSubjectAltNames"),
        ({**BASE, "Colour": "blue"}, "Colour"),
    ],
)
def test_bad_properties_fail_naming_the_property_and_write_nothing(
    invoke: Invoke, ssm: Any, properties: dict[str, Any], name: str
) -> None:
    created = invoke("Create", properties)
    assert created["Status"] == "FAILED"
    assert created["Reason"].startswith(name)
    assert len(created["Reason"]) <= 240
    assert created["PhysicalResourceId"] == f"failed-{created['RequestId']}"
    assert created["Data"] == {}
    assert ssm.describe_parameters()["Parameters"] == []
    updated = invoke("Update", properties, physical_id=HEX, old_properties=BASE)
    assert updated["Status"] == "FAILED"
    assert updated["PhysicalResourceId"] == HEX


def test_a_failed_read_answers_failed_and_writes_nothing(
    invoke: Invoke, ssm: Any, recording: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("Create", BASE)
    before = ssm_versions(ssm, list(NAMES.everything))
    from handler.store import ParameterStore

    monkeypatch.setattr(app, "store", ParameterStore(recording))  # type: ignore[arg-type]
    recording.fail("get_parameters", client_error("AccessDeniedException", message="not allowed"))
    response = invoke("Update", {**BASE, "Version": "2"}, physical_id=HEX, old_properties=BASE)
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("SSM GetParameters failed (AccessDeniedException)")
    assert response["PhysicalResourceId"] == HEX
    assert recording.written() == []
    assert ssm_versions(ssm, list(NAMES.everything)) == before


def test_getter_returns_the_value_and_hides_keys(invoke: Invoke, ssm: Any) -> None:
    created = invoke("Create", BASE)["Data"]
    for attribute, secret in [
        ("CACertSSMKey", False),
        ("CAKeySSMKey", True),
        ("ServerCertSSMKey", False),
        ("ServerKeySSMKey", True),
        ("CertSSMKey", False),
        ("KeySSMKey", True),
    ]:
        name = created[attribute]
        response = invoke(
            "Create", {"Rack": RACK, "ParameterKey": name, "Version": "1"}, resource_type=GETTER
        )
        stored = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        assert response["Status"] == "SUCCESS"
        assert response["Data"] == {"Value": stored}
        assert response["NoEcho"] is secret, attribute
        assert response["PhysicalResourceId"] == name


@pytest.mark.parametrize("physical_id", [HEX, NAMES.cert(Item.SERVER)])
def test_a_getter_update_keeps_the_id_it_has(invoke: Invoke, physical_id: str) -> None:
    """Getters adopted from the convox handler carry hex(Rack) as their id; answering an Update
    with another id (the parameter name) would make CloudFormation replace them."""
    invoke("Create", BASE)
    properties = {"Rack": RACK, "ParameterKey": NAMES.cert(Item.CA), "Version": "2"}
    old = {**properties, "Version": "1"}
    response = invoke(
        "Update",
        properties,
        resource_type=GETTER,
        physical_id=physical_id,
        old_properties=old,
        logical_id="DockerTLSCA",
    )
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == physical_id
    assert response["Data"]["Value"].startswith("LS0t")


@pytest.mark.parametrize(
    ("key", "scope"),
    [
        ("/aws/reference/secretsmanager/prod-db", "a docker-tls"),  # not ours at all
        ("626f62-docker-tls-ca-key", "this project's"),  # another rack's bundle
        (f"{HEX}-docker-tls-owner", "this project's"),  # ours, but never handed out
        (f"{HEX}-version-track", "a docker-tls"),
        (f"{HEX}-docker-tls-ca-key:1", "a docker-tls"),
    ],
)
def test_getter_refuses_parameters_outside_the_rack_bundle(
    invoke: Invoke, key: str, scope: str
) -> None:
    """A name this project writes (another rack's, or one the getter never hands out) is
    told apart from a name that is none of ours."""
    response = invoke("Create", {"Rack": RACK, "ParameterKey": key}, resource_type=GETTER)
    assert response["Status"] == "FAILED"
    assert response["Reason"] == (
        f"ParameterKey {key!r} is not {scope} parameter of Rack {RACK!r}: use a name the "
        f"generator returned, e.g. {NAMES.cert(Item.CA)}. Nothing was read or written; fix "
        "the property."
    )


def test_getter_reports_a_missing_parameter_and_its_delete_reads_nothing(
    invoke: Invoke, recording: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = invoke(
        "Create", {"Rack": RACK, "ParameterKey": NAMES.cert(Item.CA)}, resource_type=GETTER
    )
    assert missing["Status"] == "FAILED"
    assert "not in SSM" in missing["Reason"]
    from handler.store import ParameterStore

    monkeypatch.setattr(app, "store", ParameterStore(recording))  # type: ignore[arg-type]
    deleted = invoke(
        "Delete",
        {"Rack": RACK, "ParameterKey": NAMES.cert(Item.CA)},
        resource_type=GETTER,
        physical_id=NAMES.cert(Item.CA),
    )
    assert deleted["Status"] == "SUCCESS"
    assert deleted["PhysicalResourceId"] == NAMES.cert(Item.CA)
    assert recording.calls == []


def test_getter_refuses_a_value_too_large_for_a_response(invoke: Invoke) -> None:
    invoke("Create", {**BASE, "KeyAlgorithm": "RSA-4096"})
    response = invoke(
        "Create", {"Rack": RACK, "ParameterKey": NAMES.key(Item.CA)}, resource_type=GETTER
    )
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith(f"ParameterKey {NAMES.key(Item.CA)} holds")
    assert "read it from SSM" in response["Reason"]
    assert response["Data"] == {}


def test_delete_removes_the_bundle_it_owns(invoke: Invoke, ssm: Any) -> None:
    invoke("Create", BASE)
    assert NAMES.owner in {p["Name"] for p in ssm.describe_parameters()["Parameters"]}
    response = invoke("Delete", BASE, physical_id=HEX)
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == HEX
    assert ssm.describe_parameters()["Parameters"] == []
    again = invoke("Delete", BASE, physical_id=HEX)  # already gone: still fine
    assert again["Status"] == "SUCCESS"


def test_delete_after_a_failed_create_touches_nothing(invoke: Invoke, ssm: Any) -> None:
    invoke("Create", BASE)  # a bundle that already exists for this Rack, another stack's
    before = ssm_versions(ssm, list(NAMES.everything))
    other = stack_arn("other-stack")
    failed = invoke("Create", {**BASE, "ValidityDays": "0"}, stack_id=other)
    assert failed["Status"] == "FAILED"
    rollback = invoke(
        "Delete",
        {**BASE, "ValidityDays": "0"},
        physical_id=failed["PhysicalResourceId"],
        stack_id=other,
    )
    assert rollback["Status"] == "SUCCESS"
    assert rollback["PhysicalResourceId"] == failed["PhysicalResourceId"]
    assert ssm_versions(ssm, list(NAMES.everything)) == before


def test_unknown_types_fail_create_but_not_delete(invoke: Invoke) -> None:
    created = invoke("Create", BASE, resource_type="Custom::Something")
    assert created["Status"] == "FAILED"
    assert "Custom::Something" in created["Reason"]
    deleted = invoke("Delete", BASE, resource_type="Custom::Something", physical_id="x")
    assert deleted["Status"] == "SUCCESS"
    weird = event("Poke", GENERATOR, "DockerTLS", BASE, response_url="https://x.example/r")
    assert invoke("Poke", BASE, raw_event=weird)["Status"] == "FAILED"


def test_adopting_an_old_rack_through_the_handler(invoke: Invoke, ssm: Any) -> None:
    stored = legacy.store_convox_rack(ssm, RACK, NOW)
    response = invoke(
        "Update",
        {
            "Rack": RACK,
            "Version": "20260714094620",
            "Description": "Create self signed certs for docker",
        },
        physical_id=HEX,
        old_properties={"Rack": RACK, "Version": legacy.VERSION},
    )
    assert response["Status"] == "SUCCESS"
    assert response["Data"]["Action"] == "renewed"
    assert response["Data"]["CACertificate"] == stored[NAMES.cert(Item.CA)]


@pytest.mark.slow  # waits out a 3-second Lambda budget
def test_the_timeout_guard_answers_once_with_the_chosen_id(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app.helper, "send_response", lambda url, body: sent.append(body) or True)
    monkeypatch.setattr(app, "ensure", lambda *a, **k: time.sleep(1.5))
    for request_type, physical in (("Create", None), ("Update", HEX)):
        sent.clear()
        body = event(
            request_type,
            GENERATOR,
            "DockerTLS",
            BASE,
            response_url="https://x.example/r?sig=1",
            physical_id=physical,
            old_properties=BASE if physical else None,
        )
        app.lambda_handler(body, LambdaContext(timeout_seconds=3.5))  # guard fires at ~0.5 s
        assert len(sent) == 1
        assert sent[0]["Status"] == "FAILED"
        assert sent[0]["Reason"].startswith("Timed out")
        assert sent[0]["PhysicalResourceId"] == (physical or f"failed-{body['RequestId']}")


def test_the_response_guard_keeps_bodies_under_4096_bytes() -> None:
    body = response_body(
        parse({"RequestId": "r"}),
        status="SUCCESS",
        physical_resource_id="p",
        data={"Value": "x" * 5000},
        no_echo=False,
    )
    assert body["Status"] == "FAILED"
    assert body["Data"] == {}
    assert body["Reason"].startswith("Response would be")
    assert len(json.dumps(body).encode()) <= MAX_RESPONSE_BYTES
    fits = response_body(
        parse({"RequestId": "r"}),
        status="SUCCESS",
        physical_resource_id="p",
        data={"Value": "x" * 3000},
        no_echo=False,
    )
    assert fits["Status"] == "SUCCESS"


@pytest.mark.parametrize("code", ["EndpointConnectionError", "ReadTimeoutError"])
def test_an_endpoint_that_never_answers_is_not_blamed_on_permissions(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    from handler.store import StoreError

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise StoreError("GetParameters", code, "Could not connect to the endpoint URL")

    monkeypatch.setattr(app, "ensure", unreachable)
    response = invoke("Create", BASE)
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith(f"SSM GetParameters failed ({code})")
    assert "did not answer" in response["Reason"]
    assert "permissions" not in response["Reason"]


def test_the_init_phase_imports_boto3_and_makes_no_client() -> None:
    """Lambda's init imports the SDK every first request needs; the client waits for a request
    (so tests and the CLI can give the store their own)."""
    import subprocess
    import sys

    probe = (
        "import sys, handler.app; print('boto3' in sys.modules, handler.app.store._client is None)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "True"]
