"""A staged CA replacement (RotationStage), request by request, against SSM (in-process moto).

Each test drives ``ensure`` as the handler does for a stack update: the stage the template now
sends, and the stage its OldResourceProperties held. What is checked is what consumers see:
``ca-cert`` (what every instance installs as ``ca.pem``), which CA signs the leaves, which keys
are stored where, and how many writes each step costs.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from handler.bundle import Action
from handler.certificates import CA_COMMON_NAME, fingerprint, same_key, signed_by
from handler.codec import (
    certificate_from_stored,
    certificates_from_stored,
    private_key_from_stored,
    private_key_pem,
    to_stored,
)
from handler.ensure import Outcome, ensure
from handler.model import GeneratorProperties, RotationStage
from handler.names import BundleNames, Item
from handler.rotation import StageRefused
from handler.store import ParameterStore
from handler.stored import StoredBundle
from tests.conftest import NOW, RecordingClient, props, ssm_versions

RACK = "staged"
NAMES = BundleNames.for_rack(RACK)
INTRODUCE, SWITCH = RotationStage.INTRODUCE, RotationStage.SWITCH


def _props(stage: RotationStage | None, **more: Any) -> GeneratorProperties:
    return dataclasses.replace(props(RACK, **more), rotation_stage=stage)


def _step(
    store: ParameterStore,
    stage: RotationStage | None,
    previous: RotationStage | None,
    **more: Any,
) -> Outcome:
    return ensure(store, _props(stage, **more), rotate=False, now=NOW, previous_stage=previous)


def _values(ssm: Any) -> dict[str, str]:
    found = ssm.get_parameters(Names=list(NAMES.everything), WithDecryption=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def _bundle(values: dict[str, str]) -> list[str]:
    return [fingerprint(c) for c in certificates_from_stored(values[NAMES.cert(Item.CA)])]


def _signer(values: dict[str, str]) -> str:
    """Fingerprint of the bundle's certificate that holds ca-key, checked to sign the leaves."""
    key = private_key_from_stored(values[NAMES.key(Item.CA)])
    ca = next(c for c in certificates_from_stored(values[NAMES.cert(Item.CA)]) if same_key(c, key))
    for item in (Item.SERVER, Item.CLIENT):
        assert signed_by(certificate_from_stored(values[NAMES.cert(item)]), ca), item
    return fingerprint(ca)


def _fps(outcome: Outcome) -> list[str]:
    return [fingerprint(c) for c in outcome.trusted]


@pytest.fixture
def steady(store: ParameterStore, ssm: Any) -> dict[str, str]:
    ensure(store, _props(None), rotate=False, now=NOW)
    return _values(ssm)


def test_introduce_trusts_a_new_ca_beside_the_signing_one(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    before = ssm_versions(ssm, list(NAMES.material))
    outcome = _step(store, INTRODUCE, None)
    assert outcome.action is Action.INTRODUCED
    values = _values(ssm)
    bundle = _bundle(values)
    assert bundle[0] == a and len(bundle) == 2  # the signer first, then the new CA
    assert _signer(values) == a
    assert fingerprint(outcome.ca_cert) == a
    assert _fps(outcome) == bundle
    new = certificates_from_stored(values[NAMES.cert(Item.CA)])[1]
    assert same_key(new, private_key_from_stored(values[NAMES.next_ca_key]))
    assert new.subject.rfc4514_string().startswith(f"CN={CA_COMMON_NAME} ")  # a name of its own
    assert new.subject != certificate_from_stored(steady[NAMES.cert(Item.CA)]).subject
    after = ssm_versions(ssm, list(NAMES.material))
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {NAMES.cert(Item.CA)}  # the leaves and the CA key are untouched
    assert ssm.get_parameter(Name=NAMES.next_ca_key)["Parameter"]["Type"] == "SecureString"
    # The response names the signer alone; the getter of ca-cert gives both.
    assert certificate_from_stored(outcome.ca_cert_value) == outcome.ca_cert


def test_a_repeated_stage_writes_nothing_and_reads_once(
    ssm: Any, steady: dict[str, str], recorded_store: ParameterStore, recording: RecordingClient
) -> None:
    for stage, previous in ((INTRODUCE, None), (INTRODUCE, INTRODUCE)):
        _step(recorded_store, stage, previous)
    recording.calls.clear()
    assert _step(recorded_store, INTRODUCE, INTRODUCE).action is Action.REUSED
    assert recording.count("get_parameters") == 1
    assert recording.written() == [] and recording.count("delete_parameters") == 0
    _step(recorded_store, SWITCH, INTRODUCE)
    recording.calls.clear()
    assert _step(recorded_store, SWITCH, SWITCH).action is Action.REUSED
    assert recording.calls and {n for n, _ in recording.calls} == {"get_parameters"}


def test_switch_makes_the_new_ca_sign_and_keeps_the_old_key_for_a_rollback(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    _step(store, INTRODUCE, None)
    introduced = _values(ssm)
    b = _bundle(introduced)[1]
    outcome = _step(store, SWITCH, INTRODUCE)
    assert outcome.action is Action.SWITCHED
    values = _values(ssm)
    assert _bundle(values) == [b, a]
    assert _signer(values) == b  # the leaves are reissued by the new CA
    assert fingerprint(outcome.ca_cert) == b
    # Keys are moved byte for byte; the introduced one is no longer stored separately.
    assert values[NAMES.key(Item.CA)] == introduced[NAMES.next_ca_key]
    assert values[NAMES.previous_ca_key] == steady[NAMES.key(Item.CA)]
    assert NAMES.next_ca_key not in values


def test_retire_trusts_the_new_ca_alone_and_stores_the_old_key_nowhere(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    _step(store, INTRODUCE, None)
    _step(store, SWITCH, INTRODUCE)
    switched = _values(ssm)
    b = _signer(switched)
    leaves = {n: switched[n] for n in NAMES.material if "-ca-" not in n}
    outcome = _step(store, None, SWITCH)
    assert outcome.action is Action.RETIRED
    values = _values(ssm)
    assert _bundle(values) == [b] and _fps(outcome) == [b]
    assert {n: values[n] for n in leaves} == leaves  # nothing reissued
    assert NAMES.previous_ca_key not in values and NAMES.next_ca_key not in values
    assert steady[NAMES.key(Item.CA)] not in values.values()
    assert fingerprint(certificate_from_stored(values[NAMES.previous_ca_cert])) == a
    # A re-delivered retire changes nothing; the next ordinary update closes the window.
    assert _step(store, None, SWITCH).action is Action.REUSED
    assert NAMES.previous_ca_cert in _values(ssm)
    closing = _step(store, None, None)
    assert closing.action is Action.REUSED and closing.removed == 1
    assert NAMES.previous_ca_cert not in _values(ssm)
    assert _bundle(_values(ssm)) == [b]


def test_cancel_drops_the_introduced_ca(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    _step(store, INTRODUCE, None)
    outcome = _step(store, None, INTRODUCE)
    assert outcome.action is Action.CANCELLED
    values = _values(ssm)
    assert _bundle(values) == [a] and _signer(values) == a
    assert NAMES.next_ca_key not in values
    assert {n: values[n] for n in NAMES.material if n != NAMES.cert(Item.CA)} == {
        n: steady[n] for n in NAMES.material if n != NAMES.cert(Item.CA)
    }


def test_a_rolled_back_switch_makes_the_old_ca_sign_again(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    _step(store, INTRODUCE, None)
    introduced = _values(ssm)
    b = _bundle(introduced)[1]
    _step(store, SWITCH, INTRODUCE)
    outcome = _step(store, INTRODUCE, SWITCH)  # CloudFormation's rollback of the switch
    assert outcome.action is Action.INTRODUCED
    values = _values(ssm)
    assert _bundle(values) == [a, b]
    assert _signer(values) == a
    assert values[NAMES.key(Item.CA)] == steady[NAMES.key(Item.CA)]
    assert values[NAMES.next_ca_key] == introduced[NAMES.next_ca_key]
    assert NAMES.previous_ca_key not in values
    # ...and switching again works from there.
    assert _step(store, SWITCH, INTRODUCE).action is Action.SWITCHED
    assert _signer(_values(ssm)) == b


def test_a_rolled_back_retire_trusts_the_old_ca_again(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    a = _signer(steady)
    _step(store, INTRODUCE, None)
    _step(store, SWITCH, INTRODUCE)
    b = _signer(_values(ssm))
    _step(store, None, SWITCH)
    outcome = _step(store, SWITCH, None)  # CloudFormation's rollback of the retire
    assert outcome.action is Action.SWITCHED
    values = _values(ssm)
    assert _bundle(values) == [b, a] and _signer(values) == b
    assert NAMES.previous_ca_key not in values  # the old key stays gone
    assert _step(store, None, SWITCH).action is Action.RETIRED
    values = _values(ssm)
    assert _bundle(values) == [b]
    kept = ssm.get_parameter(Name=NAMES.previous_ca_cert)["Parameter"]  # the window again
    assert kept["Type"] == "String" and fingerprint(certificate_from_stored(kept["Value"])) == a


def test_switch_without_a_rotation_is_refused_and_writes_nothing(
    ssm: Any, steady: dict[str, str], recorded_store: ParameterStore, recording: RecordingClient
) -> None:
    before = ssm_versions(ssm, list(NAMES.everything))
    with pytest.raises(StageRefused, match="introduce first"):
        _step(recorded_store, SWITCH, None)
    assert recording.written() == []
    assert ssm_versions(ssm, list(NAMES.everything)) == before


def test_switch_to_a_ca_the_trust_bundle_lacks_is_refused_and_writes_nothing(
    ssm: Any, steady: dict[str, str], recorded_store: ParameterStore, recording: RecordingClient
) -> None:
    """An introduce cut short between its writes: the new key stored, ca-cert not yet
    rewritten. No instance trusts the new CA, so it must not sign; introducing again mends it."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from devkit import ssm_rules

    with ssm_rules.seeding():
        new_key = private_key_pem(ec.generate_private_key(ec.SECP256R1()))
        ssm.put_parameter(Name=NAMES.next_ca_key, Value=to_stored(new_key), Type="SecureString")
    before = ssm_versions(ssm, list(NAMES.everything))
    with pytest.raises(StageRefused) as refused:
        _step(recorded_store, SWITCH, INTRODUCE)
    assert str(refused.value) == (
        "RotationStage switch: the new CA is not in the stored trust bundle (ca-cert), so no "
        "instance trusts it yet. Set RotationStage introduce again and roll it out to every "
        "instance, then switch."
    )
    assert recording.written() == []
    assert ssm_versions(ssm, list(NAMES.everything)) == before
    again = _step(recorded_store, INTRODUCE, INTRODUCE)
    assert again.action is Action.INTRODUCED and len(again.trusted) == 2
    assert _step(recorded_store, SWITCH, INTRODUCE).action is Action.SWITCHED


def test_introduce_after_a_retire_cannot_bring_the_old_signer_back(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    _step(store, INTRODUCE, None)
    _step(store, SWITCH, INTRODUCE)
    _step(store, None, SWITCH)
    before = _values(ssm)
    with pytest.raises(StageRefused) as refused:
        _step(store, INTRODUCE, SWITCH)
    assert str(refused.value) == (
        "RotationStage introduce: the CA that signed before the switch was retired and its key "
        "is gone, so it cannot sign again. Remove RotationStage, or start a new rotation "
        "(introduce) from an update without it."
    )
    assert _values(ssm) == before
    # A new rotation, from an update without the property, is fine: it closes the window.
    assert _step(store, INTRODUCE, None).action is Action.INTRODUCED
    values = _values(ssm)
    assert NAMES.previous_ca_cert not in values and len(_bundle(values)) == 2


def test_a_rotation_token_rotates_at_once_and_clears_a_staged_rotation(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    _step(store, INTRODUCE, None)
    introduced = _values(ssm)
    outcome = ensure(
        store, _props(None, rotation_token="leak"), rotate=True, now=NOW, previous_stage=INTRODUCE
    )
    assert outcome.action is Action.ROTATED
    values = _values(ssm)
    assert len(_bundle(values)) == 1
    assert not set(NAMES.rotation) & set(values)
    assert introduced[NAMES.next_ca_key] not in values.values()


def test_delete_removes_a_staged_rotations_parameters(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    _step(store, INTRODUCE, None)
    _step(store, SWITCH, INTRODUCE)
    assert store.delete(NAMES.everything)
    assert _values(ssm) == {}


def test_the_introduced_ca_has_the_asked_algorithm_and_kms_key(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    from handler.certificates import KeyAlgorithm

    _step(store, INTRODUCE, None, key_algorithm=KeyAlgorithm.ECDSA_P384, kms_key_id="alias/rack")
    key = private_key_from_stored(_values(ssm)[NAMES.next_ca_key])
    assert KeyAlgorithm.of(key) is KeyAlgorithm.ECDSA_P384
    described = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [NAMES.next_ca_key]}]
    )["Parameters"][0]
    assert described["KeyId"] == "alias/rack"


def test_a_stored_bundle_is_what_the_getter_returns(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    _step(store, INTRODUCE, None)
    value = _values(ssm)[NAMES.cert(Item.CA)]
    pem = base64.b64decode(value)
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 2


# --------------------------------------------------------------------------------------------
# Through the handler, as CloudFormation sends it
# --------------------------------------------------------------------------------------------

BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}


def test_an_out_of_order_stage_fails_the_update_naming_the_property(invoke: Any, ssm: Any) -> None:
    created = invoke("Create", BASE)
    before = ssm_versions(ssm, list(NAMES.everything))
    response = invoke(
        "Update",
        {**BASE, "RotationStage": "switch"},
        physical_id=created["PhysicalResourceId"],
        old_properties=BASE,
    )
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("RotationStage switch: no CA rotation is in progress")
    assert "introduce first" in response["Reason"]
    assert len(response["Reason"]) <= 240
    assert response["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert ssm_versions(ssm, list(NAMES.everything)) == before


@pytest.mark.parametrize("value", ["retire", "INTRODUCE!", "1", ["introduce"]])
def test_a_bad_stage_value_is_refused_naming_the_property(invoke: Any, value: Any) -> None:
    response = invoke("Create", {**BASE, "RotationStage": value})
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("RotationStage must be introduce or switch")


def test_the_stages_through_the_handler_report_their_actions(invoke: Any) -> None:
    created = invoke("Create", BASE)
    physical = created["PhysicalResourceId"]
    steps = [("introduce", None, "introduced"), ("switch", "introduce", "switched"),
             (None, "switch", "retired"), (None, None, "reused")]  # fmt: skip
    trusted = []
    for stage, previous, action in steps:
        properties = {**BASE, **({"RotationStage": stage} if stage else {})}
        old = {**BASE, **({"RotationStage": previous} if previous else {})}
        response = invoke("Update", properties, physical_id=physical, old_properties=old)
        assert response["Status"] == "SUCCESS", response["Reason"]
        data = response["Data"]
        assert data["Action"] == action
        assert data["TrustedCAFingerprints"].split(",")[0] == data["CAFingerprint"]
        assert certificate_from_stored(data["CACertificate"])  # the signer's, one certificate
        trusted.append(data["TrustedCAFingerprints"].count(",") + 1)
    assert trusted == [2, 2, 1, 1]


def _introduce_then_get(invoke: Any, base: dict[str, str], key: str) -> dict[str, Any]:
    """A stack created from ``base``, updated to introduce, then a getter of ``key``."""
    created = invoke("Create", base)
    invoke(
        "Update",
        {**base, "RotationStage": "introduce"},
        physical_id=created["PhysicalResourceId"],
        old_properties=base,
    )
    response: dict[str, Any] = invoke(
        "Create",
        {"Rack": RACK, "ParameterKey": key},
        resource_type="Custom::SelfSignedCertificateGetter",
    )
    return response


def test_the_getter_hands_out_both_cas_during_a_rotation(invoke: Any, ssm: Any) -> None:
    getter = _introduce_then_get(invoke, BASE, NAMES.cert(Item.CA))
    assert getter["Status"] == "SUCCESS"
    assert getter["NoEcho"] is False
    assert len(certificates_from_stored(getter["Data"]["Value"])) == 2
    # The keys a rotation keeps are never a getter's to hand out.
    refused = invoke(
        "Create",
        {"Rack": RACK, "ParameterKey": NAMES.next_ca_key},
        resource_type="Custom::SelfSignedCertificateGetter",
    )
    assert refused["Status"] == "FAILED"
    assert refused["Reason"].startswith("ParameterKey")


def test_a_two_ca_rsa_3072_bundle_is_too_large_for_a_getter(invoke: Any) -> None:
    rsa = {**BASE, "KeyAlgorithm": "RSA-3072"}
    getter = _introduce_then_get(invoke, rsa, NAMES.cert(Item.CA))
    assert getter["Status"] == "FAILED"
    assert "too many for CloudFormation's 4096-byte response" in getter["Reason"]


# --------------------------------------------------------------------------------------------
# What an operator reads, and stages found half done
# --------------------------------------------------------------------------------------------


def test_the_stage_is_read_from_what_is_stored(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    from handler.stored import StoredBundle

    seen = [StoredBundle.decode(_values(ssm), NAMES).stage]
    for stage, previous in ((INTRODUCE, None), (SWITCH, INTRODUCE), (None, SWITCH), (SWITCH, None)):
        _step(store, stage, previous)
        seen.append(StoredBundle.decode(_values(ssm), NAMES).stage)
    assert seen == [None, INTRODUCE, SWITCH, None, SWITCH]  # retired; then a retire rolled back


def test_a_cancel_that_only_removes_is_still_a_cancel(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    """A cancel interrupted after its bundle write leaves only the key to remove."""
    _step(store, INTRODUCE, None)
    ssm.put_parameter(
        Name=NAMES.cert(Item.CA), Value=steady[NAMES.cert(Item.CA)], Type="String", Overwrite=True
    )
    outcome = _step(store, None, INTRODUCE)
    assert outcome.action is Action.CANCELLED
    assert (outcome.written, outcome.removed) == (0, 1)


def test_an_introduced_ca_is_named_by_its_key(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    import hashlib
    import re

    from handler.bundle import plan
    from handler.certificates import public_key_der

    introduce = _props(INTRODUCE)
    planned = plan(StoredBundle.decode(_values(ssm), NAMES), introduce, rotate=False, now=NOW)
    assert planned.items[0].reason == (
        "healthy; a new CA (ECDSA-P256) is trusted beside the signing one"
    )
    _step(store, INTRODUCE, None)
    values = _values(ssm)
    new = certificates_from_stored(values[NAMES.cert(Item.CA)])[1]
    name = new.subject.rfc4514_string()
    assert re.fullmatch(r"CN=docker-tls CA [0-9a-f]{8}", name)
    digest = hashlib.sha256(public_key_der(private_key_from_stored(values[NAMES.next_ca_key])))
    assert name.endswith(digest.hexdigest()[:8])


def test_a_ca_beside_the_signer_with_no_key_is_retired(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    """A bundle holding another CA and no rotation in progress (hand-edited): an ordinary
    update retires it; nothing of it is kept, as no stack update ever trusted it."""
    from handler.certificates import CertificateAuthority, KeyAlgorithm
    from handler.codec import bundle_pem, to_stored

    other = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=9, now=NOW).cert
    signer = certificate_from_stored(steady[NAMES.cert(Item.CA)])
    ssm.put_parameter(
        Name=NAMES.cert(Item.CA), Value=to_stored(bundle_pem((signer, other))), Type="String",
        Overwrite=True,
    )  # fmt: skip
    assert _step(store, None, None).action is Action.RETIRED
    values = _values(ssm)
    assert _bundle(values) == [fingerprint(signer)]
    assert not set(NAMES.rotation) & set(values)


def test_every_stored_ca_key_stays_a_secure_string(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    """Keys are moved byte for byte at each step, and every name they land under is a
    SecureString: forward, and back (a rolled-back switch puts the new key in next-ca-key)."""
    keys = (NAMES.key(Item.CA), NAMES.next_ca_key, NAMES.previous_ca_key)
    for stage, previous in ((INTRODUCE, None), (SWITCH, INTRODUCE), (INTRODUCE, SWITCH)):
        _step(store, stage, previous)
        found = ssm.get_parameters(Names=list(keys))["Parameters"]
        assert found and {p["Type"] for p in found} == {"SecureString"}, (stage, found)


def test_a_ca_certificate_stored_twice_is_stored_once_and_kept(
    store: ParameterStore, ssm: Any, steady: dict[str, str]
) -> None:
    """No rotation in progress and the signer's certificate twice in ca-cert: the bundle is
    rewritten with it once, the very same certificate (nothing re-signed)."""
    from handler.codec import bundle_pem, to_stored

    signer = certificate_from_stored(steady[NAMES.cert(Item.CA)])
    ssm.put_parameter(
        Name=NAMES.cert(Item.CA), Value=to_stored(bundle_pem((signer, signer))), Type="String",
        Overwrite=True,
    )  # fmt: skip
    outcome = _step(store, None, None)
    assert outcome.action is Action.RENEWED
    assert outcome.ca_cert == signer
    assert _values(ssm)[NAMES.cert(Item.CA)] == steady[NAMES.cert(Item.CA)]


def test_every_step_tells_the_operator_what_it_does_to_the_cas(store: ParameterStore) -> None:
    """The CA item's reason, as the log and `docker-tls plan` show it, for each step forward
    and each rollback (the action alone does not tell a rollback from its step)."""

    def said(stage: RotationStage | None, previous: RotationStage | None) -> tuple[str, str]:
        outcome = _step(store, stage, previous)
        return outcome.action.value, outcome.plans[0].items[0].reason

    walk = [
        (None, None, "created", "nothing stored yet"),
        (INTRODUCE, None, "introduced", "a new CA (ECDSA-P256) is trusted beside the signing one"),
        (None, INTRODUCE, "cancelled", "the introduced CA is dropped; it never signed"),
        (INTRODUCE, None, "introduced", "a new CA (ECDSA-P256) is trusted beside the signing one"),
        (
            SWITCH,
            INTRODUCE,
            "switched",
            "the new CA signs; the server and client certificates are reissued by it",
        ),
        (
            INTRODUCE,
            SWITCH,
            "introduced",
            "the CA that signed before signs again; the new one stays trusted",
        ),
        (
            SWITCH,
            INTRODUCE,
            "switched",
            "the new CA signs; the server and client certificates are reissued by it",
        ),
        (None, SWITCH, "retired", "only the new CA stays trusted; the old CA's key is removed"),
        (SWITCH, None, "switched", "the retired CA is trusted again (a retire rolled back)"),
        (None, SWITCH, "retired", "only the signing CA stays trusted"),
        (
            None,
            None,
            "reused",
            "the retired CA's certificate is dropped (the rollback window closes)",
        ),
    ]
    for stage, previous, action, reason in walk:
        expected = reason if action == "created" else f"healthy; {reason}"
        assert said(stage, previous) == (action, expected), (stage, previous)


def _seed(ssm: Any, changes: dict[str, str | None]) -> None:
    """A state a crash between writes (or a hand edit) leaves: values set or deleted."""
    from devkit import ssm_rules

    with ssm_rules.seeding():
        for name, value in changes.items():
            if value is None:
                ssm.delete_parameter(Name=name)
            else:
                ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


@pytest.fixture
def introduced(store: ParameterStore, ssm: Any, steady: dict[str, str]) -> dict[str, str]:
    _step(store, INTRODUCE, None)
    return _values(ssm)


@pytest.mark.parametrize("ca_key_moved", [False, True])
def test_a_switch_cut_short_between_its_key_writes_is_finished_by_its_retry(
    store: ParameterStore, ssm: Any, introduced: dict[str, str], ca_key_moved: bool
) -> None:
    """A switch writes previous-ca-key (the old key), then ca-key (the new one), then removes
    next-ca-key. Cut short after the first write or the second, its retry finishes it."""
    old, new = introduced[NAMES.key(Item.CA)], introduced[NAMES.next_ca_key]
    _seed(ssm, {NAMES.previous_ca_key: old, **({NAMES.key(Item.CA): new} if ca_key_moved else {})})
    assert _step(store, SWITCH, INTRODUCE).action is Action.SWITCHED
    values = _values(ssm)
    assert (values[NAMES.key(Item.CA)], values[NAMES.previous_ca_key]) == (new, old)
    assert NAMES.next_ca_key not in values


def test_a_switch_cut_short_before_the_new_key_signs_is_cancelled_by_removing_the_stage(
    store: ParameterStore, ssm: Any, introduced: dict[str, str]
) -> None:
    """Cut short after previous-ca-key only, the old CA still signs: removing RotationStage
    drops the new CA (it never signed) rather than retiring the old one."""
    old = introduced[NAMES.key(Item.CA)]
    _seed(ssm, {NAMES.previous_ca_key: old})
    assert _step(store, None, INTRODUCE).action is Action.CANCELLED
    values = _values(ssm)
    assert values[NAMES.key(Item.CA)] == old
    assert NAMES.next_ca_key not in values and NAMES.previous_ca_key not in values


def test_a_ca_key_lost_mid_rotation_rotates_at_once(
    store: ParameterStore, ssm: Any, introduced: dict[str, str]
) -> None:
    """No signing key: the stage cannot be taken, and the ordinary rules rotate to a new CA,
    which removes the staged rotation's parameters; the request, still asking to introduce,
    then introduces a CA beside the new one (not the one whose signer was lost)."""
    _seed(ssm, {NAMES.key(Item.CA): None})
    outcome = _step(store, INTRODUCE, INTRODUCE)
    assert outcome.action is Action.ROTATED
    first, then = outcome.plans[0], outcome.plans[1]
    assert first.items[0].reason == "CA key not stored"
    assert first.removals == (NAMES.next_ca_key,)
    assert then.action is Action.INTRODUCED
    values = _values(ssm)
    assert values[NAMES.next_ca_key] != introduced[NAMES.next_ca_key]
    assert len(_bundle(values)) == 2


def test_a_lost_trust_bundle_is_rebuilt_under_the_name_the_leaves_chain_through(
    store: ParameterStore, ssm: Any, introduced: dict[str, str]
) -> None:
    """ca-cert gone mid-introduce: the signer's certificate is rebuilt under the issuer name
    of the leaves it signed, so they still chain and are kept."""
    _seed(ssm, {NAMES.cert(Item.CA): None})
    outcome = _step(store, INTRODUCE, INTRODUCE)
    assert [p.decision.value for p in outcome.plans[0].items[1:]] == ["reuse", "reuse"]
    assert outcome.ca_cert.subject.rfc4514_string() == f"CN={CA_COMMON_NAME}"
    assert len(outcome.trusted) == 2
