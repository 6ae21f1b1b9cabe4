"""ensure() against SSM (in-process moto): the decision rules (docs/DESIGN.md §3) as writes."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any

import pytest
from cryptography import x509

from devkit import ssm_rules
from handler.bundle import Action
from handler.certificates import (
    CertificateAuthority,
    KeyAlgorithm,
    Purpose,
    fingerprint,
    same_key,
    signed_by,
)
from handler.codec import (
    certificate_from_stored,
    certificate_pem,
    private_key_from_stored,
    to_stored,
)
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore, StoreError
from handler.stored import StoredBundle
from tests import legacy
from tests.conftest import NOW, RecordingClient, client_error, props, ssm_versions

NAMES = BundleNames.for_rack("convox")
ALL = list(NAMES.everything)


def _values(ssm: Any) -> dict[str, str]:
    found = ssm.get_parameters(Names=ALL, WithDecryption=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def _authority(ssm: Any) -> CertificateAuthority:
    values = _values(ssm)
    return CertificateAuthority(
        certificate_from_stored(values[NAMES.cert(Item.CA)]),
        private_key_from_stored(values[NAMES.key(Item.CA)]),
    )


def test_create_writes_six_typed_parameters(ssm: Any, store: ParameterStore) -> None:
    outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.CREATED
    assert outcome.written == 6
    described = {p["Name"]: p for p in ssm.describe_parameters(MaxResults=50)["Parameters"]}
    assert sorted(described) == sorted(NAMES.material)
    for item in Item:
        assert described[NAMES.cert(item)]["Type"] == "String"
        assert described[NAMES.key(item)]["Type"] == "SecureString"
        assert described[NAMES.key(item)]["Tier"] == "Standard"
    assert NAMES.version_track not in described
    authority = _authority(ssm)
    assert fingerprint(authority.cert) == fingerprint(outcome.ca_cert)
    values = _values(ssm)
    for item in (Item.SERVER, Item.CLIENT):
        leaf = certificate_from_stored(values[NAMES.cert(item)])
        assert signed_by(leaf, authority.cert)
        assert same_key(leaf, private_key_from_stored(values[NAMES.key(item)]))


def test_rsa_4096_keys_go_to_the_advanced_tier_with_the_given_kms_key(
    ssm: Any, store: ParameterStore
) -> None:
    ensure(
        store,
        props(key_algorithm=KeyAlgorithm.RSA_4096, kms_key_id="alias/docker"),
        rotate=False,
        now=NOW,
    )
    described = {p["Name"]: p for p in ssm.describe_parameters(MaxResults=50)["Parameters"]}
    for item in Item:
        key = described[NAMES.key(item)]
        assert key["Tier"] == "Advanced"
        assert key["KeyId"] == "alias/docker"
        assert described[NAMES.cert(item)]["Tier"] == "Standard"
    raw = ssm.get_parameter(Name=NAMES.key(Item.CA), WithDecryption=True)["Parameter"]["Value"]
    assert len(raw) > 4096


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(props(), id="update-with-new-version"),
        pytest.param(props(), id="repeated-create"),
        pytest.param(props(validity_days=365), id="changed-validity-reissues-nothing"),
        pytest.param(
            props(server_subject_alt_names=("127.0.0.1", "localhost")), id="reordered-sans"
        ),
    ],
)
def test_a_healthy_bundle_is_reused_without_writes(
    ssm: Any, store: ParameterStore, recording: RecordingClient, second: Any
) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    before = ssm_versions(ssm, ALL)
    recorded = ParameterStore(recording)  # type: ignore[arg-type]
    again = ensure(recorded, second, rotate=False, now=NOW + dt.timedelta(days=400))
    assert again.action is Action.REUSED
    assert again.written == 0
    assert ssm_versions(ssm, ALL) == before
    assert fingerprint(again.ca_cert) == fingerprint(first.ca_cert)
    assert [name for name, _ in recording.calls] == ["get_parameters"]


def _replace(ssm: Any, name: str, value: str, secure: bool = False) -> None:
    ssm.put_parameter(
        Name=name, Value=value, Type="SecureString" if secure else "String", Overwrite=True
    )


def _foreign_leaf(purpose: Purpose) -> tuple[str, str]:
    other = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=100, now=NOW)
    leaf = other.issue(purpose, KeyAlgorithm.ECDSA_P256, validity_days=100, now=NOW)
    return to_stored(leaf.cert_pem()), to_stored(leaf.key_pem())


def _damage(ssm: Any, item: Item, how: str) -> None:
    cert_name, key_name = NAMES.cert(item), NAMES.key(item)
    purpose = Purpose.SERVER if item is Item.SERVER else Purpose.CLIENT
    if how == "missing-cert":
        ssm.delete_parameter(Name=cert_name)
    elif how == "missing-key":
        ssm.delete_parameter(Name=key_name)
    elif how == "undecodable":
        _replace(ssm, cert_name, "%%% not base64 %%%")
    elif how == "garbage-pem":
        _replace(
            ssm,
            key_name,
            base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nxx\n").decode(),
            secure=True,
        )
    elif how == "mismatched":
        other_key = _values(ssm)[NAMES.key(Item.SERVER if item is Item.CLIENT else Item.CLIENT)]
        _replace(ssm, key_name, other_key, secure=True)
    elif how == "foreign-signed":
        cert, key = _foreign_leaf(purpose)
        _replace(ssm, cert_name, cert)
        _replace(ssm, key_name, key, secure=True)
    elif how == "near-expiry":
        leaf = _authority(ssm).issue(purpose, KeyAlgorithm.ECDSA_P256, validity_days=30, now=NOW)
        _replace(ssm, cert_name, to_stored(leaf.cert_pem()))
        _replace(ssm, key_name, to_stored(leaf.key_pem()), secure=True)
    elif how == "wrong-purpose":
        wrong = Purpose.CLIENT if purpose is Purpose.SERVER else Purpose.SERVER
        leaf = _authority(ssm).issue(wrong, KeyAlgorithm.ECDSA_P256, validity_days=300, now=NOW)
        _replace(ssm, cert_name, to_stored(leaf.cert_pem()))
        _replace(ssm, key_name, to_stored(leaf.key_pem()), secure=True)
    else:
        raise AssertionError(how)


DAMAGE = [
    "missing-cert",
    "missing-key",
    "undecodable",
    "garbage-pem",
    "mismatched",
    "foreign-signed",
    "near-expiry",
    "wrong-purpose",
]


@pytest.mark.parametrize("item", [Item.SERVER, Item.CLIENT])
@pytest.mark.parametrize("how", DAMAGE)
def test_a_bad_leaf_is_reissued_alone_under_the_kept_ca(
    ssm: Any, store: ParameterStore, item: Item, how: str
) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    _damage(ssm, item, how)
    before = ssm_versions(ssm, ALL)
    outcome = ensure(store, props(), rotate=False, now=NOW + dt.timedelta(days=1))
    assert outcome.action is Action.RENEWED
    after = ssm_versions(ssm, ALL)
    changed = {name for name in after if after[name] != before.get(name)}
    if how in ("missing-cert", "undecodable"):
        # Only the certificate was lost: the stored key is certified again (one write), which
        # is also what lets concurrent repairs converge.
        assert changed == {NAMES.cert(item)}
    else:
        assert changed == {NAMES.cert(item), NAMES.key(item)}
    assert fingerprint(outcome.ca_cert) == fingerprint(first.ca_cert)
    values = _values(ssm)
    leaf = certificate_from_stored(values[NAMES.cert(item)])
    assert signed_by(leaf, first.ca_cert)
    assert same_key(leaf, private_key_from_stored(values[NAMES.key(item)]))
    reason = outcome.plans[0].items[1 if item is Item.SERVER else 2].reason
    assert reason != "healthy"


def test_changed_sans_reissue_only_the_server(ssm: Any, store: ParameterStore) -> None:
    ensure(store, props(), rotate=False, now=NOW)
    before = ssm_versions(ssm, ALL)
    wanted = ("docker.internal", "10.1.2.3")
    outcome = ensure(store, props(server_subject_alt_names=wanted), rotate=False, now=NOW)
    after = ssm_versions(ssm, ALL)
    assert {n for n in after if after[n] != before[n]} == {
        NAMES.cert(Item.SERVER),
        NAMES.key(Item.SERVER),
    }
    server = certificate_from_stored(_values(ssm)[NAMES.cert(Item.SERVER)])
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(v) for v in sans.get_values_for_type(x509.DNSName)} == {"docker.internal"}
    assert "SANs" in outcome.plans[0].items[1].reason


def test_changed_key_algorithm_reissues_leaves_not_the_ca(ssm: Any, store: ParameterStore) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    before = ssm_versions(ssm, ALL)
    outcome = ensure(store, props(key_algorithm=KeyAlgorithm.ECDSA_P384), rotate=False, now=NOW)
    after = ssm_versions(ssm, ALL)
    assert after[NAMES.cert(Item.CA)] == before[NAMES.cert(Item.CA)]
    assert after[NAMES.key(Item.CA)] == before[NAMES.key(Item.CA)]
    assert fingerprint(outcome.ca_cert) == fingerprint(first.ca_cert)
    key = private_key_from_stored(_values(ssm)[NAMES.key(Item.SERVER)])
    assert KeyAlgorithm.of(key) is KeyAlgorithm.ECDSA_P384


def test_a_ca_near_expiry_is_renewed_with_the_same_key_and_both_sides_still_chain(
    ssm: Any, store: ParameterStore
) -> None:
    first = ensure(store, props(validity_days=400), rotate=False, now=NOW)
    old_ca = first.ca_cert
    old_client = certificate_from_stored(_values(ssm)[NAMES.cert(Item.CLIENT)])
    later = NOW + dt.timedelta(days=350)  # CA and leaves within 60 days of expiry
    before = ssm_versions(ssm, ALL)
    outcome = ensure(store, props(validity_days=400), rotate=False, now=later)
    assert outcome.action is Action.RENEWED
    after = ssm_versions(ssm, ALL)
    assert after[NAMES.key(Item.CA)] == before[NAMES.key(Item.CA)]  # the key is kept
    assert after[NAMES.cert(Item.CA)] == before[NAMES.cert(Item.CA)] + 1
    renewed = outcome.ca_cert
    assert renewed.subject == old_ca.subject
    assert renewed.public_key() == old_ca.public_key()
    assert renewed.not_valid_after_utc > old_ca.not_valid_after_utc
    new_client = certificate_from_stored(_values(ssm)[NAMES.cert(Item.CLIENT)])
    assert signed_by(old_client, renewed)  # issued before the renewal, checked by the new CA
    assert signed_by(new_client, old_ca)  # issued after, checked by instances' old CA


def test_a_lost_ca_certificate_is_rebuilt_from_the_key_with_the_leaves_issuer(
    ssm: Any, store: ParameterStore
) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    _replace(ssm, NAMES.cert(Item.CA), "garbage")
    outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.RENEWED
    assert outcome.ca_cert.subject == first.ca_cert.subject
    assert outcome.plans[0].items[0].decision.value == "renew"
    client = certificate_from_stored(_values(ssm)[NAMES.cert(Item.CLIENT)])
    assert signed_by(client, outcome.ca_cert)


@pytest.mark.parametrize("how", ["missing", "unreadable"])
def test_a_lost_ca_key_rotates_everything_with_a_warning(
    ssm: Any, store: ParameterStore, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    if how == "missing":
        ssm.delete_parameter(Name=NAMES.key(Item.CA))
    else:
        _replace(ssm, NAMES.key(Item.CA), "bm90IGEga2V5", secure=True)
    before = ssm_versions(ssm, ALL)
    with caplog.at_level(logging.WARNING):
        outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.ROTATED
    assert fingerprint(outcome.ca_cert) != fingerprint(first.ca_cert)
    after = ssm_versions(ssm, ALL)
    assert all(after[name] != before.get(name) for name in NAMES.material)
    assert any(
        "must be replaced" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


def test_rotation_on_request_replaces_a_healthy_ca(ssm: Any, store: ParameterStore) -> None:
    first = ensure(store, props(), rotate=False, now=NOW)
    outcome = ensure(store, props(), rotate=True, now=NOW)
    assert outcome.action is Action.ROTATED
    assert fingerprint(outcome.ca_cert) != fingerprint(first.ca_cert)
    assert outcome.written == 6
    assert [p.action for p in outcome.plans] == [Action.ROTATED, Action.REUSED]


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDeniedException"),
        client_error("KMSAccessDeniedException", message="KMS denied decrypt"),
        client_error("KMSInvalidStateException"),
        client_error("ThrottlingException", message="Rate exceeded"),
        client_error("InternalServerError"),
    ],
    ids=lambda e: e.response["Error"]["Code"],
)
def test_a_failed_read_fails_without_writing(
    ssm: Any, store: ParameterStore, recording: RecordingClient, error: Exception
) -> None:
    ensure(store, props(), rotate=False, now=NOW)
    before = ssm_versions(ssm, ALL)
    recording.fail("get_parameters", error)
    with pytest.raises(StoreError) as raised:
        ensure(ParameterStore(recording), props(), rotate=False, now=NOW)  # type: ignore[arg-type]
    assert raised.value.code == error.response["Error"]["Code"]  # type: ignore[attr-defined]
    assert recording.written() == []
    assert recording.count("delete_parameters") == 0
    assert ssm_versions(ssm, ALL) == before


def test_a_failed_read_of_an_empty_store_creates_nothing(recording: RecordingClient) -> None:
    recording.fail("get_parameters", client_error("AccessDeniedException"))
    with pytest.raises(StoreError):
        ensure(ParameterStore(recording), props(), rotate=False, now=NOW)  # type: ignore[arg-type]
    assert recording.written() == []


def test_an_old_go_rack_is_adopted(ssm: Any, recording: RecordingClient) -> None:
    stored = legacy.store_convox_rack(ssm, "convox", NOW)
    outcome = ensure(
        ParameterStore(recording),
        props(key_algorithm=KeyAlgorithm.RSA_2048),  # type: ignore[arg-type]
        rotate=False,
        now=NOW,
    )
    assert outcome.action is Action.RENEWED
    values = _values(ssm)
    for name in (
        NAMES.cert(Item.CA),
        NAMES.key(Item.CA),
        NAMES.cert(Item.CLIENT),
        NAMES.key(Item.CLIENT),
    ):
        assert values[name] == stored[name], f"{name} must be kept byte for byte"
    assert sorted(recording.written()) == sorted([NAMES.cert(Item.SERVER), NAMES.key(Item.SERVER)])
    assert NAMES.version_track not in values
    server = certificate_from_stored(values[NAMES.cert(Item.SERVER)])
    ca = certificate_from_stored(values[NAMES.cert(Item.CA)])
    assert signed_by(server, ca)
    assert server.issuer == ca.subject
    # The kept CA's parameters stay the plain Strings the old handler wrote.
    types = {p["Name"]: p["Type"] for p in ssm.describe_parameters(MaxResults=50)["Parameters"]}
    assert types[NAMES.key(Item.CA)] == "String"
    assert types[NAMES.key(Item.SERVER)] == "SecureString"
    # And the next update is a pure reuse.
    again = ensure(
        ParameterStore(recording),
        props(key_algorithm=KeyAlgorithm.RSA_2048),  # type: ignore[arg-type]
        rotate=False,
        now=NOW,
    )
    assert again.action is Action.REUSED
    assert fingerprint(again.ca_cert) == fingerprint(ca)
    assert certificate_pem(again.ca_cert) == base64.b64decode(stored[NAMES.cert(Item.CA)])


def test_version_track_is_never_written(ssm: Any, recording: RecordingClient) -> None:
    store = ParameterStore(recording)  # type: ignore[arg-type]
    ensure(store, props(), rotate=False, now=NOW)
    ensure(store, props(), rotate=True, now=NOW)
    ensure(store, props(validity_days=100), rotate=False, now=NOW + dt.timedelta(days=99))
    assert recording.written()
    assert NAMES.version_track not in recording.written()


def test_an_interrupted_rotation_finishes_as_a_rotation(
    ssm: Any, store: ParameterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash after the new CA key was written leaves it beside the old CA certificate."""
    first = ensure(store, props(), rotate=False, now=NOW)
    new_key = KeyAlgorithm.ECDSA_P256.generate()
    from handler.codec import private_key_pem

    _replace(ssm, NAMES.key(Item.CA), to_stored(private_key_pem(new_key)), secure=True)
    with caplog.at_level(logging.WARNING):
        outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.ROTATED
    assert same_key(outcome.ca_cert, new_key)
    assert outcome.ca_cert.subject == first.ca_cert.subject
    values = _values(ssm)
    for item in (Item.SERVER, Item.CLIENT):
        assert signed_by(certificate_from_stored(values[NAMES.cert(item)]), outcome.ca_cert)
    assert any("must be replaced" in r.getMessage() for r in caplog.records)


def test_a_leaf_stored_in_the_ca_slot_is_repaired_from_the_ca_key(
    ssm: Any, store: ParameterStore
) -> None:
    """The fleet's CA certificate (same key, same subject) keeps trusting what follows."""
    first = ensure(store, props(), rotate=False, now=NOW)
    values = _values(ssm)
    _replace(ssm, NAMES.cert(Item.CA), values[NAMES.cert(Item.SERVER)])
    before = ssm_versions(ssm, ALL)
    outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.RENEWED
    assert outcome.ca_cert.subject == first.ca_cert.subject
    assert outcome.ca_cert.public_key() == first.ca_cert.public_key()
    after = ssm_versions(ssm, ALL)
    assert {n for n in after if after[n] != before[n]} == {NAMES.cert(Item.CA)}
    client = certificate_from_stored(values[NAMES.cert(Item.CLIENT)])
    assert signed_by(client, outcome.ca_cert)


def test_a_parameter_ssm_will_not_downgrade_stays_advanced(
    ssm: Any, recording: RecordingClient
) -> None:
    """Real SSM refuses Advanced → Standard (moto does not); the write then keeps Advanced."""
    store = ParameterStore(recording)  # type: ignore[arg-type]
    ensure(store, props(), rotate=False, now=NOW)
    refusal = "This parameter uses the advanced-parameter tier. You can't downgrade it."
    recording.fail(
        "put_parameter", client_error("ValidationException", "PutParameter", refusal), times=1
    )
    outcome = ensure(store, props(key_algorithm=KeyAlgorithm.ECDSA_P384), rotate=False, now=NOW)
    assert outcome.action is Action.RENEWED
    puts = [kwargs for name, kwargs in recording.calls if name == "put_parameter"][6:]
    assert puts[0]["Tier"] == "Standard"
    assert puts[1]["Name"] == puts[0]["Name"]
    assert puts[1]["Tier"] == "Advanced"
    assert all(p["Tier"] == "Standard" for p in puts[2:])


# --- concurrent writers and what the logs say ------------------------------------------------


class _Racing:
    """An SSM client proxy where another writer creates each named parameter just before our
    create-if-absent write of it, ``times`` times: the conflict a parallel invocation causes."""

    def __init__(self, client: Any, names: list[str], times: int = 1) -> None:
        self._client = client
        self._names = names
        self._left = times
        self.ca_keys: list[str] = []

    def put_parameter(self, **kwargs: Any) -> Any:
        if kwargs["Name"] == NAMES.key(Item.CA):
            self.ca_keys.append(kwargs["Value"])
        if self._left and kwargs["Name"] in self._names and not kwargs["Overwrite"]:
            self._left -= 1
            theirs = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=9, now=NOW)
            self._client.put_parameter(
                Name=kwargs["Name"],
                Value=to_stored(certificate_pem(theirs.cert)),
                Type=kwargs["Type"],
            )
        return self._client.put_parameter(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize(("end", "expected"), [("low", [0.05, 0.1]), ("high", [0.2, 0.4])])
def test_a_write_conflict_backs_off_longer_each_round(
    ssm: Any, monkeypatch: pytest.MonkeyPatch, end: str, expected: list[float]
) -> None:
    """50 to 200 ms of jitter, times the round: writers spread out, and wait longer as the
    races go on. Each end of the jitter is pinned in turn."""
    from handler import ensure as ensure_module

    monkeypatch.setattr(
        ensure_module.random, "uniform", lambda low, high: low if end == "low" else high
    )
    pauses: list[float] = []
    racing = _Racing(ssm, [NAMES.cert(Item.SERVER), NAMES.cert(Item.CLIENT)], times=2)
    store = ParameterStore(racing)  # type: ignore[arg-type]
    outcome = ensure(store, props(), rotate=False, now=NOW, sleep=pauses.append)
    assert len(outcome.plans) == 4  # two rounds lost a race, the third wrote, the last verified
    assert pauses == pytest.approx(expected)


def test_a_rotation_interrupted_by_a_conflict_rotates_once(ssm: Any, store: ParameterStore) -> None:
    """A concurrent writer after our new CA key (round 1) must not make round 2 rotate again:
    that would install a second new CA under the first one's leaves."""
    ensure(store, props(), rotate=False, now=NOW)
    ssm.delete_parameter(Name=NAMES.cert(Item.SERVER))  # round 1 creates it: the race is there
    racing = _Racing(ssm, [NAMES.cert(Item.SERVER)])
    outcome = ensure(ParameterStore(racing), props(), rotate=True, now=NOW, sleep=lambda _: None)  # type: ignore[arg-type]
    assert outcome.action is Action.ROTATED
    assert len(racing.ca_keys) == 1
    assert _values(ssm)[NAMES.key(Item.CA)] == racing.ca_keys[0]


def test_the_rotation_warning_says_why_per_item(
    ssm: Any, store: ParameterStore, caplog: pytest.LogCaptureFixture
) -> None:
    ensure(store, props(), rotate=False, now=NOW)
    with caplog.at_level(logging.WARNING):
        ensure(store, props(), rotate=True, now=NOW)
    [warning] = [r for r in caplog.records if "must be replaced" in r.getMessage()]
    assert warning.decisions == {  # type: ignore[attr-defined]
        "ca": "rotate: RotationToken changed",
        "server": "reissue: CA rotated",
        "client": "reissue: CA rotated",
    }


def test_a_ca_key_alone_is_renewed_under_the_default_name(ssm: Any, store: ParameterStore) -> None:
    """The CA certificate and every leaf gone, the key kept: renew under CN=docker-tls CA
    (nothing is left to take the old name from) rather than fail or rotate."""
    ensure(store, props(), rotate=False, now=NOW)
    key = _values(ssm)[NAMES.key(Item.CA)]
    for name in NAMES.material:
        if name != NAMES.key(Item.CA):
            ssm.delete_parameter(Name=name)
    outcome = ensure(store, props(), rotate=False, now=NOW)
    assert outcome.action is Action.RENEWED
    assert outcome.ca_cert.subject.rfc4514_string() == "CN=docker-tls CA"
    assert same_key(outcome.ca_cert, private_key_from_stored(key))
    assert _values(ssm)[NAMES.key(Item.CA)] == key


def test_writers_that_never_stop_end_in_a_failure_after_six_rounds(
    recording: RecordingClient,
) -> None:
    from handler.ensure import MAX_ROUNDS, NotConverged

    # Every create-if-absent write finds the parameter just taken by someone else.
    recording.fail("put_parameter", client_error("ParameterAlreadyExists", "PutParameter"))
    pauses: list[float] = []
    with pytest.raises(NotConverged) as raised:
        ensure(ParameterStore(recording), props(), rotate=False, now=NOW, sleep=pauses.append)  # type: ignore[arg-type]
    assert len(pauses) == MAX_ROUNDS == 6
    assert str(raised.value) == (
        "the bundle for Rack 'convox' kept changing under concurrent writers for 6 rounds"
    )


def test_the_reasons_an_operator_reads(ssm: Any, store: ParameterStore) -> None:
    from handler.bundle import plan

    ensure(store, props(), rotate=False, now=NOW)
    healthy = plan(StoredBundle.decode(_values(ssm), NAMES), props(), rotate=False, now=NOW)
    assert [p.reason for p in healthy] == ["healthy", "healthy", "healthy"]
    ssm.delete_parameter(Name=NAMES.cert(Item.SERVER))
    rsa = props(key_algorithm=KeyAlgorithm.RSA_2048)
    damaged = plan(StoredBundle.decode(_values(ssm), NAMES), rsa, rotate=False, now=NOW)
    assert damaged.items[1].reason == "certificate not stored"
    assert damaged.items[2].reason == "key is ECDSA-P256, KeyAlgorithm asks for RSA-2048"
    kept = plan(StoredBundle.decode(_values(ssm), NAMES), props(), rotate=False, now=NOW)
    assert kept.items[1].reason == "certificate not stored; the stored key is kept"


def test_the_parameter_names_are_the_convox_racks(ssm: Any) -> None:
    """The names the old convox handler used, and the README documents: an adopted rack's
    parameters are found by them, and consumers read them."""
    names = BundleNames.for_rack("convox")
    assert names.material == (
        "636f6e766f78-docker-tls-ca-cert",
        "636f6e766f78-docker-tls-ca-key",
        "636f6e766f78-docker-tls-server-cert",
        "636f6e766f78-docker-tls-server-key",
        "636f6e766f78-docker-tls-cert",
        "636f6e766f78-docker-tls-key",
    )
    assert names.version_track == "636f6e766f78-version-track"
    assert names.rotation == (
        "636f6e766f78-docker-tls-next-ca-key",
        "636f6e766f78-docker-tls-previous-ca-key",
        "636f6e766f78-docker-tls-previous-ca-cert",
    )


def test_a_user_waits_longer_each_round_for_an_owner_still_writing(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user finding an owner's bundle half written waits (a jitter of 50 to 200 ms, times
    the round) for three rounds, then refuses: it never writes."""
    from handler import ensure as ensure_module
    from handler.ensure import NotOwner, Requester
    from handler.ownership import Resource

    owner = Resource("arn:aws:cloudformation:us-east-1:1:stack/a/1", "DockerTLS")
    with ssm_rules.seeding():
        ssm.put_parameter(Name=NAMES.owner, Value=owner.to_stored(), Type="String")
    pauses: list[float] = []
    jitters: list[tuple[float, float]] = []

    def low_end(low: float, high: float) -> float:
        jitters.append((low, high))
        return low

    monkeypatch.setattr(ensure_module.random, "uniform", low_end)
    store = ParameterStore(ssm, sleep=lambda _: None)
    user = Requester(Resource("arn:aws:cloudformation:us-east-1:1:stack/b/2", "DockerTLS"))
    with pytest.raises(NotOwner):
        ensure(store, props(), rotate=False, now=NOW, requester=user, sleep=pauses.append)
    assert jitters == [(0.05, 0.2)] * 3
    assert pauses == pytest.approx([0.05, 0.1, 0.15])
