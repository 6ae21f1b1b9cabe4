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

:func:`stage` reads the decoded :class:`handler.stored.StoredBundle` and returns a
:class:`Staging`: the CA the rest of the decision (:func:`handler.bundle.plan`) sees, the other
CAs ``ca-cert`` must trust, and the key moves and removals. Leaves need nothing from here:
once the signer is another CA, the ordinary rule (a leaf not signed by the signing CA is
reissued) reissues them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.x509.oid import NameOID

from .certificates import (
    CA_COMMON_NAME,
    CertificateAuthority,
    KeyAlgorithm,
    issuer_name_of,
    public_key_der,
    same_key,
)
from .codec import PrivateKey, certificate_pem, to_stored
from .model import RotationStage
from .names import Item
from .stored import StoredBundle, StoredKey, StoredPair


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

    #: The CA as the rest of the decision should see it: the signer's key and its certificate
    #: alone (as stored, when no rotation is in progress).
    ca: StoredPair
    #: The other CAs ``ca-cert`` holds after the signer, in order.
    trusted: tuple[x509.Certificate, ...] = ()
    #: A new CA of this algorithm is to be made (its key to ``next-ca-key``) and trusted.
    introduce: KeyAlgorithm | None = None
    moves: tuple[Move, ...] = ()  # written before anything else, in this order
    removals: tuple[str, ...] = ()  # deleted after every write
    step: Step | None = None  # None: nothing staged changes (a repeated stage)
    reason: str = ""  # for an operator: what this stage does now


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


def _same(a: StoredKey | None, b: StoredKey | None) -> bool:
    return a is not None and b is not None and public_key_der(a.key) == public_key_der(b.key)


def stage(
    stored: StoredBundle,
    *,
    requested: RotationStage | None,
    previous: RotationStage | None,
    algorithm: KeyAlgorithm,
    validity_days: int,
    now: dt.datetime,
) -> Staging:
    """What ``requested`` does to the stored CAs (``previous``: the stage the stack asked for
    before this update, None on a Create). Raises :class:`StageRefused` for a stage that cannot
    follow what is stored."""
    stager = _Stager(stored, validity_days, now)
    new, old = stored.next_ca_key, stored.previous_ca_key
    if new is None and old is None:
        return stager.no_rotation_in_progress(requested, previous, algorithm)
    signer = stored.signer
    # A rotation in progress: which key is the new CA's, which the old one's.
    new_ca: StoredKey | None
    old_ca: StoredKey | None
    if new is not None and old is None:
        new_ca, old_ca = new, signer
    elif old is not None and new is None:
        new_ca, old_ca = signer, old
    else:  # both: a switch, or its rollback, interrupted between writes
        new_ca, old_ca = new, old
    if new_ca is None or old_ca is None or _same(new_ca, old_ca):
        # The signing key is gone, or the stored keys contradict each other: the ordinary
        # rules rotate to a new CA, which removes every extra parameter.
        return stager.as_stored()
    if requested is RotationStage.SWITCH:
        if not any(same_key(cert, new_ca.key) for cert in stored.ca_bundle):
            # An introduce cut short (or ca-cert changed by hand) left the new key stored but
            # not trusted: instances launched since trust the old CA alone, and leaves the new
            # one signs would fail every handshake with them.
            raise StageRefused(
                "RotationStage switch: the new CA is not in the stored trust bundle (ca-cert), "
                "so no instance trusts it yet. Set RotationStage introduce again and roll it "
                "out to every instance, then switch."
            )
        return stager.switch(new_ca, old_ca)
    if requested is RotationStage.INTRODUCE:
        return stager.back_to_introduce(new_ca, old_ca)
    if _same(signer, new_ca) and old is not None:
        return stager.retire(new_ca, old_ca)  # steady after a switch
    return stager.cancel(old_ca)  # steady after an introduce


class _Stager:
    """The stage rules over one decoded bundle: each step says which key signs and which
    CAs stay trusted; :meth:`_outcome` turns that into moves, removals and the CA view."""

    def __init__(self, stored: StoredBundle, validity_days: int, now: dt.datetime) -> None:
        self.stored = stored
        self.names = stored.names
        self.ca_key = stored.names.key(Item.CA)
        self.validity_days = validity_days
        self.now = now
        self.known = [*stored.ca_bundle, *([stored.retired] if stored.retired else [])]
        self.leaves = [leaf.cert for leaf in stored.leaves.values() if leaf.cert is not None]

    # --- steps with no rotation in progress --------------------------------------------------

    def no_rotation_in_progress(
        self,
        requested: RotationStage | None,
        previous: RotationStage | None,
        algorithm: KeyAlgorithm,
    ) -> Staging:
        signer, bundle, retired = self.stored.signer, self.stored.ca_bundle, self.stored.retired
        if signer is None:
            return self.as_stored()  # nothing to stage around: the ordinary rules decide
        if requested is None:
            others = tuple(c for c in bundle if not same_key(c, signer.key))
            if others and self._stored_cert_of(signer) is not None:
                # A CA beside the signer and no key for it: a retire rolled back (its
                # certificate is still in previous-ca-cert for the window) or a hand-edited
                # bundle. Only the signer stays trusted.
                return self._outcome(
                    signer, Step.RETIRED, reason="only the signing CA stays trusted"
                )
            closing = previous is None and self.names.previous_ca_cert in self.stored.values
            if not closing:
                return self.as_stored()
            return self.as_stored(
                removals=(self.names.previous_ca_cert,),
                reason="the retired CA's certificate is dropped (the rollback window closes)",
            )
        if requested is RotationStage.SWITCH:
            if retired is None:
                raise StageRefused(
                    "RotationStage switch: no CA rotation is in progress for this Rack, and "
                    "none a rollback could bring back. Set RotationStage introduce first and "
                    "roll it out to every instance, then switch."
                )
            return self._outcome(
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
        return self._outcome(
            signer,
            Step.INTRODUCED,
            introduce=algorithm,
            removals=(self.names.previous_ca_cert,),
            reason=f"a new CA ({algorithm.value}) is trusted beside the signing one",
        )

    def as_stored(self, removals: tuple[str, ...] = (), reason: str = "") -> Staging:
        """No rotation in progress: the CA as stored, for the ordinary rules; of a bundle of
        several CAs, the signer's own certificate."""
        ca, signer = self.stored.ca, self.stored.signer
        if signer is not None and len(self.stored.ca_bundle) > 1:
            mine = self._stored_cert_of(signer)
            if mine is not None:
                ca = StoredPair(mine, signer.key)
        return Staging(ca, removals=removals, reason=reason)

    # --- steps of a rotation in progress -----------------------------------------------------

    def switch(self, new_ca: StoredKey, old_ca: StoredKey) -> Staging:
        names, stored = self.names, self.stored
        return self._outcome(
            new_ca,
            Step.SWITCHED,
            trusted=(self._cert_of(old_ca),),
            moves=(
                None if stored.previous_ca_key else Move(names.previous_ca_key, old_ca.value, True),
                None if _same(stored.signer, new_ca) else Move(self.ca_key, new_ca.value, True),
            ),
            removals=(names.next_ca_key,),
            reason="the new CA signs; the server and client certificates are reissued by it",
        )

    def back_to_introduce(self, new_ca: StoredKey, old_ca: StoredKey) -> Staging:
        """Introduce while a rotation is in progress: a repeat, or a switch rolled back."""
        names, stored = self.names, self.stored
        return self._outcome(
            old_ca,
            Step.INTRODUCED,
            trusted=(self._cert_of(new_ca),),
            moves=(
                None if stored.next_ca_key else Move(names.next_ca_key, new_ca.value, True),
                None if _same(stored.signer, old_ca) else Move(self.ca_key, old_ca.value, True),
            ),
            removals=(names.previous_ca_key,),
            reason="the CA that signed before signs again; the new one stays trusted"
            if stored.previous_ca_key is not None
            else "a new CA is trusted beside the signing one",
        )

    def retire(self, new_ca: StoredKey, old_ca: StoredKey) -> Staging:
        retired = self.stored.retired
        holds_old = retired is not None and same_key(retired, old_ca.key)
        old_cert = None if holds_old else to_stored(certificate_pem(self._cert_of(old_ca)))
        return self._outcome(
            new_ca,
            Step.RETIRED,
            moves=(
                None if old_cert is None else Move(self.names.previous_ca_cert, old_cert, False),
            ),
            removals=(self.names.previous_ca_key, self.names.next_ca_key),
            reason="only the new CA stays trusted; the old CA's key is removed",
        )

    def cancel(self, old_ca: StoredKey) -> Staging:
        signs = _same(self.stored.signer, old_ca)
        return self._outcome(
            old_ca,
            Step.CANCELLED,
            moves=(None if signs else Move(self.ca_key, old_ca.value, True),),
            removals=(self.names.next_ca_key, self.names.previous_ca_key),
            reason="the introduced CA is dropped; it never signed",
        )

    # --- the CA certificates of keys, and the outcome of a step ------------------------------

    def _stored_cert_of(self, holder: StoredKey) -> x509.Certificate | None:
        return next((cert for cert in self.known if same_key(cert, holder.key)), None)

    def _cert_of(self, holder: StoredKey) -> x509.Certificate:
        """The stored certificate of this CA key, or one rebuilt for it: by the name its
        stored leaves chain through, else the name an introduced CA gets."""
        found = self._stored_cert_of(holder)
        if found is not None:
            return found
        subject = issuer_name_of(holder.key, self.leaves) or generation_subject(holder.key)
        return CertificateAuthority.from_key(
            holder.key, subject=subject, validity_days=self.validity_days, now=self.now
        ).cert

    def _outcome(
        self,
        holder: StoredKey,
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
        mine = self._cert_of(holder)
        kept_moves = tuple(m for m in moves if m is not None)
        kept_removals = tuple(n for n in removals if n in self.stored.values)
        after = [public_key_der(mine), *(public_key_der(c) for c in trusted)]
        changes = (
            bool(kept_moves or kept_removals or introduce)
            or after != [public_key_der(c) for c in self.stored.ca_bundle]
            or not _same(self.stored.signer, holder)
        )
        return Staging(
            StoredPair(mine, holder.key),
            trusted=trusted,
            introduce=introduce,
            moves=kept_moves,
            removals=kept_removals,
            step=step if changes else None,
            reason=reason if changes else "",
        )
