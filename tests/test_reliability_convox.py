"""Reliability: a rack made by the convox handler, under SSM's type rule.

The convox handler stored its keys as ``String``; SSM refuses to change a parameter's type on
overwrite (HierarchyTypeMismatchException), and the stand-ins here refuse it too
(devkit.ssm_rules). Every path that rewrites such a key must still succeed and leave it a
``SecureString``, and a crash at any point of such a rewrite must never leave the rack without
its CA key in a way that would make a new CA.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from handler.bundle import Action
from handler.certificates import KeyAlgorithm, public_key_der
from handler.codec import private_key_from_stored
from handler.ensure import ensure
from handler.model import RotationStage
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests import legacy
from tests.conftest import NOW, props
from tests.reliability_support import Record, figure
from tests.test_reliability_rotation import Crash, Interrupting

RACK = "convox"
NAMES = BundleNames.for_rack(RACK)
KEYS = (NAMES.key(Item.CA), NAMES.key(Item.SERVER), NAMES.key(Item.CLIENT),
        NAMES.next_ca_key, NAMES.previous_ca_key)  # fmt: skip
INTRODUCE, SWITCH = RotationStage.INTRODUCE, RotationStage.SWITCH
# The convox rack's own algorithm: nothing is reissued for a KeyAlgorithm difference.
RSA = props(RACK, key_algorithm=KeyAlgorithm.RSA_2048)


def _types(ssm: Any) -> dict[str, str]:
    found = ssm.get_parameters(Names=list(NAMES.everything))["Parameters"]
    return {p["Name"]: p["Type"] for p in found}


def _ca_key(ssm: Any) -> bytes:
    value = ssm.get_parameter(Name=NAMES.key(Item.CA), WithDecryption=True)["Parameter"]["Value"]
    return public_key_der(private_key_from_stored(value))


def _store(ssm: Any) -> ParameterStore:
    return ParameterStore(ssm, sleep=lambda _: None)


@pytest.fixture
def rack(ssm: Any) -> dict[str, str]:
    """A convox rack adopted as it is: its keys stay ``String`` until something rewrites them."""
    stored = legacy.store_convox_rack(ssm, RACK, NOW)
    ensure(_store(ssm), RSA, rotate=False, now=NOW)  # issues the missing server pair only
    types = _types(ssm)
    assert types[NAMES.key(Item.CA)] == types[NAMES.key(Item.CLIENT)] == "String"
    return stored


def _assert_keys_secure(ssm: Any, *, unless_kept: bytes | None = None) -> None:
    """Every stored key is a SecureString; ``unless_kept``: the convox CA key may still be the
    String it was while it has never been rewritten (it is kept byte for byte until then)."""
    types = _types(ssm)
    kept = unless_kept is not None and _ca_key(ssm) == unless_kept
    names = [n for n in KEYS if n in types and not (kept and n == NAMES.key(Item.CA))]
    assert {name: types[name] for name in names} == dict.fromkeys(names, "SecureString")


PATHS = {
    # name: (properties, rotate?, what the CA does)
    "key-algorithm-change": (props(RACK), False, "kept"),
    "leaf-renewal-near-expiry": (
        dataclasses.replace(RSA, validity_days=40000, renew_before_days=36600), False, "kept"),
    "rotation-token": (RSA, True, "rotated"),
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_rewrite_of_a_convox_key_succeeds_and_leaves_it_secure(
    ssm: Any, rack: dict[str, str], path: str
) -> None:
    wanted, rotate, ca = PATHS[path]
    before = _ca_key(ssm)
    outcome = ensure(_store(ssm), wanted, rotate=rotate, now=NOW)
    assert outcome.action is (Action.ROTATED if rotate else Action.RENEWED)
    assert (_ca_key(ssm) == before) is (ca == "kept")
    types = _types(ssm)
    assert types[NAMES.key(Item.CLIENT)] == "SecureString"
    if rotate:
        _assert_keys_secure(ssm)


@pytest.mark.parametrize("broken", [Item.CLIENT, Item.CA])
def test_a_corrupt_convox_key_is_repaired_as_a_secure_string(
    ssm: Any, rack: dict[str, str], broken: Item
) -> None:
    ssm.put_parameter(Name=NAMES.key(broken), Value="bm90IGEga2V5", Type="String", Overwrite=True)
    outcome = ensure(_store(ssm), RSA, rotate=False, now=NOW)
    assert outcome.action is (Action.ROTATED if broken is Item.CA else Action.RENEWED)
    assert _types(ssm)[NAMES.key(broken)] == "SecureString"


def test_a_whole_staged_rotation_of_a_convox_rack(ssm: Any, rack: dict[str, str]) -> None:
    old_ca = _ca_key(ssm)
    store = _store(ssm)
    steps = [(INTRODUCE, None, Action.INTRODUCED), (SWITCH, INTRODUCE, Action.SWITCHED),
             (INTRODUCE, SWITCH, Action.INTRODUCED), (SWITCH, INTRODUCE, Action.SWITCHED),
             (None, SWITCH, Action.RETIRED)]  # fmt: skip
    for stage, previous, action in steps:
        wanted = dataclasses.replace(props(RACK), rotation_stage=stage)
        outcome = ensure(
            store, wanted, rotate=False, now=NOW, previous_stage=previous, is_update=True
        )
        assert outcome.action is action, (stage, previous)
        _assert_keys_secure(ssm, unless_kept=old_ca)
    assert _ca_key(ssm) != old_ca  # the introduced CA signs; the convox CA is retired


# The crash-point matrix of a switch on a convox rack: its String CA key is rewritten (removed
# and created anew as a SecureString) once the old key sits in previous-ca-key.
SWITCH_MUTATIONS = 8


@pytest.mark.slow
@pytest.mark.parametrize("k", range(SWITCH_MUTATIONS + 1))
def test_a_convox_switch_interrupted_after_k_mutations_loses_no_ca_key(
    ssm: Any, rack: dict[str, str], k: int, record_property: Record
) -> None:
    store = _store(ssm)
    wanted = dataclasses.replace(props(RACK), rotation_stage=INTRODUCE)
    ensure(store, wanted, rotate=False, now=NOW, previous_stage=None, is_update=True)
    old_ca = _ca_key(ssm)
    new_value = ssm.get_parameter(Name=NAMES.next_ca_key, WithDecryption=True)["Parameter"]
    new_ca = public_key_der(private_key_from_stored(new_value["Value"]))
    switch = dataclasses.replace(props(RACK), rotation_stage=SWITCH)
    proxy = Interrupting(ssm, k)
    try:
        ensure(
            ParameterStore(proxy, sleep=lambda _: None),  # type: ignore[arg-type]
            switch,
            rotate=False,
            now=NOW,
            previous_stage=INTRODUCE,
            is_update=True,
        )
        finished = True
    except Crash:
        finished = False
    assert finished is (proxy.done < k)
    # Both CA keys survive the crash somewhere: no request would need a new CA.
    stored = ssm.get_parameters(Names=list(NAMES.everything), WithDecryption=True)["Parameters"]
    held = {
        public_key_der(private_key_from_stored(p["Value"]))
        for p in stored
        if p["Name"] in (NAMES.key(Item.CA), NAMES.next_ca_key, NAMES.previous_ca_key)
    }
    assert {old_ca, new_ca} <= held
    # The retry (the same request), or the rollback CloudFormation sends, converges.
    for stage, previous, signer in ((SWITCH, INTRODUCE, new_ca), (INTRODUCE, SWITCH, old_ca)):
        wanted = dataclasses.replace(props(RACK), rotation_stage=stage)
        outcome = ensure(
            store, wanted, rotate=False, now=NOW, previous_stage=previous, is_update=True
        )
        assert outcome.action is not Action.ROTATED
        assert _ca_key(ssm) == signer
        _assert_keys_secure(ssm, unless_kept=old_ca)
    figure(
        record_property,
        "crash-point",
        "converged; no CA key lost",
        scenario="stage: switch of a convox rack (String keys)",
        k=k,
        interrupt="crash",
        repair="switched, then introduced",
    )
