"""The certificate module: every extension on purpose, stored forms, and chain behaviour."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from handler.certificates import (
    BACKDATE,
    CertificateAuthority,
    KeyAlgorithm,
    Purpose,
    fingerprint,
    is_ca,
    same_key,
)
from handler.codec import (
    Unreadable,
    certificate_from_stored,
    certificate_pem,
    private_key_from_stored,
    private_key_pem,
    to_stored,
)
from tests.conftest import NOW, self_signed


def _ca(algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256) -> CertificateAuthority:
    return CertificateAuthority.create(algorithm, validity_days=36500, now=NOW)


def _server_verifier(ca_cert: x509.Certificate, name: x509.GeneralName, when: dt.datetime):
    return PolicyBuilder().store(Store([ca_cert])).time(when).build_server_verifier(name)


def _client_verifier(ca_cert: x509.Certificate, when: dt.datetime):
    # Docker's client certificates carry no SAN; webpki's client profile wants one by default.
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([ca_cert]))
        .time(when)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_client_verifier()
    )


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_every_algorithm_issues_a_set_that_webpki_verifies(algorithm: KeyAlgorithm) -> None:
    ca = _ca(algorithm)
    server = ca.issue(
        Purpose.SERVER,
        algorithm,
        validity_days=36500,
        now=NOW,
        subject_alt_names=("localhost", "127.0.0.1"),
    )
    client = ca.issue(Purpose.CLIENT, algorithm, validity_days=36500, now=NOW)
    when = NOW + dt.timedelta(days=1)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = _server_verifier(ca.cert, name, when).verify(server.cert, [])
        assert chain[-1] == ca.cert
    assert _client_verifier(ca.cert, when).verify(client.cert, []).chain[-1] == ca.cert
    assert KeyAlgorithm.of(ca.key) is algorithm
    assert KeyAlgorithm.of(server.key) is algorithm
    expected_hash = hashes.SHA384 if algorithm is KeyAlgorithm.ECDSA_P384 else hashes.SHA256
    assert isinstance(server.cert.signature_hash_algorithm, expected_hash)


def test_ca_extensions_are_what_go_and_openssl_need() -> None:
    cert = _ca().cert
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert cert.version is x509.Version.v3
    assert cert.not_valid_before_utc == NOW.replace(microsecond=0) - BACKDATE
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=36500)
    assert is_ca(cert)


def test_leaves_carry_one_purpose_aki_and_exact_sans() -> None:
    ca = _ca()
    server = ca.issue(
        Purpose.SERVER,
        KeyAlgorithm.ECDSA_P256,
        validity_days=30,
        now=NOW,
        subject_alt_names=("docker.internal", "10.0.0.7", "::1"),
    )
    client = ca.issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=30, now=NOW)
    ext = server.cert.extensions
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    sans = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["docker.internal"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(client.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    with pytest.raises(x509.ExtensionNotFound):
        client.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert server.cert.serial_number != client.cert.serial_number


def test_rsa_leaves_allow_key_encipherment_and_ec_leaves_do_not() -> None:
    ca = _ca()
    rsa_leaf = ca.issue(Purpose.SERVER, KeyAlgorithm.RSA_2048, validity_days=1, now=NOW)
    ec_leaf = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=NOW)
    assert rsa_leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert not ec_leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_a_renewed_ca_chains_both_ways() -> None:
    """Leaves from before a renewal verify against the new CA, and new leaves against the old."""
    old = _ca()
    before = old.issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=365, now=NOW)
    renewed = old.renewed(validity_days=36500, now=NOW + dt.timedelta(days=10))
    after = renewed.issue(
        Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=365, now=NOW + dt.timedelta(days=10)
    )
    assert renewed.cert.subject == old.cert.subject
    assert same_key(renewed.cert, old.key)
    assert fingerprint(renewed.cert) != fingerprint(old.cert)
    when = NOW + dt.timedelta(days=11)
    _client_verifier(renewed.cert, when).verify(before.cert, [])
    _client_verifier(old.cert, when).verify(after.cert, [])


def test_a_different_ca_does_not_verify() -> None:
    leaf = _ca().issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=1, now=NOW)
    other = _ca()
    assert not other.signed(leaf.cert)
    with pytest.raises(VerificationError):
        _client_verifier(other.cert, NOW).verify(leaf.cert, [])


def test_no_certificate_may_end_after_9999() -> None:
    """The longest validity that ends by 9999-12-31 is issued; one day more is refused."""
    from handler.certificates import max_validity_days

    longest = max_validity_days(NOW)
    ca = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=longest, now=NOW)
    assert ca.cert.not_valid_after_utc.year == 9999
    whole = f"^a certificate valid for {longest + 1} days would end after year 9999$"
    with pytest.raises(ValueError, match=whole):
        CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=longest + 1, now=NOW)


def test_signed_by_answers_a_bool_either_way() -> None:
    from handler.certificates import signed_by

    ca, other = _ca(), _ca()
    leaf = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=NOW)
    assert signed_by(leaf.cert, ca.cert) is True
    assert signed_by(leaf.cert, other.cert) is False
    assert signed_by(leaf.cert, leaf.cert) is False  # the name differs: not even tried


def test_each_purpose_is_named_as_openssl_and_go_name_it() -> None:
    """The name in health reasons ("extended key usage lacks serverAuth") and `inspect`."""
    assert {purpose: purpose.eku_name for purpose in Purpose} == {
        Purpose.SERVER: "serverAuth",
        Purpose.CLIENT: "clientAuth",
    }


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extensions", "ca"),
    [
        ((x509.BasicConstraints(ca=False, path_length=None),), False),
        ((x509.BasicConstraints(ca=True, path_length=0),), True),  # no KeyUsage: any use
        ((x509.BasicConstraints(ca=True, path_length=0), _usage(cert_sign=False)), False),
        ((x509.BasicConstraints(ca=True, path_length=0), _usage(cert_sign=True)), True),
        ((_usage(cert_sign=True),), False),  # keyCertSign without BasicConstraints CA
    ],
)
def test_a_ca_is_what_gos_parent_checks_accept(
    extensions: tuple[x509.ExtensionType, ...], ca: bool
) -> None:
    """An adopted or hand-made CA is judged as Go judges a parent: BasicConstraints CA, and
    keyCertSign when KeyUsage is present."""
    assert is_ca(self_signed(*extensions)) is ca


@pytest.mark.parametrize(
    ("algorithm", "label"),
    [(KeyAlgorithm.RSA_2048, b"RSA PRIVATE KEY"), (KeyAlgorithm.ECDSA_P256, b"EC PRIVATE KEY")],
)
def test_stored_form_is_one_line_base64_of_traditional_pem(
    algorithm: KeyAlgorithm, label: bytes
) -> None:
    key = algorithm.generate()
    stored = to_stored(private_key_pem(key))
    assert "\n" not in stored
    assert len(stored) % 4 == 0  # padded
    pem = base64.b64decode(stored, validate=True)
    assert pem.startswith(b"-----BEGIN " + label + b"-----\n")
    assert b"ENCRYPTED" not in pem
    assert private_key_from_stored(stored).private_numbers() == key.private_numbers()


def test_pkcs8_keys_are_read_too() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert private_key_from_stored(to_stored(pem)).private_numbers() == key.private_numbers()


def _encrypted_pkcs8() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )


def _ed25519_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not base64!!", "not base64"),
        (base64.b64encode(b"hello world").decode(), "not PEM"),
        (
            to_stored(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "not a readable private key|holds",
        ),
        (to_stored(_encrypted_pkcs8()), "holds 'ENCRYPTED PRIVATE KEY'"),
        (to_stored(_ed25519_pem()), "not used for Docker TLS"),
    ],
)
def test_unreadable_keys_say_why(value: str, problem: str) -> None:
    with pytest.raises(Unreadable, match=problem):
        private_key_from_stored(value)


def test_unreadable_certificates_say_why() -> None:
    with pytest.raises(Unreadable, match="not an X.509"):
        certificate_from_stored(
            to_stored(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        )
    key_pem = private_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(Unreadable, match="RSA PRIVATE KEY"):
        certificate_from_stored(to_stored(key_pem))
    two = certificate_pem(_ca().cert) * 2
    with pytest.raises(Unreadable, match="more than one"):
        certificate_from_stored(to_stored(two))


def _corrupted_rsa_pem(corrupt: Callable[[rsa.RSAPrivateNumbers], dict[str, int]]) -> bytes:
    """A PKCS#1 PEM of an RSA-2048 key with some numbers altered (storage corruption)."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    values = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
        "e": numbers.public_numbers.e,
        "n": numbers.public_numbers.n,
    }
    values.update(corrupt(numbers))
    # PKCS#1 RSAPrivateKey, DER-encoded by hand: cryptography refuses to build some of these.
    fields = [0, *(values[k] for k in ("n", "e", "d", "p", "q", "dmp1", "dmq1", "iqmp"))]
    der = _der(0x30, b"".join(_der(0x02, _der_int(v)) for v in fields))
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *lines, "-----END RSA PRIVATE KEY-----"])
    return (text + "\n").encode()


def _der_int(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda n: {"d": n.d + 2},
        lambda n: {"dmp1": n.dmp1 ^ 4},
        lambda n: {"dmq1": n.dmq1 + 2},
        lambda n: {"iqmp": n.iqmp + 1},
        lambda n: {"p": n.p + 2},
        lambda n: {"q": n.p, "p": n.q},  # swapped factors: iqmp no longer fits
        lambda n: {"n": n.public_numbers.n + 2},
        lambda n: {"e": 3},
        lambda n: {"e": 65538},
    ],
)
def test_inconsistent_rsa_keys_are_unreadable(
    corrupt: Callable[[rsa.RSAPrivateNumbers], dict[str, int]],
) -> None:
    with pytest.raises(Unreadable, match="not a readable private key"):
        private_key_from_stored(to_stored(_corrupted_rsa_pem(corrupt)))


def test_an_unaltered_hand_encoded_rsa_key_reads() -> None:
    # Guards the corruption tests above: their encoder makes a key OpenSSL accepts.
    assert isinstance(
        private_key_from_stored(to_stored(_corrupted_rsa_pem(lambda n: {}))), rsa.RSAPrivateKey
    )


def test_leaves_name_their_role() -> None:
    ca = _ca()
    server = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=NOW)
    client = ca.issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=1, now=NOW)
    assert server.cert.subject.rfc4514_string() == "CN=docker-tls server"
    assert client.cert.subject.rfc4514_string() == "CN=docker-tls client"


def test_a_certificate_without_basic_constraints_is_no_ca() -> None:
    from handler.certificates import is_ca

    assert is_ca(self_signed(name="no constraints")) is False
    assert is_ca(_ca().cert) is True


def test_a_key_of_another_kind_is_refused_saying_which() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(Unreadable) as raised:
        private_key_from_stored(to_stored(pem))
    assert str(raised.value) == "Ed25519PrivateKey keys are not used for Docker TLS here"


def test_a_pem_label_that_is_not_ascii_is_unreadable_not_a_crash() -> None:
    pem = "-----BEGIN CERTIFICATÉ-----\nAAAA\n-----END CERTIFICATÉ-----\n".encode()
    with pytest.raises(Unreadable, match="PEM holds 'CERTIFICAT"):
        certificate_from_stored(base64.b64encode(pem).decode())
