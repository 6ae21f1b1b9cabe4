"""Replacing a CA in stages, without an outage: ``RotationStage`` read against what SSM holds.

Three stack updates move a fleet from CA A to CA B while every daemon and client that can
coexist (during a rolling replacement, or CloudFormation's rollback of that update) keep
accepting each other:

=============  =================  =======  =====================================================
stage          ``ca-cert``        signs    extra parameters
=============  =================  =======  =====================================================
steady         A                  A        (``previous-ca-cert`` = the retired CA, until the
                                           next ordinary update closes the rollback window)
introduce      A, B               A        ``next-ca-key`` = B's key
switch         B, A               B        ``previous-ca-key`` = A's key (for a rollback)
retire         B                  B        ``previous-ca-cert`` = A's certificate
=============  =================  =======  =====================================================

The stage is read from SSM alone, by matching keys to certificates: a ``next-ca-key`` means a
CA was introduced, a ``previous-ca-key`` that the signer was switched, both together a switch
(or its rollback) interrupted between writes. What a request asks for is compared with that, so
every step is idempotent (a repeated stage writes nothing) and a rollback is the same step as
going back on purpose. Keys are moved before they are removed from where they were, so a crash
between any two writes leaves a state the next request finishes.

:func:`stage` returns a :class:`Staging`: the CA values the rest of the decision
(:func:`handler.bundle.plan`) sees, the other CAs ``ca-cert`` must trust, and the key moves
and removals. Leaves need nothing from here: once the signer is another CA, the ordinary rule
(a leaf not signed by the signing CA is reissued) reissues them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.x509.oid import NameOID

from .certificates import (
    CA_COMMON_NAME,
    CertificateAuthority,
    KeyAlgorithm,
    PrivateKey,
    Unreadable,
    certificate_from_stored,
    certificate_pem,
    certificates_from_stored,
    issuer_name_of,
    private_key_from_stored,
    public_key_der,
    same_key,
    to_stored,
)


class RotationStage(Enum):
    """The ``RotationStage`` property's values (absent or empty: steady)."""

    INTRODUCE = "introduce"
    SWITCH = "switch"


class Step(Enum):
    """What a staged request did, as ``Data.Action`` reports it."""

    INTRODUCED = "introduced"  # a new CA is trusted beside the signing one (or back to that)
    SWITCHED = "switched"  # the new CA signs; both are trusted (or a retire rolled back)
    RETIRED = "retired"  # only the new CA is trusted; the old key is stored nowhere
    CANCELLED = "cancelled"  # the introduced CA is dropped before it ever signed


class StageRefused(ValueError):
    """The requested stage cannot follow what is stored; nothing may be written."""


@dataclass(frozen=True)
class Move:
    """A value to put under a name: a key moved byte for byte, or a CA certificate."""

    name: str
    value: str
    secure: bool


@dataclass(frozen=True)
class Staging:
    """A request's effect on the CAs, before certificates are checked or issued."""

    #: ``ca-key`` and ``ca-cert`` as the rest of the decision should see them: the signer's key
    #: and its certificate alone (as stored, when no rotation is in progress).
    ca_values: Mapping[str, str]
    #: The other CAs ``ca-cert`` holds after the signer, in order.
    trusted: tuple[x509.Certificate, ...] = ()
    #: A new CA of this algorithm is to be made (its key to ``next-ca-key``) and trusted.
    introduce: KeyAlgorithm | None = None
    moves: tuple[Move, ...] = ()  # written before anything else, in this order
    removals: tuple[str, ...] = ()  # deleted after every write
    step: Step | None = None  # None: nothing staged changes (a repeated stage)
    reason: str = ""  # for an operator: what this stage does now
    #: The stored bundle's certificates (empty when it is missing or unreadable).
    stored_bundle: tuple[x509.Certificate, ...] = ()
    #: Every extra parameter that is stored, for a full rotation to remove.
    extras: tuple[str, ...] = ()


def _stage_text(stage: RotationStage | None) -> str:
    return stage.value if stage is not None else "none (removed)"


def check_previous(
    requested: RotationStage | None,
    previous: RotationStage | None,
    stored: RotationStage | None,
) -> None:
    """Refuse an Update whose previous stage contradicts the stage SSM holds, unless it asks
    for exactly that stage (a rollback of a step that never happened: nothing to do).

    CloudFormation believes the resource is at ``previous``; when SSM holds another stage, the
    event is stale (Lambda's retry of an event already rolled back) or the stack skipped this
    resource in a rollback (``ContinueUpdateRollback``). Acting on it would take a step from a
    stage that is not the one stored: a retire that strands daemons still holding the old
    CA's server certificates, a cancel of a CA that already signs.
    """
    if previous == stored or requested == stored:
        return
    raise StageRefused(
        f"RotationStage {_stage_text(requested)}: SSM holds stage {_stage_text(stored)}, the "
        f"stack's previous properties say {_stage_text(previous)} (a stale retry, or a rollback "
        f"that skipped this resource). Update to {_stage_text(stored)} first, then go on."
    )


def generation_subject(key: PrivateKey) -> x509.Name:
    """A CA name of its own for each introduced key. Two CAs of one name make OpenSSL-based
    verifiers depend on key identifiers and bundle order; Go copes either way."""
    digest = hashlib.sha256(public_key_der(key)).hexdigest()[:8]
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_COMMON_NAME} {digest}")])


def parse_stage(value: object) -> RotationStage | None:
    """A stage from a property value: None for absent or empty; ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        for stage_ in RotationStage:
            if value.strip().lower() == stage_.value:
                return stage_
    raise ValueError(value)


@dataclass(frozen=True)
class _Key:
    value: str  # as stored: moved byte for byte
    key: PrivateKey


def _key(values: Mapping[str, str], name: str) -> _Key | None:
    value = values.get(name)
    if value is None:
        return None
    try:
        return _Key(value, private_key_from_stored(value))
    except Unreadable:
        return None


def _same(a: _Key | None, b: _Key | None) -> bool:
    return a is not None and b is not None and public_key_der(a.key) == public_key_der(b.key)


def stage(
    values: Mapping[str, str],
    *,
    ca_cert: str,
    ca_key: str,
    next_ca_key: str,
    previous_ca_key: str,
    previous_ca_cert: str,
    leaves: Sequence[x509.Certificate],
    requested: RotationStage | None,
    previous: RotationStage | None,
    algorithm: KeyAlgorithm,
    validity_days: int,
    now: dt.datetime,
) -> Staging:
    """What ``requested`` does to the stored CAs (``previous``: the stage the stack asked for
    before this update, None on a Create). Raises :class:`StageRefused` for a stage that cannot
    follow what is stored. The parameter names are passed in: this module knows no layout."""
    extras = tuple(n for n in (next_ca_key, previous_ca_key, previous_ca_cert) if n in values)
    bundle: tuple[x509.Certificate, ...] = ()
    if ca_cert in values:
        try:
            bundle = certificates_from_stored(values[ca_cert])
        except Unreadable:
            bundle = ()
    retired: x509.Certificate | None = None
    if previous_ca_cert in values:
        try:
            retired = certificate_from_stored(values[previous_ca_cert])
        except Unreadable:
            retired = None
    signer = _key(values, ca_key)
    new, old = _key(values, next_ca_key), _key(values, previous_ca_key)
    known = [*bundle, *([retired] if retired else [])]

    def stored_cert_of(holder: _Key) -> x509.Certificate | None:
        return next((cert for cert in known if same_key(cert, holder.key)), None)

    def cert_of(holder: _Key) -> x509.Certificate:
        """The stored certificate of this CA key, or one rebuilt for it: by the name its
        stored leaves chain through, else the name an introduced CA gets."""
        found = stored_cert_of(holder)
        if found is not None:
            return found
        subject = issuer_name_of(holder.key, leaves) or generation_subject(holder.key)
        return CertificateAuthority.from_key(
            holder.key, subject=subject, validity_days=validity_days, now=now
        ).cert

    def outcome(
        holder: _Key,
        step: Step | None,
        *,
        trusted: tuple[x509.Certificate, ...] = (),
        moves: tuple[Move | None, ...] = (),
        removals: tuple[str, ...] = (),
        introduce: KeyAlgorithm | None = None,
        reason: str = "",
    ) -> Staging:
        """``holder`` signs, trusting ``trusted`` beside it; ``step`` is reported only when
        something is to change."""
        mine = cert_of(holder)
        kept_moves = tuple(m for m in moves if m is not None)
        kept_removals = tuple(n for n in removals if n in values)
        after = [public_key_der(mine), *(public_key_der(c) for c in trusted)]
        changes = (
            bool(kept_moves or kept_removals or introduce)
            or after != [public_key_der(c) for c in bundle]
            or not _same(signer, holder)
        )
        return Staging(
            {ca_key: holder.value, ca_cert: to_stored(certificate_pem(mine))},
            trusted=trusted,
            introduce=introduce,
            moves=kept_moves,
            removals=kept_removals,
            step=step if changes else None,
            reason=reason if changes else "",
            stored_bundle=bundle,
            extras=extras,
        )

    def as_stored(removals: tuple[str, ...] = (), reason: str = "") -> Staging:
        """No rotation in progress: the CA values as stored, for the ordinary rules."""
        ca_values = {name: values[name] for name in (ca_key, ca_cert) if name in values}
        if signer is not None and len(bundle) > 1:
            mine = stored_cert_of(signer)
            if mine is not None:
                ca_values[ca_cert] = to_stored(certificate_pem(mine))
        return Staging(
            ca_values, removals=removals, reason=reason, stored_bundle=bundle, extras=extras
        )

    # --- no rotation in progress -------------------------------------------------------------
    if new is None and old is None:
        others = tuple(c for c in bundle if signer is None or not same_key(c, signer.key))
        if signer is None:
            return as_stored()  # nothing to stage around: the ordinary rules decide
        if requested is None:
            if others and stored_cert_of(signer) is not None:
                # A CA beside the signer and no key for it: a retire rolled back (its
                # certificate is still in previous-ca-cert for the window) or a hand-edited
                # bundle. Only the signer stays trusted.
                return outcome(signer, Step.RETIRED, reason="only the signing CA stays trusted")
            closing = previous is None and previous_ca_cert in values
            return as_stored(
                removals=(previous_ca_cert,) if closing else (),
                reason="the retired CA's certificate is dropped (the rollback window closes)"
                if closing
                else "",
            )
        if requested is RotationStage.SWITCH:
            if retired is None:
                raise StageRefused(
                    "RotationStage switch: no CA rotation is in progress for this Rack, and "
                    "none a rollback could bring back. Set RotationStage introduce first and "
                    "roll it out to every instance, then switch."
                )
            return outcome(
                signer,
                Step.SWITCHED,
                trusted=(retired,),
                reason="the retired CA is trusted again (a retire rolled back)",
            )
        if previous is RotationStage.SWITCH and retired is not None:
            raise StageRefused(
                "RotationStage introduce: the CA that signed before the switch was retired and "
                "its key is gone, so it cannot sign again. Remove RotationStage, or start a new "
                "rotation (introduce) from an update without it."
            )
        return outcome(
            signer,
            Step.INTRODUCED,
            introduce=algorithm,
            removals=(previous_ca_cert,),
            reason=f"a new CA ({algorithm.value}) is trusted beside the signing one",
        )

    # --- a rotation in progress: which key is the new CA's, which the old one's --------------
    new_ca: _Key | None
    old_ca: _Key | None
    if new is not None and old is None:
        new_ca, old_ca = new, signer
    elif old is not None and new is None:
        new_ca, old_ca = signer, old
    else:  # both: a switch, or its rollback, interrupted between writes
        new_ca, old_ca = new, old
    if new_ca is None or old_ca is None or _same(new_ca, old_ca):
        # The signing key is gone, or the stored keys contradict each other: the ordinary
        # rules rotate to a new CA, which removes every extra parameter.
        return as_stored()

    if requested is RotationStage.SWITCH:
        return outcome(
            new_ca,
            Step.SWITCHED,
            trusted=(cert_of(old_ca),),
            moves=(
                None if old is not None else Move(previous_ca_key, old_ca.value, True),
                None if _same(signer, new_ca) else Move(ca_key, new_ca.value, True),
            ),
            removals=(next_ca_key,),
            reason="the new CA signs; the server and client certificates are reissued by it",
        )
    if requested is RotationStage.INTRODUCE:
        return outcome(
            old_ca,
            Step.INTRODUCED,
            trusted=(cert_of(new_ca),),
            moves=(
                None if new is not None else Move(next_ca_key, new_ca.value, True),
                None if _same(signer, old_ca) else Move(ca_key, old_ca.value, True),
            ),
            removals=(previous_ca_key,),
            reason="the CA that signed before signs again; the new one stays trusted"
            if old is not None
            else "a new CA is trusted beside the signing one",
        )
    if _same(signer, new_ca) and old is not None:  # steady after a switch: retire
        holds_old = retired is not None and same_key(retired, old_ca.key)
        return outcome(
            new_ca,
            Step.RETIRED,
            moves=(
                None
                if holds_old
                else Move(previous_ca_cert, to_stored(certificate_pem(cert_of(old_ca))), False),
            ),
            removals=(previous_ca_key, next_ca_key),
            reason="only the new CA stays trusted; the old CA's key is removed",
        )
    return outcome(  # steady after an introduce: cancel
        old_ca,
        Step.CANCELLED,
        moves=(None if _same(signer, old_ca) else Move(ca_key, old_ca.value, True),),
        removals=(next_ca_key, previous_ca_key),
        reason="the introduced CA is dropped; it never signed",
    )
