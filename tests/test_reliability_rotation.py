"""Reliability: a staged CA rotation interrupted at each of its writes converges.

The Lambda can die between any two SSM calls of a stage (a timeout, a crash). The next
invocation, the same request retried, or CloudFormation's rollback of a switch that never
answered, must finish on what the stage asks for, with no CA key lost on the way.
"""

from __future__ import annotations

from typing import Any

import pytest

from handler.bundle import Action
from handler.certificates import public_key_der, signed_by
from handler.codec import (
    certificate_from_stored,
    certificates_from_stored,
    private_key_from_stored,
)
from handler.names import Item
from handler.store import ParameterStore
from tests.conftest import NOW, OWNER
from tests.reliability_support import Record, figure
from tests.test_rotation import INTRODUCE, NAMES, SWITCH, _props, _step, _values

# The fuzz, fault-matrix, concurrency and timing tests: the full run (make test) only.
pytestmark = pytest.mark.slow


@pytest.fixture
def steady(store: ParameterStore, ssm: Any) -> dict[str, str]:
    from handler.ensure import ensure

    ensure(store, _props(None), rotate=False, now=NOW, requester=OWNER)
    return _values(ssm)


# --------------------------------------------------------------------------------------------
# A crash between any two writes of a stage converges on what the stage asks for
# --------------------------------------------------------------------------------------------


class Crash(BaseException):
    """The Lambda dying mid-request: nothing after it runs."""


class Interrupting:
    """An SSM client proxy that lets ``allowed`` writes and deletes through, then dies."""

    def __init__(self, client: Any, allowed: int) -> None:
        self._client = client
        self._allowed = allowed
        self.done = 0

    def _mutate(self, operation: str, **kwargs: Any) -> Any:
        if self.done >= self._allowed:
            raise Crash(operation)
        self.done += 1
        return getattr(self._client, operation)(**kwargs)

    def put_parameter(self, **kwargs: Any) -> Any:
        return self._mutate("put_parameter", **kwargs)

    def delete_parameters(self, **kwargs: Any) -> Any:
        return self._mutate("delete_parameters", **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _roles(values: dict[str, str], labels: dict[bytes, str]) -> dict[str, Any]:
    """Where each CA is, by label: A the first signer, B the introduced CA, 'new' any other."""
    from handler.certificates import public_key_der

    def label(holder: Any) -> str:
        return labels.setdefault(public_key_der(holder), f"new{len(labels)}")

    def key(name: str) -> str | None:
        return label(private_key_from_stored(values[name])) if name in values else None

    bundle = certificates_from_stored(values[NAMES.cert(Item.CA)])
    signer = next(c for c in bundle if label(c) == key(NAMES.key(Item.CA)))
    leaves_by = {
        label(signer) if signed_by(certificate_from_stored(values[NAMES.cert(i)]), signer) else "?"
        for i in (Item.SERVER, Item.CLIENT)
    }
    retired = values.get(NAMES.previous_ca_cert)
    return {
        "signer": key(NAMES.key(Item.CA)),
        "bundle": [label(c) for c in bundle],
        "next": key(NAMES.next_ca_key),
        "previous": key(NAMES.previous_ca_key),
        "retired": label(certificate_from_stored(retired)) if retired else None,
        "leaves signed by": sorted(leaves_by),
    }


# (steps to reach the start: (stage, previous)), the request, its previous stage, the roles after
TRANSITIONS = {
    "introduce": ([], INTRODUCE, None, {"signer": "A", "bundle": ["A", "new1"], "next": "new1"}),
    "switch": ([(INTRODUCE, None)], SWITCH, INTRODUCE,
               {"signer": "B", "bundle": ["B", "A"], "previous": "A"}),
    "retire": ([(INTRODUCE, None), (SWITCH, INTRODUCE)], None, SWITCH,
               {"signer": "B", "bundle": ["B"], "retired": "A"}),
    "cancel": ([(INTRODUCE, None)], None, INTRODUCE, {"signer": "A", "bundle": ["A"]}),
    "rollback-of-switch": ([(INTRODUCE, None), (SWITCH, INTRODUCE)], INTRODUCE, SWITCH,
                           {"signer": "A", "bundle": ["A", "B"], "next": "B"}),
    "rollback-of-retire": ([(INTRODUCE, None), (SWITCH, INTRODUCE), (None, SWITCH)], SWITCH, None,
                           {"signer": "B", "bundle": ["B", "A"], "retired": "A"}),
}  # fmt: skip
CRASHES = [
    pytest.param(name, k, id=f"{name}-after-{k}")
    for name, writes in (("introduce", 2), ("switch", 8), ("retire", 3), ("cancel", 2),
                         ("rollback-of-switch", 8), ("rollback-of-retire", 1))
    for k in range(writes)
]  # fmt: skip


@pytest.mark.parametrize(("name", "k"), CRASHES)
def test_a_stage_interrupted_after_k_writes_converges(
    ssm: Any, steady: dict[str, str], name: str, k: int, record_property: Record
) -> None:
    steps, stage, previous, expected = TRANSITIONS[name]
    store = ParameterStore(ssm, sleep=lambda _: None)
    for step_stage, step_previous in steps:
        _step(store, step_stage, step_previous)
    start = _values(ssm)
    labels = {public_key_der(private_key_from_stored(steady[NAMES.key(Item.CA)])): "A"}
    introduced = start.get(NAMES.next_ca_key) or (
        start[NAMES.key(Item.CA)] if NAMES.previous_ca_key in start else None
    )
    if name == "rollback-of-retire":
        introduced = start[NAMES.key(Item.CA)]
    if introduced:
        labels[public_key_der(private_key_from_stored(introduced))] = "B"
    proxy = Interrupting(ssm, k)
    with pytest.raises(Crash):
        _step(ParameterStore(proxy, sleep=lambda _: None), stage, previous)  # type: ignore[arg-type]
    assert proxy.done == k
    # The Lambda's retry (the same request) finishes it.
    retried = _step(store, stage, previous)
    roles = _roles(_values(ssm), labels)
    wanted = {"next": None, "previous": None, "retired": None, **expected}
    wanted["leaves signed by"] = [wanted["signer"]]
    assert roles == wanted
    # And once finished, the same request again is a repeat: nothing more to write.
    assert _step(store, stage, previous).action is Action.REUSED
    figure(
        record_property,
        "crash-point",
        "converged; no CA key lost",
        scenario=f"stage: {name}",
        k=k,
        interrupt="crash",
        repair=retried.action.value,
    )


@pytest.mark.parametrize("k", range(8))
def test_a_switch_interrupted_after_k_writes_rolls_back_cleanly(
    ssm: Any, steady: dict[str, str], k: int, record_property: Record
) -> None:
    """The switch never answered, so CloudFormation rolls back: it sends introduce again."""
    store = ParameterStore(ssm, sleep=lambda _: None)
    _step(store, INTRODUCE, None)
    introduced = _values(ssm)
    labels = {
        public_key_der(private_key_from_stored(steady[NAMES.key(Item.CA)])): "A",
        public_key_der(private_key_from_stored(introduced[NAMES.next_ca_key])): "B",
    }
    with pytest.raises(Crash):
        _step(ParameterStore(Interrupting(ssm, k), sleep=lambda _: None), SWITCH, INTRODUCE)  # type: ignore[arg-type]
    rolled_back = _step(store, INTRODUCE, SWITCH)
    assert _roles(_values(ssm), labels) == {
        "signer": "A",
        "bundle": ["A", "B"],
        "next": "B",
        "previous": None,
        "retired": None,
        "leaves signed by": ["A"],
    }
    figure(
        record_property,
        "crash-point",
        "converged; no CA key lost",
        scenario="stage: switch, then its rollback",
        k=k,
        interrupt="crash",
        repair=rolled_back.action.value,
    )
