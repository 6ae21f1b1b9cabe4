"""Keys and X.509 certificates for a Docker mutual-TLS fleet.

Modelled on trustme: a :class:`CertificateAuthority` object issues :class:`Credential` leaves.
Every extension is chosen for what Docker's Go TLS stack and OpenSSL check:

* CA: BasicConstraints CA (critical, Go refuses a parent without it), KeyUsage keyCertSign +
  cRLSign (critical, Go refuses a KeyUsage without keyCertSign), SubjectKeyIdentifier, and no
  ExtendedKeyUsage (Go nests EKU through the chain: an EKU on the CA would break the other side).
* Leaves: BasicConstraints CA:FALSE (critical), KeyUsage (critical), one EKU (serverAuth for the
  daemon, clientAuth for what connects to it), AuthorityKeyIdentifier (required by webpki
  verifiers such as ``cryptography``'s), SubjectKeyIdentifier; the server carries the SANs
  clients dial, because Go ignores the Common Name.

Nothing here knows about SSM or CloudFormation, and the clock is always passed in; the stored
form (base64 of PEM) is :mod:`handler.codec`'s.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .codec import PrivateKey, certificate_pem, private_key_pem

#: Backdating absorbs clock skew between the Lambda and the fleet (docker-machine does the same).
BACKDATE = dt.timedelta(minutes=5)
#: RFC 5280 GeneralizedTime ends at year 9999; no certificate may end later.
LATEST_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

CA_COMMON_NAME = "docker-tls CA"
SERVER_COMMON_NAME = "docker-tls server"
CLIENT_COMMON_NAME = "docker-tls client"


class KeyAlgorithm(Enum):
    """The key types every Docker TLS peer accepts (Go's crypto/tls and OpenSSL)."""

    RSA_2048 = "RSA-2048"
    RSA_3072 = "RSA-3072"
    RSA_4096 = "RSA-4096"
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"

    def generate(self) -> PrivateKey:
        """A fresh private key of this algorithm."""
        if self is KeyAlgorithm.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyAlgorithm.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=int(self.value[4:]))

    @classmethod
    def of(cls, key: PrivateKey) -> KeyAlgorithm | None:
        """The algorithm of an existing key, or None for a size or curve we do not issue."""
        if isinstance(key, rsa.RSAPrivateKey):
            name = f"RSA-{key.key_size}"
        elif isinstance(key.curve, ec.SECP256R1):
            name = "ECDSA-P256"
        elif isinstance(key.curve, ec.SECP384R1):
            name = "ECDSA-P384"
        else:
            return None
        try:
            return cls(name)
        except ValueError:
            return None


class Purpose(Enum):
    """What a leaf is for, as the extended key usage Go checks on each side of the handshake."""

    SERVER = ExtendedKeyUsageOID.SERVER_AUTH
    CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH

    @property
    def eku_name(self) -> str:
        """The name OpenSSL and Go messages use for this usage."""
        return "serverAuth" if self is Purpose.SERVER else "clientAuth"


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    # Match the hash strength to the curve; SHA-256 everywhere else.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def max_validity_days(now: dt.datetime) -> int:
    """The longest validity that still ends by :data:`LATEST_NOT_AFTER`."""
    return (LATEST_NOT_AFTER - now).days


def _validity(now: dt.datetime, days: int) -> tuple[dt.datetime, dt.datetime]:
    if days > max_validity_days(now):
        raise ValueError(f"a certificate valid for {days} days would end after year 9999")
    return now - BACKDATE, now + dt.timedelta(days=days)


def _key_usage(*, cert_sign: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    """SAN entries for host names and IP addresses: IPs as IP entries, which Go requires."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


@dataclass(frozen=True)
class Credential:
    """A certificate with its private key: what one side of the TLS handshake presents."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its key; issues the fleet's server and client certificates."""

    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(
        cls,
        algorithm: KeyAlgorithm,
        *,
        validity_days: int,
        now: dt.datetime,
        subject: x509.Name | None = None,
    ) -> CertificateAuthority:
        """A new CA with a new key."""
        subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        return cls.from_key(
            algorithm.generate(), subject=subject, validity_days=validity_days, now=now
        )

    @classmethod
    def from_key(
        cls, key: PrivateKey, *, subject: x509.Name, validity_days: int, now: dt.datetime
    ) -> CertificateAuthority:
        """A self-signed certificate for ``key``: a new CA, or a kept key's lost certificate."""
        not_before, not_after = _validity(now, validity_days)
        public_key = key.public_key()
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True, key_encipherment=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, _signature_hash(key))
        )
        return cls(cert, key)

    def renewed(
        self, *, validity_days: int, now: dt.datetime, subject: x509.Name | None = None
    ) -> CertificateAuthority:
        """The same key and subject under a new certificate.

        Leaves signed earlier still chain to it, and fleets holding the previous certificate
        still trust leaves issued under this one: the name and key are what chaining checks.
        """
        return self.from_key(
            self.key, subject=subject or self.cert.subject, validity_days=validity_days, now=now
        )

    def issue(
        self,
        purpose: Purpose,
        algorithm: KeyAlgorithm,
        *,
        validity_days: int,
        now: dt.datetime,
        subject_alt_names: Sequence[str] = (),
        key: PrivateKey | None = None,
    ) -> Credential:
        """A leaf for ``purpose`` signed by this CA: for ``key`` when given (a stored key whose
        certificate was lost), else with a fresh key of ``algorithm``."""
        if key is None:
            key = algorithm.generate()
        not_before, not_after = _validity(now, validity_days)
        common_name = SERVER_COMMON_NAME if purpose is Purpose.SERVER else CLIENT_COMMON_NAME
        public_key = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(cert_sign=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([purpose.value]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        if subject_alt_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(san_entries(subject_alt_names)), critical=False
            )
        return Credential(builder.sign(self.key, _signature_hash(self.key)), key)

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The CA's own SubjectKeyIdentifier, as trustme does: OpenSSL matches a leaf's AKI to
        its issuer's SKI byte for byte, and a CA made elsewhere (an adopted convox CA, an
        operator's own) may have computed its SKI another way than a SHA-1 of the key. A CA
        without one gets the SHA-1 of its public key, what our own CAs carry."""
        try:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def signed(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` names this CA as issuer and carries its signature."""
        return signed_by(cert, self.cert)


def issuer_name_of(key: PrivateKey, leaves: Iterable[x509.Certificate]) -> x509.Name | None:
    """The issuer name of a leaf that ``key`` signed: the name a CA certificate rebuilt for
    that key must carry for those leaves to chain to it. None when it signed none of them."""
    for leaf in leaves:
        probe = CertificateAuthority.from_key(
            key, subject=leaf.issuer, validity_days=1, now=leaf.not_valid_before_utc
        )
        if probe.signed(leaf):
            return leaf.issuer
    return None


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name and key issued ``cert`` (name and signature, nothing else)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def public_key_der(holder: x509.Certificate | PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a certificate's or a private key's public key."""
    return holder.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def same_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of ``cert``'s public key."""
    return public_key_der(cert) == public_key_der(key)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: what ``openssl x509 -fingerprint`` shows."""
    return cert.fingerprint(hashes.SHA256()).hex()


def extended_key_usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier] | None:
    """The certificate's EKUs, or None when it has no EKU extension (any purpose)."""
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def subject_alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    """DNS names and IP addresses in the SAN extension, as text, in certificate order."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        str(entry.value) for entry in sans if isinstance(entry, x509.DNSName | x509.IPAddress)
    )


def is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints CA and, when KeyUsage is present, keyCertSign: Go's parent checks."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True
