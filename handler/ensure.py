"""Ensure a rack's bundle: read once, decide, write only what the decision needs, verify.

Create and Update both land here. A healthy bundle costs one ``GetParameters`` call and no
writes. Writes to absent parameters are create-if-absent, so concurrent invocations for the
same rack (Lambda retries, parallel stacks) cannot each install their own CA: the loser of a
race re-reads and adopts the winner's material. After writing, the bundle is read back and
must plan as healthy before the request succeeds.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from . import ownership
from .bundle import Action, Decision, Plan, plan
from .codec import certificate_pem, to_stored
from .issuance import issue
from .model import GeneratorProperties, RotationStage
from .names import BundleNames, Item
from .ownership import Claim, Resource
from .store import Parameter, ParameterConflict, ParameterStore, StoreError
from .stored import StoredBundle

log = logging.getLogger(__name__)

MAX_ROUNDS = 6
#: Rounds a user waits for an owner that is still writing a new bundle (a parallel Create).
USER_WAIT_ROUNDS = 3


class NotConverged(RuntimeError):
    """Concurrent writers kept changing the bundle for every round we allowed."""


class NotOwner(RuntimeError):
    """A user of another resource's bundle would have to write to it: it writes nothing."""


@dataclass(frozen=True)
class Requester:
    """Who asks (handler.ownership): the resource, and whether the request is an Update that
    already carries this bundle's PhysicalResourceId."""

    resource: Resource
    answered_for_bundle: bool = False


@dataclass(frozen=True)
class Outcome:
    """What an ensure did and the bundle it left."""

    action: Action
    names: BundleNames
    ca_cert: x509.Certificate  # the signing CA's
    ca_cert_value: str  # base64 PEM of the signing CA's certificate: Data.CACertificate
    trusted: tuple[x509.Certificate, ...]  # every CA in ca-cert, the signer first
    written: int  # parameters put
    removed: int  # parameters deleted (version-track, a staged rotation's extras)
    plans: tuple[Plan, ...]  # every round's plan, first one first


def ensure(
    store: ParameterStore,
    props: GeneratorProperties,
    *,
    rotate: bool,
    now: dt.datetime,
    previous_stage: RotationStage | None = None,
    is_update: bool = False,
    requester: Requester | None = None,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Bring the stored bundle to health for ``props`` and return what was done.

    ``previous_stage`` is the RotationStage of the Update's OldResourceProperties
    (``is_update``: there were some). ``requester`` is the CloudFormation resource asking: it
    owns the bundle or only uses it (handler.ownership); a user never writes and raises
    :class:`NotOwner` when the bundle does not suit it as it is. Without a requester (operator
    tools, the decision rules' own tests) ownership is not consulted. Raises
    :class:`handler.rotation.StageRefused` before any write for a stage that cannot follow.
    """
    names = BundleNames.for_rack(props.rack)
    action: Action | None = None
    written = removed = 0
    plans: list[Plan] = []
    said: ownership.Standing | None = None
    for round_ in range(MAX_ROUNDS):
        stored = store.read(names.everything)
        bundle = StoredBundle.decode(
            {name: parameter.value for name, parameter in stored.items() if name != names.owner},
            names,
        )
        claim = _claim(requester, stored, names)
        if claim is not None and claim.standing is not said:  # and again if a race changed it
            log.info(
                "bundle standing", extra={"standing": claim.standing.value, "claim": claim.reason}
            )
            said = claim.standing
        current = plan(
            bundle,
            props,
            rotate=rotate,
            now=now,
            previous_stage=previous_stage,
            is_update=is_update,
        )
        plans.append(current)
        if claim is not None and not claim.owns:
            if not current.writes_anything:
                return _outcome(current, Action.REUSED, 0, 0, plans)
            if round_ < USER_WAIT_ROUNDS and not all(n in stored for n in names.material):
                sleep(random.uniform(0.05, 0.2) * (round_ + 1))  # noqa: S311
                continue  # an owner may still be writing a new bundle
            raise NotOwner(_user_refusal(props.rack, claim, current))
        if claim is not None and claim.record:
            assert requester is not None
            try:
                store.put(
                    names.owner,
                    requester.resource.to_stored(),
                    secure=False,
                    kms_key_id=None,
                    overwrite=False,
                    should_stop=should_stop,
                )
            except ParameterConflict:
                log.info("another resource recorded itself as owner first; re-reading")
                continue
            written += 1
            log.info("bundle owner recorded", extra={"claim": claim.reason})
            if claim.adopts:
                _remove_legacy(store, names, should_stop)
        if not current.writes_anything:
            if current.removals:
                removed += len(store.delete(current.removals, should_stop=should_stop))
            if current.action is not Action.REUSED and action is None:
                action = current.action  # only removals: a retire's window closing, a cancel
            return _outcome(current, action, written, removed, plans)
        _log_plan(current)
        if current.items[0].decision is Decision.ROTATE:
            rotate = False  # one new CA per request: later rounds repair what this one writes
        try:
            for write in issue(current, props, now):
                previous: Parameter | None = stored.get(write.name)
                store.put(
                    write.name,
                    write.value,
                    secure=write.secure,
                    kms_key_id=props.kms_key_id,
                    overwrite=previous is not None,
                    stored_type=previous.type if previous is not None else None,
                    should_stop=should_stop,
                )
                written += 1
                action = action or current.action
            if current.removals:
                removed += len(store.delete(current.removals, should_stop=should_stop))
        except ParameterConflict as conflict:
            log.info("another writer got there first; re-reading", extra={"detail": str(conflict)})
            sleep(random.uniform(0.05, 0.2) * (round_ + 1))  # noqa: S311
            continue
    raise NotConverged(
        f"the bundle for Rack {props.rack!r} kept changing under concurrent writers "
        f"for {MAX_ROUNDS} rounds"
    )


def _outcome(
    current: Plan,
    action: Action | None,
    written: int,
    removed: int,
    plans: list[Plan],
) -> Outcome:
    """What a plan that writes nothing (any more) leaves: the stored bundle, as it is."""
    assert current.authority is not None, "a plan that writes nothing kept its CA"
    signer = current.authority.cert
    names = current.names
    bundle = current.stored.ca_bundle or (signer,)
    # One CA: the value as stored, byte for byte; several: the signer's alone (the whole trust
    # set stays in ca-cert, for the getter; both would not fit a response).
    value = current.stored.values[names.cert(Item.CA)] if len(bundle) == 1 else None
    return Outcome(
        action or Action.REUSED,
        names,
        signer,
        value or to_stored(certificate_pem(signer)),
        bundle,
        written,
        removed,
        tuple(plans),
    )


def _claim(
    requester: Requester | None, stored: dict[str, Parameter], names: BundleNames
) -> Claim | None:
    if requester is None:
        return None
    recorded = stored.get(names.owner)
    return ownership.claim(
        recorded.value if recorded is not None else None,
        requester.resource,
        material_stored=any(name in stored for name in names.material),
        answered_for_bundle=requester.answered_for_bundle,
    )


def _user_refusal(rack: str, claim: Claim, current: Plan) -> str:
    """Why a user fails: whose bundle it is, and the first thing it would have had to write."""
    needs = next(
        (f"{p.item.value}: {p.decision.value} ({p.reason})" for p in current if p.decision
         is not Decision.REUSE),
        f"{current.action.value} ({current.staging.reason or 'the trusted CAs change'})",
    )  # fmt: skip
    return (
        f"Rack {rack!r} is used, not owned, by this resource ({claim.owner_text()}), so it "
        f"writes nothing, but the bundle does not suit its properties: {needs}. Match the "
        "owner's properties, or give this resource a Rack of its own"
    )


def _remove_legacy(
    store: ParameterStore, names: BundleNames, should_stop: Callable[[], bool]
) -> None:
    """Remove the convox handler's ``version-track`` when its rack's own resource adopts the
    bundle. Best effort, the one SSM failure that does not fail the request: it holds only a
    release string, and the grant for it (template.yaml) names this rack's parameter through
    the generator's own id, so it can arrive after the update that adopts."""
    try:
        store.delete([names.version_track], should_stop=should_stop)
    except StoreError as error:
        log.warning(
            "could not remove the legacy parameter; remove it by hand",
            extra={"parameter": names.version_track, "error": str(error)},
        )


def _log_plan(current: Plan) -> None:
    decisions = {p.item.value: f"{p.decision.value}: {p.reason}" for p in current}
    if current.action is Action.ROTATED:
        log.warning(
            "Rotating the Docker TLS CA: instances launched before now trust the old CA and "
            "must be replaced, or docker exec/run against them fails",
            extra={"decisions": decisions},
        )
    else:
        log.info("bundle needs writes", extra={"decisions": decisions})
