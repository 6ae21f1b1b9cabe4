"""What makes one item healthy (docs/DESIGN.md §3, rule 1), and what a repair keeps.

Each check returns None for healthy, or the problem an operator reads in the plan's reason.
:func:`handler.bundle.plan` calls them on the decoded bundle; nothing here decides what to do.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import NameOID

from .certificates import (
    CA_COMMON_NAME,
    CertificateAuthority,
    KeyAlgorithm,
    Purpose,
    extended_key_usages,
    is_ca,
    issuer_name_of,
    public_key_der,
    same_key,
    signed_by,
    subject_alt_names,
)
from .codec import PrivateKey
from .model import GeneratorProperties
from .names import Item
from .stored import StoredPair

PURPOSES = {Item.SERVER: Purpose.SERVER, Item.CLIENT: Purpose.CLIENT}


def expiry_problem(cert: x509.Certificate, renew_before_days: int, now: dt.datetime) -> str | None:
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        return f"expired {not_after:%Y-%m-%d}"
    if not_after - now < dt.timedelta(days=renew_before_days):
        return f"expires {not_after:%Y-%m-%d}, within RenewBeforeDays ({renew_before_days})"
    return None


def ca_cert_problem(
    stored: StoredPair, key: PrivateKey, props: GeneratorProperties, now: dt.datetime
) -> str | None:
    cert = stored.cert
    if cert is None:
        return stored.cert_problem
    if not same_key(cert, key):
        return "certificate does not match the CA key"
    if not is_ca(cert) or not signed_by(cert, cert):
        return "certificate is not a self-signed CA certificate"
    return expiry_problem(cert, props.renew_before_days, now)


def leaf_problem(
    item: Item,
    stored: StoredPair,
    authority: CertificateAuthority,
    props: GeneratorProperties,
    now: dt.datetime,
) -> str | None:
    cert, key = stored.cert, stored.key
    if cert is None or key is None:
        return stored.problem
    if not same_key(cert, key):
        return "certificate and key do not match"
    if not authority.signed(cert):
        return "not signed by the stored CA"
    purpose = PURPOSES[item]
    usages = extended_key_usages(cert)
    if usages is not None and purpose.value not in usages:
        return f"extended key usage lacks {purpose.eku_name}"
    expiry = expiry_problem(cert, props.renew_before_days, now)
    if expiry:
        return expiry
    algorithm = KeyAlgorithm.of(key)
    if algorithm is not props.key_algorithm:
        have = algorithm.value if algorithm else type(key).__name__
        return f"key is {have}, KeyAlgorithm asks for {props.key_algorithm.value}"
    if item is Item.SERVER:
        wanted = frozenset(props.server_subject_alt_names)
        have_sans = frozenset(subject_alt_names(cert))
        if have_sans != wanted:
            return f"SANs {sorted(have_sans)} differ from ServerSubjectAltNames {sorted(wanted)}"
    return None


def key_to_keep(
    stored: StoredPair, props: GeneratorProperties, others: list[PrivateKey | None]
) -> PrivateKey | None:
    """The leaf's stored key, when only its certificate is the problem: missing, unreadable or
    for another key. That is what a crash, or a concurrent writer, leaves between a leaf's key
    write and its certificate write. Certifying the stored key (one write) instead of a new
    pair lets concurrent repairs converge: each writes a certificate for the same stored key,
    where new keys would keep overwriting each other's. A key of the wrong algorithm, or one
    the CA or the other leaf also holds, is never kept.
    """
    key = stored.key
    if key is None or KeyAlgorithm.of(key) is not props.key_algorithm:
        return None
    if stored.cert is not None and same_key(stored.cert, key):
        return None  # a matching pair: its certificate's content is the problem
    if public_key_der(key) in {public_key_der(other) for other in others if other is not None}:
        return None
    return key


def renewal_subject(ca: StoredPair, leaves: list[StoredPair], key: PrivateKey) -> x509.Name:
    # Keep the name the fleet already chains through: the stored CA's own subject if it is
    # this key's certificate, else the issuer of a stored leaf this key signed.
    if ca.cert is not None and same_key(ca.cert, key):
        return ca.cert.subject
    issuer = issuer_name_of(key, [leaf.cert for leaf in leaves if leaf.cert is not None])
    if issuer is not None:
        return issuer
    if ca.cert is not None:
        return ca.cert.subject
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
