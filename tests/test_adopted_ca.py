"""A CA made by someone else: the leaves it signs name it by its own SubjectKeyIdentifier.

RFC 5280 lets a CA compute its SKI any way it likes (RFC 7093 adds SHA-256-based methods);
OpenSSL only accepts an issuer whose SKI equals the leaf's AuthorityKeyIdentifier byte for byte.
A leaf whose AKI is recomputed from the CA's key (SHA-1), as before, fails `openssl verify`
under such a CA. Judged by OpenSSL itself, on leaves the handler issued under an adopted CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from typing import Any, Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devkit import ssm_rules
from handler.certificates import Purpose, signed_by
from handler.codec import (
    certificate_from_stored,
    certificate_pem,
    private_key_pem,
    to_stored,
)
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.conftest import NOW, props
from tests.peers import openssl_verify

RACK = "adopted"
NAMES = BundleNames.for_rack(RACK)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _rfc7093_method1(key: ec.EllipticCurvePrivateKey) -> bytes:
    """RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey."""
    bit_string = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return hashlib.sha256(bit_string).digest()[:20]


SkiOf = Callable[[ec.EllipticCurvePrivateKey], bytes]


def _foreign_ca(ski_of: SkiOf | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA as another tool might make it; ``ski_of``: how it computes its SKI (None: no SKI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone else's CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if ski_of is not None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(ski_of(key)), critical=False)
    return builder.sign(key, hashes.SHA256()), key


def _adopt(ssm: Any, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    with ssm_rules.seeding():
        ssm.put_parameter(
            Name=NAMES.cert(Item.CA), Value=to_stored(certificate_pem(cert)), Type="String"
        )
        ssm.put_parameter(
            Name=NAMES.key(Item.CA), Value=to_stored(private_key_pem(key)), Type="SecureString"
        )


def _leaf(ssm: Any, item: Item) -> x509.Certificate:
    value = ssm.get_parameter(Name=NAMES.cert(item))["Parameter"]["Value"]
    return certificate_from_stored(value)


def _aki(cert: x509.Certificate) -> bytes | None:
    value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    return value.key_identifier


_BY_HAND: SkiOf = lambda key: hashlib.sha256(b"an identifier chosen by hand").digest()[:16]  # noqa: E731


@pytest.mark.parametrize("ski_of", [_rfc7093_method1, _BY_HAND], ids=["rfc7093", "by-hand"])
def test_leaves_of_a_ca_with_its_own_ski_name_it_and_openssl_verifies_them(
    ssm: Any, store: ParameterStore, ski_of: SkiOf
) -> None:
    cert, key = _foreign_ca(ski_of)
    ski = ski_of(key)
    assert ski != x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    _adopt(ssm, cert, key)

    outcome = ensure(store, props(RACK), rotate=False, now=NOW)

    assert outcome.ca_cert == cert  # adopted as it is: reused, not renewed
    purposes: tuple[tuple[Item, Literal["sslserver", "sslclient"]], ...] = (
        (Item.SERVER, "sslserver"),
        (Item.CLIENT, "sslclient"),
    )
    for item, purpose in purposes:
        leaf = _leaf(ssm, item)
        assert _aki(leaf) == ski
        verdict = openssl_verify(certificate_pem(cert), certificate_pem(leaf), purpose)
        assert verdict.returncode == 0, verdict.stderr


def test_a_key_recomputed_aki_is_what_openssl_refuses_under_such_a_ca() -> None:
    """Why the AKI must come from the SKI: the same leaf with a SHA-1 AKI does not verify."""
    cert, key = _foreign_ca(_rfc7093_method1)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([Purpose.SERVER.value]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    verdict = openssl_verify(certificate_pem(cert), certificate_pem(leaf), "sslserver")
    assert verdict.returncode != 0


def test_a_ca_without_ski_gets_leaves_whose_aki_is_the_sha1_of_its_key(
    ssm: Any, store: ParameterStore
) -> None:
    """The fallback: nothing to copy, so the key identifier our own CAs carry. (OpenSSL's
    ``-x509_strict`` refuses such a CA whatever its leaves say: "Missing Subject Key
    Identifier".)"""
    cert, key = _foreign_ca(None)
    _adopt(ssm, cert, key)

    ensure(store, props(RACK), rotate=False, now=NOW)

    expected = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    leaf = _leaf(ssm, Item.SERVER)
    assert _aki(leaf) == expected
    assert signed_by(leaf, cert)
