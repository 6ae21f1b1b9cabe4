"""The response sender and envelope (handler/cfn.py), against a plain-HTTP receiver on 127.0.0.1.

CloudFormation's presigned URLs are HTTPS (the e2e tests cover that); a plain ``http://`` URL
is what a local invoke or a test harness gives, and must work as well. Fast: no moto, no keys.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from devkit.events import LambdaContext, event
from handler import cfn, logs
from handler.event import parse


class _Received:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self.status = 200


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, _Received]]:
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 answers: the client must close

        def do_PUT(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            received.requests.append(("PUT", self.path, body, dict(self.headers)))
            self.send_response(received.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_http_url_gets_the_body(http_receiver: tuple[str, _Received]) -> None:
    base, received = http_receiver
    body = {"Status": "SUCCESS", "PhysicalResourceId": "x", "Data": {"Action": "reused"}}
    assert cfn.send_response(f"{base}/cfn/abc?X-Amz-Signature=s", body, attempts=1) is True
    [(method, path, sent, headers)] = received.requests
    assert (method, path) == ("PUT", "/cfn/abc?X-Amz-Signature=s")  # the query is kept
    assert sent == body
    assert headers.get("content-type", "") == ""  # S3 presigned PUTs sign an empty type
    assert headers["content-length"] == str(len(json.dumps(body).encode()))


def test_a_url_without_a_path_puts_to_the_root(http_receiver: tuple[str, _Received]) -> None:
    base, received = http_receiver
    assert cfn.send_response(base, {"Status": "SUCCESS"}, attempts=1) is True
    assert [path for _, path, _, _ in received.requests] == ["/"]


def test_a_refused_put_is_retried_a_bounded_number_of_times(
    http_receiver: tuple[str, _Received],
) -> None:
    base, received = http_receiver
    received.status = 403
    pauses: list[float] = []
    assert (
        cfn.send_response(f"{base}/r", {"Status": "SUCCESS"}, attempts=3, sleep=pauses.append)
        is False
    )
    assert len(received.requests) == 3
    assert pauses == [2.0, 4.0]  # growing, bounded (min(2 * attempt, 5))


def test_the_reason_is_cut_to_cloudformations_budget_keeping_its_start() -> None:
    reason = "ServerSubjectAltNames entry 'x' is bad. " + "detail " * 100
    cut = cfn.front_loaded(reason)
    assert len(cut) == 240
    assert cfn.front_loaded("r" * 240) == "r" * 240  # at the budget: whole
    assert cfn.front_loaded("r" * 241) == "r" * 237 + "..."  # one past it: cut
    assert cut.startswith("ServerSubjectAltNames entry 'x' is bad.")
    assert cut.endswith("...")
    assert cfn.front_loaded("  short\n reason ") == "short reason"


def test_only_a_2xx_answer_counts_as_delivered(http_receiver: tuple[str, _Received]) -> None:
    base, received = http_receiver
    received.status = 300
    assert cfn.send_response(f"{base}/r", {"Status": "SUCCESS"}, attempts=1) is False
    received.status = 299
    assert cfn.send_response(f"{base}/r", {"Status": "SUCCESS"}, attempts=1) is True


def test_a_url_that_is_not_one_sends_nothing() -> None:
    assert cfn.send_response("http://127.0.0.1:notaport/r", {"Status": "SUCCESS"}) is False


def test_no_retry_pause_runs_past_the_lambdas_end(http_receiver: tuple[str, _Received]) -> None:

    base, received = http_receiver
    received.status = 500
    pauses: list[float] = []
    deadline = time.monotonic() + 1.0  # the first pause (2 s) would end after it
    delivered = cfn.send_response(
        f"{base}/r", {"Status": "SUCCESS"}, attempts=4, sleep=pauses.append, deadline=deadline
    )
    assert delivered is False
    assert pauses == [] and len(received.requests) == 1


def test_the_documented_variable_names_the_responses_ca() -> None:
    """template.yaml and the docs name DOCKER_TLS_RESPONSE_CA_BUNDLE: that is what is read."""
    from devkit.receiver import response_receiver

    with response_receiver() as receiver:
        saved = os.environ.pop(cfn.RESPONSE_CA_BUNDLE_ENV)
        try:
            assert cfn.send_response(receiver.url(), {"Status": "SUCCESS"}, attempts=1) is False
            os.environ["DOCKER_TLS_RESPONSE_CA_BUNDLE"] = str(receiver.ca_file)
            assert cfn.send_response(receiver.url(), {"Status": "SUCCESS"}, attempts=1) is True
        finally:
            os.environ.pop("DOCKER_TLS_RESPONSE_CA_BUNDLE", None)
            os.environ[cfn.RESPONSE_CA_BUNDLE_ENV] = saved


def test_an_unreadable_response_ca_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad DOCKER_TLS_RESPONSE_CA_BUNDLE (a local invoke's mistake) must not crash the one
    response: the sender says why and gives up, like any other undeliverable response."""
    monkeypatch.setenv(cfn.RESPONSE_CA_BUNDLE_ENV, "/nonexistent/ca.pem")
    with caplog.at_level(logging.ERROR):
        assert cfn.send_response("https://127.0.0.1:9/r", {"Status": "SUCCESS"}) is False
    assert any("/nonexistent/ca.pem" in r.getMessage() for r in caplog.records)


def _request(request_type: str, url: str) -> dict[str, Any]:
    """A CloudFormation request to a generator, answered at ``url``."""
    return event(request_type, "Custom::SelfSignedCertificate", "R", {}, response_url=url)


def _answer(received: _Received) -> dict[str, Any]:
    """The one response body the receiver got; fails on none or several."""
    [(_, _, sent, _)] = received.requests
    return sent


def _resource(function: Any) -> cfn.CustomResource:
    resource = cfn.CustomResource(timeout_margin=3.0)
    resource.create(function)
    return resource


def test_the_guard_answers_before_the_lambdas_time_runs_out(
    http_receiver: tuple[str, _Received],
) -> None:
    """3.2 s of Lambda time and a 3 s margin: the guard answers FAILED after about 0.2 s,
    while the function is still running, with the id chosen up front."""

    base, received = http_receiver
    seen: list[float] = []

    def slow(event: Any, context: Any) -> str:
        started = time.monotonic()
        while not resource.answered() and time.monotonic() - started < 5:
            time.sleep(0.01)
        seen.append(time.monotonic() - started)
        return "bundle-id"

    resource = _resource(slow)
    body = _request("Create", f"{base}/g")
    resource(body, LambdaContext(timeout_seconds=3.2))
    sent = _answer(received)
    assert sent["Status"] == "FAILED"
    assert sent["Reason"].startswith("Timed out before the bundle was ensured")
    assert sent["PhysicalResourceId"] == f"failed-{body['RequestId']}"
    assert seen and seen[0] < 1.0


def test_the_log_context_keeps_each_field_to_100_characters(
    http_receiver: tuple[str, _Received],
) -> None:

    base, _ = http_receiver
    context: list[dict[str, str]] = []
    resource = _resource(lambda e, c: context.append(dict(logs._context.get() or {})))
    body = event("Create", "T" * 300, "L" * 300, {}, response_url=f"{base}/l")
    body["RequestId"] = "R" * 300
    resource(body, LambdaContext())
    assert context == [
        {
            "RequestId": "R" * 100,
            "RequestType": "Create",
            "ResourceType": "T" * 100,
            "LogicalResourceId": "L" * 100,
        }
    ]


def test_retry_pauses_grow_to_five_seconds_and_stay_there(
    http_receiver: tuple[str, _Received],
) -> None:
    base, received = http_receiver
    received.status = 503
    pauses: list[float] = []
    cfn.send_response(f"{base}/r", {"Status": "SUCCESS"}, attempts=5, sleep=pauses.append)
    assert pauses == [2.0, 4.0, 5.0, 5.0]


def test_a_request_type_cloudformation_never_sends_fails_saying_so(
    http_receiver: tuple[str, _Received],
) -> None:

    base, received = http_receiver
    resource = _resource(lambda e, c: None)
    body = _request("Patch", f"{base}/p")
    resource(body, LambdaContext())
    sent = _answer(received)
    assert sent["Status"] == "FAILED"
    assert sent["Reason"] == (
        "RequestType 'Patch' is not Create, Update or Delete: this event did not come from "
        "CloudFormation."
    )


def test_a_request_type_without_a_registered_function_fails_naming_it(
    http_receiver: tuple[str, _Received],
) -> None:
    """A helper wired for Create alone (a wiring mistake) still answers a Delete, FAILED."""

    base, received = http_receiver
    resource = _resource(lambda e, c: "id")
    body = _request("Delete", f"{base}/p")
    resource(body, LambdaContext())
    sent = _answer(received)
    assert (sent["Status"], sent["Reason"]) == (
        "FAILED",
        "No function is registered for RequestType 'Delete'.",
    )


def test_every_put_attempt_closes_its_connection(http_receiver: tuple[str, _Received]) -> None:
    """No socket is left for the garbage collector (a ResourceWarning), refused or delivered."""
    import gc
    import warnings

    base, received = http_receiver
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        received.status = 500
        assert (
            cfn.send_response(f"{base}/p", {"Status": "FAILED"}, attempts=2, sleep=lambda _: None)
            is False
        )
        received.status = 200
        assert cfn.send_response(f"{base}/p", {"Status": "SUCCESS"}, attempts=1) is True
        gc.collect()
    assert len(received.requests) == 3
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_body_too_large_or_not_json_is_failed_with_the_reason() -> None:
    too_large = cfn.response_body(
        parse({}), status="SUCCESS", physical_resource_id="p", data={"V": "x" * 5000}, no_echo=False
    )
    assert too_large["Reason"].startswith("Response would be 5") and too_large["Reason"].endswith(
        "bytes, over CloudFormation's 4096-byte limit: use a shorter Rack or a smaller key, or "
        "read the value from SSM."
    )
    not_json = cfn.response_body(
        parse({}),
        status="SUCCESS",
        physical_resource_id="p",
        data={"V": {1}},  # type: ignore[dict-item]
        no_echo=False,
    )
    assert not_json["Status"] == "FAILED"
    assert not_json["Reason"].startswith("Response is not JSON, over CloudFormation's")


def test_no_attempt_is_made_when_the_lambdas_time_is_exactly_up(
    http_receiver: tuple[str, _Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``left <= 0``: at the deadline itself no PUT starts (one would outlive the Lambda)."""
    base, received = http_receiver
    monkeypatch.setattr(cfn.time, "monotonic", lambda: 500.0)
    delivered = cfn.send_response(f"{base}/at-deadline", {"Status": "SUCCESS"}, deadline=500.0)
    assert delivered is False
    assert received.requests == []


def test_the_response_must_be_delivered_a_quarter_second_before_the_lambdas_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline given to the PUT is the Lambda's end less 0.25 s, time to return."""

    deadlines: list[float | None] = []
    monkeypatch.setattr(cfn.time, "monotonic", lambda: 1000.0)
    monkeypatch.setattr(
        cfn,
        "send_response",
        lambda url, body, attempts, deadline: deadlines.append(deadline) or True,
    )
    resource = _resource(lambda event, context: "id")
    body = _request("Create", "https://x/y")
    context = LambdaContext(timeout_seconds=60)
    monkeypatch.setattr(context, "get_remaining_time_in_millis", lambda: 10_000)
    resource(body, context)
    assert deadlines == [1000.0 + 10.0 - 0.25]


def test_a_failure_without_request_id_or_physical_id_is_named_failed_unknown() -> None:
    """The up-front id when CloudFormation's event lacks both (a hand-made event)."""
    sent: list[dict[str, Any]] = []

    def fail(event: Any, context: Any) -> str:
        raise cfn.RequestFailed("no")

    resource = _resource(fail)
    resource.send_response = lambda url, body: sent.append(dict(body)) or True  # type: ignore[method-assign]

    body = _request("Create", "https://x/y")
    del body["RequestId"]
    resource(body, LambdaContext())
    assert [s["PhysicalResourceId"] for s in sent] == ["failed-unknown"]


def test_the_default_guard_leaves_a_function_its_time_but_the_last_three_seconds(
    http_receiver: tuple[str, _Received],
) -> None:
    """The handler's own CustomResource() (app.helper) answers FAILED only 3 s before the end:
    a function finishing 1.2 s into 6.5 s of Lambda time is answered SUCCESS."""

    base, received = http_receiver

    def one_second(event: Any, context: Any) -> str:
        time.sleep(1.2)
        return "done"

    resource = cfn.CustomResource()
    resource.create(one_second)
    body = _request("Create", f"{base}/d")
    resource(body, LambdaContext(timeout_seconds=6.5))
    sent = _answer(received)
    assert (sent["Status"], sent["PhysicalResourceId"]) == ("SUCCESS", "done")


def test_the_decorators_return_the_function_so_they_stack() -> None:
    resource = cfn.CustomResource()

    def function(event: Any, context: Any) -> str:
        return "id"

    assert resource.create(function) is function
    assert resource.update(function) is function
    assert resource.delete(function) is function


def test_a_lambda_with_less_time_than_the_margin_answers_after_a_tenth_of_a_second(
    http_receiver: tuple[str, _Received],
) -> None:
    """1 s left and a 3 s margin: the guard is armed for 0.1 s, not for no time at all."""

    base, _ = http_receiver
    armed: list[float] = []
    resource = cfn.CustomResource(timeout_margin=3.0)
    resource.create(lambda e, c: armed.append(resource._timer.interval) or "id")
    resource(
        _request("Create", f"{base}/p"),
        LambdaContext(timeout_seconds=1.0),
    )
    assert armed == [0.1]


def test_a_success_turned_failed_by_its_size_answers_with_the_id_chosen_up_front(
    http_receiver: tuple[str, _Received],
) -> None:
    """The function returned the bundle's id, but its Data cannot be sent: on a Create the
    FAILED answer carries the marker a rollback Delete ignores, not that id."""

    base, received = http_receiver
    resource = cfn.CustomResource(timeout_margin=3.0)

    def too_much(e: Any, c: Any) -> str:
        resource.Data = {"Value": "x" * 5000}
        return "6d792d7261636b"

    resource.create(too_much)
    body = _request("Create", f"{base}/p")
    resource(body, LambdaContext())
    sent = _answer(received)
    assert sent["Status"] == "FAILED"
    assert sent["PhysicalResourceId"] == f"failed-{body['RequestId']}"


def test_a_fault_in_the_edge_itself_still_answers_failed(
    http_receiver: tuple[str, _Received],
) -> None:
    """Not the function's failure but the wrapper's (here the Lambda context breaks): the one
    response still goes, FAILED, with the id chosen up front."""

    class Broken(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            raise RuntimeError("no clock")

    base, received = http_receiver
    resource = _resource(lambda e, c: "id")
    body = _request("Create", f"{base}/p")
    resource(body, Broken())
    sent = _answer(received)
    assert (sent["Status"], sent["Reason"], sent["PhysicalResourceId"]) == (
        "FAILED",
        "Internal error in the custom resource: see its logs; retry.",
        f"failed-{body['RequestId']}",
    )


def test_an_answered_invocation_leaves_no_guard_behind(
    http_receiver: tuple[str, _Received], caplog: pytest.LogCaptureFixture
) -> None:
    """The guard is cancelled once the answer is sent: it never fires into a quiet Lambda
    (3.3 s left, a 3 s margin: it would fire 0.3 s in)."""

    base, received = http_receiver
    resource = _resource(lambda e, c: "id")
    with caplog.at_level(logging.INFO, logger="handler.cfn"):
        resource(
            _request("Create", f"{base}/p"),
            LambdaContext(timeout_seconds=3.3),
        )
        time.sleep(0.8)
    assert len(received.requests) == 1
    assert "about to run out of Lambda time; answering FAILED" not in caplog.messages


def test_a_payload_that_is_not_an_event_drops_the_previous_requests_log_context(
    http_receiver: tuple[str, _Received],
) -> None:
    """A warm Lambda's next log lines must not carry the last request's RequestId."""

    base, _ = http_receiver
    resource = _resource(lambda e, c: "id")
    body = _request("Create", f"{base}/p")
    resource(body, LambdaContext())
    line = logging.makeLogRecord({"msg": "next"})
    assert body["RequestId"] in logs.JsonFormatter().format(line)
    resource(["not", "an", "event"], LambdaContext())
    assert body["RequestId"] not in logs.JsonFormatter().format(line)


def test_a_body_of_exactly_4096_bytes_is_sent_as_it_is() -> None:
    def body(value: str) -> dict[str, Any]:
        return cfn.response_body(
            parse({}), status="SUCCESS", physical_resource_id="p", data={"V": value}, no_echo=False
        )

    room = 4096 - len(json.dumps(body("")).encode("utf-8"))
    at_limit = body("x" * room)
    assert len(json.dumps(at_limit).encode("utf-8")) == 4096
    assert at_limit["Status"] == "SUCCESS" and at_limit["Data"] == {"V": "x" * room}
    over = body("x" * (room + 1))
    assert over["Status"] == "FAILED"
    assert over["Reason"].startswith("Response would be 4097 bytes, over")


class _Unanswered:
    """An HTTPConnection whose ResponseURL never answers: records each try's timeout."""

    waits: ClassVar[list[float]] = []

    def __init__(self, netloc: str, *, timeout: float) -> None:
        self.waits.append(timeout)

    def request(self, *args: Any, **kwargs: Any) -> None:
        raise TimeoutError("timed out")

    def close(self) -> None:
        pass


@pytest.fixture
def unanswered(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: ClassVar[list[float]] = []
    monkeypatch.setattr(_Unanswered, "waits", waits)
    monkeypatch.setattr(cfn.http.client, "HTTPConnection", _Unanswered)
    return waits


def test_each_put_attempt_waits_at_most_ten_seconds_and_never_past_the_end(
    unanswered: list[float],
) -> None:
    """A ResponseURL that accepts and never answers costs one try 10 s, not the Lambda."""
    url = "http://127.0.0.1:9/r"
    assert cfn.send_response(url, {}, attempts=2, sleep=lambda _: None) is False
    assert unanswered == [10.0, 10.0]
    unanswered.clear()
    far = time.monotonic() + 600
    assert cfn.send_response(url, {}, attempts=1, deadline=far) is False
    assert unanswered == [10.0]
    unanswered.clear()
    near = time.monotonic() + 4
    assert cfn.send_response(url, {}, attempts=1, deadline=near) is False
    assert 3.5 < unanswered[0] <= 4


def test_a_pause_that_would_end_at_the_lambdas_end_is_not_taken(
    unanswered: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After it no try could run: the sender gives up at once instead of sleeping to the end."""
    monkeypatch.setattr(cfn.time, "monotonic", lambda: 100.0)  # a clock that stands still
    pauses: list[float] = []
    url = "http://127.0.0.1:9/r"
    assert cfn.send_response(url, {}, attempts=2, sleep=pauses.append, deadline=102.0) is False
    assert (unanswered, pauses) == ([2.0], [])  # the first pause is 2 s: it would end at 102
    unanswered.clear()
    assert cfn.send_response(url, {}, attempts=2, sleep=pauses.append, deadline=102.5) is False
    assert (unanswered, pauses) == ([2.5, 2.5], [2.0])  # it ends before: taken, one more try
