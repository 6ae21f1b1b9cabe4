"""The bundle's parameters and the decision rules (docs/DESIGN.md §3) applied to them.

:func:`plan` is a pure function of (stored values, properties, rotation wish, now): it says per
item (CA, server, client) whether to reuse, reissue, renew or rotate, and why. :func:`issue`
turns a plan into the values to write. Neither touches SSM; :mod:`handler.ensure` does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import rotation
from .certificates import (
    CA_COMMON_NAME,
    CertificateAuthority,
    KeyAlgorithm,
    PrivateKey,
    Purpose,
    Unreadable,
    bundle_pem,
    certificate_from_stored,
    certificates_from_stored,
    extended_key_usages,
    is_ca,
    issuer_name_of,
    private_key_from_stored,
    private_key_pem,
    public_key_der,
    same_key,
    signed_by,
    subject_alt_names,
    to_stored,
)
from .properties import GeneratorProperties
from .rotation import RotationStage, Staging, Step

_T = TypeVar("_T")


class Item(Enum):
    """The three certificate/key pairs of a bundle."""

    CA = "ca"
    SERVER = "server"
    CLIENT = "client"


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


_SUFFIXES = {
    Item.CA: ("ca-cert", "ca-key"),
    Item.SERVER: ("server-cert", "server-key"),
    Item.CLIENT: ("cert", "key"),
}
_PURPOSES = {Item.SERVER: Purpose.SERVER, Item.CLIENT: Purpose.CLIENT}


def rack_prefix(rack: str) -> str:
    """Lower-case hex of the UTF-8 rack name: the PhysicalResourceId and parameter prefix."""
    return rack.encode("utf-8").hex()


@dataclass(frozen=True)
class BundleNames:
    """The SSM parameter names of one rack's bundle."""

    prefix: str

    @classmethod
    def for_rack(cls, rack: str) -> BundleNames:
        return cls(rack_prefix(rack))

    def cert(self, item: Item) -> str:
        return f"{self.prefix}-docker-tls-{_SUFFIXES[item][0]}"

    def key(self, item: Item) -> str:
        return f"{self.prefix}-docker-tls-{_SUFFIXES[item][1]}"

    @property
    def version_track(self) -> str:
        """Written by the old convox handler; only ever removed here, when the rack's own
        resource adopts the bundle (handler.ownership). Not in :attr:`everything`: the owner
        parameter took its place in the one ten-name read."""
        return f"{self.prefix}-version-track"

    @property
    def next_ca_key(self) -> str:
        """A staged rotation's introduced CA key, until it signs."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[0]}"

    @property
    def previous_ca_key(self) -> str:
        """The switched-from CA's key, kept until the retire (a rollback of the switch needs it)."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[1]}"

    @property
    def previous_ca_cert(self) -> str:
        """The retired CA's certificate, until an ordinary update closes the rollback window."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[2]}"

    @property
    def owner(self) -> str:
        """Which resource owns the bundle (handler.ownership): the one whose Delete removes it."""
        return f"{self.prefix}-docker-tls-{OWNER_SUFFIX}"

    @property
    def material(self) -> tuple[str, ...]:
        """The six certificate and key parameters, CA first."""
        return tuple(name for item in Item for name in (self.cert(item), self.key(item)))

    @property
    def rotation(self) -> tuple[str, ...]:
        """The parameters only a staged CA rotation uses."""
        return (self.next_ca_key, self.previous_ca_key, self.previous_ca_cert)

    @property
    def everything(self) -> tuple[str, ...]:
        """Every parameter a read, or a Delete, concerns: ten, one GetParameters call. The
        owner parameter comes last: a Delete removes it after the rest. The legacy
        ``version-track`` is not among them (see :attr:`version_track`)."""
        return (*self.material, *self.rotation, self.owner)

    def is_key(self, name: str) -> bool:
        return name in {self.key(item) for item in Item}


_ROTATION_SUFFIXES = ("next-ca-key", "previous-ca-key", "previous-ca-cert")
OWNER_SUFFIX = "owner"

#: Suffixes of every parameter this project writes.
PARAMETER_SUFFIXES = tuple(
    f"-docker-tls-{s}"
    for s in (*(s for pair in _SUFFIXES.values() for s in pair), *_ROTATION_SUFFIXES, OWNER_SUFFIX)
)


@dataclass(frozen=True)
class ItemPlan:
    """The decision for one item, with the reason an operator would want to read."""

    item: Item
    decision: Decision
    reason: str
    not_after: dt.datetime | None = None  # of the stored certificate, when readable
    #: REISSUE of the certificate only, for this stored key (see :func:`_key_to_keep`).
    kept_key: PrivateKey | None = None


@dataclass(frozen=True)
class Plan:
    """Per-item decisions for one bundle, and what they need to be carried out."""

    names: BundleNames
    items: tuple[ItemPlan, ItemPlan, ItemPlan]
    action: Action
    authority: CertificateAuthority | None  # the CA leaves chain to; None when rotating
    #: The convox handler's ``version-track`` is among the values read (an operator's read
    #: includes it; the handler removes it when it adopts the bundle, handler.ownership).
    remove_version_track: bool
    #: What a staged rotation (RotationStage) does to the CAs; nothing when rotating at once.
    staging: Staging = field(default_factory=lambda: Staging({}))
    #: The CAs ``ca-cert`` is to hold after the signer (a new introduced one comes after them).
    trusted: tuple[x509.Certificate, ...] = ()
    bundle_changes: bool = False  # ``ca-cert`` is rewritten though the signer is kept
    removals: tuple[str, ...] = ()  # deleted after every write (version-track included)

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


@dataclass(frozen=True)
class _Stored:
    cert: x509.Certificate | None
    key: PrivateKey | None
    cert_problem: str | None  # why ``cert`` is None
    key_problem: str | None  # why ``key`` is None

    @property
    def problem(self) -> str | None:
        return "; ".join(p for p in (self.cert_problem, self.key_problem) if p) or None


def _read(values: Mapping[str, str], names: BundleNames, item: Item) -> _Stored:
    cert, cert_problem = _decode(values.get(names.cert(item)), certificate_from_stored)
    key, key_problem = _decode(values.get(names.key(item)), private_key_from_stored)
    return _Stored(
        cert,
        key,
        cert_problem and f"certificate {cert_problem}",
        key_problem and f"key {key_problem}",
    )


def _decode(value: str | None, decoder: Callable[[str], _T]) -> tuple[_T | None, str | None]:
    if value is None:
        return None, "not stored"
    try:
        return decoder(value), None
    except Unreadable as error:
        return None, f"unreadable ({error})"


def _expiry_problem(cert: x509.Certificate, renew_before_days: int, now: dt.datetime) -> str | None:
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        return f"expired {not_after:%Y-%m-%d}"
    if not_after - now < dt.timedelta(days=renew_before_days):
        return f"expires {not_after:%Y-%m-%d}, within RenewBeforeDays ({renew_before_days})"
    return None


def _ca_cert_problem(
    stored: _Stored, key: PrivateKey, props: GeneratorProperties, now: dt.datetime
) -> str | None:
    cert = stored.cert
    if cert is None:
        return stored.cert_problem
    if not same_key(cert, key):
        return "certificate does not match the CA key"
    if not is_ca(cert) or not signed_by(cert, cert):
        return "certificate is not a self-signed CA certificate"
    return _expiry_problem(cert, props.renew_before_days, now)


def _leaf_problem(
    item: Item,
    stored: _Stored,
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
    purpose = _PURPOSES[item]
    usages = extended_key_usages(cert)
    if usages is not None and purpose.value not in usages:
        return f"extended key usage lacks {purpose.eku_name}"
    expiry = _expiry_problem(cert, props.renew_before_days, now)
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


def _key_to_keep(
    stored: _Stored, props: GeneratorProperties, others: list[PrivateKey | None]
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


def _renewal_subject(ca: _Stored, leaves: list[_Stored], key: PrivateKey) -> x509.Name:
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


def plan(
    values: Mapping[str, str],
    props: GeneratorProperties,
    *,
    rotate: bool,
    now: dt.datetime,
    previous_stage: RotationStage | None = None,
    is_update: bool = False,
) -> Plan:
    """Decide, per item, what the decision rules say to do with the stored ``values``
    (name → value). ``previous_stage`` is the RotationStage the stack asked for before this
    Update (None on a Create); ``is_update``: it comes from an Update's OldResourceProperties,
    so it can be held against the stage SSM holds. Raises :class:`StageRefused` for a stage
    that cannot follow what is stored, or a request whose previous stage contradicts it."""
    names = BundleNames.for_rack(props.rack)
    if is_update:
        rotation.check_previous(props.rotation_stage, previous_stage, stored_stage(values, names))
    leaves = {item: _read(values, names, item) for item in (Item.SERVER, Item.CLIENT)}
    nothing_stored = not any(name in values for name in names.material)
    staging = rotation.stage(
        values,
        ca_cert=names.cert(Item.CA),
        ca_key=names.key(Item.CA),
        next_ca_key=names.next_ca_key,
        previous_ca_key=names.previous_ca_key,
        previous_ca_cert=names.previous_ca_cert,
        leaves=[leaf.cert for leaf in leaves.values() if leaf.cert is not None],
        requested=props.rotation_stage,
        previous=previous_stage,
        algorithm=props.key_algorithm,
        validity_days=props.validity_days,
        now=now,
    )
    # The CA as the stage leaves it: the signer's key and its certificate alone.
    ca = _read(staging.ca_values, names, Item.CA)

    def expiry(stored: _Stored) -> dt.datetime | None:
        return stored.cert.not_valid_after_utc if stored.cert else None

    authority: CertificateAuthority | None = None
    if nothing_stored:
        ca_plan = ItemPlan(Item.CA, Decision.ROTATE, "nothing stored yet")
    elif rotate:
        ca_plan = ItemPlan(Item.CA, Decision.ROTATE, "RotationToken changed", expiry(ca))
    elif ca.key is None:
        ca_plan = ItemPlan(Item.CA, Decision.ROTATE, f"CA {ca.key_problem}", expiry(ca))
    else:
        problem = _ca_cert_problem(ca, ca.key, props, now)
        if problem is None and ca.cert is not None:
            authority = CertificateAuthority(ca.cert, ca.key)
            ca_plan = ItemPlan(Item.CA, Decision.REUSE, "healthy", expiry(ca))
        else:
            subject = _renewal_subject(ca, list(leaves.values()), ca.key)
            authority = CertificateAuthority.from_key(
                ca.key, subject=subject, validity_days=props.validity_days, now=now
            )
            ca_plan = ItemPlan(Item.CA, Decision.RENEW, f"CA {problem}", expiry(ca))
    if ca_plan.decision is Decision.ROTATE:
        # At once, whatever a staged rotation was doing: one new CA, nothing else trusted.
        staging = Staging({}, extras=staging.extras)
    elif staging.reason and ca_plan.decision is Decision.REUSE:
        ca_plan = ItemPlan(Item.CA, Decision.REUSE, f"healthy; {staging.reason}", expiry(ca))

    leaf_plans: list[ItemPlan] = []
    for item, stored in leaves.items():
        if authority is None:
            reason = "not stored yet" if nothing_stored else "CA rotated"
            leaf_plans.append(ItemPlan(item, Decision.REISSUE, reason, expiry(stored)))
            continue
        problem = _leaf_problem(item, stored, authority, props, now)
        if problem is None:
            leaf_plans.append(ItemPlan(item, Decision.REUSE, "healthy", expiry(stored)))
            continue
        others = [ca.key, *(leaf.key for other, leaf in leaves.items() if other is not item)]
        kept = _key_to_keep(stored, props, others)
        if kept is not None:
            problem += "; the stored key is kept"
        leaf_plans.append(ItemPlan(item, Decision.REISSUE, problem, expiry(stored), kept))

    items = (ca_plan, leaf_plans[0], leaf_plans[1])
    # Rebuilding the CA certificate for a key other than that of a stored, valid CA
    # certificate (an interrupted rotation left the new key beside the old certificate) gives
    # the fleet a new trust anchor: that is a rotation, whatever the mechanics.
    stored_ca = _read(values, names, Item.CA) if len(staging.stored_bundle) <= 1 else ca
    anchor_changes = (
        ca_plan.decision is Decision.RENEW
        and stored_ca.cert is not None
        and ca.key is not None
        and not same_key(stored_ca.cert, ca.key)
        and is_ca(stored_ca.cert)
        and signed_by(stored_ca.cert, stored_ca.cert)
    )
    # What ca-cert holds after: the signer, then the CAs the stage keeps trusted. It is
    # rewritten only when that set or its order changes: a healthy bundle stays byte for byte.
    trusted = staging.trusted
    bundle_changes = (
        ca_plan.decision is Decision.REUSE
        and authority is not None
        and (
            [public_key_der(c) for c in (authority.cert, *trusted)]
            != [public_key_der(c) for c in staging.stored_bundle]
            or staging.introduce is not None
        )
    )
    removals = (
        *staging.removals,
        *(staging.extras if ca_plan.decision is Decision.ROTATE else ()),
    )
    changes = any(p.decision is not Decision.REUSE for p in items) or bundle_changes
    if nothing_stored:
        action = Action.CREATED
    elif ca_plan.decision is Decision.ROTATE or anchor_changes:
        action = Action.ROTATED
    elif staging.step is not None:
        action = _STEP_ACTIONS[staging.step]
    elif changes:
        action = Action.RENEWED
    else:
        action = Action.REUSED
    return Plan(
        names,
        items,
        action,
        authority,
        names.version_track in values,
        staging=staging,
        trusted=trusted,
        bundle_changes=bundle_changes,
        removals=tuple(dict.fromkeys(removals)),
    )


def stored_stage(values: Mapping[str, str], names: BundleNames) -> RotationStage | None:
    """The RotationStage the stored bundle is in, as a stack that is not mid-update sends it:
    introduce while a CA is introduced, switch while both are trusted after a switch. Only
    keys that decode count, beside a signing key that decodes: anything less is no rotation in
    progress (the ordinary rules repair it, or rotate at once)."""

    def readable(name: str) -> bool:
        return _decode(values.get(name), private_key_from_stored)[0] is not None

    if readable(names.next_ca_key) and readable(names.previous_ca_key):
        return RotationStage.INTRODUCE  # a switch, or its rollback, interrupted between writes
    if not readable(names.key(Item.CA)):
        return None
    if readable(names.next_ca_key):
        return RotationStage.INTRODUCE
    if readable(names.previous_ca_key):
        return RotationStage.SWITCH
    if names.previous_ca_cert in values:
        try:
            if len(certificates_from_stored(values[names.cert(Item.CA)])) > 1:
                return RotationStage.SWITCH  # a retire rolled back
        except (Unreadable, KeyError):
            return None
    return None


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
            _PURPOSES[item],
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
