"""The stored form (handler/codec.py): what each unreadable value is called, exactly.

The words reach the operator: ``plan`` and the handler's reasons say "certificate unreadable
(not PEM)". A value is refused, never half-read: a stray character is not skipped over.
"""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from handler.certificates import CertificateAuthority, KeyAlgorithm
from handler.codec import (
    Unreadable,
    bundle_pem,
    certificate_from_stored,
    certificate_pem,
    certificates_from_stored,
    single_certificate,
    to_stored,
)
from handler.names import BundleNames, Item
from handler.stored import StoredBundle

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
_BROKEN_CERT = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def _ca() -> CertificateAuthority:
    return CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=30, now=NOW)


def _problem(read: object, value: str) -> str:
    with pytest.raises(Unreadable) as caught:
        read(value)  # type: ignore[operator]
    return str(caught.value)


def test_base64_of_something_that_is_not_pem_is_called_not_pem() -> None:
    value = to_stored(b"just some text\n")
    assert _problem(certificate_from_stored, value) == "not PEM"
    assert _problem(certificates_from_stored, value) == "not PEM"


def test_a_character_outside_base64_makes_the_value_unreadable_not_skipped() -> None:
    value = to_stored(certificate_pem(_ca().cert))
    tampered = value[:40] + "*" + value[40:]
    assert base64.b64decode(tampered, validate=False)  # a lenient decoder would read it
    assert _problem(certificate_from_stored, tampered) == "not base64"


def test_a_one_block_bundle_that_is_not_a_certificate_is_named_as_one_certificate() -> None:
    value = to_stored(_BROKEN_CERT)
    assert _problem(certificates_from_stored, value) == "PEM is not an X.509 certificate"
    assert _problem(certificate_from_stored, value) == "PEM is not an X.509 certificate"
    two = to_stored(_BROKEN_CERT * 2)
    assert _problem(certificates_from_stored, two) == "PEM is not X.509 certificates"


def test_the_cas_own_certificate_read_from_a_bundle_is_judged_as_a_single_read() -> None:
    """One read of ``ca-cert`` serves both the trust set and the CA's own certificate, with
    the words a single-certificate read would use."""
    one, two = _ca().cert, _ca().cert
    assert single_certificate((one,)) == one
    with pytest.raises(Unreadable, match="^more than one PEM block$"):
        single_certificate((one, two))
    names = BundleNames.for_rack("codec")
    for value, problem in (
        (to_stored(bundle_pem((one, two))), "certificate unreadable (more than one PEM block)"),
        (to_stored(_BROKEN_CERT), "certificate unreadable (PEM is not an X.509 certificate)"),
        (to_stored(b"x"), "certificate unreadable (not PEM)"),
    ):
        stored = StoredBundle.decode({names.cert(Item.CA): value}, names)
        assert stored.ca.cert_problem == problem
        assert (
            stored.ca.cert_problem
            == "certificate unreadable (" + _problem(certificate_from_stored, value) + ")"
        )


def test_an_unreadable_value_keeps_its_message_and_block_count() -> None:
    error = Unreadable("too many PEM blocks", blocks=9)
    assert str(error) == "too many PEM blocks" and error.args == ("too many PEM blocks",)
    assert error.blocks == 9


def test_an_rsa_key_whose_numbers_are_consistent_is_read_even_with_d_of_one() -> None:
    """The consistency check is arithmetic, not taste: with e = λ(n) + 1, d = 1 satisfies
    e·d ≡ 1 (mod λ(n)), so the key is as consistent as any other; ``0 < d`` is the bound."""
    import math

    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import private_key_from_stored, private_key_pem

    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    p, q = numbers.p, numbers.q
    e = math.lcm(p - 1, q - 1) + 1
    odd = rsa.RSAPrivateNumbers(
        p, q, 1, 1, 1, numbers.iqmp, rsa.RSAPublicNumbers(e, p * q)
    ).private_key(unsafe_skip_rsa_key_validation=True)
    key = private_key_from_stored(to_stored(private_key_pem(odd)))
    assert isinstance(key, rsa.RSAPrivateKey) and key.private_numbers().d == 1


def test_an_rsa_key_with_an_even_factor_is_inconsistent_and_3_is_a_factor_like_any() -> None:
    """p and q are odd (OpenSSL's check): p = 2 is refused though every other relation holds
    (n = 22, λ = 10, e·d = 21 ≡ 1, iqmp = 1); p = 3 with the same q passes every relation."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import _rsa_consistent

    even = rsa.RSAPrivateNumbers(2, 11, 7, 7 % 1, 7 % 10, 1, rsa.RSAPublicNumbers(3, 22))
    assert _rsa_consistent(even) is False
    three = rsa.RSAPrivateNumbers(3, 11, 7, 7 % 2, 7 % 10, 2, rsa.RSAPublicNumbers(3, 33))
    assert _rsa_consistent(three) is True
    # The same for q: q = 2 refused (iqmp = 6, 6·2 ≡ 1 mod 11), q = 3 a factor like any.
    even_q = rsa.RSAPrivateNumbers(11, 2, 7, 7 % 10, 7 % 1, 6, rsa.RSAPublicNumbers(3, 22))
    assert _rsa_consistent(even_q) is False
    three_q = rsa.RSAPrivateNumbers(11, 3, 7, 7 % 10, 7 % 2, 4, rsa.RSAPublicNumbers(3, 33))
    assert _rsa_consistent(three_q) is True


def test_an_rsa_key_whose_crt_coefficient_is_1_is_consistent() -> None:
    """iqmp = q⁻¹ mod p is 1 whenever q ≡ 1 mod p (p = 3, q = 7): a key like any other."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import _rsa_consistent

    numbers = rsa.RSAPrivateNumbers(3, 7, 5, 5 % 2, 5 % 6, 1, rsa.RSAPublicNumbers(5, 21))
    assert _rsa_consistent(numbers) is True


def test_an_inconsistent_rsa_key_is_named_unreadable_like_a_broken_one() -> None:
    """A key that parses but whose numbers disagree (here dmp1) reads as the operator is told
    of any key that cannot be used, before anything is signed with it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import private_key_from_stored, private_key_pem

    real = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    wrong = rsa.RSAPrivateNumbers(
        real.p, real.q, real.d, real.dmp1 ^ 2, real.dmq1, real.iqmp, real.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    assert _problem(private_key_from_stored, to_stored(private_key_pem(wrong))) == (
        "PEM is not a readable private key"
    )


def test_a_trust_bundle_is_read_up_to_eight_certificates_and_refused_beyond() -> None:
    """A hand-edited bundle may hold a few more CAs than docker-tls writes; a ninth is
    refused by name, before any certificate is parsed."""
    certificate = _ca().cert
    assert len(certificates_from_stored(to_stored(bundle_pem([certificate] * 8)))) == 8
    with pytest.raises(Unreadable) as refused:
        certificates_from_stored(to_stored(bundle_pem([certificate] * 9)))
    assert str(refused.value) == "too many PEM blocks" and refused.value.blocks == 9


def test_reading_a_key_does_not_reprove_its_primes() -> None:
    """docs/BENCHMARKS.md: OpenSSL's primality proof cost 27 ms an RSA-2048 key, three keys a
    request, and proves nothing storage can break. A key whose numbers are consistent but
    whose p is composite (the product of two primes) is read; OpenSSL's full check refuses it."""
    import math

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import private_key_from_stored, private_key_pem

    e = 65537
    while True:
        a, b = (
            rsa.generate_private_key(public_exponent=e, key_size=2048).private_numbers()
            for _ in range(2)
        )
        p, q = a.p * a.q, b.p  # p composite
        if math.gcd(e, math.lcm(p - 1, q - 1)) == 1 and math.gcd(p, q) == 1:
            break
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    pem = private_key_pem(numbers.private_key(unsafe_skip_rsa_key_validation=True))
    with pytest.raises(ValueError, match="Invalid private key"):
        serialization.load_pem_private_key(pem, password=None)  # OpenSSL's RSA_check_key
    key = private_key_from_stored(to_stored(pem))
    assert isinstance(key, rsa.RSAPrivateKey) and key.private_numbers().p == p


def test_an_rsa_exponent_equal_to_the_modulus_is_inconsistent() -> None:
    """1 < e < n: with p = 3, q = 11 and e = n = 33 every other relation holds (e odd,
    e·d = 231 ≡ 1 mod λ = 10, dmp1, dmq1, iqmp), yet e must stay below n."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handler.codec import _rsa_consistent

    e_is_n = rsa.RSAPrivateNumbers(3, 11, 7, 7 % 2, 7 % 10, 2, rsa.RSAPublicNumbers(33, 33))
    assert _rsa_consistent(e_is_n) is False
    below = rsa.RSAPrivateNumbers(3, 11, 7, 7 % 2, 7 % 10, 2, rsa.RSAPublicNumbers(3, 33))
    assert _rsa_consistent(below) is True


def test_a_private_key_block_that_does_not_parse_is_named_so() -> None:
    from handler.codec import private_key_from_stored

    broken = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    assert _problem(private_key_from_stored, to_stored(broken)) == (
        "PEM is not a readable private key"
    )
