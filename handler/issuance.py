"""Carrying out a plan: the values to write, generated in crash-safe order.

:func:`issue` makes the keys and certificates a :class:`handler.bundle.Plan` calls for and
returns them as :class:`Write` values, in the order :mod:`handler.ensure` must store them.
Nothing here decides what to change (:mod:`handler.bundle` did) or touches SSM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import health, rotation
from .bundle import Decision, Plan
from .certificates import CertificateAuthority
from .codec import bundle_pem, private_key_pem, to_stored
from .model import GeneratorProperties
from .names import Item


@dataclass(frozen=True)
class Write:
    """One parameter value to store."""

    name: str
    value: str
    secure: bool


def issue(plan: Plan, props: GeneratorProperties, now: dt.datetime) -> list[Write]:
    """Generate what ``plan`` calls for, in crash-safe order: a staged rotation's key moves
    (a key reaches its new name before it leaves the old one), CA key, the trust bundle, then
    each leaf's key and certificate (a crash between the two leaves a mismatch the next run
    repairs by certifying the stored key); a leaf whose key is kept gets only its certificate.
    Removals (``plan.removals``) come after all of these.
    """
    names = plan.names
    writes = [Write(m.name, m.value, m.secure) for m in plan.staging.moves]
    authority = plan.authority
    trusted = plan.trusted
    ca_decision = plan.decision(Item.CA)
    if ca_decision is Decision.ROTATE:
        authority = CertificateAuthority.create(
            props.key_algorithm, validity_days=props.validity_days, now=now
        )
        writes.append(Write(names.key(Item.CA), to_stored(private_key_pem(authority.key)), True))
    elif plan.staging.introduce is not None:
        key = plan.staging.introduce.generate()
        introduced = CertificateAuthority.from_key(
            key,
            subject=rotation.generation_subject(key),
            validity_days=props.validity_days,
            now=now,
        )
        writes.append(Write(names.next_ca_key, to_stored(private_key_pem(key)), True))
        trusted = (*trusted, introduced.cert)
    assert authority is not None, "a plan that keeps the CA carries it"
    if ca_decision in (Decision.ROTATE, Decision.RENEW) or plan.bundle_changes:
        pem = bundle_pem((authority.cert, *trusted))
        writes.append(Write(names.cert(Item.CA), to_stored(pem), False))
    for item_plan in plan.items[1:]:
        if item_plan.decision is Decision.REUSE:
            continue
        item = item_plan.item
        leaf = authority.issue(
            health.PURPOSES[item],
            props.key_algorithm,
            validity_days=props.validity_days,
            now=now,
            subject_alt_names=props.server_subject_alt_names if item is Item.SERVER else (),
            key=item_plan.kept_key,
        )
        if item_plan.kept_key is None:
            writes.append(Write(names.key(item), to_stored(leaf.key_pem()), True))
        writes.append(Write(names.cert(item), to_stored(leaf.cert_pem()), False))
    return writes
