"""The stored form of certificates and keys: what an SSM value holds, and how it is read.

A value is standard base64 (one line, padded) of one PEM text, as the convox rack wrote it:
one certificate, one private key, or (``ca-cert``) a trust bundle of several certificates.
Reading never guesses: a value that does not decode to what it should hold raises
:class:`Unreadable` saying what is wrong, and the decision rules treat it as a problem to
repair, never as "nothing stored". Nothing here knows about SSM names or the rules.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

#: A trust bundle holds the signing CA and, while a CA is being replaced, the other one; a few
#: more are read (a hand-edited file) but never written.
MAX_BUNDLE_CERTIFICATES = 8


class Unreadable(ValueError):
    """A stored value that does not decode to the object it should hold."""

    def __init__(self, problem: str, *, blocks: int = 0) -> None:
        super().__init__(problem)
        self.blocks = blocks  # PEM blocks the value holds (0: not base64 of PEM)


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#1 for RSA, SEC1 for EC, never encrypted: every Docker release parses these."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def bundle_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """One PEM text of several certificates: what consumers install as ``ca.pem``."""
    return b"".join(certificate_pem(cert) for cert in certificates)


def to_stored(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


def _pem_from_stored(
    value: str, allowed_labels: tuple[bytes, ...], *, blocks: int = 1
) -> tuple[bytes, int]:
    """The PEM text in a stored value, and how many blocks it holds (1 to ``blocks``)."""
    try:
        pem = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise Unreadable("not base64") from error
    begins = [line for line in pem.splitlines() if line.startswith(b"-----BEGIN ")]
    if not begins:
        raise Unreadable("not PEM")
    count = len(begins)
    if count > blocks:
        raise Unreadable(
            "more than one PEM block" if blocks == 1 else "too many PEM blocks", blocks=count
        )
    for begin in begins:
        label = begin.removeprefix(b"-----BEGIN ").removesuffix(b"-----")
        if label not in allowed_labels:
            raise Unreadable(f"PEM holds {label.decode('ascii', 'replace')!r}", blocks=count)
    return pem, count


def certificate_from_stored(value: str) -> x509.Certificate:
    """The certificate in a stored value, or :class:`Unreadable` saying what is wrong."""
    pem, _ = _pem_from_stored(value, (b"CERTIFICATE",))
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise Unreadable("PEM is not an X.509 certificate") from error


def certificates_from_stored(value: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a stored trust bundle (one PEM text, one or more blocks), in order."""
    pem, count = _pem_from_stored(value, (b"CERTIFICATE",), blocks=MAX_BUNDLE_CERTIFICATES)
    problem = "PEM is not an X.509 certificate" if count == 1 else "PEM is not X.509 certificates"
    try:
        certificates = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as error:
        raise Unreadable(problem, blocks=count) from error
    if len(certificates) != count:
        raise Unreadable(problem, blocks=count)
    return certificates


def single_certificate(read: tuple[x509.Certificate, ...] | Unreadable) -> x509.Certificate:
    """The one certificate of a value already read as a bundle (its certificates, or why it
    is unreadable), judged as :func:`certificate_from_stored` judges the value itself: a
    value read once serves both the trust set and the CA's own certificate."""
    blocks = len(read) if isinstance(read, tuple) else read.blocks
    if blocks > 1:
        raise Unreadable("more than one PEM block", blocks=blocks)
    if isinstance(read, Unreadable):
        raise read
    return read[0]


def private_key_from_stored(value: str) -> PrivateKey:
    """The private key in a stored value: PKCS#1, SEC1 or unencrypted PKCS#8."""
    labels = (b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"PRIVATE KEY")
    pem, _ = _pem_from_stored(value, labels)
    try:
        # OpenSSL's own RSA check proves p and q prime (27 ms per RSA-2048 key, 190 ms per
        # RSA-4096 key on the benchmark machine: most of an Update that reuses the bundle);
        # _rsa_consistent makes every other check of it in microseconds, before any use.
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise Unreadable("PEM is not a readable private key") from error
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Unreadable(f"{type(key).__name__} keys are not used for Docker TLS here")
    if isinstance(key, rsa.RSAPrivateKey) and not _rsa_consistent(key.private_numbers()):
        raise Unreadable("PEM is not a readable private key")
    return key


def _rsa_consistent(numbers: rsa.RSAPrivateNumbers) -> bool:
    """OpenSSL's RSA key check (RSA_check_key) without its primality proof of p and q.

    n = p*q with 1 < p, q makes p and q the factors of n; whether they are prime is settled by
    how n was made (a key generator), not by storage: corruption or a mix-up of keys fails the
    checks here or the key-matches-certificate check that follows every read.
    """
    p, q, d = numbers.p, numbers.q, numbers.d
    e, n = numbers.public_numbers.e, numbers.public_numbers.n
    if not (1 < e < n and e % 2 == 1 and 1 < p < n and 1 < q < n and p * q == n):
        return False
    if p % 2 == 0 or q % 2 == 0 or not 0 < d < n:
        return False
    lcm = math.lcm(p - 1, q - 1)
    return (
        e * d % lcm == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and 0 < numbers.iqmp < p
        and numbers.iqmp * q % p == 1
    )
