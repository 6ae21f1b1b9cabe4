"""Every bit docker-tls chooses in a certificate, pinned for every kind (docs/CERTIFICATES.md).

One table (:data:`PROFILE`) says what each field holds for each kind; the same table is in
docs/CERTIFICATES.md with the reason for each row, and a test checks that the two agree cell for
cell. Each certificate is issued through the real path, ``handler.ensure.ensure`` on in-process
moto (a new bundle, a renewal near expiry, a staged ``introduce``), for RSA-2048, ECDSA-P256 and
ECDSA-P384, and every field of it is read back with ``cryptography`` and compared with its cell.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from moto import mock_aws

from handler.certificates import KeyAlgorithm, public_key_der, signed_by, subject_alt_names
from handler.codec import certificate_from_stored, certificates_from_stored
from handler.ensure import ensure
from handler.model import RotationStage
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.conftest import NOW, props

DOC = Path(__file__).resolve().parent.parent / "docs" / "CERTIFICATES.md"
KINDS = ("CA", "renewed CA", "introduced CA", "server", "client")
VALIDITY_DAYS = 400
RENEWED_AT = NOW + dt.timedelta(days=350)  # within RenewBeforeDays (60) of the CA's expiry
SANS = ("docker.example", "localhost", "10.0.0.5", "::1")


def _row(ca: str, renewed: str, introduced: str, server: str, client: str) -> dict[str, str]:
    return dict(zip(KINDS, (ca, renewed, introduced, server, client), strict=True))


def _same(token: str) -> dict[str, str]:
    return dict.fromkeys(KINDS, token)


_CAS_LEAVES = ("set", "clear")  # a bit a CA has and a leaf has not

#: field → kind → what the certificate holds. Mirrors docs/CERTIFICATES.md (checked below).
PROFILE: dict[str, dict[str, str]] = {
    "subject": _row(
        "CN=docker-tls CA",
        "unchanged by the renewal",
        "CN=docker-tls CA + 8 hex of SHA-256 of its key",
        "CN=docker-tls server",
        "CN=docker-tls client",
    ),
    "issuer": _row("itself", "itself", "itself", "the signing CA", "the signing CA"),
    "not before": _same("5 minutes before issue"),
    "not after": _same("ValidityDays after issue"),
    "signature hash": _same("SHA-256, SHA-384 for a P-384 issuer"),
    "BasicConstraints": _same("critical"),
    "BasicConstraints ca": _row("true", "true", "true", "false", "false"),
    "BasicConstraints path_length": _row("0", "0", "0", "none", "none"),
    "KeyUsage": _same("critical"),
    "KeyUsage digitalSignature": _same("set"),
    "KeyUsage contentCommitment": _same("clear"),
    "KeyUsage keyEncipherment": _row("clear", "clear", "clear", "RSA keys only", "RSA keys only"),
    "KeyUsage dataEncipherment": _same("clear"),
    "KeyUsage keyAgreement": _same("clear"),
    "KeyUsage keyCertSign": _row("set", "set", "set", "clear", "clear"),
    "KeyUsage cRLSign": _row("set", "set", "set", "clear", "clear"),
    "KeyUsage encipherOnly": _same("clear"),
    "KeyUsage decipherOnly": _same("clear"),
    "ExtendedKeyUsage": _row("absent", "absent", "absent", "non-critical", "non-critical"),
    "ExtendedKeyUsage purposes": _row("—", "—", "—", "serverAuth", "clientAuth"),
    "SubjectKeyIdentifier": _same("non-critical"),
    "SubjectKeyIdentifier value": _same("SHA-1 of the public key"),
    "AuthorityKeyIdentifier": _row("absent", "absent", "absent", "non-critical", "non-critical"),
    "AuthorityKeyIdentifier value": _row(
        "—", "—", "—", "the issuer's key identifier", "the issuer's key identifier"
    ),
    "SubjectAlternativeName": _row("absent", "absent", "absent", "non-critical", "absent"),
    "SubjectAlternativeName value": _row("—", "—", "—", "ServerSubjectAltNames", "—"),
    "other extensions": _same("none"),
}

_KEY_USAGE_BITS = {
    "digitalSignature": "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
_LISTED = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
}
_PURPOSES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}


@dataclasses.dataclass(frozen=True)
class Issued:
    """One certificate of a kind, with what its cells are judged against."""

    cert: x509.Certificate
    issuer: x509.Certificate  # the CA that signed it (itself for a CA)
    issued_at: dt.datetime
    before_renewal: x509.Certificate | None = None  # the renewed CA's previous certificate


def _values(client: Any, names: BundleNames) -> dict[str, str]:
    found = client.get_parameters(Names=list(names.everything), WithDecryption=True)
    return {p["Name"]: p["Value"] for p in found["Parameters"]}


def _issue_every_kind(algorithm: KeyAlgorithm) -> dict[str, Issued]:
    """Each kind issued by ``ensure`` as the handler runs it, on a fresh in-process moto."""
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        store = ParameterStore(client, sleep=lambda _: None)
        base = props(
            "profile",
            key_algorithm=algorithm,
            validity_days=VALIDITY_DAYS,
            server_subject_alt_names=SANS,
        )
        names = BundleNames.for_rack("profile")
        ensure(store, base, rotate=False, now=NOW)
        created = _values(client, names)
        ca = certificate_from_stored(created[names.cert(Item.CA)])
        kinds = {
            "CA": Issued(ca, ca, NOW),
            "server": Issued(certificate_from_stored(created[names.cert(Item.SERVER)]), ca, NOW),
            "client": Issued(certificate_from_stored(created[names.cert(Item.CLIENT)]), ca, NOW),
        }
        renewal = ensure(store, base, rotate=False, now=RENEWED_AT)
        assert renewal.plans[0].decision(Item.CA).value == "renew"
        renewed = renewal.ca_cert
        kinds["renewed CA"] = Issued(renewed, renewed, RENEWED_AT, before_renewal=ca)
        staged = dataclasses.replace(base, rotation_stage=RotationStage.INTRODUCE)
        ensure(store, staged, rotate=False, now=RENEWED_AT)
        bundle = certificates_from_stored(_values(client, names)[names.cert(Item.CA)])
        assert len(bundle) == 2
        introduced = bundle[1]
        kinds["introduced CA"] = Issued(introduced, introduced, RENEWED_AT)
        return kinds


ALGORITHMS = (KeyAlgorithm.RSA_2048, KeyAlgorithm.ECDSA_P256, KeyAlgorithm.ECDSA_P384)


@pytest.fixture(scope="module")
def issued() -> Iterator[dict[KeyAlgorithm, dict[str, Issued]]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield {algorithm: _issue_every_kind(algorithm) for algorithm in ALGORITHMS}


# --- reading a certificate back as the table's cells -----------------------------------------


def _criticality(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    try:
        return "critical" if cert.extensions.get_extension_for_oid(oid).critical else "non-critical"
    except x509.ExtensionNotFound:
        return "absent"


def _value(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _bit(usage: x509.KeyUsage | None, bit: str) -> str:
    if usage is None:
        return "—"
    try:
        return "set" if getattr(usage, _KEY_USAGE_BITS[bit]) else "clear"
    except ValueError:  # encipherOnly/decipherOnly are undefined without keyAgreement
        return "clear"


def _subject(issued: Issued) -> str:
    cert = issued.cert
    if issued.before_renewal is not None:
        return (
            "unchanged by the renewal"
            if cert.subject == issued.before_renewal.subject
            else (cert.subject.rfc4514_string())
        )
    own = hashlib.sha256(public_key_der(cert)).hexdigest()[:8]
    if cert.subject.rfc4514_string() == f"CN=docker-tls CA {own}":
        return "CN=docker-tls CA + 8 hex of SHA-256 of its key"
    return cert.subject.rfc4514_string()


def _issuer(issued: Issued) -> str:
    cert, issuer = issued.cert, issued.issuer
    if cert.issuer == cert.subject and signed_by(cert, cert) and issuer is cert:
        return "itself"
    return "the signing CA" if signed_by(cert, issuer) and issuer is not cert else "another"


def _signature_hash(issued: Issued) -> str:
    key = issued.issuer.public_key()
    p384 = isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    expected = "sha384" if p384 else "sha256"
    algorithm = issued.cert.signature_hash_algorithm
    found = algorithm.name if algorithm else "none"
    return "SHA-256, SHA-384 for a P-384 issuer" if found == expected else found


def observe(issued: Issued) -> dict[str, str]:
    """Every cell of :data:`PROFILE` as this certificate has it."""
    cert = issued.cert
    constraints = _value(cert, x509.BasicConstraints)
    usage = _value(cert, x509.KeyUsage)
    eku = _value(cert, x509.ExtendedKeyUsage)
    ski = _value(cert, x509.SubjectKeyIdentifier)
    aki = _value(cert, x509.AuthorityKeyIdentifier)
    issuer_ski = _value(issued.issuer, x509.SubjectKeyIdentifier)
    backdated = issued.issued_at - dt.timedelta(minutes=5)
    lasts = issued.issued_at + dt.timedelta(days=VALIDITY_DAYS)
    cells = {
        "subject": _subject(issued),
        "issuer": _issuer(issued),
        "not before": "5 minutes before issue"
        if cert.not_valid_before_utc == backdated
        else str(cert.not_valid_before_utc),
        "not after": "ValidityDays after issue"
        if cert.not_valid_after_utc == lasts
        else str(cert.not_valid_after_utc),
        "signature hash": _signature_hash(issued),
        "BasicConstraints": _criticality(cert, ExtensionOID.BASIC_CONSTRAINTS),
        "BasicConstraints ca": str(constraints.ca).lower() if constraints else "—",
        "BasicConstraints path_length": (
            "—" if constraints is None else str(constraints.path_length).lower()
        ),
        "KeyUsage": _criticality(cert, ExtensionOID.KEY_USAGE),
        "ExtendedKeyUsage": _criticality(cert, ExtensionOID.EXTENDED_KEY_USAGE),
        "ExtendedKeyUsage purposes": (
            "—" if eku is None else ", ".join(_PURPOSES.get(oid, oid.dotted_string) for oid in eku)
        ),
        "SubjectKeyIdentifier": _criticality(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER),
        "SubjectKeyIdentifier value": (
            "—"
            if ski is None
            else "SHA-1 of the public key"
            if ski.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
            else ski.digest.hex()
        ),
        "AuthorityKeyIdentifier": _criticality(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER),
        "AuthorityKeyIdentifier value": (
            "—"
            if aki is None
            else "the issuer's key identifier"
            if issuer_ski is not None
            and aki.key_identifier == issuer_ski.digest
            and aki.authority_cert_issuer is None
            and aki.authority_cert_serial_number is None
            else repr(aki)
        ),
        "SubjectAlternativeName": _criticality(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME),
        "SubjectAlternativeName value": _sans(cert),
        "other extensions": ", ".join(
            sorted(e.oid.dotted_string for e in cert.extensions if e.oid not in _LISTED)
        )
        or "none",
    }
    for bit in _KEY_USAGE_BITS:
        cells[f"KeyUsage {bit}"] = _bit(usage, bit)
    return cells


def _sans(cert: x509.Certificate) -> str:
    value = _value(cert, x509.SubjectAlternativeName)
    if value is None:
        return "—"
    ips = {str(ip) for ip in value.get_values_for_type(x509.IPAddress)}
    dns = set(value.get_values_for_type(x509.DNSName))
    expected_ips = {"10.0.0.5", "::1"}
    if subject_alt_names(cert) and ips == expected_ips and dns == set(SANS) - expected_ips:
        return "ServerSubjectAltNames"
    return f"DNS {sorted(dns)}, IP {sorted(ips)}"


def expected(kind: str, field: str, algorithm: KeyAlgorithm) -> str:
    """The table's cell, with ``RSA keys only`` resolved for this algorithm."""
    cell = PROFILE[field][kind]
    if cell == "RSA keys only":
        return "set" if algorithm.value.startswith("RSA") else "clear"
    return cell


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.value)
def test_every_field_of_every_kind_is_what_the_table_says(
    issued: dict[KeyAlgorithm, dict[str, Issued]], algorithm: KeyAlgorithm, kind: str
) -> None:
    cells = observe(issued[algorithm][kind])
    assert set(cells) == set(PROFILE)
    wrong = {
        field: (cells[field], expected(kind, field, algorithm))
        for field in PROFILE
        if cells[field] != expected(kind, field, algorithm)
    }
    assert wrong == {}, "field: (found, the table's)"


def test_each_kind_has_the_key_algorithm_asked_for(
    issued: dict[KeyAlgorithm, dict[str, Issued]],
) -> None:
    """The algorithm under the table's RSA/EC and SHA-384 rows is the one each kind holds."""
    for algorithm, kinds in issued.items():
        for kind, one in kinds.items():
            key = one.cert.public_key()
            if algorithm.value.startswith("RSA"):
                assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048, kind
            else:
                assert isinstance(key, ec.EllipticCurvePublicKey), kind
                assert key.curve.key_size == int(algorithm.value[-3:]), kind


def test_a_renewed_ca_keeps_its_key_and_identifier(
    issued: dict[KeyAlgorithm, dict[str, Issued]],
) -> None:
    for kinds in issued.values():
        renewed = kinds["renewed CA"]
        assert renewed.before_renewal is not None
        assert public_key_der(renewed.cert) == public_key_der(renewed.before_renewal)
        assert _value(renewed.cert, x509.SubjectKeyIdentifier) == _value(
            renewed.before_renewal, x509.SubjectKeyIdentifier
        )
        assert renewed.cert.not_valid_after_utc > renewed.before_renewal.not_valid_after_utc
        # a leaf issued before the renewal names the renewed certificate's key identifier
        leaf_aki = _value(kinds["client"].cert, x509.AuthorityKeyIdentifier)
        assert leaf_aki.key_identifier == _value(renewed.cert, x509.SubjectKeyIdentifier).digest


def test_a_server_without_names_has_no_subject_alternative_name() -> None:
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        client = boto3.client("ssm", region_name="us-east-1")
        store = ParameterStore(client, sleep=lambda _: None)
        ensure(store, props("nameless", server_subject_alt_names=()), rotate=False, now=NOW)
        names = BundleNames.for_rack("nameless")
        server = certificate_from_stored(_values(client, names)[names.cert(Item.SERVER)])
    assert _criticality(server, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) == "absent"


def _doc_table() -> tuple[list[str], dict[str, dict[str, str]], dict[str, str]]:
    """The profile table of docs/CERTIFICATES.md: kinds, field → kind → cell, field → why."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Certificate profile", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[0] == "field" and header[-1] == "why", header
    assert re.fullmatch(r"(\|-+)+\|", rows[1].replace(" ", "")), rows[1]
    kinds = header[1:-1]
    table: dict[str, dict[str, str]] = {}
    why: dict[str, str] = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == len(header), row
        field = cells[0]
        assert field not in table, f"{field} twice"
        table[field] = dict(zip(kinds, cells[1:-1], strict=True))
        why[field] = cells[-1]
    return kinds, table, why


def test_the_doc_table_and_this_table_agree_cell_for_cell() -> None:
    kinds, table, why = _doc_table()
    assert tuple(kinds) == KINDS
    assert list(table) == list(PROFILE)  # the same fields, in the same order
    assert table == PROFILE
    assert all(len(reason) >= 10 for reason in why.values()), "every row says why"
