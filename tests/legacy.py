"""A rack as the old convox Go handler left it, rebuilt field by field from its source notes.

RSA-2048 keys in PKCS#1, serials 1 and 2, CN=Convox on both, a CA whose KeyUsage has
digitalSignature+keyEncipherment+keyCertSign (no cRLSign), one dual-use leaf (serverAuth then
clientAuth) with no SAN and no AuthorityKeyIdentifier, notBefore = now - 1 h and 876000 h of
validity, stored base64 PEM as plain ``String`` parameters, plus ``-version-track``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devkit import ssm_rules
from handler.codec import certificate_pem, private_key_pem, to_stored
from handler.names import BundleNames, Item

VERSION = "20260418101514"


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def convox_material(now: dt.datetime) -> dict[str, bytes]:
    """The four PEMs: ca_cert, ca_key, cert, key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Convox")])
    not_before = (now - dt.timedelta(hours=1)).replace(microsecond=0)
    not_after = not_before + dt.timedelta(hours=876000)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "ca_cert": certificate_pem(ca_cert),
        "ca_key": private_key_pem(ca_key),
        "cert": certificate_pem(cert),
        "key": private_key_pem(key),
    }


def store_convox_rack(ssm: Any, rack: str, now: dt.datetime) -> dict[str, str]:
    """Write the old handler's five String parameters; returns name → stored value. Seeding:
    String keys and a version-track are what docker-tls itself must never write."""
    names = BundleNames.for_rack(rack)
    pems = convox_material(now)
    values = {
        names.cert(Item.CA): to_stored(pems["ca_cert"]),
        names.key(Item.CA): to_stored(pems["ca_key"]),
        names.cert(Item.CLIENT): to_stored(pems["cert"]),
        names.key(Item.CLIENT): to_stored(pems["key"]),
        names.version_track: VERSION,
    }
    with ssm_rules.seeding():
        for name, value in values.items():
            ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    return values
