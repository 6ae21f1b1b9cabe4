"""The decision rules (docs/DESIGN.md §3) applied to a decoded stored bundle.

:func:`plan` is a pure function of (stored bundle, properties, rotation wish, now): it says per
item (CA, server, client) whether to reuse, reissue, renew or rotate, and why. It reads the
bundle :class:`handler.stored.StoredBundle` decoded once; :mod:`handler.issuance` turns a plan
into the values to write. Neither touches SSM; :mod:`handler.ensure` does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from cryptography import x509

from . import health, rotation
from .certificates import (
    CertificateAuthority,
    is_ca,
    public_key_der,
    same_key,
    signed_by,
)
from .codec import PrivateKey
from .model import GeneratorProperties, RotationStage
from .names import BundleNames, Item
from .rotation import Staging, Step
from .stored import StoredBundle, StoredPair


class Decision(Enum):
    """What happens to one item."""

    REUSE = "reuse"  # kept as stored, nothing written
    REISSUE = "reissue"  # a leaf with a new key, signed by the (kept) CA
    RENEW = "renew"  # the CA certificate re-signed with the same key and subject
    ROTATE = "rotate"  # a new CA key: every instance launched earlier must be replaced


class Action(Enum):
    """The request's outcome, as returned in ``Data.Action``."""

    CREATED = "created"  # nothing was stored
    REUSED = "reused"  # nothing written
    RENEWED = "renewed"  # items issued or renewed under the kept CA key
    ROTATED = "rotated"  # a new CA, at once: instances launched earlier must be replaced
    # The steps of a staged CA replacement (RotationStage); see handler.rotation.
    INTRODUCED = "introduced"
    SWITCHED = "switched"
    RETIRED = "retired"
    CANCELLED = "cancelled"


_STEP_ACTIONS = {
    Step.INTRODUCED: Action.INTRODUCED,
    Step.SWITCHED: Action.SWITCHED,
    Step.RETIRED: Action.RETIRED,
    Step.CANCELLED: Action.CANCELLED,
}


@dataclass(frozen=True)
class ItemPlan:
    """The decision for one item, with the reason an operator would want to read."""

    item: Item
    decision: Decision
    reason: str
    not_after: dt.datetime | None = None  # of the stored certificate, when readable
    #: REISSUE of the certificate only, for this stored key (see :func:`key_to_keep`).
    kept_key: PrivateKey | None = None


@dataclass(frozen=True)
class Plan:
    """Per-item decisions for one bundle, and what they need to be carried out."""

    stored: StoredBundle  # what the decision read
    items: tuple[ItemPlan, ItemPlan, ItemPlan]
    action: Action
    authority: CertificateAuthority | None  # the CA leaves chain to; None when rotating
    #: The convox handler's ``version-track`` is among the values read (an operator's read
    #: includes it; the handler removes it when it adopts the bundle, handler.ownership).
    remove_version_track: bool
    #: What a staged rotation (RotationStage) does to the CAs; nothing when rotating at once.
    staging: Staging
    #: The CAs ``ca-cert`` is to hold after the signer (a new introduced one comes after them).
    trusted: tuple[x509.Certificate, ...]
    bundle_changes: bool  # ``ca-cert`` is rewritten though the signer is kept
    removals: tuple[str, ...]  # deleted after every write (version-track included)

    @property
    def names(self) -> BundleNames:
        return self.stored.names

    def __iter__(self) -> Iterator[ItemPlan]:
        return iter(self.items)

    def decision(self, item: Item) -> Decision:
        return next(p.decision for p in self.items if p.item is item)

    @property
    def writes_anything(self) -> bool:
        return (
            any(p.decision is not Decision.REUSE for p in self.items)
            or self.bundle_changes
            or bool(self.staging.moves)
            or self.staging.introduce is not None
        )


def plan(
    stored: StoredBundle,
    props: GeneratorProperties,
    *,
    rotate: bool,
    now: dt.datetime,
    previous_stage: RotationStage | None = None,
    is_update: bool = False,
) -> Plan:
    """Decide, per item, what the decision rules say to do with the ``stored`` bundle.
    ``previous_stage`` is the RotationStage the stack asked for before this Update (None on a
    Create); ``is_update``: it comes from an Update's OldResourceProperties, so it can be held
    against the stage SSM holds. Raises :class:`StageRefused` for a stage that cannot follow
    what is stored, or a request whose previous stage contradicts it."""
    if is_update:
        rotation.check_previous(props.rotation_stage, previous_stage, stored.stage)
    staging = rotation.stage(
        stored,
        requested=props.rotation_stage,
        previous=previous_stage,
        algorithm=props.key_algorithm,
        validity_days=props.validity_days,
        now=now,
    )
    ca_plan, authority = _decide_ca(stored, staging.ca, props, rotate=rotate, now=now)
    if ca_plan.decision is Decision.ROTATE:
        # At once, whatever a staged rotation was doing: one new CA, nothing else trusted.
        staging = Staging(staging.ca)
    elif staging.reason and ca_plan.decision is Decision.REUSE:
        ca_plan = dataclasses.replace(ca_plan, reason=f"healthy; {staging.reason}")
    server, client = (
        _decide_leaf(item, stored, staging.ca, authority, props, now) for item in stored.leaves
    )
    items = (ca_plan, server, client)
    bundle_changes = _trust_set_changes(stored, staging, ca_plan, authority)
    return Plan(
        stored,
        items,
        _action(
            stored, items, staging, bundle_changes, _anchor_changes(stored, staging.ca, ca_plan)
        ),
        authority,
        stored.holds_version_track,
        staging=staging,
        trusted=staging.trusted,
        bundle_changes=bundle_changes,
        removals=_removals(stored, staging, ca_plan),
    )


def _not_after(stored: StoredPair) -> dt.datetime | None:
    return stored.cert.not_valid_after_utc if stored.cert else None


def _decide_ca(
    stored: StoredBundle,
    ca: StoredPair,
    props: GeneratorProperties,
    *,
    rotate: bool,
    now: dt.datetime,
) -> tuple[ItemPlan, CertificateAuthority | None]:
    """Rules 3 and 4 for the CA as the stage leaves it (``ca``): reuse, renew or rotate, and
    the authority the leaves are to chain to (None when rotating)."""
    if stored.nothing_stored:
        return ItemPlan(Item.CA, Decision.ROTATE, "nothing stored yet"), None
    if rotate:
        return ItemPlan(Item.CA, Decision.ROTATE, "RotationToken changed", _not_after(ca)), None
    if ca.key is None:
        return ItemPlan(Item.CA, Decision.ROTATE, f"CA {ca.key_problem}", _not_after(ca)), None
    problem = health.ca_cert_problem(ca, ca.key, props, now)
    if problem is None and ca.cert is not None:
        return (
            ItemPlan(Item.CA, Decision.REUSE, "healthy", _not_after(ca)),
            CertificateAuthority(ca.cert, ca.key),
        )
    subject = health.renewal_subject(ca, list(stored.leaves.values()), ca.key)
    authority = CertificateAuthority.from_key(
        ca.key, subject=subject, validity_days=props.validity_days, now=now
    )
    return ItemPlan(Item.CA, Decision.RENEW, f"CA {problem}", _not_after(ca)), authority


def _decide_leaf(
    item: Item,
    stored: StoredBundle,
    ca: StoredPair,
    authority: CertificateAuthority | None,
    props: GeneratorProperties,
    now: dt.datetime,
) -> ItemPlan:
    """Rules 1 and 2 for a leaf: reuse it when healthy under ``authority``, else reissue it
    (certifying its stored key again when only the certificate is the problem)."""
    leaf = stored.leaves[item]
    if authority is None:
        reason = "not stored yet" if stored.nothing_stored else "CA rotated"
        return ItemPlan(item, Decision.REISSUE, reason, _not_after(leaf))
    problem = health.leaf_problem(item, leaf, authority, props, now)
    if problem is None:
        return ItemPlan(item, Decision.REUSE, "healthy", _not_after(leaf))
    others = [ca.key, *(other.key for name, other in stored.leaves.items() if name is not item)]
    kept = health.key_to_keep(leaf, props, others)
    if kept is not None:
        problem += "; the stored key is kept"
    return ItemPlan(item, Decision.REISSUE, problem, _not_after(leaf), kept)


def _anchor_changes(stored: StoredBundle, ca: StoredPair, ca_plan: ItemPlan) -> bool:
    """Rule 4's second sentence: a CA certificate rebuilt for a key other than that of a
    stored, valid CA certificate (an interrupted rotation left the new key beside the old
    certificate) gives the fleet a new trust anchor: that is a rotation, whatever the
    mechanics."""
    stored_ca = stored.ca if len(stored.ca_bundle) <= 1 else ca
    return (
        ca_plan.decision is Decision.RENEW
        and stored_ca.cert is not None
        and ca.key is not None
        and not same_key(stored_ca.cert, ca.key)
        and is_ca(stored_ca.cert)
        and signed_by(stored_ca.cert, stored_ca.cert)
    )


def _trust_set_changes(
    stored: StoredBundle,
    staging: Staging,
    ca_plan: ItemPlan,
    authority: CertificateAuthority | None,
) -> bool:
    """Whether ``ca-cert`` is rewritten though its signer is kept: it holds the signer, then
    the CAs the stage keeps trusted, and changes only when that set or its order does (a
    healthy bundle stays byte for byte)."""
    return (
        ca_plan.decision is Decision.REUSE
        and authority is not None
        and (
            [public_key_der(c) for c in (authority.cert, *staging.trusted)]
            != [public_key_der(c) for c in stored.ca_bundle]
            or staging.introduce is not None
        )
    )


def _removals(stored: StoredBundle, staging: Staging, ca_plan: ItemPlan) -> tuple[str, ...]:
    """What the stage removes, and on a rotation at once every extra parameter stored."""
    removals = (
        *staging.removals,
        *(stored.extras if ca_plan.decision is Decision.ROTATE else ()),
    )
    return tuple(dict.fromkeys(removals))


def _action(
    stored: StoredBundle,
    items: tuple[ItemPlan, ItemPlan, ItemPlan],
    staging: Staging,
    bundle_changes: bool,
    anchor_changes: bool,
) -> Action:
    if stored.nothing_stored:
        return Action.CREATED
    if items[0].decision is Decision.ROTATE or anchor_changes:
        return Action.ROTATED
    if staging.step is not None:
        return _STEP_ACTIONS[staging.step]
    if any(p.decision is not Decision.REUSE for p in items) or bundle_changes:
        return Action.RENEWED
    return Action.REUSED
