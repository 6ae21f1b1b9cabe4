"""The stored bundle decoded once (handler/stored.py): what each missing or broken value is
called, in the words the decision's reasons carry to the operator."""

from __future__ import annotations

from typing import Any

from handler.bundle import Decision, plan
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from handler.stored import StoredBundle
from tests.conftest import NOW, props

NAMES = BundleNames.for_rack("convox")


def _values(ssm: Any, store: ParameterStore) -> dict[str, str]:
    ensure(store, props(), rotate=False, now=NOW)
    found = ssm.get_parameters(Names=list(NAMES.material), WithDecryption=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def test_a_whole_bundle_decodes_without_a_problem(ssm: Any, store: ParameterStore) -> None:
    stored = StoredBundle.decode(_values(ssm, store), NAMES)
    assert [pair.problem for pair in (stored.ca, stored.server, stored.client)] == [None] * 3
    assert [pair.cert_problem for pair in (stored.ca, stored.server, stored.client)] == [None] * 3
    assert stored.signer is not None and stored.stage is None and stored.extras == ()


def test_each_missing_or_broken_key_is_named_in_the_reason(ssm: Any, store: ParameterStore) -> None:
    values = _values(ssm, store)
    reasons = {
        "CA key gone": ({NAMES.key(Item.CA): None}, Item.CA, "CA key not stored"),
        "CA key broken": ({NAMES.key(Item.CA): "%"}, Item.CA, "CA key unreadable (not base64)"),
        "server key gone": ({NAMES.key(Item.SERVER): None}, Item.SERVER, "key not stored"),
    }
    for name, (change, item, reason) in reasons.items():
        changed = {**values, **change}
        changed = {k: v for k, v in changed.items() if v is not None}
        decided = plan(StoredBundle.decode(changed, NAMES), props(), rotate=False, now=NOW)
        [item_plan] = [p for p in decided if p.item is item]
        assert item_plan.reason == reason, name
        assert item_plan.decision is not Decision.REUSE, name


def test_the_convox_handlers_version_track_is_seen_only_when_read(
    ssm: Any, store: ParameterStore
) -> None:
    """What ``docker-tls inspect`` reports as version_track_present (the CLI reads it; the
    Lambda removes it when the rack's own resource adopts the bundle)."""
    values = _values(ssm, store)
    assert StoredBundle.decode(values, NAMES).holds_version_track is False
    with_legacy = {**values, NAMES.version_track: "20200101000000"}
    assert StoredBundle.decode(with_legacy, NAMES).holds_version_track is True


def test_a_missing_ca_certificate_trusts_nothing_and_is_called_not_stored(
    ssm: Any, store: ParameterStore
) -> None:
    values = {k: v for k, v in _values(ssm, store).items() if k != NAMES.cert(Item.CA)}
    stored = StoredBundle.decode(values, NAMES)
    assert stored.ca_bundle == ()
    assert stored.ca.cert is None and stored.ca.cert_problem == "certificate not stored"


def test_a_pair_missing_both_values_names_both_problems(ssm: Any, store: ParameterStore) -> None:
    values = {
        k: v
        for k, v in _values(ssm, store).items()
        if k not in (NAMES.cert(Item.SERVER), NAMES.key(Item.SERVER))
    }
    server = StoredBundle.decode(values, NAMES).server
    assert server.problem == "certificate not stored; key not stored"


def test_a_switch_interrupted_between_writes_reads_as_introduce(
    ssm: Any, store: ParameterStore
) -> None:
    """Both next-ca-key and previous-ca-key stored: a switch (or its rollback) stopped between
    its writes. A stack not mid-update sends introduce there, so that is the stage."""
    from handler.model import RotationStage

    values = _values(ssm, store)
    interrupted = {
        **values,
        NAMES.next_ca_key: values[NAMES.key(Item.SERVER)],
        NAMES.previous_ca_key: values[NAMES.key(Item.CLIENT)],
    }
    assert StoredBundle.decode(interrupted, NAMES).stage is RotationStage.INTRODUCE
    del interrupted[NAMES.key(Item.CA)]  # even with the signing key gone
    assert StoredBundle.decode(interrupted, NAMES).stage is RotationStage.INTRODUCE
