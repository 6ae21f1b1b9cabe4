"""The verdicts `make arm64-check` prints (devkit/arm64_lifecycle.judge): each must be able to
say no. The emulated run itself is tests/test_arm64.py."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from devkit.arm64_lifecycle import RACK, judge
from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose
from handler.codec import to_stored
from handler.names import BundleNames, Item

NAMES = BundleNames.for_rack(RACK)
VERSIONS = {name: 1 for name in NAMES.material}


class FakeSsm:
    """What judge reads: the bundle's parameters' versions and one value."""

    def __init__(self, versions: dict[str, int], values: dict[str, str] | None = None) -> None:
        self.prefix = NAMES.prefix
        self._versions = versions
        self._values = values or {}

    def versions(self) -> dict[str, int]:
        return dict(self._versions)

    def value(self, name: str) -> str:
        return self._values[name]


def _ok(data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Status": "SUCCESS", "PhysicalResourceId": NAMES.prefix, "Data": data, **extra}


def _created(state: dict[str, Any]) -> None:
    response = _ok({"Action": "created", "CAFingerprint": "ab" * 32})
    assert judge("create", response, FakeSsm(VERSIONS), state) is None


def test_create_must_answer_created_with_the_bundle_in_ssm() -> None:
    state: dict[str, Any] = {}
    _created(state)
    assert state["line"].startswith("Action created, CA abababab")
    reused = _ok({"Action": "reused", "CAFingerprint": "ab" * 32})
    assert judge("create", reused, FakeSsm(VERSIONS), {}) == f"Action reused, id {NAMES.prefix}"
    partial = {name: 1 for name in list(NAMES.material)[:2]}
    created = _ok({"Action": "created", "CAFingerprint": "ab" * 32})
    missing = judge("create", created, FakeSsm(partial), {})
    assert missing is not None and "parameters missing from SSM" in missing
    failed = {"Status": "FAILED", "Reason": "AccessDenied"}
    assert judge("create", failed, FakeSsm(VERSIONS), {}) == "FAILED: AccessDenied"


def test_an_update_that_writes_a_parameter_is_not_a_reuse() -> None:
    state: dict[str, Any] = {}
    _created(state)
    reused = _ok({"Action": "reused", "CAFingerprint": "ab" * 32})
    assert judge("update", reused, FakeSsm(VERSIONS), dict(state)) is None
    rewritten = {**VERSIONS, NAMES.cert(Item.SERVER): 2}
    verdict = judge("update", reused, FakeSsm(rewritten), dict(state))
    assert verdict == (f"Action reused but 1 parameters written: ['{NAMES.cert(Item.SERVER)}']")
    another = _ok({"Action": "reused", "CAFingerprint": "cd" * 32})
    assert judge("update", another, FakeSsm(VERSIONS), dict(state)) == "Action reused, another CA"


def test_a_private_key_in_the_generators_answer_is_refused() -> None:
    leaked = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMII=\n").decode()
    response = _ok({"Action": "created", "CAFingerprint": "ab", "CACertificate": leaked})
    verdict = judge("create", response, FakeSsm(VERSIONS), {})
    assert verdict == "a private key in the generator's response"


def test_the_getter_must_hide_a_key_that_matches_the_stored_certificate() -> None:
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=2, now=now)
    server = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=now)
    other = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=now)
    stored = {NAMES.cert(Item.SERVER): to_stored(server.cert_pem())}
    ssm = FakeSsm(VERSIONS, stored)
    key = to_stored(server.key_pem())
    assert judge("getter", _ok({"Value": key}, NoEcho=True), ssm, {}) is None
    shown = judge("getter", _ok({"Value": key}, NoEcho=False), ssm, {})
    assert shown == "NoEcho False, key matches: True"
    wrong = to_stored(other.key_pem())
    assert judge("getter", _ok({"Value": wrong}, NoEcho=True), ssm, {}) == (
        "NoEcho True, key matches: False"
    )
    not_a_key = judge("getter", _ok({"Value": "hello"}, NoEcho=True), ssm, {})
    assert not_a_key is not None and not_a_key.startswith("Value is not the server key")


def test_a_delete_must_leave_no_parameter_of_the_bundle() -> None:
    done = _ok({})
    assert judge("delete", done, FakeSsm({}), {}) is None
    left = judge("delete", done, FakeSsm({f"{NAMES.prefix}-docker-tls-owner": 1}), {})
    assert left == "1 of the bundle's parameters left in SSM"
