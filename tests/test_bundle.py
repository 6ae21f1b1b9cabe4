"""The decision (handler/bundle.py's plan()) called directly, as the Lambda and the operator
CLI call it: what each item's plan says, in the words the log and `docker-tls plan` show."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from handler.bundle import Action, Decision, plan
from handler.ensure import ensure
from handler.model import GeneratorProperties, RotationStage
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from handler.stored import StoredBundle
from tests.conftest import NOW, props

NAMES = BundleNames.for_rack("convox")


def _stored(ssm: Any) -> StoredBundle:
    found = ssm.get_parameters(Names=list(NAMES.everything), WithDecryption=True)["Parameters"]
    return StoredBundle.decode({p["Name"]: p["Value"] for p in found}, NAMES)


def _said(decided: Any) -> list[tuple[str, str, str]]:
    return [(p.item.value, p.decision.value, p.reason) for p in decided]


def test_the_decisions_are_named_as_the_log_and_the_cli_show_them() -> None:
    assert [d.value for d in Decision] == ["reuse", "reissue", "renew", "rotate"]


def test_an_empty_bundle_is_planned_in_the_words_an_operator_reads() -> None:
    decided = plan(StoredBundle.decode({}, NAMES), props(), rotate=False, now=NOW)
    assert decided.action is Action.CREATED
    assert _said(decided) == [
        ("ca", "rotate", "nothing stored yet"),
        ("server", "reissue", "not stored yet"),
        ("client", "reissue", "not stored yet"),
    ]
    assert [p.not_after for p in decided] == [None, None, None]


def test_each_item_plan_carries_its_stored_certificates_end(
    ssm: Any, store: ParameterStore
) -> None:
    """What `docker-tls plan` prints as not_after, for every decision."""
    ensure(store, props(), rotate=False, now=NOW)
    stored = _stored(ssm)
    ends = [pair.cert.not_valid_after_utc for pair in (stored.ca, stored.server, stored.client)]
    healthy = plan(stored, props(), rotate=False, now=NOW)
    assert [p.not_after for p in healthy] == ends and None not in ends
    rotated = plan(stored, props(), rotate=True, now=NOW)
    assert _said(rotated) == [
        ("ca", "rotate", "RotationToken changed"),
        ("server", "reissue", "CA rotated"),
        ("client", "reissue", "CA rotated"),
    ]
    assert [p.not_after for p in rotated] == ends


def test_a_ca_problem_is_named_with_ca_in_front(ssm: Any, store: ParameterStore) -> None:
    ensure(store, props(), rotate=False, now=NOW)
    stored = _stored(ssm)
    end = stored.ca.cert.not_valid_after_utc
    late = end - dt.timedelta(days=10)
    [ca_plan, *_] = plan(stored, props(), rotate=False, now=late)
    assert (ca_plan.decision, ca_plan.reason) == (
        Decision.RENEW,
        f"CA expires {end:%Y-%m-%d}, within RenewBeforeDays (60)",
    )
    without_key = {n: v for n, v in stored.values.items() if n != NAMES.key(Item.CA)}
    [ca_plan, *_] = plan(StoredBundle.decode(without_key, NAMES), props(), rotate=False, now=NOW)
    assert (ca_plan.decision, ca_plan.reason) == (Decision.ROTATE, "CA key not stored")


def _staged(props_: GeneratorProperties, stage: RotationStage | None) -> GeneratorProperties:
    return dataclasses.replace(props_, rotation_stage=stage)


def test_an_operators_plan_mid_rotation_is_not_held_against_a_previous_stage(
    ssm: Any, store: ParameterStore
) -> None:
    """`docker-tls plan`/`inspect` call plan() with no Update behind them: the stage SSM holds
    is not compared with a previous one, so a rack mid-rotation is planned, not refused."""
    ensure(store, props(), rotate=False, now=NOW)
    ensure(store, _staged(props(), RotationStage.INTRODUCE), rotate=False, now=NOW)
    decided = plan(_stored(ssm), props(), rotate=False, now=NOW)
    assert decided.action is Action.CANCELLED


def test_a_switch_to_a_new_ca_due_for_renewal_renews_it_and_stays_a_switch(
    ssm: Any, store: ParameterStore
) -> None:
    """The fleet already trusts the new CA (introduced): renewing its certificate at the
    switch, for the same key and name, is no new trust anchor, so no rotation."""
    short = props(validity_days=400, renew_before_days=30)
    ensure(store, short, rotate=False, now=NOW)
    ensure(store, _staged(short, RotationStage.INTRODUCE), rotate=False, now=NOW)
    later = NOW + dt.timedelta(days=380)
    decided = plan(
        _stored(ssm),
        _staged(short, RotationStage.SWITCH),
        rotate=False,
        now=later,
        previous_stage=RotationStage.INTRODUCE,
        is_update=True,
    )
    assert decided.action is Action.SWITCHED
    assert decided.items[0].decision is Decision.RENEW
