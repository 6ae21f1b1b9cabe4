"""Shared fixtures: in-process moto for unit tests, real HTTP endpoints for end-to-end ones."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws

from devkit import ssm_rules
from devkit.events import STACK_ID, LambdaContext, event
from handler import app
from handler.ensure import Requester
from handler.model import GeneratorProperties
from handler.ownership import Resource
from handler.store import ParameterStore

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
#: The resource devkit.events' requests come from by default: a bundle set up with it is the
#: bundle of the stack the tests' events then update and delete.
OWNER = Requester(Resource(STACK_ID, "DockerTLS"))
GENERATOR = app.GENERATOR
GETTER = app.GETTER


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region; never the developer's real AWS."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(autouse=True)
def _ssm_invariants(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every SSM write the code under test makes, in this test, keeps the bundle's invariants
    (devkit.ssm_invariants); one that does not is refused where it is made and fails the test
    here even if the code swallowed the error. Server processes the test starts inherit the
    rules directory and record into it; a module fixture's writes count for the first test that
    uses it."""
    monkeypatch.setenv(ssm_rules.RULES_DIR_ENV, str(tmp_path_factory.mktemp("ssm-rules")))
    yield
    violations = ssm_rules.take_violations()
    if violations:
        pytest.fail(
            "SSM invariants broken by the code under test (devkit/ssm_rules.py):\n  "
            + "\n  ".join(violations),
            pytrace=False,
        )


@pytest.fixture
def lasting_endpoint(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The lasting local SSM endpoint (devkit.local_endpoint) with a state directory and port of
    the test's own, never the developer's; stopped afterwards. Yields the state directory."""
    from devkit import local_endpoint
    from devkit.loopback import free_port

    directory = tmp_path / "local-ssm"
    monkeypatch.setenv(local_endpoint.STATE_DIR_ENV, str(directory))
    monkeypatch.setenv(local_endpoint.PORT_ENV, str(free_port()))
    try:
        yield directory
    finally:
        local_endpoint.stop(directory)


ssm_rules.install()  # every moto in this process (mock_aws, moto's server) follows SSM's rules


@pytest.fixture
def ssm() -> Iterator[Any]:
    """An in-process moto SSM client, under SSM's rules (devkit.ssm_rules)."""
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def store(ssm: Any) -> ParameterStore:
    return ParameterStore(ssm, sleep=lambda _: None)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


def self_signed(*extensions: Any, key: Any = None, days: int = 1, name: str = "hand-made") -> Any:
    """A hand-made self-signed certificate (P-256 unless ``key`` is given) with exactly
    ``extensions``, each critical: what docker-tls never issues, for checks that judge any."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=days))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256())


def props(rack: str = "convox", **overrides: Any) -> GeneratorProperties:
    """Generator properties; ECDSA-P256 unless a test is about RSA (keeps the suite fast)."""
    from handler.certificates import KeyAlgorithm

    values: dict[str, Any] = {"rack": rack, "key_algorithm": KeyAlgorithm.ECDSA_P256}
    values.update(overrides)
    return GeneratorProperties(**values)


Invoke = Callable[..., dict[str, Any]]


@pytest.fixture
def invoke(store: ParameterStore, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Drive ``lambda_handler`` with a CloudFormation event; returns the one response sent.

    The response sender is replaced by a recorder; everything else is the real handler.
    """
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(app, "store", store)
    monkeypatch.setattr(app.helper, "send_response", lambda url, body: sent.append(body) or True)

    def run(
        request_type: str,
        properties: dict[str, Any],
        *,
        resource_type: str = GENERATOR,
        physical_id: str | None = None,
        old_properties: dict[str, Any] | None = None,
        logical_id: str = "DockerTLS",
        raw_event: dict[str, Any] | None = None,
        stack_id: str = STACK_ID,
    ) -> dict[str, Any]:
        sent.clear()
        body = raw_event or event(
            request_type,
            resource_type,
            logical_id,
            properties,
            response_url="https://cloudformation-custom-resource-response.example/x?X-Amz-Signature=s",
            physical_id=physical_id,
            old_properties=old_properties,
            stack_id=stack_id,
        )
        app.lambda_handler(body, LambdaContext())
        assert len(sent) == 1, f"expected exactly one response, got {len(sent)}"
        return sent[0]

    return run


def ssm_versions(client: Any, names: list[str]) -> dict[str, int]:
    """Each existing parameter's version number (a write bumps it)."""
    found = client.get_parameters(Names=names)["Parameters"]
    return {p["Name"]: p["Version"] for p in found}


os.environ.setdefault("LOG_LEVEL", "INFO")


def pytest_configure(config: pytest.Config) -> None:
    # moto's server warns that the stand-ins' own refusal code is not in SSM's model: on purpose.
    config.addinivalue_line(
        "filterwarnings",
        f"ignore:Exception\\(InvariantViolation\\) with code {ssm_rules.VIOLATION}",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``CI=true`` a skip is a failure: every skip here means a peer (dockerd, the docker
    CLI, openssl, the SAM CLI, PyPI, a Python 3.13) is missing, and CI installs them all, so a
    skip would be a test that silently did not run. On a laptop they still skip, saying why."""
    report = yield
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every peer must be present: {reason}"
    return report


class RecordingClient:
    """An SSM client proxy that records each operation and can inject failures.

    ``faults`` maps a method name (``get_parameters``) to an exception raised instead of
    calling SSM, for the next ``times`` calls (all calls when ``times`` is None).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: dict[str, tuple[Exception, int | None]] = {}

    def fail(self, method: str, error: Exception, times: int | None = None) -> None:
        self.faults[method] = (error, times)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target) or name.startswith("_") or name in {"meta", "exceptions"}:
            return target

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if name in self.faults:
                error, times = self.faults[name]
                if times is None or times > 0:
                    if times is not None:
                        self.faults[name] = (error, times - 1)
                    raise error
            return target(**kwargs)

        return call

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def written(self) -> list[str]:
        return [kwargs["Name"] for name, kwargs in self.calls if name == "put_parameter"]


def client_error(code: str, operation: str = "GetParameters", message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


@pytest.fixture
def recording(ssm: Any) -> RecordingClient:
    return RecordingClient(ssm)


@pytest.fixture
def recorded_store(recording: RecordingClient) -> ParameterStore:
    return ParameterStore(recording, sleep=lambda _: None)  # type: ignore[arg-type]
