"""Reliability: malformed events, corrupted stored values, and fuzzing.

Every malformed event goes through ``lambda_handler``: exactly one response within seconds
(none only when there is nowhere to send it), FAILED with a reason naming the problem, and no
SSM write. Every corrupted stored value gets the repair docs/DESIGN.md §3 prescribes, never a
write over a healthy CA.
Property-based tests (hypothesis, derandomized, fixed budget) do the same over generated
properties and stored bundles.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.events import LambdaContext, event
from handler import app
from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose, fingerprint
from handler.codec import (
    certificate_from_stored,
    certificate_pem,
    private_key_from_stored,
    to_stored,
)
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.conftest import OWNER, RecordingClient, props
from tests.reliability_support import Record, assert_healthy, figure, stored_values, versions

# The fuzz, fault-matrix, concurrency and timing tests: the full run (make test) only.
pytestmark = pytest.mark.slow


RACK = "input"
NAMES = BundleNames.for_rack(RACK)
HEX = NAMES.prefix
BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}
PARSED = props(RACK)
URL = "https://cfn.example/response?X-Amz-Signature=secret-signature"
SECONDS = 5.0  # "within seconds"


def _run(
    monkeypatch: pytest.MonkeyPatch, recording: RecordingClient, body: Any
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app, "store", ParameterStore(recording, sleep=lambda _: None))  # type: ignore[arg-type]
    monkeypatch.setattr(app.helper, "send_response", lambda url, b: sent.append(b) or True)
    started = time.monotonic()
    app.lambda_handler(body, LambdaContext(timeout_seconds=30))
    assert time.monotonic() - started < SECONDS
    return sent


def _generator(request_type: str = "Create", **kwargs: Any) -> dict[str, Any]:
    return event(request_type, app.GENERATOR, "DockerTLS", BASE, response_url=URL, **kwargs)


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> Any:
        target = body
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return body

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> Any:
        target = body
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[key]
        target.pop(keys[-1], None)
        return body

    return mutate


def _replace(value: Any) -> Mutation:
    return lambda _: value


P = "ResourceProperties"
#: (id, request type, mutation, expected status or None for "no response", reason prefix)
BAD_EVENTS: list[tuple[str, str, Mutation, str | None, str]] = [
    # --- the event's own fields
    ("no-ResponseURL", "Create", _drop("ResponseURL"), None, ""),
    ("empty-ResponseURL", "Create", _set("ResponseURL", ""), None, ""),
    ("null-ResponseURL", "Update", _set("ResponseURL", None), None, ""),
    ("event-is-a-list", "Create", _replace(["Create"]), None, ""),
    ("event-is-null", "Create", _replace(None), None, ""),
    ("event-is-a-string", "Create", _replace('{"RequestType": "Create"}'), None, ""),
    ("unknown-RequestType", "Create", _set("RequestType", "Poke"), "FAILED", "RequestType"),
    ("lower-case-RequestType", "Create", _set("RequestType", "create"), "FAILED", "RequestType"),
    ("no-RequestType", "Create", _drop("RequestType"), "FAILED", "RequestType"),
    ("list-RequestType", "Create", _set("RequestType", ["Create"]), "FAILED", "RequestType"),
    (
        "unknown-ResourceType",
        "Create",
        _set("ResourceType", "Custom::Cert"),
        "FAILED",
        "ResourceType",
    ),
    ("no-ResourceType", "Update", _drop("ResourceType"), "FAILED", "ResourceType"),
    ("unknown-ResourceType-delete", "Delete", _set("ResourceType", "Custom::X"), "SUCCESS", ""),
    ("no-StackId", "Create", _drop("StackId"), "SUCCESS", ""),
    ("no-RequestId", "Create", _drop("RequestId"), "SUCCESS", ""),
    ("no-LogicalResourceId", "Create", _drop("LogicalResourceId"), "SUCCESS", ""),
    # echoed in every response, so no answer can fit: the size guard explains it
    ("huge-RequestId", "Update", _set("RequestId", "r" * 5000), "FAILED", "Response would be"),
    ("no-ResourceProperties", "Create", _drop(P), "FAILED", "Rack"),
    ("null-ResourceProperties", "Create", _set(P, None), "FAILED", "Rack"),
    (
        "list-ResourceProperties",
        "Create",
        _set(P, ["Rack", "input"]),
        "FAILED",
        "ResourceProperties",
    ),
    ("string-ResourceProperties", "Create", _set(P, "Rack=input"), "FAILED", "ResourceProperties"),
    ("number-ResourceProperties", "Update", _set(P, 42), "FAILED", "ResourceProperties"),
    ("list-ResourceProperties-delete", "Delete", _set(P, ["Rack"]), "SUCCESS", ""),
    ("string-OldResourceProperties", "Update", _set("OldResourceProperties", "x"), "SUCCESS", ""),
    # --- Rack
    ("no-Rack", "Create", _drop(f"{P}.Rack"), "FAILED", "Rack"),
    ("empty-Rack", "Create", _set(f"{P}.Rack", ""), "FAILED", "Rack"),
    ("blank-Rack", "Update", _set(f"{P}.Rack", "  "), "FAILED", "Rack"),
    ("Rack-too-long-for-a-name", "Create", _set(f"{P}.Rack", "r" * 600), "FAILED", "Rack"),
    ("Rack-of-1MB", "Create", _set(f"{P}.Rack", "r" * 1_000_000), "FAILED", "Rack"),
    ("Rack-control-char", "Create", _set(f"{P}.Rack", "a\x00b"), "FAILED", "Rack"),
    ("Rack-number", "Create", _set(f"{P}.Rack", 7), "FAILED", "Rack"),
    ("Rack-object", "Create", _set(f"{P}.Rack", {"Ref": "AWS::StackName"}), "FAILED", "Rack"),
    # --- day counts
    (
        "ValidityDays-non-numeric",
        "Create",
        _set(f"{P}.ValidityDays", "ten"),
        "FAILED",
        "ValidityDays",
    ),
    ("ValidityDays-zero", "Create", _set(f"{P}.ValidityDays", "0"), "FAILED", "ValidityDays"),
    ("ValidityDays-negative", "Create", _set(f"{P}.ValidityDays", "-30"), "FAILED", "ValidityDays"),
    ("ValidityDays-huge", "Create", _set(f"{P}.ValidityDays", "9" * 400), "FAILED", "ValidityDays"),
    (
        "ValidityDays-past-9999",
        "Create",
        _set(f"{P}.ValidityDays", "3000000"),
        "FAILED",
        "ValidityDays",
    ),
    ("ValidityDays-float", "Update", _set(f"{P}.ValidityDays", 1.5), "FAILED", "ValidityDays"),
    (
        "RenewBeforeDays-zero",
        "Create",
        _set(f"{P}.RenewBeforeDays", "0"),
        "FAILED",
        "RenewBeforeDays",
    ),
    (
        "RenewBeforeDays-negative",
        "Create",
        _set(f"{P}.RenewBeforeDays", "-1"),
        "FAILED",
        "RenewBeforeDays",
    ),
    (
        "RenewBeforeDays-ge-ValidityDays",
        "Create",
        lambda b: _set(f"{P}.RenewBeforeDays", "400")(_set(f"{P}.ValidityDays", "400")(b)),
        "FAILED",
        "RenewBeforeDays",
    ),
    # --- algorithm and SANs
    (
        "KeyAlgorithm-unknown",
        "Create",
        _set(f"{P}.KeyAlgorithm", "DSA-1024"),
        "FAILED",
        "KeyAlgorithm",
    ),
    (
        "KeyAlgorithm-list",
        "Create",
        _set(f"{P}.KeyAlgorithm", ["RSA-2048"]),
        "FAILED",
        "KeyAlgorithm",
    ),
    (
        "SANs-malformed",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", "a b,c"),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    (
        "SANs-non-string-entry",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", ["ok", None]),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    (
        "SANs-empty-entry",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", ["ok", ""]),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    (
        "SANs-object",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", {"a": 1}),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    (
        "SANs-10000",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", [f"h{i}" for i in range(10000)]),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    (
        "SANs-CIDR",
        "Create",
        _set(f"{P}.ServerSubjectAltNames", "10.0.0.0/8"),
        "FAILED",
        "ServerSubjectAltNames",
    ),
    # --- other properties and oversized values
    ("unknown-property", "Create", _set(f"{P}.Colour", "blue"), "FAILED", "Colour"),
    ("oversized-property-name", "Create", _set(f"{P}.{'X' * 5000}", "1"), "FAILED", "X"),
    (
        "oversized-RotationToken",
        "Update",
        _set(f"{P}.RotationToken", "t" * 100_000),
        "FAILED",
        "RotationToken",
    ),
    ("oversized-KmsKeyId", "Create", _set(f"{P}.KmsKeyId", "k" * 5000), "FAILED", "KmsKeyId"),
    ("KmsKeyId-object", "Create", _set(f"{P}.KmsKeyId", {"Ref": "Key"}), "FAILED", "KmsKeyId"),
    ("RotationToken-number", "Update", _set(f"{P}.RotationToken", 5), "FAILED", "RotationToken"),
    (
        "getter-ParameterKey-oversized",
        "Create",
        lambda b: {
            **b,
            "ResourceType": app.GETTER,
            P: {"Rack": RACK, "ParameterKey": "k" * 100_000},
        },
        "FAILED",
        "ParameterKey",
    ),
    (
        "getter-no-ParameterKey",
        "Create",
        lambda b: {**b, "ResourceType": app.GETTER, P: {"Rack": RACK}},
        "FAILED",
        "ParameterKey",
    ),
    (
        "getter-other-parameter",
        "Update",
        lambda b: {
            **b,
            "ResourceType": app.GETTER,
            P: {"Rack": RACK, "ParameterKey": "/prod/db-password"},
        },
        "FAILED",
        "ParameterKey",
    ),
]


@pytest.mark.parametrize(
    ("request_type", "mutate", "status", "prefix"),
    [pytest.param(t, m, s, p, id=i) for i, t, m, s, p in BAD_EVENTS],
)
def test_a_malformed_event_gets_one_answer_and_writes_nothing(
    request_type: str,
    mutate: Mutation,
    status: str | None,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    recording: RecordingClient,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    # A healthy bundle already exists for the Rack: nothing malformed may touch it.
    existing = ensure(
        ParameterStore(recording._client),
        PARSED,
        rotate=False,
        now=dt.datetime.now(dt.UTC),
        requester=OWNER,
    )  # type: ignore[arg-type]
    before = versions(recording._client, NAMES)
    physical = HEX if request_type != "Create" else None
    body = mutate(
        copy.deepcopy(
            _generator(
                request_type,
                physical_id=physical,
                old_properties=BASE if request_type == "Update" else None,
            )
        )
    )
    with caplog.at_level(logging.INFO):
        sent = _run(monkeypatch, recording, body)
    assert recording.written() == []
    assert recording.count("delete_parameters") == 0
    assert versions(recording._client, NAMES) == before
    # Nothing unexpected blew up: every failure is an explained one.
    assert not [r for r in caplog.records if r.exc_info], "an unexpected exception was raised"
    if status is None:
        assert sent == []  # there is nowhere to answer
        assert any(r.levelno >= logging.ERROR for r in caplog.records)
        figure(record_property, "bad-event", "no response possible: error logged, nothing done")
        return
    assert len(sent) == 1
    response = sent[0]
    assert response["Status"] == status, response["Reason"]
    assert response["PhysicalResourceId"]
    if status == "FAILED":
        assert response["Reason"].startswith(prefix), response["Reason"]
        assert len(response["Reason"]) <= 240
        assert response["Data"] == {}
        if request_type == "Create":
            assert response["PhysicalResourceId"].startswith("failed-")
        else:
            assert response["PhysicalResourceId"] == HEX
    elif request_type != "Delete":
        assert response["Data"]["CAFingerprint"] == fingerprint(existing.ca_cert)
    figure(record_property, "bad-event", f"{status} ({prefix or 'no change'})")


def test_an_update_without_old_properties_never_rotates(
    monkeypatch: pytest.MonkeyPatch, recording: RecordingClient, record_property: Record
) -> None:
    """CloudFormation always sends OldResourceProperties on Update; without them we cannot tell
    whether RotationToken changed, and a guess must not replace a healthy CA."""
    existing = ensure(
        ParameterStore(recording._client),
        PARSED,
        rotate=False,
        now=dt.datetime.now(dt.UTC),
        requester=OWNER,
    )  # type: ignore[arg-type]
    body = event(
        "Update",
        app.GENERATOR,
        "DockerTLS",
        {**BASE, "RotationToken": "2027"},
        response_url=URL,
        physical_id=HEX,
    )
    assert "OldResourceProperties" not in body
    sent = _run(monkeypatch, recording, body)
    assert sent[0]["Status"] == "SUCCESS"
    assert sent[0]["Data"]["Action"] == "reused"
    assert sent[0]["Data"]["CAFingerprint"] == fingerprint(existing.ca_cert)
    assert recording.written() == []
    figure(record_property, "bad-event", "SUCCESS (no change)")


# --- corrupted stored values --------------------------------------------------------------------

NOW = dt.datetime.now(dt.UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _other_ca() -> CertificateAuthority:
    return CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=365, now=NOW)


def _cert(
    key: Any,
    issuer_key: Any,
    *,
    subject: str = "docker-tls",
    issuer: str | None = None,
    ca: bool,
    eku: list[x509.ObjectIdentifier] | None = None,
    days: int = 365,
    start: dt.datetime | None = None,
) -> str:
    start = start or NOW - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return to_stored(
        builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )


def _corrupt(values: dict[str, str], item: Item, part: str, how: str) -> str:
    """The corrupted value for ``item``'s ``part`` (cert or key)."""
    cert_name, key_name = NAMES.cert(item), NAMES.key(item)
    ca_cert = certificate_from_stored(values[NAMES.cert(Item.CA)])
    ca_key = private_key_from_stored(values[NAMES.key(Item.CA)])
    own_key = private_key_from_stored(values[key_name])
    subject = ca_cert.subject.rfc4514_string().removeprefix("CN=")
    if how == "random-bytes":
        return "\x00\x81ÿ random \u2603 bytes \x7f"
    if how == "base64-garbage":
        return _b64(b"\x8f\x00garbage that is not PEM" * 3)
    if how == "truncated":
        return values[cert_name if part == "cert" else key_name][:120]
    if how == "wrong-pem-type":  # a key where a certificate belongs and vice versa
        return values[key_name] if part == "cert" else values[cert_name]
    if how == "csr-pem":
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(own_key, hashes.SHA256())
        )
        return _b64(csr.public_bytes(serialization.Encoding.PEM))
    if how == "encrypted-key":
        return _b64(
            own_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
    if how == "two-pem-blocks":
        return _b64(base64.b64decode(values[cert_name]) + base64.b64decode(values[cert_name]))
    if how == "rsa-1024-key":
        from cryptography.hazmat.primitives.asymmetric import rsa

        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        return _b64(
            weak.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    if how == "other-ca-key":
        return to_stored(
            _other_ca().key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    if how == "ca-without-ca-flag":
        return _cert(ca_key, ca_key, subject=subject, ca=False)
    if how == "expired":
        if item is Item.CA:
            return _cert(
                ca_key,
                ca_key,
                subject=subject,
                ca=True,
                days=30,
                start=NOW - dt.timedelta(days=400),
            )
        eku = [
            ExtendedKeyUsageOID.SERVER_AUTH
            if item is Item.SERVER
            else ExtendedKeyUsageOID.CLIENT_AUTH
        ]
        return _cert(
            own_key,
            ca_key,
            issuer=subject,
            ca=False,
            eku=eku,
            days=30,
            start=NOW - dt.timedelta(days=400),
        )
    if how == "wrong-eku":
        eku = [ExtendedKeyUsageOID.CODE_SIGNING]
        return _cert(own_key, ca_key, issuer=subject, ca=False, eku=eku)
    if how == "leaf-from-another-ca":
        other = _other_ca()
        purpose = Purpose.SERVER if item is Item.SERVER else Purpose.CLIENT
        return to_stored(
            other.issue(
                purpose, KeyAlgorithm.ECDSA_P256, validity_days=300, now=NOW, key=own_key
            ).cert_pem()
        )
    if how == "other-ca-cert":
        return to_stored(certificate_pem(_other_ca().cert))
    if how == "whitespace-padded":
        return "  " + values[cert_name if part == "cert" else key_name] + "\n"
    raise AssertionError(how)


#: (item, part, how, swap?) -> what docs/DESIGN.md §3 says happens
CORRUPTIONS: list[tuple[Item, str, str]] = [
    *[
        (Item.CA, "cert", h)
        for h in (
            "random-bytes",
            "base64-garbage",
            "truncated",
            "wrong-pem-type",
            "csr-pem",
            "two-pem-blocks",
            "ca-without-ca-flag",
            "expired",
            "other-ca-cert",
            "whitespace-padded",
        )
    ],
    *[
        (Item.CA, "key", h)
        for h in (
            "random-bytes",
            "base64-garbage",
            "truncated",
            "wrong-pem-type",
            "encrypted-key",
            "other-ca-key",
            "whitespace-padded",
        )
    ],
    *[
        (leaf, "cert", h)
        for leaf in (Item.SERVER, Item.CLIENT)
        for h in (
            "random-bytes",
            "base64-garbage",
            "truncated",
            "wrong-pem-type",
            "csr-pem",
            "expired",
            "wrong-eku",
            "leaf-from-another-ca",
            "other-ca-cert",
            "whitespace-padded",
        )
    ],
    *[
        (leaf, "key", h)
        for leaf in (Item.SERVER, Item.CLIENT)
        for h in (
            "random-bytes",
            "base64-garbage",
            "wrong-pem-type",
            "encrypted-key",
            "rsa-1024-key",
            "other-ca-key",
        )
    ],
]
SWAPS = [
    "ca-cert-key-swapped",
    "server-cert-key-swapped",
    "client-cert-key-swapped",
    "leaves-swapped",
]


def _expected(item: Item, part: str, how: str) -> str:
    if how == "whitespace-padded":
        return "reused"
    if item is Item.CA and (part == "key" or how == "other-ca-cert"):
        # docs/DESIGN.md §3 rule 4: the CA key is unreadable; or a CA certificate is rebuilt for
        # a key other than that of the stored, valid CA certificate: a new trust anchor.
        return "rotated"
    return "renewed"


@pytest.mark.parametrize(
    ("item", "part", "how"),
    [pytest.param(i, p, h, id=f"{i.value}-{p}-{h}") for i, p, h in CORRUPTIONS]
    + [pytest.param(None, "swap", s, id=s) for s in SWAPS],
)
def test_a_corrupted_stored_value_gets_the_spec_repair(
    item: Item | None,
    part: str,
    how: str,
    ssm: Any,
    monkeypatch: pytest.MonkeyPatch,
    recording: RecordingClient,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    ensure(ParameterStore(ssm), PARSED, rotate=False, now=NOW, requester=OWNER)
    values = stored_values(ssm, NAMES)
    ca_before = {n: values[n] for n in (NAMES.cert(Item.CA), NAMES.key(Item.CA))}
    if item is None:
        pair = {
            "ca-cert-key-swapped": (NAMES.cert(Item.CA), NAMES.key(Item.CA)),
            "server-cert-key-swapped": (NAMES.cert(Item.SERVER), NAMES.key(Item.SERVER)),
            "client-cert-key-swapped": (NAMES.cert(Item.CLIENT), NAMES.key(Item.CLIENT)),
            "leaves-swapped": (NAMES.cert(Item.SERVER), NAMES.cert(Item.CLIENT)),
        }[how]
        damaged = {pair[0]: values[pair[1]], pair[1]: values[pair[0]]}
        expected = "rotated" if how == "ca-cert-key-swapped" else "renewed"
    else:
        name = NAMES.cert(item) if part == "cert" else NAMES.key(item)
        damaged = {name: _corrupt(values, item, part, how)}
        expected = _expected(item, part, how)
    for name, value in damaged.items():
        ssm.put_parameter(
            Name=name,
            Value=value,
            Type="SecureString" if "key" in name.rsplit("-", 1)[-1] else "String",
            Overwrite=True,
        )
    before = versions(ssm, NAMES)
    with caplog.at_level(logging.INFO):
        sent = _run(
            monkeypatch, recording, _generator("Update", physical_id=HEX, old_properties=BASE)
        )
    assert len(sent) == 1
    response = sent[0]
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert not [r for r in caplog.records if r.exc_info]
    assert response["Data"]["Action"] == expected
    after = stored_values(ssm, NAMES)
    fp = assert_healthy(after, PARSED, NOW)
    assert response["Data"]["CAFingerprint"] == fp
    ca_touched = any(n in damaged for n in ca_before)
    if not ca_touched:
        # Never a write over a healthy CA.
        assert {n: after[n] for n in ca_before} == ca_before
        assert all(versions(ssm, NAMES)[n] == before[n] for n in ca_before)
    elif expected == "renewed":
        assert after[NAMES.key(Item.CA)] == ca_before[NAMES.key(Item.CA)]  # key kept
    if expected == "rotated":
        assert any("must be replaced" in r.getMessage() for r in caplog.records)
    figure(
        record_property,
        "bad-stored-value",
        expected,
        value=how,
        item=item.value if item else "pair",
    )


# --- property-based --------------------------------------------------------------------------

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "60",
            "365",
            "36500",
            "-1",
            "1e3",
            " 30",
            "RSA-2048",
            "ECDSA-P256",
            "ecdsa-p384",
            "localhost,127.0.0.1",
            "a,,b",
            "::1",
            "*.x.example",
            "alias/k",
        ]
    ),
)
_value = st.one_of(
    _scalar,
    st.lists(_scalar, max_size=4),
    st.dictionaries(st.text(max_size=5), _scalar, max_size=3),
)
_known = st.sampled_from(
    [
        "Rack",
        "Version",
        "KeyAlgorithm",
        "ValidityDays",
        "RenewBeforeDays",
        "ServerSubjectAltNames",
        "KmsKeyId",
        "RotationToken",
        "ServiceToken",
        "Description",
        "ParameterKey",
        "Other",
    ]
)
_properties = st.one_of(
    st.dictionaries(_known, _value, max_size=8),
    # mostly-valid properties with one field fuzzed, so the parser's later checks are reached
    st.builds(
        lambda field, value: {**BASE, field: value},
        _known.filter(lambda k: k != "KeyAlgorithm"),
        _value,
    ),
    _value,
)
_request = st.sampled_from(["Create", "Update", "Delete"])
_type = st.sampled_from([app.GENERATOR, app.GENERATOR, app.GETTER, "Custom::Other"])
_fuzz_count: dict[str, int] = {"properties": 0, "stored": 0}


def _exactly_one_sane_response(sent: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    assert len(sent) == 1
    response = sent[0]
    assert response["Status"] in ("SUCCESS", "FAILED")
    assert response["PhysicalResourceId"]
    if body["RequestType"] != "Create":
        assert response["PhysicalResourceId"] == body["PhysicalResourceId"]
    if response["Status"] == "FAILED":
        assert response["Reason"] and len(response["Reason"]) <= 240
        assert response["Data"] == {}
        if body["RequestType"] == "Create":
            assert response["PhysicalResourceId"] == f"failed-{body['RequestId']}"
    import json

    assert len(json.dumps(response).encode()) <= 4096
    return response


def test_fuzzed_properties_always_get_one_sane_answer(
    ssm: Any, monkeypatch: pytest.MonkeyPatch, recording: RecordingClient, record_property: Record
) -> None:
    existing = ensure(ParameterStore(ssm), PARSED, rotate=False, now=NOW, requester=OWNER)
    healthy_ca = {
        n: v
        for n, v in stored_values(ssm, NAMES).items()
        if n in (NAMES.cert(Item.CA), NAMES.key(Item.CA))
    }
    outcomes: dict[str, int] = {}
    _fuzz_count["properties"] = 0

    @FUZZ
    @given(properties=_properties, old=_properties, request_type=_request, resource_type=_type)
    def check(properties: Any, old: Any, request_type: str, resource_type: str) -> None:
        _fuzz_count["properties"] += 1
        body = event(
            request_type,
            resource_type,
            "Fuzz",
            {},
            response_url=URL,
            physical_id=HEX if request_type != "Create" else None,
        )
        body["ResourceProperties"] = properties
        if request_type == "Update":
            body["OldResourceProperties"] = old
        ca_before = {n: v for n, v in stored_values(ssm, NAMES).items() if n in healthy_ca}
        handler = logging.getLogger()
        records: list[logging.LogRecord] = []
        catcher = _Catcher(records)
        handler.addHandler(catcher)
        try:
            sent = _run(monkeypatch, recording, body)
        finally:
            handler.removeHandler(catcher)
        response = _exactly_one_sane_response(sent, body)
        assert not [r for r in records if r.exc_info], [
            r.getMessage() for r in records if r.exc_info
        ]
        # Whatever the properties: the healthy CA is never replaced.
        now_ca = {n: v for n, v in stored_values(ssm, NAMES).items() if n in healthy_ca}
        if request_type != "Delete" and not (
            isinstance(properties, dict)
            and isinstance(old, dict)
            and (properties.get("RotationToken") or None) != (old.get("RotationToken") or None)
        ):
            assert not ca_before or now_ca == ca_before
        key = f"{request_type} {response['Status']}"
        outcomes[key] = outcomes.get(key, 0) + 1
        if (
            request_type == "Delete"
            and response["Status"] == "SUCCESS"
            and not stored_values(ssm, NAMES)
        ):
            # a valid Delete removed the bundle: put it back for the next example
            _restore(ssm, existing_values)

    existing_values = stored_values(ssm, NAMES)
    assert existing
    check()
    assert _fuzz_count["properties"] >= EXAMPLES // 2
    figure(
        record_property,
        "fuzz",
        "one answer each, no unhandled exception",
        space="properties",
        examples=_fuzz_count["properties"],
        outcomes=outcomes,
    )


class _Catcher(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _restore(ssm: Any, values: dict[str, str]) -> None:
    present = {p["Name"] for p in ssm.get_parameters(Names=list(NAMES.everything))["Parameters"]}
    # The owner record is not fuzzed: the bundle stays the handler's own throughout.
    gone = [n for n in NAMES.everything if n in present and n not in values and n != NAMES.owner]
    if gone:
        ssm.delete_parameters(Names=gone)
    for name, value in values.items():
        secure = name in {NAMES.key(i) for i in Item}
        ssm.put_parameter(
            Name=name, Value=value, Type="SecureString" if secure else "String", Overwrite=True
        )


def _stored_choices(values: dict[str, str]) -> dict[str, st.SearchStrategy[str | None]]:
    other = _other_ca()
    foreign_leaf = other.issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=300, now=NOW)
    pool = [
        to_stored(foreign_leaf.cert_pem()),
        to_stored(foreign_leaf.key_pem()),
        to_stored(certificate_pem(other.cert)),
        _b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        _b64(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
        *values.values(),
    ]
    choices: dict[str, st.SearchStrategy[str | None]] = {}
    for name in (n for n in NAMES.everything if n != NAMES.owner):
        options: list[st.SearchStrategy[str | None]] = [
            st.none(),
            st.just(values.get(name, "1")),
            st.sampled_from(pool),
            st.text(min_size=1, max_size=60),
            st.binary(min_size=1, max_size=80).map(_b64),
        ]
        if name in values:
            options.append(st.integers(1, 200).map(lambda n, v=values[name]: v[:-n] or v))
        choices[name] = st.one_of(*options)
    return choices


def test_fuzzed_stored_bundles_are_repaired_without_replacing_a_healthy_ca(
    ssm: Any, monkeypatch: pytest.MonkeyPatch, recording: RecordingClient, record_property: Record
) -> None:
    ensure(ParameterStore(ssm), PARSED, rotate=False, now=NOW, requester=OWNER)
    values = stored_values(ssm, NAMES)
    values.pop(NAMES.owner)
    values[NAMES.version_track] = "20260101"
    choices = _stored_choices(values)
    outcomes: dict[str, int] = {}
    _fuzz_count["stored"] = 0

    @FUZZ
    @given(stored=st.fixed_dictionaries(choices))
    def check(stored: dict[str, str | None]) -> None:
        _fuzz_count["stored"] += 1
        _restore(ssm, {n: v for n, v in stored.items() if v is not None})
        before = stored_values(ssm, NAMES)
        ca_names = (NAMES.cert(Item.CA), NAMES.key(Item.CA))
        ca_healthy = all(stored[n] == values[n] for n in ca_names)
        records: list[logging.LogRecord] = []
        catcher = _Catcher(records)
        logging.getLogger().addHandler(catcher)
        try:
            body = _generator("Update", physical_id=HEX, old_properties=BASE)
            sent = _run(monkeypatch, recording, body)
        finally:
            logging.getLogger().removeHandler(catcher)
        response = _exactly_one_sane_response(sent, body)
        assert not [r for r in records if r.exc_info], [
            r.getMessage() for r in records if r.exc_info
        ]
        if response["Status"] == "FAILED" and "SSM holds stage" in response["Reason"]:
            # A decodable rotation key beside a decodable CA key reads as a staged rotation in
            # progress, and this steady Update's previous properties contradict it: refused
            # before any write (docs/DESIGN.md §5), never a new CA.
            assert response["Reason"].startswith("RotationStage none (removed): SSM holds")
            assert stored_values(ssm, NAMES) == before
            outcomes["refused: stage"] = outcomes.get("refused: stage", 0) + 1
            return
        assert response["Status"] == "SUCCESS", response["Reason"]
        after = stored_values(ssm, NAMES)
        assert response["Data"]["CAFingerprint"] == assert_healthy(after, PARSED, NOW)
        if ca_healthy:
            assert {n: after[n] for n in ca_names} == {n: values[n] for n in ca_names}
            assert response["Data"]["Action"] in ("reused", "renewed")
        action = response["Data"]["Action"]
        outcomes[action] = outcomes.get(action, 0) + 1

    check()
    assert _fuzz_count["stored"] >= EXAMPLES // 2
    figure(
        record_property,
        "fuzz",
        "one answer each, healthy bundle after, healthy CA kept",
        space="stored values",
        examples=_fuzz_count["stored"],
        outcomes=outcomes,
    )
