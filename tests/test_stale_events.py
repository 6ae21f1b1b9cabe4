"""No stale event acts (docs/DESIGN.md §4): a RotationStage Update whose previous stage
contradicts the stage SSM holds is refused before any write, unless it asks for exactly the
stage SSM holds. Driven through the entry point, as CloudFormation and Lambda's retries send.
"""

from __future__ import annotations

from typing import Any

import pytest

from handler.names import BundleNames
from tests.conftest import Invoke

RACK = "stale"
HEX = RACK.encode().hex()
NAMES = BundleNames.for_rack(RACK)
BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}


def _props(stage: str | None) -> dict[str, str]:
    return {**BASE, **({"RotationStage": stage} if stage else {})}


def _update(invoke: Invoke, stage: str | None, previous: str | None) -> dict[str, Any]:
    return invoke("Update", _props(stage), physical_id=HEX, old_properties=_props(previous))


def _state(ssm: Any) -> dict[str, tuple[str, int]]:
    found = ssm.get_parameters(Names=list(NAMES.everything), WithDecryption=True)["Parameters"]
    return {p["Name"]: (p["Value"], p["Version"]) for p in found}


@pytest.fixture
def switched(invoke: Invoke) -> None:
    invoke("Create", BASE)
    assert _update(invoke, "introduce", None)["Data"]["Action"] == "introduced"
    assert _update(invoke, "switch", "introduce")["Data"]["Action"] == "switched"


def test_a_cancel_sent_after_a_skipped_rollback_is_refused(
    invoke: Invoke, ssm: Any, switched: None
) -> None:
    """The issue's sequence: the switch took effect, but CloudFormation believes the stack is
    at introduce (its rollback skipped this resource, or a retried switch ran after the
    rollback). The operator removes RotationStage to cancel: acting on it would retire the old
    CA while daemons launched at introduce still hold server certificates it signed."""
    before = _state(ssm)
    response = _update(invoke, None, "introduce")
    assert response["Status"] == "FAILED"
    reason = response["Reason"]
    assert reason.startswith("RotationStage none (removed): SSM holds stage switch")
    assert "previous properties say introduce" in reason
    assert "Update to switch first" in reason
    assert reason.endswith("Nothing was written.")
    assert len(reason) <= 240
    assert _state(ssm) == before


@pytest.mark.parametrize(("stage", "previous"), [(None, None), ("introduce", "introduce")])
def test_an_update_from_a_stage_ssm_does_not_hold_writes_nothing(
    invoke: Invoke, ssm: Any, switched: None, stage: str | None, previous: str | None
) -> None:
    before = _state(ssm)
    response = _update(invoke, stage, previous)
    assert response["Status"] == "FAILED"
    assert "SSM holds stage switch" in response["Reason"]
    assert _state(ssm) == before


def test_a_request_for_the_stage_ssm_holds_writes_nothing(
    invoke: Invoke, ssm: Any, switched: None
) -> None:
    """A rollback of a step that never happened: its previous stage contradicts SSM, but it asks
    for what SSM holds, so it succeeds and writes nothing."""
    before = _state(ssm)
    response = _update(invoke, "switch", None)  # the rollback of a retire that failed early
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["Data"]["Action"] == "reused"
    assert _state(ssm) == before


def test_a_replayed_stage_event_writes_nothing(invoke: Invoke, ssm: Any) -> None:
    invoke("Create", BASE)
    first = _update(invoke, "introduce", None)
    assert first["Data"]["Action"] == "introduced"
    before = _state(ssm)
    again = _update(invoke, "introduce", None)  # Lambda delivered the same event twice
    assert again["Status"] == "SUCCESS"
    assert again["Data"]["Action"] == "reused"
    assert _state(ssm) == before


# Every legitimate transition and rollback of the staged-rotation matrix: (stage, previous,
# Action), each from the state the ones before it left.
RUNBOOK = [
    ("introduce", None, "introduced"),
    (None, "introduce", "cancelled"),  # the rollback of introduce (or a cancel)
    ("introduce", None, "introduced"),
    ("switch", "introduce", "switched"),
    ("introduce", "switch", "introduced"),  # the rollback of switch
    ("switch", "introduce", "switched"),
    (None, "switch", "retired"),
    ("switch", None, "switched"),  # the rollback of retire
    (None, "switch", "retired"),
    (None, None, "reused"),  # the next ordinary update closes the rollback window
]


def test_every_step_of_the_runbook_and_its_rollbacks_still_works(invoke: Invoke) -> None:
    invoke("Create", BASE)
    for stage, previous, action in RUNBOOK:
        response = _update(invoke, stage, previous)
        assert response["Status"] == "SUCCESS", (stage, previous, response["Reason"])
        assert response["Data"]["Action"] == action, (stage, previous)
