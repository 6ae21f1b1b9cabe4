"""Ownership (docs/DESIGN.md §5.1): a Delete removes only a bundle its resource owns.

Every test drives the real entry point with CloudFormation-shaped events from two stacks (their
StackIds differ, as two stacks' do) against in-process moto under SSM's type rule.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

from devkit.events import stack_arn
from handler import app
from handler.bundle import Action, plan
from handler.certificates import KeyAlgorithm
from handler.ensure import NotOwner, Requester, _user_refusal, ensure
from handler.model import RotationStage
from handler.names import BundleNames, Item
from handler.ownership import Resource, Standing, claim, may_delete
from handler.stored import StoredBundle
from tests import legacy
from tests.conftest import NOW, Invoke, RecordingClient, props

RACK = "shared"
HEX = RACK.encode().hex()
NAMES = BundleNames.for_rack(RACK)
BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}
STACK_A = stack_arn("stack-a", "11111111-1111-1111-1111-111111111111")
STACK_B = stack_arn("stack-b", "22222222-2222-2222-2222-222222222222")


def _everything(ssm: Any) -> dict[str, tuple[str, int, str]]:
    """Every parameter of the account: name → (value, version, type)."""
    names = [p["Name"] for p in ssm.describe_parameters(MaxResults=50)["Parameters"]]
    found = ssm.get_parameters(Names=names, WithDecryption=True)["Parameters"] if names else []
    return {p["Name"]: (p["Value"], p["Version"], p["Type"]) for p in found}


def _create(invoke: Invoke, stack: str, **more: Any) -> dict[str, Any]:
    return invoke("Create", {**BASE, **more}, stack_id=stack)


def test_the_owner_is_recorded_before_anything_else(invoke: Invoke, ssm: Any) -> None:

    recording = RecordingClient(ssm)
    app.store._client = recording  # type: ignore[assignment]
    response = _create(invoke, STACK_A)
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert recording.written()[0] == NAMES.owner
    stored = ssm.get_parameter(Name=NAMES.owner)["Parameter"]
    assert stored["Type"] == "String"
    assert json.loads(stored["Value"]) == {"StackId": STACK_A, "LogicalResourceId": "DockerTLS"}


@pytest.mark.parametrize(
    "order",
    [
        ("b-create", "b-rollback", "a-update"),
        ("b-create", "b-delete", "a-update"),
        ("b-create", "a-update", "b-delete"),
        ("b-failed-create", "b-rollback", "a-update"),
    ],
)
def test_a_second_stack_on_the_same_rack_never_changes_the_first_ones_bundle(
    invoke: Invoke, ssm: Any, order: tuple[str, ...]
) -> None:
    created = _create(invoke, STACK_A)
    assert created["Data"]["Action"] == "created"
    before = _everything(ssm)
    b_id = None
    for step in order:
        if step == "b-create":
            b = _create(invoke, STACK_B)
            assert b["Status"] == "SUCCESS", b["Reason"]
            assert b["Data"]["Action"] == "reused"
            assert b["Data"]["CAFingerprint"] == created["Data"]["CAFingerprint"]
            b_id = b["PhysicalResourceId"]
        elif step == "b-failed-create":
            b = _create(invoke, STACK_B, ServerSubjectAltNames="b.example.internal")
            assert b["Status"] == "FAILED"
            assert "DockerTLS in stack stack-a" in b["Reason"]
            assert "writes nothing" in b["Reason"]
            b_id = b["PhysicalResourceId"]
        elif step in {"b-rollback", "b-delete"}:
            deleted = invoke("Delete", BASE, physical_id=b_id, stack_id=STACK_B)
            assert deleted["Status"] == "SUCCESS", deleted["Reason"]
        elif step == "a-update":
            updated = invoke(
                "Update", {**BASE, "Version": "2"}, physical_id=HEX, old_properties=BASE,
                stack_id=STACK_A,
            )  # fmt: skip
            assert updated["Data"]["Action"] == "reused"
        assert _everything(ssm) == before, f"after {step}"
    # The owner's own deletion still removes everything.
    gone = invoke("Delete", BASE, physical_id=HEX, stack_id=STACK_A)
    assert gone["Status"] == "SUCCESS"
    assert _everything(ssm) == {}


def test_a_user_writes_nothing_and_says_whose_bundle_it_is(invoke: Invoke, ssm: Any) -> None:
    _create(invoke, STACK_A)
    before = _everything(ssm)
    b = _create(invoke, STACK_B)
    asks = [
        {**BASE, "Version": "2", "RotationToken": "leaked"},  # a rotation at once
        {**BASE, "Version": "2", "RotationStage": "introduce"},  # a staged one
        {**BASE, "Version": "2", "KeyAlgorithm": "ECDSA-P384"},  # leaves reissued
    ]
    for properties in asks:
        response = invoke(
            "Update", properties, physical_id=b["PhysicalResourceId"], old_properties=BASE,
            stack_id=STACK_B,
        )  # fmt: skip
        assert response["Status"] == "FAILED", properties
        reason = response["Reason"]
        assert reason.startswith(f"Rack {RACK!r} is used, not owned, by this resource")
        assert "DockerTLS in stack stack-a" in reason
        assert len(reason) <= 240
        assert _everything(ssm) == before


def test_a_failed_create_rolls_back_what_it_wrote_itself(
    invoke: Invoke, ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Create that wrote the bundle and then failed (here: its response could not be built)
    answers with a marker id; the rollback's Delete still removes what that resource owns."""
    monkeypatch.setattr(app, "generator_data", lambda outcome: 1 / 0)
    failed = _create(invoke, STACK_A)
    assert failed["Status"] == "FAILED"
    assert failed["PhysicalResourceId"].startswith("failed-")
    assert NAMES.owner in _everything(ssm)
    rollback = invoke("Delete", BASE, physical_id=failed["PhysicalResourceId"], stack_id=STACK_A)
    assert rollback["Status"] == "SUCCESS"
    assert _everything(ssm) == {}


def test_a_rack_change_replaces_and_the_cleanup_removes_only_the_old_bundle(
    invoke: Invoke, ssm: Any
) -> None:
    _create(invoke, STACK_A)
    moved = {**BASE, "Rack": "shared-2"}
    updated = invoke("Update", moved, physical_id=HEX, old_properties=BASE, stack_id=STACK_A)
    assert updated["Data"]["Action"] == "created"
    new_names = BundleNames.for_rack("shared-2")
    assert updated["PhysicalResourceId"] == new_names.prefix
    # CloudFormation's cleanup: Delete of the old id, with the old properties.
    cleanup = invoke("Delete", BASE, physical_id=HEX, stack_id=STACK_A)
    assert cleanup["Status"] == "SUCCESS"
    left = _everything(ssm)
    assert not any(name.startswith(f"{HEX}-") for name in left)
    assert {*new_names.material, new_names.owner} <= set(left)


def test_a_new_rack_that_names_someone_elses_bundle_only_uses_it(invoke: Invoke, ssm: Any) -> None:
    """An Update that changes Rack to an existing bundle is that bundle's user, like a Create."""
    _create(invoke, STACK_A)
    invoke("Create", {**BASE, "Rack": "mine"}, stack_id=STACK_B)
    before = _everything(ssm)
    moved = invoke(
        "Update", BASE, physical_id=BundleNames.for_rack("mine").prefix,
        old_properties={**BASE, "Rack": "mine"}, stack_id=STACK_B,
    )  # fmt: skip
    assert moved["Data"]["Action"] == "reused"
    assert _everything(ssm) == before
    invoke("Delete", BASE, physical_id=HEX, stack_id=STACK_B)  # a rollback of that update
    assert {n for n in _everything(ssm) if n.startswith(f"{HEX}-")} == {
        n for n in before if n.startswith(f"{HEX}-")
    }


# --- the convox rack: adopted by its own stack only ---------------------------------------------


def test_a_convox_rack_is_adopted_by_its_own_stacks_update(invoke: Invoke, ssm: Any) -> None:
    stored = legacy.store_convox_rack(ssm, RACK, NOW)
    update = invoke(
        "Update",
        {"Rack": RACK, "Version": "20260714094620"},
        physical_id=HEX,  # the convox generator answered hex(Rack): this is the rack's own stack
        old_properties={"Rack": RACK, "Version": legacy.VERSION},
        stack_id=STACK_A,
    )
    assert update["Status"] == "SUCCESS", update["Reason"]
    assert update["Data"]["Action"] == "renewed"  # the server pair is issued, nothing else
    after = _everything(ssm)
    assert NAMES.version_track not in after
    assert json.loads(after[NAMES.owner][0])["StackId"] == STACK_A
    kept = (
        NAMES.cert(Item.CA),
        NAMES.key(Item.CA),
        NAMES.cert(Item.CLIENT),
        NAMES.key(Item.CLIENT),
    )
    assert {n: after[n][0] for n in kept} == {n: stored[n] for n in kept}
    # Its stack's deletion removes it, as the convox handler's did.
    invoke("Delete", {"Rack": RACK}, physical_id=HEX, stack_id=STACK_A)
    assert _everything(ssm) == {}


def test_a_create_that_finds_a_convox_rack_is_only_its_user(invoke: Invoke, ssm: Any) -> None:
    legacy.store_convox_rack(ssm, RACK, NOW)
    before = _everything(ssm)
    created = _create(invoke, STACK_B)
    # The rack lacks the server pair, and a user writes nothing: it says so.
    assert created["Status"] == "FAILED"
    assert (
        "by this resource (no recorded owner (made by the convox handler or an older "
        "docker-tls)), so it writes nothing"
    ) in created["Reason"]
    invoke("Delete", BASE, physical_id=created["PhysicalResourceId"], stack_id=STACK_B)
    assert _everything(ssm) == before
    # Nor does a Delete of the rack's own id remove material nobody recorded.
    invoke("Delete", BASE, physical_id=HEX, stack_id=STACK_B)
    assert _everything(ssm) == before


# --- the rules, as a pure function ---------------------------------------------------------------


A = Resource(STACK_A, "DockerTLS")
B = Resource(STACK_B, "DockerTLS")


@pytest.mark.parametrize(
    ("recorded", "material", "answered", "standing", "record", "adopts"),
    [
        (None, False, False, Standing.OWNER, True, False),  # a new bundle
        (None, False, True, Standing.OWNER, True, False),  # an Update of a vanished bundle
        (None, True, True, Standing.OWNER, True, True),  # the rack's own stack adopts
        (None, True, False, Standing.USER, False, False),  # a Create finds material
        (A.to_stored(), True, False, Standing.OWNER, False, False),  # its own, again
        (B.to_stored(), True, True, Standing.USER, False, False),  # another's
        (B.to_stored(), False, False, Standing.USER, False, False),  # another's, being written
        ("not json", True, True, Standing.USER, False, False),  # unreadable: nobody's to take
        (json.dumps({"StackId": STACK_A}), True, True, Standing.USER, False, False),
    ],
)
def test_the_standing_of_a_request(
    recorded: str | None,
    material: bool,
    answered: bool,
    standing: Standing,
    record: bool,
    adopts: bool,
) -> None:
    got = claim(recorded, A, material_stored=material, answered_for_bundle=answered)
    assert (got.standing, got.record, got.adopts) == (standing, record, adopts)
    assert may_delete(recorded, A) is (recorded == A.to_stored())


def test_an_owner_is_named_the_way_an_operator_knows_it() -> None:
    assert A.describe() == "DockerTLS in stack stack-a"
    assert Resource.from_stored(A.to_stored()) == A
    assert Resource("not-an-arn", "X").describe() == "X in stack not-an-arn"
    # Only a whole stack ARN (the stack part, the name, the id) gives up its name; anything
    # short of it is shown as it came, rather than a guess at which part is the name.
    short = "arn:aws:cloudformation:us-east-1:123456789012:stack/only-name"
    assert Resource(short, "X").describe() == f"X in stack {short}"
    assert Resource("a/b/c", "X").describe() == "X in stack a/b/c"


def test_a_users_refusal_says_what_to_do_in_full(store: Any) -> None:
    """The whole message (the Reason shows its first 240 characters, the log all of it)."""

    owner = Requester(Resource(STACK_A, "DockerTLS"))
    ensure(store, props(RACK), rotate=False, now=NOW, requester=owner)
    user = Requester(Resource(STACK_B, "DockerTLS"))
    wants_more = dataclasses.replace(props(RACK), key_algorithm=KeyAlgorithm.ECDSA_P384)
    with pytest.raises(NotOwner) as refused:
        ensure(store, wants_more, rotate=False, now=NOW, requester=user)
    assert str(refused.value).endswith(
        ". Match the owner's properties, or give this resource a Rack of its own"
    )
    # Nothing per item to change, only the trusted CAs: the refusal names the stage's step.
    staged = dataclasses.replace(props(RACK), rotation_stage=RotationStage.INTRODUCE)
    with pytest.raises(NotOwner) as refused:
        ensure(store, staged, rotate=False, now=NOW, requester=user)
    assert (
        "does not suit its properties: introduced (a new CA (ECDSA-P256) is trusted beside the "
        "signing one)."
    ) in str(refused.value)


def test_the_owner_record_is_compact_json_with_sorted_keys() -> None:
    """What the SSM console shows, and what every version of the handler writes alike."""
    assert Resource(STACK_A, "DockerTLS").to_stored() == (
        '{"LogicalResourceId":"DockerTLS","StackId":"' + STACK_A + '"}'
    )


@pytest.mark.parametrize(
    "record",
    [
        {"StackId": "", "LogicalResourceId": "DockerTLS"},
        {"StackId": 7, "LogicalResourceId": "DockerTLS"},
        {"StackId": STACK_A, "LogicalResourceId": 7},
        {"StackId": STACK_A, "LogicalResourceId": ""},
    ],
)
def test_a_record_without_a_stack_and_a_logical_id_as_text_names_no_owner(
    record: dict[str, Any],
) -> None:
    assert Resource.from_stored(json.dumps(record)) is None


def test_every_request_logs_its_standing_and_why(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator reading the function's log sees why a request wrote or only read."""

    def standings(requester: Requester) -> list[tuple[str, str]]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="handler.ensure"):
            ensure(store, props(RACK), rotate=False, now=NOW, requester=requester)
        return [
            (r.standing, r.claim) for r in caplog.records if r.getMessage() == "bundle standing"
        ]

    assert standings(Requester(A)) == [("owner", "a new bundle")]
    assert standings(Requester(A)) == [("owner", "this resource owns the bundle")]
    assert standings(Requester(B)) == [("user", "owned by DockerTLS in stack stack-a")]


def test_a_user_refused_over_an_unreadable_owner_record_is_told_so(store: Any, ssm: Any) -> None:
    """Not "made by the convox handler": the owner parameter is there, and names nobody."""

    ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    ssm.put_parameter(Name=NAMES.owner, Value="not json", Type="String", Overwrite=True)
    wants_more = dataclasses.replace(props(RACK), key_algorithm=KeyAlgorithm.ECDSA_P384)
    with pytest.raises(NotOwner) as refused:
        ensure(store, wants_more, rotate=False, now=NOW, requester=Requester(A))
    assert "by this resource (the owner parameter is unreadable), so it writes nothing" in str(
        refused.value
    )


def test_a_requester_that_does_not_say_it_answered_never_adopts(store: Any, ssm: Any) -> None:
    """The safe default: only a caller that knows the Update carries hex(Rack) may adopt
    material nobody recorded; any other caller only uses it, and writes nothing."""

    legacy.store_convox_rack(ssm, RACK, NOW)
    before = _everything(ssm)
    with pytest.raises(NotOwner, match="no recorded owner"):
        ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    assert _everything(ssm) == before


def test_an_adoption_logs_why_the_rack_becomes_its_own(
    store: Any, ssm: Any, caplog: pytest.LogCaptureFixture
) -> None:

    legacy.store_convox_rack(ssm, RACK, NOW)
    with caplog.at_level(logging.INFO, logger="handler.ensure"):
        ensure(
            store,
            props(RACK),
            rotate=False,
            now=NOW,
            requester=Requester(A, answered_for_bundle=True),
        )
    said = {(r.getMessage(), r.claim) for r in caplog.records if hasattr(r, "claim")}
    adopted = "adopted: material with no recorded owner, updated by its own resource"
    assert said == {("bundle standing", adopted), ("bundle owner recorded", adopted)}


def test_a_new_bundles_count_of_writes_includes_the_owner_record(store: Any) -> None:
    """The count an operator reads in "bundle ensured" is every parameter put: 6 and the
    owner record."""

    outcome = ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    assert outcome.written == 7


def test_a_users_refusal_names_the_first_item_it_would_write(store: Any) -> None:

    ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    other_names = dataclasses.replace(props(RACK), server_subject_alt_names=("b.example.internal",))
    with pytest.raises(NotOwner) as refused:
        ensure(store, other_names, rotate=False, now=NOW, requester=Requester(B))
    assert "does not suit its properties: server: reissue (" in str(refused.value)
    assert "). Match the owner's properties" in str(refused.value)


def test_a_refusal_for_the_trusted_cas_alone_says_so(store: Any) -> None:
    """When no item and no stage step needs a write, what is left is ca-cert's trust set."""

    ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    values = {n: p.value for n, p in store.read(NAMES.material).items()}
    healthy = plan(StoredBundle.decode(values, NAMES), props(RACK), rotate=False, now=NOW)
    trust_only = dataclasses.replace(healthy, action=Action.RENEWED, bundle_changes=True)
    standing = claim(A.to_stored(), B, material_stored=True, answered_for_bundle=False)
    assert "does not suit its properties: renewed (the trusted CAs change)." in _user_refusal(
        RACK, standing, trust_only
    )


def test_a_user_that_finds_the_bundle_suitable_writes_and_removes_nothing(store: Any) -> None:

    ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    used = ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(B))
    assert (used.action.value, used.written, used.removed) == ("reused", 0, 0)


def test_two_creators_racing_for_a_new_bundle_leave_one_owner(store: Any, ssm: Any) -> None:
    """The owner record is create-if-absent: B's record lands between A's read and A's write,
    so A re-reads, finds B the owner and only uses B's bundle (written by B meanwhile)."""

    real_put = store.put

    def b_first(name: str, value: str, **kwargs: Any) -> int:
        if name == NAMES.owner and not b_done:
            b_done.append(True)
            ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(B))
        return real_put(name, value, **kwargs)

    b_done: list[bool] = []
    store.put = b_first
    used = ensure(store, props(RACK), rotate=False, now=NOW, requester=Requester(A))
    assert used.action.value == "reused" and used.written == 0
    owner = ssm.get_parameter(Name=NAMES.owner)["Parameter"]
    assert (owner["Value"], owner["Version"]) == (B.to_stored(), 1)
