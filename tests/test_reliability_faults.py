"""Reliability: SSM faults on every call, and crash consistency.

Faults are injected at the HTTP layer of a real botocore client built as production builds it
(standard retry mode, 5 attempts) talking to moto's server on 127.0.0.1, so botocore's own
retry logic really runs; only its backoff sleeps are skipped (and recorded). The handler runs
end to end through ``lambda_handler``.

Crash consistency runs ``ensure`` itself against in-process moto: a generation is interrupted
after each k-th write (a crash: nothing more runs; or a write error: FAILED), and a fresh
ensure must converge on a healthy bundle without replacing a CA that was intact before.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from devkit.events import LambdaContext, event
from handler import app
from handler.bundle import Action
from handler.certificates import KeyAlgorithm
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore, StoreError
from tests.conftest import NOW, OWNER, props
from tests.reliability_support import (
    FAULT_KINDS,
    RETRYABLE,
    Fault,
    Injector,
    Record,
    assert_healthy,
    figure,
    http_client,
    no_backoff,
    shared_ssm,
    stored_values,
    versions,
)

# The fuzz, fault-matrix, concurrency and timing tests: the full run (make test) only.
pytestmark = pytest.mark.slow

__all__ = ["no_backoff"]  # the fixture, re-exported for pytest

RACK = "faults"
NAMES = BundleNames.for_rack(RACK)
HEX = NAMES.prefix
PROPS = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}
PARSED = props(RACK)
#: The order a Create writes in (handler.bundle.issue): CA key, CA cert, then each leaf's key
#: and certificate.
CREATE_ORDER = [
    NAMES.owner,  # recorded before anything else (handler.ownership)
    NAMES.key(Item.CA),
    NAMES.cert(Item.CA),
    NAMES.key(Item.SERVER),
    NAMES.cert(Item.SERVER),
    NAMES.key(Item.CLIENT),
    NAMES.cert(Item.CLIENT),
]
#: handler.store.default_client sets ``max_attempts: 5``, which botocore counts as retries:
#: 6 attempts in all (``client.meta.config.retries["total_max_attempts"]``).
BOTOCORE_MAX_ATTEMPTS = 6
STORE_TOO_MANY_UPDATES_ATTEMPTS = 5  # handler.store.TOO_MANY_UPDATES_ATTEMPTS
TRANSIENT_FAILURES = 2

CALLS = ["GetParameters", *[f"PutParameter#{k}" for k in range(1, 8)], "DeleteParameters"]


def _cases() -> list[Any]:
    cases = []
    for call in CALLS:
        for kind in FAULT_KINDS:
            if kind == "too-many-updates" and not call.startswith("PutParameter"):
                continue  # SSM raises it for concurrent writes to one parameter only
            for mode in ("transient", "persistent"):
                cases.append(pytest.param(call, kind, mode, id=f"{call}-{kind}-{mode}"))
    return cases


def _handle(monkeypatch: pytest.MonkeyPatch, store: ParameterStore, body: dict[str, Any]) -> Any:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app, "store", store)
    monkeypatch.setattr(app.helper, "send_response", lambda url, b: sent.append(b) or True)
    app.lambda_handler(body, LambdaContext())
    assert len(sent) == 1, f"expected exactly one response, got {len(sent)}"
    return sent[0]


def _event(request_type: str, **kwargs: Any) -> dict[str, Any]:
    return event(
        request_type,
        app.GENERATOR,
        "DockerTLS",
        PROPS,
        response_url="https://cfn.example/r?X-Amz-Signature=s",
        **kwargs,
    )


@pytest.mark.parametrize(("call", "kind", "mode"), _cases())
def test_an_ssm_fault_on_each_call(
    call: str,
    kind: str,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: list[float],
    record_property: Record,
) -> None:
    endpoint = shared_ssm()
    endpoint.reset()
    plain = http_client(endpoint)
    operation, _, ordinal = call.partition("#")
    name = CREATE_ORDER[int(ordinal) - 1] if ordinal else None
    if operation != "PutParameter":
        ensure(
            ParameterStore(plain),
            PARSED,
            rotate=False,
            now=dt.datetime.now(dt.UTC),
            requester=OWNER,
        )
    before_values = stored_values(plain, NAMES)
    before_versions = versions(plain, NAMES)

    injector = Injector(
        [Fault(operation, kind, TRANSIENT_FAILURES if mode == "transient" else None, name)]
    )
    store_sleeps: list[float] = []
    store = ParameterStore(http_client(endpoint, injector), sleep=store_sleeps.append)
    if operation == "GetParameters":
        body = _event("Update", physical_id=HEX, old_properties=PROPS)
    elif operation == "PutParameter":
        body = _event("Create")
    else:
        body = _event("Delete", physical_id=HEX)
    response = _handle(monkeypatch, store, body)

    attempts = (
        injector.name_attempts[f"PutParameter:{name}"] if name else injector.attempts[operation]
    )
    code = FAULT_KINDS[kind][1]
    recovers = kind in RETRYABLE and mode == "transient"
    if kind not in RETRYABLE:
        expected_attempts = 1  # never retried: retrying access denied only burns time
    elif recovers:
        expected_attempts = TRANSIENT_FAILURES + 1
    elif kind == "too-many-updates":
        expected_attempts = STORE_TOO_MANY_UPDATES_ATTEMPTS
    else:
        expected_attempts = BOTOCORE_MAX_ATTEMPTS
    # A recovering Delete then removes the owner record, in a call of its own, last.
    calls_after = 1 if operation == "DeleteParameters" and recovers else 0
    assert attempts == expected_attempts + calls_after, (attempts, injector.attempts)
    if kind == "too-many-updates":
        assert len(store_sleeps) == expected_attempts - 1  # the store's own bounded retry
        assert all(0 < s < 2 for s in store_sleeps)
    elif kind in RETRYABLE:
        assert len(no_backoff) == expected_attempts - 1  # botocore's standard-mode retry
        assert all(0 <= d <= 20 for d in no_backoff)

    after_values = stored_values(plain, NAMES)
    if recovers:
        assert response["Status"] == "SUCCESS", response["Reason"]
        if operation == "DeleteParameters":
            assert after_values == {}
        else:
            fp = assert_healthy(after_values, PARSED, dt.datetime.now(dt.UTC))
            assert response["Data"]["CAFingerprint"] == fp
        if operation == "GetParameters":
            assert response["Data"]["Action"] == "reused"
            assert injector.writes() == []
            assert versions(plain, NAMES) == before_versions
        outcome = "retried, then SUCCESS"
    else:
        assert response["Status"] == "FAILED"
        api = "PutParameter" if operation == "PutParameter" else operation
        assert response["Reason"].startswith(f"SSM {api} failed ({code})"), response["Reason"]
        assert len(response["Reason"]) <= 240
        assert response["PhysicalResourceId"] == (
            HEX if operation != "PutParameter" else f"failed-{body['RequestId']}"
        )
        if operation == "GetParameters":
            assert injector.writes() == [], "a failed read must never lead to a write"
            assert injector.deletes() == 0
            assert after_values == before_values
            assert versions(plain, NAMES) == before_versions
            outcome = "FAILED, zero writes"
        elif operation == "DeleteParameters":
            assert after_values == before_values
            outcome = "FAILED, bundle intact"
        else:
            k = int(ordinal)
            assert injector.writes() == CREATE_ORDER[: k - 1]
            assert set(after_values) == set(CREATE_ORDER[: k - 1])
            # The stack retries (or the next Update comes): it converges, keeping any CA key
            # the failed request managed to store.
            retry = _handle(
                monkeypatch,
                ParameterStore(plain),
                _event("Update", physical_id=HEX, old_properties=PROPS),
            )
            assert retry["Status"] == "SUCCESS", retry["Reason"]
            final = stored_values(plain, NAMES)
            assert retry["Data"]["CAFingerprint"] == assert_healthy(
                final, PARSED, dt.datetime.now(dt.UTC)
            )
            if k > 2:  # the owner record, then the CA key, were written
                assert final[NAMES.key(Item.CA)] == after_values[NAMES.key(Item.CA)]
            outcome = "FAILED after earlier writes; the next request converges"
    figure(
        record_property,
        "ssm-fault",
        outcome,
        call=call,
        kind=kind,
        mode=mode,
        attempts=attempts,
    )


# --- crash consistency ----------------------------------------------------------------------


class Crash(BaseException):
    """The Lambda dying mid-generation: nothing after it runs (not even except Exception)."""


class Interrupting:
    """An SSM client proxy that lets ``allowed`` writes through, then interrupts: at the next
    write, or, when every write went through, at the next read (the verification)."""

    def __init__(self, client: Any, allowed: int, how: str) -> None:
        self._client = client
        self._allowed = allowed
        self._how = how
        self.puts: list[str] = []

    def _interrupt(self, operation: str) -> None:
        if self._how == "crash":
            raise Crash(operation)
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)

    def put_parameter(self, **kwargs: Any) -> Any:
        if len(self.puts) >= self._allowed:
            self._interrupt("PutParameter")
        self.puts.append(kwargs["Name"])
        return self._client.put_parameter(**kwargs)

    def get_parameters(self, **kwargs: Any) -> Any:
        if self.puts and len(self.puts) >= self._allowed:
            self._interrupt("GetParameters")
        return self._client.get_parameters(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _setup(ssm: Any, scenario: str) -> tuple[bool, int]:
    """Prepare the store for ``scenario``; returns (rotate?, writes the generation makes)."""
    store = ParameterStore(ssm, sleep=lambda _: None)
    if scenario == "create":
        return False, 6
    ensure(store, PARSED, rotate=False, now=NOW, requester=OWNER)
    if scenario == "leaf-reissue":
        # Both leaves need reissuing (a KeyAlgorithm change): 4 writes under the kept CA.
        return False, 4
    return True, 6  # rotation


def _props_for(scenario: str) -> Any:
    return (
        props(RACK, key_algorithm=KeyAlgorithm.ECDSA_P384) if scenario == "leaf-reissue" else PARSED
    )


CRASH_POINTS = [
    pytest.param(scenario, k, how, id=f"{scenario}-after-{k}-{how}")
    for scenario, writes in (("create", 6), ("leaf-reissue", 4), ("rotation", 6))
    for k in range(writes + 1)
    for how in ("crash", "write-error")
]


@pytest.mark.parametrize(("scenario", "k", "how"), CRASH_POINTS)
def test_interrupted_after_k_writes_a_fresh_ensure_converges(
    ssm: Any, scenario: str, k: int, how: str, record_property: Record
) -> None:
    rotate, writes = _setup(ssm, scenario)
    before = stored_values(ssm, NAMES)
    before_versions = versions(ssm, NAMES)
    wanted = _props_for(scenario)
    proxy = Interrupting(ssm, k, how)
    expected: type[BaseException] = Crash if how == "crash" else StoreError
    with pytest.raises(expected):
        ensure(ParameterStore(proxy, sleep=lambda _: None), wanted, rotate=rotate, now=NOW)  # type: ignore[arg-type]
    assert len(proxy.puts) == k <= writes
    interrupted = stored_values(ssm, NAMES)

    # A fresh invocation (the Lambda retry, the stack's next Update) converges.
    outcome = ensure(ParameterStore(ssm, sleep=lambda _: None), wanted, rotate=False, now=NOW)
    after = stored_values(ssm, NAMES)
    fp = assert_healthy(after, wanted, NOW)
    from handler.certificates import fingerprint

    assert fingerprint(outcome.ca_cert) == fp
    ca_names = (NAMES.key(Item.CA), NAMES.cert(Item.CA))
    if scenario == "leaf-reissue" or (scenario == "rotation" and k == 0):
        # The CA was intact before the crash and the crash wrote no CA: it is the CA after.
        assert {n: after[n] for n in ca_names} == {n: before[n] for n in ca_names}
        assert {n: versions(ssm, NAMES)[n] for n in ca_names} == {
            n: before_versions[n] for n in ca_names
        }
    elif k >= 1:
        # A CA key the interrupted run stored is kept, not rotated a second time.
        assert after[NAMES.key(Item.CA)] == interrupted[NAMES.key(Item.CA)]
    if scenario == "create" and k == 0:
        assert outcome.action is Action.CREATED
    figure(
        record_property,
        "crash-point",
        "converged; CA intact before is the CA after",
        scenario=scenario,
        k=k,
        interrupt=how,
        repair=outcome.action.value,
    )
