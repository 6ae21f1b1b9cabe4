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

from handler.bundle import Action, BundleNames, Item, Plan, issue, plan
from handler.certificates import certificate_pem, to_stored
from handler.properties import GeneratorProperties
from handler.rotation import RotationStage
from handler.store import ParameterConflict, ParameterStore

log = logging.getLogger(__name__)

MAX_ROUNDS = 6


class NotConverged(RuntimeError):
    """Concurrent writers kept changing the bundle for every round we allowed."""


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
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Bring the stored bundle to health for ``props`` and return what was done.

    ``previous_stage`` is the RotationStage of the Update's OldResourceProperties. Raises
    :class:`handler.rotation.StageRefused` before any write for a stage that cannot follow.
    """
    names = BundleNames.for_rack(props.rack)
    action: Action | None = None
    written = removed = 0
    plans: list[Plan] = []
    for round_ in range(MAX_ROUNDS):
        stored = store.read(names.everything)
        values = {name: parameter.value for name, parameter in stored.items()}
        current = plan(values, props, rotate=rotate, now=now, previous_stage=previous_stage)
        plans.append(current)
        if not current.writes_anything:
            if current.removals:
                removed += len(store.delete(current.removals, should_stop=should_stop))
            assert current.authority is not None, "a plan that writes nothing kept its CA"
            signer = current.authority.cert
            bundle = current.staging.stored_bundle or (signer,)
            # One CA: the value as stored, byte for byte; several: the signer's alone (the
            # whole trust set stays in ca-cert, for the getter; both would not fit a response).
            value = values[names.cert(Item.CA)] if len(bundle) == 1 else None
            if current.action is not Action.REUSED and action is None:
                action = current.action  # only removals: a retire's window closing, a cancel
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
        _log_plan(current)
        try:
            for write in issue(current, props, now):
                store.put(
                    write.name,
                    write.value,
                    secure=write.secure,
                    kms_key_id=props.kms_key_id,
                    overwrite=write.name in stored,
                    should_stop=should_stop,
                )
                written += 1
                action = action or current.action
                if write.name == names.key(Item.CA):
                    rotate = False  # rotated once; later rounds only repair
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
