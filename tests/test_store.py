"""ParameterStore (handler/store.py) against in-process moto: what each call sends, and what it
does with each kind of answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devkit import ssm_rules
from handler.store import (
    ADVANCED_LIMIT,
    ParameterConflict,
    ParameterStore,
    Stopped,
    StoreError,
)
from tests.conftest import RecordingClient, client_error


@pytest.fixture(autouse=True)
def _any_name_and_value() -> Iterator[None]:
    """The store is SSM's generic layer, tested here with arbitrary names and values; the
    bundle's invariants (devkit.ssm_rules) hold for the writes every other test makes."""
    with ssm_rules.seeding():
        yield


def _puts(recording: RecordingClient) -> list[dict[str, Any]]:
    return [kwargs for name, kwargs in recording.calls if name == "put_parameter"]


def test_read_asks_ten_names_a_call_and_leaves_absent_ones_out(
    recording: RecordingClient, recorded_store: ParameterStore, ssm: Any
) -> None:
    names = [f"p{i:02d}" for i in range(23)]
    for name in names[::2]:
        ssm.put_parameter(Name=name, Value=f"v-{name}", Type="SecureString")
    found = recorded_store.read(names)
    assert sorted(found) == names[::2]
    assert found["p04"].value == "v-p04"
    assert (found["p04"].type, found["p04"].version) == ("SecureString", 1)
    calls = [kwargs for name, kwargs in recording.calls if name == "get_parameters"]
    assert [len(c["Names"]) for c in calls] == [10, 10, 3]
    assert all(c["WithDecryption"] is True for c in calls)


@pytest.mark.parametrize(("length", "tier"), [(4096, "Standard"), (4097, "Advanced")])
def test_a_value_goes_advanced_only_over_the_standard_limit(
    recording: RecordingClient, recorded_store: ParameterStore, length: int, tier: str
) -> None:
    """The literal from SSM's quotas (4 KB for a Standard parameter), not the constant."""
    recorded_store.put("p", "x" * length, secure=False, kms_key_id="alias/k", overwrite=False)
    [put] = _puts(recording)
    assert put["Tier"] == tier
    assert put["Type"] == "String"
    assert "KeyId" not in put  # a String is never encrypted


def test_a_secure_value_names_its_kms_key_and_creates_only_when_absent(
    recording: RecordingClient, recorded_store: ParameterStore
) -> None:
    recorded_store.put("k", "secret", secure=True, kms_key_id="alias/k", overwrite=False)
    [put] = _puts(recording)
    assert (put["Type"], put["KeyId"], put["Overwrite"]) == ("SecureString", "alias/k", False)
    with pytest.raises(ParameterConflict):
        recorded_store.put("k", "other", secure=True, kms_key_id=None, overwrite=False)
    recorded_store.put("k", "other", secure=True, kms_key_id=None, overwrite=True)
    assert "KeyId" not in _puts(recording)[-1]
    assert recorded_store.read(["k"])["k"].value == "other"


def test_a_value_over_the_advanced_limit_is_refused_before_any_call(
    recording: RecordingClient, recorded_store: ParameterStore
) -> None:
    with pytest.raises(StoreError) as raised:
        recorded_store.put(
            "p", "x" * (ADVANCED_LIMIT + 1), secure=False, kms_key_id=None, overwrite=False
        )
    assert raised.value.code == "ValueTooLarge"
    assert (
        str(raised.value) == f"SSM PutParameter failed (ValueTooLarge): p exceeds {ADVANCED_LIMIT}"
    )
    assert recording.calls == []


def test_too_many_updates_is_retried_with_growing_pauses_then_fails(
    recording: RecordingClient, ssm: Any
) -> None:
    pauses: list[float] = []
    store = ParameterStore(recording, sleep=pauses.append)  # type: ignore[arg-type]
    recording.fail("put_parameter", client_error("TooManyUpdates", "PutParameter"), times=2)
    assert store.put("p", "v", secure=False, kms_key_id=None, overwrite=False) == 1
    assert len(pauses) == 2 and 0.1 <= pauses[0] < pauses[1] <= 0.3
    recording.fail("put_parameter", client_error("TooManyUpdates", "PutParameter"))
    with pytest.raises(StoreError) as raised:
        store.put("q", "v", secure=False, kms_key_id=None, overwrite=False)
    assert raised.value.code == "TooManyUpdates"
    assert recording.count("put_parameter") == 3 + 5  # bounded: five attempts


#: What SSM says when a Standard-tier write meets an Advanced parameter.
TIER_REFUSAL = (
    "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the "
    "advanced-parameter tier to the standard-parameter tier."
)


@pytest.mark.parametrize(
    "refusal",
    [
        TIER_REFUSAL,  # an Advanced parameter stays Advanced
        # a value over the Standard limit: the words handler/store.py quotes, naming one tier
        "Standard tier parameters support a maximum parameter value of 4096 characters.",
    ],
)
def test_a_parameter_ssm_keeps_advanced_is_written_advanced(
    recording: RecordingClient, recorded_store: ParameterStore, refusal: str
) -> None:
    recording.fail(
        "put_parameter", client_error("ValidationException", "PutParameter", refusal), times=1
    )
    recorded_store.put("p", "small", secure=False, kms_key_id=None, overwrite=True)
    assert [p["Tier"] for p in _puts(recording)] == ["Standard", "Advanced"]


@pytest.mark.parametrize(
    "message",
    [
        "Invalid request: tags and overwrite can't be used together.",
        # names a tier's word, but no tier: not SSM's tier refusal
        "Parameter value is not valid for an advanced-looking name.",
        'Parameter name: can\'t be prefixed with "aws" or "ssm" (case-insensitive).',
        "ValidationException",
    ],
)
def test_any_other_validation_error_fails_as_it_is(
    recording: RecordingClient, recorded_store: ParameterStore, message: str
) -> None:
    recording.fail("put_parameter", client_error("ValidationException", "PutParameter", message))
    with pytest.raises(StoreError) as raised:
        recorded_store.put("p", "small", secure=False, kms_key_id=None, overwrite=True)
    assert raised.value.code == "ValidationException"
    assert [p["Tier"] for p in _puts(recording)] == ["Standard"]


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ThrottlingException", "KMSAccessDeniedException"]
)
def test_other_errors_become_store_errors_naming_the_code(
    recording: RecordingClient, recorded_store: ParameterStore, code: str
) -> None:
    recording.fail("get_parameters", client_error(code, "GetParameters", "no PEM here"))
    with pytest.raises(StoreError) as raised:
        recorded_store.read(["a"])
    assert raised.value.code == code
    assert str(raised.value) == f"SSM GetParameters failed ({code}): no PEM here"


def test_a_stop_before_a_write_or_a_delete_prevents_it(
    recording: RecordingClient, recorded_store: ParameterStore, ssm: Any
) -> None:
    with pytest.raises(Stopped) as stopped:
        recorded_store.put(
            "p", "v", secure=False, kms_key_id=None, overwrite=False, should_stop=lambda: True
        )
    assert str(stopped.value) == "stopped before writing p"  # after "Timed out: " in the log
    ssm.put_parameter(Name="d", Value="v", Type="String")
    with pytest.raises(Stopped) as stopped:
        recorded_store.delete(["d", "e"], should_stop=lambda: True)
    assert str(stopped.value) == "stopped before deleting d, e"
    assert recording.written() == [] and recording.count("delete_parameters") == 0


def test_delete_removes_in_batches_and_ignores_what_is_gone(
    recording: RecordingClient, recorded_store: ParameterStore, ssm: Any
) -> None:
    names = [f"d{i:02d}" for i in range(12)]
    for name in names[:5]:
        ssm.put_parameter(Name=name, Value="v", Type="String")
    assert sorted(recorded_store.delete(names)) == names[:5]
    assert recording.count("delete_parameters") == 2
    assert recorded_store.read(names) == {}


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("get_parameters", "GetParameters"),
        ("put_parameter", "PutParameter"),
        ("delete_parameters", "DeleteParameters"),
    ],
)
def test_a_connection_failure_is_a_store_error_naming_it(
    recording: RecordingClient, recorded_store: ParameterStore, method: str, operation: str
) -> None:
    from botocore.exceptions import EndpointConnectionError

    calls: dict[str, Callable[[], object]] = {
        "get_parameters": lambda: recorded_store.read(["a"]),
        "put_parameter": lambda: recorded_store.put(
            "a", "v", secure=False, kms_key_id=None, overwrite=True
        ),
        "delete_parameters": lambda: recorded_store.delete(["a"]),
    }
    recording.fail(method, EndpointConnectionError(endpoint_url="https://ssm.example"))
    with pytest.raises(StoreError) as raised:
        calls[method]()
    assert raised.value.code == "EndpointConnectionError"
    assert str(raised.value) == (
        f"SSM {operation} failed (EndpointConnectionError): "
        'Could not connect to the endpoint URL: "https://ssm.example"'
    )


def test_a_value_of_exactly_the_advanced_limit_is_written(
    recording: RecordingClient, recorded_store: ParameterStore
) -> None:
    recorded_store.put("p", "x" * ADVANCED_LIMIT, secure=False, kms_key_id=None, overwrite=False)
    assert [p["Tier"] for p in _puts(recording)] == ["Advanced"]


def test_a_refused_delete_names_the_call_and_the_code() -> None:
    """What an operator reads when the role may not delete: the SSM call, then AWS's code."""
    from botocore.exceptions import ClientError

    class Refusing:
        def delete_parameters(self, **_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                "DeleteParameters",
            )

    store = ParameterStore(Refusing(), sleep=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(StoreError) as raised:
        store.delete(["a"])
    assert str(raised.value).startswith("SSM DeleteParameters failed (AccessDeniedException)")
    assert raised.value.operation == "DeleteParameters"


def test_a_refusal_without_an_aws_code_is_called_unknown() -> None:
    """Some endpoints (a proxy, a VPC endpoint's error page) answer an error without a Code."""
    from botocore.exceptions import ClientError

    class Codeless:
        def get_parameters(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Message": "bad gateway"}}, "GetParameters")

    store = ParameterStore(Codeless(), sleep=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(StoreError) as raised:
        store.read(["a"])
    assert str(raised.value) == "SSM GetParameters failed (Unknown): bad gateway"
    assert raised.value.code == "Unknown"


def test_a_type_change_deletes_then_creates_so_a_concurrent_writer_wins(
    recording: RecordingClient, recorded_store: ParameterStore, ssm: Any
) -> None:
    """SSM keeps a parameter's type for life: String -> SecureString is a delete and a
    create-if-absent. A writer that got in between keeps its value (ParameterConflict)."""
    ssm.put_parameter(Name="k", Value="old", Type="String")
    real_delete = recording.delete_parameters

    def delete_then_another_writer(**kwargs: Any) -> Any:
        answer = real_delete(**kwargs)
        ssm.put_parameter(Name="k", Value="theirs", Type="SecureString")
        return answer

    recording.delete_parameters = delete_then_another_writer  # type: ignore[method-assign]
    with pytest.raises(ParameterConflict):
        recorded_store.put(
            "k", "ours", secure=True, kms_key_id=None, overwrite=True, stored_type="String"
        )
    assert [p["Overwrite"] for p in _puts(recording)] == [False]
    assert ssm.get_parameter(Name="k", WithDecryption=True)["Parameter"]["Value"] == "theirs"


def test_too_many_updates_pauses_double_from_a_tenth_of_a_second_plus_jitter(
    recording: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler import store as store_module

    jitters: list[tuple[float, float]] = []

    def no_jitter(low: float, high: float) -> float:
        jitters.append((low, high))
        return 0.0

    monkeypatch.setattr(store_module.random, "uniform", no_jitter)
    pauses: list[float] = []
    store = ParameterStore(recording, sleep=pauses.append)  # type: ignore[arg-type]
    recording.fail("put_parameter", client_error("TooManyUpdates", "PutParameter"), times=3)
    store.put("p", "v", secure=False, kms_key_id=None, overwrite=False)
    assert pauses == pytest.approx([0.1, 0.2, 0.4])
    assert jitters == [(0, 0.1)] * 3


@pytest.mark.parametrize(("length", "written"), [(8192, True), (8193, False)])
def test_ssms_advanced_limit_is_8_kb(
    recording: RecordingClient, recorded_store: ParameterStore, length: int, written: bool
) -> None:
    """The literal from SSM's quotas (8 KB for an Advanced parameter), not the constant."""
    if written:
        recorded_store.put("p", "x" * length, secure=False, kms_key_id=None, overwrite=False)
    else:
        with pytest.raises(StoreError, match="ValueTooLarge"):
            recorded_store.put("p", "x" * length, secure=False, kms_key_id=None, overwrite=False)
    assert len(_puts(recording)) == int(written)


def test_a_refused_write_names_the_call_and_the_code(
    recording: RecordingClient, recorded_store: ParameterStore
) -> None:
    recording.fail("put_parameter", client_error("AccessDeniedException", "PutParameter", "no"))
    with pytest.raises(StoreError) as raised:
        recorded_store.put("p", "v", secure=False, kms_key_id=None, overwrite=False)
    assert str(raised.value) == "SSM PutParameter failed (AccessDeniedException): no"


def test_the_lambdas_client_tries_six_times_against_a_failing_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Standard-mode retries, bounded: ``max_attempts: 5`` is what botocore counts as retries,
    6 attempts in all (its own default is 3). A real client against an endpoint on 127.0.0.1
    that answers every call with a 503; botocore's pauses are skipped."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from botocore.retries import standard

    from handler.store import default_client

    hits: list[str] = []

    class Unavailable(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            hits.append(self.headers.get("X-Amz-Target", ""))
            body = b'{"__type": "ServiceUnavailable", "message": "try later"}'
            self.send_response(503)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    try:
        with pytest.raises(StoreError):
            ParameterStore(default_client(), sleep=lambda _: None).read(["p"])
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["AmazonSSM.GetParameters"] * 6


def test_the_lambdas_client_gives_up_on_a_silent_connection_in_seconds() -> None:
    """docs/DESIGN.md §3 rule 5: 5 s to connect, 15 s to read, so six attempts at a silent
    endpoint fail the request and leave the timeout guard time to answer. Waiting them out
    would take minutes: tests/test_reliability_faults.py injects the timeouts botocore raises."""
    from handler.store import default_client

    config = default_client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 15)
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
