"""Reliability: the response path and the Lambda-timeout guard.

crhelper retries the PUT forever and ignores the HTTP status; ours is bounded in attempts and in
time (never past the Lambda's end), logs a refused PUT as an error, never logs the URL's signed
query, and answers exactly once: with FAILED and a usable PhysicalResourceId when the guard
fires, after which nothing more is written to SSM.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.events import LambdaContext, event
from devkit.loopback import free_port
from devkit.receiver import Receiver, response_receiver
from handler import app, cfn
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.conftest import NOW, OWNER, RecordingClient, client_error, props
from tests.reliability_support import Record, figure

# The fuzz, fault-matrix, concurrency and timing tests: the full run (make test) only.
pytestmark = pytest.mark.slow


RACK = "response"
NAMES = BundleNames.for_rack(RACK)
HEX = NAMES.prefix
BASE = {"Rack": RACK, "Version": "1", "KeyAlgorithm": "ECDSA-P256"}
SIGNATURE = "X-Amz-Signature=3b1f0c0ffee"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with response_receiver() as r:
        yield r


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sender's pauses between attempts, recorded instead of slept."""
    recorded: list[float] = []
    shim = types.SimpleNamespace(sleep=recorded.append, monotonic=time.monotonic)
    monkeypatch.setattr(cfn, "time", shim)
    return recorded


def _body(request_type: str, url: str, properties: dict[str, Any] = BASE, **kwargs: Any) -> Any:
    return event(request_type, app.GENERATOR, "DockerTLS", properties, response_url=url, **kwargs)


def _no_signature_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    out, err = capfd.readouterr()
    texts = [out, err, caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.extend(str(v) for v in vars(record).values())
    for text in texts:
        assert "X-Amz-Signature" not in text
        assert "3b1f0c0ffee" not in text


@pytest.mark.parametrize("status", [500, 403])
def test_a_refused_put_is_retried_a_bounded_number_of_times_and_logged(
    status: int,
    receiver: Receiver,
    store: ParameterStore,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", store)
    receiver.status = status
    url = receiver.url().replace("X-Amz-Signature=", f"{SIGNATURE}&x=")
    body = _body("Create", url)
    with caplog.at_level(logging.INFO):
        app.lambda_handler(body, LambdaContext())
    attempts = receiver.responses(url)
    assert len(attempts) == 4  # bounded (crhelper: forever, and a 4xx/5xx counts as delivered)
    assert all(a["RequestId"] == body["RequestId"] for a in attempts)
    assert sleeps == [2.0, 4.0, 5.0]
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 4
    assert all(r.levelno == logging.ERROR and r.http_status == status for r in refused)  # type: ignore[attr-defined]
    assert any("gave up" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    _no_signature_logged(caplog, capfd)
    figure(
        record_property,
        "response-path",
        "4 attempts, errors logged, query never logged",
        case=f"HTTP {status}",
        attempts=len(attempts),
    )


def test_an_unreachable_url_is_tried_a_bounded_number_of_times(
    store: ParameterStore,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", store)
    url = f"https://127.0.0.1:{free_port()}/cfn/r?{SIGNATURE}"  # nothing listens there
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        app.lambda_handler(_body("Create", url), LambdaContext())
    assert time.monotonic() - started < 10
    failures = [r for r in caplog.records if "could not deliver" in r.getMessage()]
    assert [r.attempt for r in failures] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert sleeps == [2.0, 4.0, 5.0]
    assert any("gave up" in r.getMessage() for r in caplog.records)
    _no_signature_logged(caplog, capfd)
    figure(
        record_property,
        "response-path",
        "4 attempts, then gave up (logged)",
        case="closed port",
        attempts=len(failures),
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers (a black-holed route to S3)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                held.append(connection)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    server.close()


def test_a_silent_url_never_holds_the_lambda_past_its_end(
    silent_server: int,
    store: ParameterStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", store)
    url = f"http://127.0.0.1:{silent_server}/cfn/r?{SIGNATURE}"
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        app.lambda_handler(_body("Create", url), LambdaContext(timeout_seconds=4))
    elapsed = time.monotonic() - started
    assert elapsed < 4  # each attempt's timeout and pause is cut to the Lambda's time left
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    figure(
        record_property,
        "response-path",
        "ended before the Lambda's deadline, error logged",
        case="silent endpoint",
        seconds=round(elapsed, 2),
    )


@pytest.mark.parametrize(
    "url", ["not a url", "https://[::1/r?x=1", "https://127.0.0.1:http/r", "ftp://127.0.0.1:1/r"]
)
def test_an_unusable_response_url_neither_crashes_nor_spins(
    url: str,
    store: ParameterStore,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", store)
    with caplog.at_level(logging.INFO):
        app.lambda_handler(_body("Create", url), LambdaContext(timeout_seconds=20))
    assert len(sleeps) <= 3
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    figure(record_property, "response-path", "no crash, error logged", case=f"URL {url!r}")


# --- the timeout guard ---------------------------------------------------------------------


class SlowClient(RecordingClient):
    """In-process moto, with chosen calls slowed down; records when each call started."""

    def __init__(self, client: Any, slow: dict[str, float]) -> None:
        super().__init__(client)
        self.slow = slow
        self.started: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        target = super().__getattr__(name)
        if not callable(target) or name.startswith("_") or name in {"meta", "exceptions"}:
            return target

        def call(**kwargs: Any) -> Any:
            self.started.append((name, time.monotonic()))
            time.sleep(self.slow.pop(name, 0.0))
            return target(**kwargs)

        return call


def _answered_at(sent: list[tuple[float, dict[str, Any]]]) -> float:
    return sent[0][0]


@pytest.mark.parametrize(
    ("request_type", "setup"),
    [
        ("Create", "empty"),  # the read is slow; then it would write six parameters
        ("Update", "version-track"),  # then it would delete the leftover version-track
        ("Update", "leaf-missing"),  # then it would reissue a leaf
        ("Delete", "bundle"),  # a slow cold start of the client; then it would delete
    ],
)
def test_the_guard_answers_failed_once_and_nothing_is_written_after(
    request_type: str,
    setup: str,
    ssm: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    if setup != "empty":
        ensure(ParameterStore(ssm), props(RACK), rotate=False, now=NOW, requester=OWNER)
    if setup == "version-track":
        ssm.put_parameter(Name=NAMES.version_track, Value="1", Type="String")
    if setup == "leaf-missing":
        ssm.delete_parameter(Name=NAMES.cert(Item.CLIENT))
    slow = SlowClient(ssm, {"get_parameters": 1.5, "delete_parameters": 1.5})
    if request_type == "Delete":

        class ColdStore(ParameterStore):
            @property
            def client(self) -> Any:
                time.sleep(1.5)  # boto3 client creation on a cold start
                return slow

        store: ParameterStore = ColdStore()
    else:
        store = ParameterStore(slow)  # type: ignore[arg-type]
    monkeypatch.setattr(app, "store", store)
    sent: list[tuple[float, dict[str, Any]]] = []
    monkeypatch.setattr(
        app.helper, "send_response", lambda url, b: sent.append((time.monotonic(), b)) or True
    )
    body = _body(
        request_type,
        f"https://cfn.example/r?{SIGNATURE}",
        physical_id=HEX if request_type != "Create" else None,
        old_properties=BASE if request_type == "Update" else None,
    )
    with caplog.at_level(logging.INFO):
        app.lambda_handler(body, LambdaContext(timeout_seconds=3.5))  # guard fires at ~0.5 s
    assert len(sent) == 1, "exactly one response"
    response = sent[0][1]
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("Timed out")
    assert len(response["Reason"]) <= 240
    assert response["PhysicalResourceId"] == (
        HEX if request_type != "Create" else f"failed-{body['RequestId']}"
    )
    writes_after = [
        (name, at)
        for name, at in slow.started
        if name in ("put_parameter", "delete_parameters") and at >= _answered_at(sent)
    ]
    assert writes_after == [], "SSM was written after CloudFormation was answered"
    figure(
        record_property,
        "response-path",
        "FAILED once, valid id, no SSM write after",
        case=f"timeout guard: {request_type} ({setup})",
    )


def test_the_guard_firing_right_after_a_create_succeeded_still_sends_the_marker(
    store: ParameterStore, monkeypatch: pytest.MonkeyPatch, record_property: Record
) -> None:
    """The function returned hex(Rack) but the guard won the race to answer: a FAILED Create
    carrying hex(Rack) would make the rollback Delete remove the bundle."""
    monkeypatch.setattr(app, "store", store)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app.helper, "send_response", lambda url, b: sent.append(b) or True)
    original = app.helper._run

    def run_then_stall(*args: Any) -> None:
        original(*args)
        time.sleep(1.2)  # the function is done; the guard fires before the main path sends

    monkeypatch.setattr(app.helper, "_run", run_then_stall)
    body = _body("Create", f"https://cfn.example/r?{SIGNATURE}")
    app.lambda_handler(body, LambdaContext(timeout_seconds=3.5))
    assert len(sent) == 1
    assert sent[0]["Status"] == "FAILED"
    assert sent[0]["PhysicalResourceId"] == f"failed-{body['RequestId']}"
    assert sent[0]["Data"] == {}
    figure(
        record_property,
        "response-path",
        "FAILED with the marker id",
        case="guard races a finished Create",
    )


def test_a_response_too_large_fails_a_create_with_the_marker(
    store: ParameterStore, monkeypatch: pytest.MonkeyPatch, record_property: Record
) -> None:
    monkeypatch.setattr(app, "store", store)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app.helper, "send_response", lambda url, b: sent.append(b) or True)
    real = app.generator_data
    monkeypatch.setattr(app, "generator_data", lambda o: {**real(o), "CACertificate": "A" * 5000})
    body = _body("Create", f"https://cfn.example/r?{SIGNATURE}")
    app.lambda_handler(body, LambdaContext())
    assert len(sent) == 1
    response = sent[0]
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("Response would be")
    assert response["PhysicalResourceId"] == f"failed-{body['RequestId']}"
    assert response["Data"] == {}
    assert len(json.dumps(response).encode()) <= cfn.MAX_RESPONSE_BYTES
    figure(
        record_property,
        "response-path",
        "FAILED within 4096 bytes, marker id",
        case="4096-byte guard on a Create",
    )


def test_reasons_are_front_loaded_and_never_carry_what_ssm_echoed(
    invoke: Any,
    recording: RecordingClient,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", ParameterStore(recording, sleep=lambda _: None))  # type: ignore[arg-type]
    echoed = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSU" + "Q" * 3000
    recording.fail(
        "put_parameter",
        client_error(
            "ValidationException",
            "PutParameter",
            f"1 validation error detected: Value '{echoed}' at 'value' failed to satisfy "
            "constraint: Member must have length less than or equal to 4096",
        ),
    )
    response = invoke("Create", BASE)
    assert response["Status"] == "FAILED"
    reason = response["Reason"]
    assert reason.startswith("SSM PutParameter failed (ValidationException): 1 validation error")
    assert len(reason) <= 240
    assert "LS0tLS1CRUdJT" not in reason and "QQQQQQQQ" not in reason
    long = "x " * 2000
    monkeypatch.setattr(
        app,
        "ensure",
        lambda *a, **k: (_ for _ in ()).throw(cfn.RequestFailed("Start here. " + long)),
    )
    failed = invoke("Update", BASE, physical_id=HEX, old_properties=BASE)
    assert failed["Reason"].startswith("Start here.")
    assert len(failed["Reason"]) == 240 and failed["Reason"].endswith("...")
    figure(
        record_property,
        "response-path",
        "Reason starts with the cause, <= 240 chars, redacted",
        case="long and echoing reasons",
    )


def test_an_internal_error_still_answers_once(
    store: ParameterStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_property: Record,
) -> None:
    monkeypatch.setattr(app, "store", store)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app.helper, "send_response", lambda url, b: sent.append(b) or True)
    body = _body("Update", "https://cfn.example/r", physical_id=HEX, old_properties=BASE)
    app.lambda_handler(body, object())  # type: ignore[arg-type]  # a context without a clock
    assert len(sent) == 1
    assert sent[0]["Status"] == "FAILED"
    assert sent[0]["PhysicalResourceId"] == HEX
    assert sent[0]["Reason"].startswith("Internal error")
    figure(record_property, "response-path", "FAILED once", case="handler's own bug")
