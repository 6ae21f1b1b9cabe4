"""The staged-CA runbook rehearsed from a fresh lasting local endpoint (moto's server over HTTP):
``devkit.rehearse`` sends each stage through the real handler, ``docker-tls plan`` is read at
each stage, and ``docker-tls verify`` judges directories ``docker-tls export`` really wrote."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

import docker_tls_cli as cli
from devkit import local_endpoint, rehearse
from docker_tls_cli.verify import EXIT_REFRESH
from handler.names import BundleNames
from tests.conftest import RecordingClient

# Each test starts the lasting endpoint (a process of its own): the full run only.
pytestmark = pytest.mark.slow

RACK = "rehearsed-rack"
NAMES = BundleNames.for_rack(RACK)
ECDSA = ["--property", "KeyAlgorithm=ECDSA-P256"]


def _rehearse(*argv: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = rehearse.main([*argv, "--rack", RACK], out=out, err=err)
    text = out.getvalue()
    return code, json.loads(text) if text else {}, err.getvalue()


def _cli(*argv: str, client: Any = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), client=client, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class Rack:
    """The rehearsed rack on the test's endpoint: export, plan and verify against it."""

    def __init__(self, state: Path, tmp_path: Path) -> None:
        endpoint = local_endpoint.running(state)
        assert endpoint is not None
        self.client = boto3.client("ssm", endpoint_url=endpoint.url, region_name="us-east-1")
        self.tmp_path = tmp_path

    def export(self, name: str, *extra: str) -> Path:
        directory = self.tmp_path / name
        host = [] if "--server" in extra else ["--host", "localhost"]
        code, _, err = _cli(
            "export", "--rack", RACK, "--local", "--dir", str(directory), *host, *extra
        )
        assert code == cli.EXIT_OK, err
        return directory

    def plan(self, *properties: str) -> str:
        code, out, err = _cli("plan", "--rack", RACK, "--local", *ECDSA, *properties)
        assert code == cli.EXIT_OK, err
        return out

    def verify(self, *argv: str) -> tuple[int, str]:
        """verify through a recording client: it may only read."""
        recording = RecordingClient(self.client)
        code, out, err = _cli("verify", "--rack", RACK, *argv, client=recording)
        assert {name for name, _ in recording.calls} == {"get_parameters"}, recording.calls
        assert code in (cli.EXIT_OK, EXIT_REFRESH), err
        assert "PRIVATE KEY" not in out + err
        return code, out

    def verify_dir(self, directory: Path) -> tuple[int, str]:
        return self.verify("--dir", str(directory))


def _step(step: str, action: str) -> dict[str, Any]:
    code, response, err = _rehearse(step)
    assert code == rehearse.EXIT_OK, err
    assert response["Status"] == "SUCCESS", response.get("Reason")
    assert response["Data"]["Action"] == action
    assert response["LogicalResourceId"] == "DockerTLS"
    return response


def test_the_runbook_rehearsed_with_a_rollback_of_the_switch(
    lasting_endpoint: Path, tmp_path: Path
) -> None:
    code, response, err = _rehearse(
        "create", *ECDSA, "--property", "ServerSubjectAltNames=localhost,127.0.0.1"
    )
    assert code == rehearse.EXIT_OK, err
    assert response["Data"]["Action"] == "created"
    ca_a = response["Data"]["CAFingerprint"]
    rack = Rack(lasting_endpoint, tmp_path)
    steady = rack.export("steady")
    assert rack.verify_dir(steady)[0] == cli.EXIT_OK

    # --- introduce -------------------------------------------------------------------------
    out = rack.plan("--property", "RotationStage=introduce")
    assert f"ca-cert before: signs: CN=docker-tls CA (SHA-256 {ca_a[:16]}…)\n" in out
    assert f"ca-cert after: signs: CN=docker-tls CA (SHA-256 {ca_a[:16]}…), then a new CA" in out
    assert "ca.pem files held now lack the new CA: refresh every one" in out
    assert "nothing would be written" not in out
    response = _step("introduce", "introduced")
    assert response["Data"]["CAFingerprint"] == ca_a  # A still signs
    ca_b = response["Data"]["TrustedCAFingerprints"].split(",")[1]
    code, out = rack.verify_dir(steady)
    assert code == EXIT_REFRESH
    assert "ca.pem lacks the introduced CA" in out and "re-export before the switch" in out
    assert "ok: cert.pem is current" in out
    introduced = rack.export("introduced")
    assert rack.verify_dir(introduced)[0] == cli.EXIT_OK

    # A record that contradicts SSM is refused before anything is sent.
    record_file = rehearse.record_path(RACK, lasting_endpoint)
    saved = record_file.read_text()
    record = json.loads(saved)
    record["properties"].pop("RotationStage")
    record_file.write_text(json.dumps(record))
    code, _, err = _rehearse("switch")
    assert code == rehearse.EXIT_USAGE
    assert "says RotationStage none, SSM holds stage introduce" in err
    record_file.write_text(saved)

    # --- switch, rolled back, switched again ----------------------------------------------
    out = rack.plan("--property", "RotationStage=switch")
    assert "not signed by the stored CA" not in out
    assert out.count("the signing CA changes to CN=docker-tls CA ") == 2  # server, client
    assert f"(SHA-256 {ca_b[:16]}…): reissued by it" in out
    after = next(line for line in out.splitlines() if line.startswith("ca-cert after:"))
    assert after.index(ca_b[:16]) < after.index(ca_a[:16])  # B signs, A still trusted
    assert "keep working while it stays trusted (until the retire)" in out
    response = _step("switch", "switched")
    assert response["Data"]["CAFingerprint"] == ca_b
    code, out = rack.verify_dir(introduced)
    assert code == EXIT_REFRESH
    assert "ok: ca.pem is current" in out
    assert "cert.pem is signed by the CA that signed before the switch" in out
    assert "re-export before the retire" in out
    code, out = rack.verify_dir(steady)
    assert code == EXIT_REFRESH
    assert "ca.pem lacks the signing CA" in out

    # CloudFormation rolls the switch back: the old CA signs again, the new stays trusted,
    # and the files exported at introduce are current again.
    response = _step("rollback", "introduced")
    assert response["Data"]["CAFingerprint"] == ca_a
    assert rack.verify_dir(introduced)[0] == cli.EXIT_OK
    code, _, err = _rehearse("rollback")
    assert code == rehearse.EXIT_USAGE and "nothing to roll back" in err

    response = _step("switch", "switched")
    assert response["Data"]["CAFingerprint"] == ca_b
    switched = rack.export("switched")
    daemon = rack.export("daemon", "--server")
    assert rack.verify_dir(switched)[0] == cli.EXIT_OK
    code, out = rack.verify(
        "--ca",
        str(daemon / "ca.pem"),
        "--cert",
        str(daemon / "server-cert.pem"),
        "--key",
        str(daemon / "server-key.pem"),
        "--server",
    )
    assert code == cli.EXIT_OK, out
    assert "ok: server-cert.pem is current" in out

    # --- retire ----------------------------------------------------------------------------
    out = rack.plan()
    assert "Action: retired" in out
    after = next(line for line in out.splitlines() if line.startswith("ca-cert after:"))
    assert ca_b[:16] in after and ca_a[:16] not in after
    assert (
        f"client certificates issued before the switch (signed by CN=docker-tls CA (SHA-256 "
        f"{ca_a[:16]}…)) will be refused" in out
    )
    assert f"{NAMES.previous_ca_key} parameter is removed" in out
    assert "nothing would be written" not in out
    _step("retire", "retired")
    code, out = rack.verify_dir(introduced)
    assert code == EXIT_REFRESH
    assert "cert.pem is signed by the retired CA" in out
    code, out = rack.verify_dir(switched)
    assert code == EXIT_REFRESH
    assert "ca.pem still trusts the retired CA" in out and "ok: cert.pem is current" in out
    code, out = rack.verify_dir(daemon)
    assert code == EXIT_REFRESH and "--server --force" in out
    # A rolled-back retire trusts the old CA again (from previous-ca-cert): switch-era files
    # are current again; then the retire once more.
    response = _step("rollback", "switched")
    assert response["Data"]["TrustedCAFingerprints"] == f"{ca_b},{ca_a}"
    assert rack.verify_dir(switched)[0] == cli.EXIT_OK
    _step("retire", "retired")
    retired = rack.export("retired")
    code, out = rack.verify_dir(retired)
    assert code == cli.EXIT_OK and "current: nothing to refresh" in out

    # The next ordinary update only closes the rollback window: said, not "nothing written".
    out = rack.plan()
    assert "Action: reused: no certificate changes; only the parameters below are removed" in out
    assert f"{NAMES.previous_ca_cert} parameter is removed" in out
    assert "nothing would be written" not in out

    code, status, _ = _rehearse("status")
    assert code == rehearse.EXIT_OK
    assert [line.split(":")[0] for line in status["history"]] == [
        "create",
        "introduce",
        "switch",
        "rollback",
        "switch",
        "retire",
        "rollback",
        "retire",
    ]


def test_retire_and_cancel_must_fit_the_stage(lasting_endpoint: Path) -> None:
    code, _, err = _rehearse("retire")
    assert code == rehearse.EXIT_USAGE
    assert "has no bundle yet: create it first" in err
    assert _rehearse("create", *ECDSA)[0] == rehearse.EXIT_OK
    code, _, err = _rehearse("retire")
    assert code == rehearse.EXIT_USAGE and "the stack is at none (introduce fits)" in err
    code, _, err = _rehearse("cancel")
    assert code == rehearse.EXIT_USAGE and "cancel removes RotationStage after an introduce" in err
    _step("introduce", "introduced")
    _step("rollback", "cancelled")  # CloudFormation undoing the introduce drops the new CA
    _step("introduce", "introduced")
    _step("cancel", "cancelled")


def test_a_rehearsal_refuses_an_endpoint_that_is_not_the_local_one(
    lasting_endpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.us-east-1.amazonaws.com")
    code, response, err = _rehearse("create")
    assert code == rehearse.EXIT_USAGE
    assert response == {}
    assert "is not the lasting local endpoint" in err
