"""Shared machinery for the reliability tests (docs/RELIABILITY.md): HTTP-level SSM fault
injection on real botocore clients, a shared local SSM server, bundle health checks, and figure
recording.

Figures: each reliability test calls :func:`figure` (a thin wrapper over pytest's
``record_property``); ``scripts/reliability_report.py`` reads them back from the JUnit XML and
writes ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from devkit.ssm_server import LocalSsm, local_ssm
from handler.bundle import Decision, plan
from handler.certificates import fingerprint
from handler.codec import certificate_from_stored
from handler.model import GeneratorProperties
from handler.names import BundleNames, Item
from handler.stored import StoredBundle

Record = Callable[[str, object], None]


def figure(record_property: Record, category: str, outcome: str, **details: object) -> None:
    """Record what a reliability test exercised and what happened, for the report."""
    record_property("reliability_category", category)
    record_property("reliability_outcome", outcome)
    for key, value in details.items():
        record_property(
            f"reliability_{key}", json.dumps(value) if not isinstance(value, str) else value
        )


# --- HTTP-level faults -------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _error_response(url: str, status: int, code: str, message: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {
        "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000",
        "Content-Type": "application/x-amz-json-1.1",
        "Content-Length": str(len(body)),
    }
    return AWSResponse(url, status, headers, _Raw(body))


#: kind -> (HTTP status and error code, or an exception class); and whether SSM/botocore or the
#: store retries it.
FAULT_KINDS: dict[str, tuple[int, str]] = {
    "throttling": (400, "ThrottlingException"),
    "too-many-updates": (400, "TooManyUpdates"),
    "access-denied": (400, "AccessDeniedException"),
    "kms-access-denied": (400, "KMSAccessDeniedException"),
    "kms-invalid-state": (400, "KMSInvalidStateException"),
    "connect-timeout": (0, "ConnectTimeoutError"),
    "read-timeout": (0, "ReadTimeoutError"),
    "http-500": (500, "InternalServerError"),
}
RETRYABLE = {"throttling", "too-many-updates", "connect-timeout", "read-timeout", "http-500"}
_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "TooManyUpdates": "There are concurrent updates for a resource that supports one update "
    "at a time.",
    "AccessDeniedException": "User: arn:aws:sts::123456789012:assumed-role/docker-tls/fn is not "
    "authorized to perform: ssm:{op} on resource: parameter",
    "KMSAccessDeniedException": "The ciphertext refers to a customer master key that does not "
    "exist, does not exist in this region, or you are not allowed to access.",
    "KMSInvalidStateException": "arn:aws:kms:us-east-1:123456789012:key/1234 is pending deletion.",
    "InternalServerError": "An internal error occurred.",
}


@dataclass
class Fault:
    operation: str  # "GetParameters", "PutParameter", "DeleteParameters"
    kind: str
    times: int | None  # attempts to fail; None = every attempt
    name: str | None = None  # for PutParameter: only writes of this parameter


@dataclass
class Injector:
    """A ``before-send`` hook on a real client: answers chosen attempts with a fault, the rest
    go on to the server. Counts every HTTP attempt per operation and per written name."""

    faults: list[Fault] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    name_attempts: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    reached_server: list[tuple[str, str]] = field(default_factory=list)  # (operation, Name)
    on_send: Callable[[str, dict[str, Any]], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, client: Any) -> Any:
        client.meta.events.register("before-send.ssm.*", self._before_send)
        return client

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
        body = json.loads(request.body or b"{}")
        name = body.get("Name", "")
        if self.on_send:
            self.on_send(operation, body)
        with self._lock:
            self.attempts[operation] += 1
            if name:
                self.name_attempts[f"{operation}:{name}"] += 1
            for fault in self.faults:
                if fault.operation != operation or (fault.name and fault.name != name):
                    continue
                if fault.times is not None and fault.times <= 0:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                self.injected[operation] += 1
                status, code = FAULT_KINDS[fault.kind]
                if code == "ConnectTimeoutError":
                    raise ConnectTimeoutError(endpoint_url=request.url)
                if code == "ReadTimeoutError":
                    raise ReadTimeoutError(endpoint_url=request.url)
                message = _MESSAGES[code].replace("{op}", operation)
                return _error_response(request.url, status, code, message)
            self.reached_server.append((operation, name))
        return None

    def writes(self) -> list[str]:
        """Names of PutParameter requests that reached SSM."""
        return [name for operation, name in self.reached_server if operation == "PutParameter"]

    def deletes(self) -> int:
        return sum(1 for operation, _ in self.reached_server if operation == "DeleteParameters")


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's standard-mode backoff still computed (and recorded), but not slept."""
    from botocore.retries import standard

    delays: list[float] = []
    original = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: Any, context: Any) -> float:
        delays.append(float(original(self, context)))
        return 0.0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    return delays


# --- one local SSM server per test session ------------------------------------------------------

_SERVER: list[tuple[LocalSsm, Any]] = []


def shared_ssm() -> LocalSsm:
    """moto's SSM server on 127.0.0.1, started once per test session and reset by callers."""
    if not _SERVER:
        manager = local_ssm()
        endpoint = manager.__enter__()
        _SERVER.append((endpoint, manager))
    return _SERVER[0][0]


def http_client(endpoint: LocalSsm, injector: Injector | None = None) -> Any:
    """A client built exactly as production builds it (standard retries, max 5 attempts, short
    timeouts), pointed at the local endpoint, optionally with a fault injector."""
    from handler.store import default_client

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_SSM", endpoint.endpoint)
        client = default_client()
    if injector:
        injector.install(client)
    return client


# --- bundle checks ------------------------------------------------------------------------------


def stored_values(client: Any, names: BundleNames) -> dict[str, str]:
    found = client.get_parameters(Names=list(names.everything), WithDecryption=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def versions(client: Any, names: BundleNames) -> dict[str, int]:
    found = client.get_parameters(Names=list(names.everything))["Parameters"]
    return {p["Name"]: int(p["Version"]) for p in found}


def assert_healthy(values: Mapping[str, str], props: GeneratorProperties, now: dt.datetime) -> str:
    """The stored bundle plans as all-reuse (healthy by docs/DESIGN.md §3); returns the CA's
    fingerprint."""
    current = plan(
        StoredBundle.decode(values, BundleNames.for_rack(props.rack)), props, rotate=False, now=now
    )
    assert [p.decision for p in current] == [Decision.REUSE] * 3, [
        (p.item.value, p.reason) for p in current
    ]
    assert not current.remove_version_track
    return fingerprint(certificate_from_stored(values[current.names.cert(Item.CA)]))
