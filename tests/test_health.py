"""What makes one item healthy (handler/health.py), each check on its own: the reason an
operator reads in the plan, word for word, and where each limit falls."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from handler.certificates import CertificateAuthority, Credential, KeyAlgorithm, Purpose
from handler.health import (
    ca_cert_problem,
    expiry_problem,
    key_to_keep,
    leaf_problem,
    renewal_subject,
)
from handler.names import Item
from handler.stored import StoredPair
from tests.conftest import NOW, props, self_signed

P256 = KeyAlgorithm.ECDSA_P256
SANS = ("docker.internal", "10.0.0.1")


def _ca(days: int = 3650, subject: str | None = None) -> CertificateAuthority:
    if subject is None:
        return CertificateAuthority.create(P256, validity_days=days, now=NOW)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    key = ec.generate_private_key(ec.SECP256R1())
    return CertificateAuthority.from_key(key, subject=name, validity_days=days, now=NOW)


def _leaf(
    ca: CertificateAuthority, purpose: Purpose = Purpose.SERVER, days: int = 365
) -> Credential:
    return ca.issue(purpose, P256, validity_days=days, now=NOW, subject_alt_names=SANS)


def _pair(credential: Credential | CertificateAuthority) -> StoredPair:
    return StoredPair(credential.cert, credential.key)


def _expiring(days: int) -> x509.Certificate:
    return _leaf(_ca(), days=days).cert


def test_a_certificate_is_expired_from_its_last_second_on() -> None:
    cert = _expiring(10)
    end = cert.not_valid_after_utc
    assert expiry_problem(cert, 1, end) == f"expired {end:%Y-%m-%d}"
    assert expiry_problem(cert, 1, end - dt.timedelta(seconds=1)) == (
        f"expires {end:%Y-%m-%d}, within RenewBeforeDays (1)"
    )


def test_renewal_starts_inside_the_window_not_at_its_edge() -> None:
    """RenewBeforeDays = 10 and 10 days left: healthy; a second less: renew."""
    cert = _expiring(10)
    end = cert.not_valid_after_utc
    assert expiry_problem(cert, 10, end - dt.timedelta(days=10)) is None
    assert expiry_problem(cert, 10, end - dt.timedelta(days=10) + dt.timedelta(seconds=1)) == (
        f"expires {end:%Y-%m-%d}, within RenewBeforeDays (10)"
    )


def test_a_healthy_ca_has_no_problem_and_an_old_one_says_when_it_ends() -> None:
    ca = _ca(days=3650)
    assert ca_cert_problem(_pair(ca), ca.key, props(renew_before_days=60), NOW) is None
    end = ca.cert.not_valid_after_utc
    assert ca_cert_problem(_pair(ca), ca.key, props(renew_before_days=3700), NOW) == (
        f"expires {end:%Y-%m-%d}, within RenewBeforeDays (3700)"
    )


def test_a_missing_ca_certificate_says_why_it_is_missing() -> None:
    ca = _ca()
    missing = StoredPair(None, ca.key, cert_problem="unreadable: not base64 of PEM")
    assert ca_cert_problem(missing, ca.key, props(), NOW) == "unreadable: not base64 of PEM"


def test_a_ca_certificate_for_another_key_is_named_so() -> None:
    ca, other = _ca(), _ca()
    assert ca_cert_problem(_pair(other), ca.key, props(), NOW) == (
        "certificate does not match the CA key"
    )


def test_a_ca_certificate_must_be_a_ca_and_self_signed_each_on_its_own() -> None:
    """Either failing is enough: a self-signed leaf, or a CA certificate another key signed."""
    reason = "certificate is not a self-signed CA certificate"
    key = ec.generate_private_key(ec.SECP256R1())
    not_a_ca = self_signed(x509.BasicConstraints(ca=False, path_length=None), key=key, days=3650)
    assert ca_cert_problem(StoredPair(not_a_ca, key), key, props(), NOW) == reason
    other = _ca()
    cross = CertificateAuthority.from_key(
        key, subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hand-made")]),
        validity_days=3650, now=NOW,
    )  # fmt: skip
    signed_elsewhere = (
        x509.CertificateBuilder()
        .subject_name(cross.cert.subject)
        .issuer_name(other.cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(other.key, hashes.SHA256())
    )
    assert ca_cert_problem(StoredPair(signed_elsewhere, key), key, props(), NOW) == reason
    assert ca_cert_problem(_pair(cross), key, props(), NOW) is None


def test_a_healthy_leaf_has_no_problem() -> None:
    ca = _ca()
    wanted = props(server_subject_alt_names=SANS)
    assert leaf_problem(Item.SERVER, _pair(_leaf(ca)), ca, wanted, NOW) is None
    client = _leaf(ca, Purpose.CLIENT)
    assert leaf_problem(Item.CLIENT, _pair(client), ca, wanted, NOW) is None


@pytest.mark.parametrize(
    ("pair", "reason"),
    [
        (StoredPair(None, None, "missing", "missing"), "missing; missing"),
        (StoredPair(None, None, None, "unreadable: PEM holds 'X'"), "unreadable: PEM holds 'X'"),
    ],
)
def test_a_leaf_missing_a_half_says_why(pair: StoredPair, reason: str) -> None:
    ca = _ca()
    assert leaf_problem(Item.SERVER, pair, ca, props(), NOW) == reason


def test_each_leaf_problem_is_named_in_the_words_an_operator_reads() -> None:
    ca, other = _ca(), _ca()
    wanted = props(server_subject_alt_names=SANS)
    server = _leaf(ca)
    swapped = StoredPair(server.cert, _leaf(ca).key)
    assert leaf_problem(Item.SERVER, swapped, ca, wanted, NOW) == (
        "certificate and key do not match"
    )
    foreign = _pair(_leaf(other))
    assert leaf_problem(Item.SERVER, foreign, ca, wanted, NOW) == "not signed by the stored CA"
    client = _pair(_leaf(ca, Purpose.CLIENT))
    assert leaf_problem(Item.SERVER, client, ca, wanted, NOW) == (
        "extended key usage lacks serverAuth"
    )
    assert leaf_problem(Item.CLIENT, _pair(server), ca, wanted, NOW) == (
        "extended key usage lacks clientAuth"
    )
    rsa_wanted = props(server_subject_alt_names=SANS, key_algorithm=KeyAlgorithm.RSA_2048)
    assert leaf_problem(Item.SERVER, _pair(server), ca, rsa_wanted, NOW) == (
        "key is ECDSA-P256, KeyAlgorithm asks for RSA-2048"
    )
    other_names = props(server_subject_alt_names=("docker.internal",))
    assert leaf_problem(Item.SERVER, _pair(server), ca, other_names, NOW) == (
        "SANs ['10.0.0.1', 'docker.internal'] differ from ServerSubjectAltNames ['docker.internal']"
    )
    # A client certificate's names are not checked: Docker's daemon never reads them.
    assert leaf_problem(Item.CLIENT, client, ca, other_names, NOW) is None
    end = server.cert.not_valid_after_utc
    assert leaf_problem(Item.SERVER, _pair(server), ca, wanted, end) == (f"expired {end:%Y-%m-%d}")


def test_a_leaf_without_extended_key_usage_serves_any_purpose() -> None:
    """No EKU extension means any use to Go and OpenSSL: an adopted leaf may lack it."""
    ca = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "adopted")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(3)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("docker.internal")]), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    wanted = props(server_subject_alt_names=("docker.internal",))
    assert leaf_problem(Item.SERVER, StoredPair(bare, key), ca, wanted, NOW) is None
    assert leaf_problem(Item.CLIENT, StoredPair(bare, key), ca, wanted, NOW) is None


def test_only_a_leafs_own_key_of_the_right_kind_is_kept() -> None:
    ca = _ca()
    server = _leaf(ca)
    wanted = props()
    # Its certificate lost, unreadable or for another key: the key is kept.
    assert key_to_keep(StoredPair(None, server.key), wanted, [ca.key]) is server.key
    other_cert = StoredPair(_leaf(ca).cert, server.key)
    assert key_to_keep(other_cert, wanted, [ca.key]) is server.key
    # A matching pair: its certificate's content is the problem, so nothing is kept.
    assert key_to_keep(_pair(server), wanted, [ca.key]) is None
    # No key, a key of another algorithm, or one the CA or the other leaf holds.
    assert key_to_keep(StoredPair(None, None), wanted, [ca.key]) is None
    rsa = props(key_algorithm=KeyAlgorithm.RSA_2048)
    assert key_to_keep(StoredPair(None, server.key), rsa, [ca.key]) is None
    assert key_to_keep(StoredPair(None, server.key), wanted, [None, server.key]) is None
    assert key_to_keep(StoredPair(None, ca.key), wanted, [ca.key]) is None


def test_a_renewed_ca_keeps_the_name_the_fleet_chains_through() -> None:
    old = _ca(subject="docker-tls CA 1f2e")
    leaf = _pair(_leaf(old))
    # The stored CA certificate is this key's: its subject.
    assert renewal_subject(_pair(old), [leaf], old.key) == old.cert.subject
    # Its certificate is another key's (or gone): the issuer of a leaf this key signed.
    stranger = _ca(subject="someone else")
    assert renewal_subject(_pair(stranger), [leaf], old.key) == old.cert.subject
    assert renewal_subject(StoredPair(None, old.key), [leaf], old.key) == old.cert.subject
    # It signed no stored leaf: the stored certificate's subject, else the default name.
    assert renewal_subject(_pair(stranger), [], old.key) == stranger.cert.subject
    assert renewal_subject(StoredPair(None, old.key), [StoredPair(None, None)], old.key) == (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker-tls CA")])
    )
