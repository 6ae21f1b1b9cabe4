"""Every events/*.json through devkit.invoke: the real handler, SSM over HTTP (moto's server),
the response over HTTPS to a local receiver; what is printed is what CloudFormation would get."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devkit import invoke
from handler.names import BundleNames

# Each test starts an SSM endpoint and receivers, some a subprocess: the full run only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
COMMON = ("RequestType", "ServiceToken", "ResponseURL", "StackId", "RequestId")
COMMON += ("LogicalResourceId", "ResourceType", "ResourceProperties")


def _event(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return body


def _invoke(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, Any] | None, str]:
    capsys.readouterr()
    out = io.StringIO()
    code = invoke.main(list(argv), out=out)
    text = out.getvalue()
    return code, json.loads(text) if text else None, capsys.readouterr().err


def test_the_event_files_have_cloudformations_shape() -> None:
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert names == ["create.json", "delete.json", "getter.json", "update.json"]
    for name in names:
        body = _event(name)
        for key in COMMON:
            assert body.get(key), f"{name} lacks {key}"
        assert body["ResourceProperties"]["ServiceToken"] == body["ServiceToken"]
        assert body["ResponseURL"].startswith("https://")
        assert "X-Amz-Signature=" in body["ResponseURL"]
        assert body["StackId"].startswith("arn:aws:cloudformation:")
        rack = body["ResourceProperties"]["Rack"]
        if body["RequestType"] in ("Update", "Delete"):
            assert body["PhysicalResourceId"] == BundleNames.for_rack(rack).prefix
        else:
            assert "PhysicalResourceId" not in body
        if body["RequestType"] == "Update":
            old = body["OldResourceProperties"]
            assert old["ServiceToken"] == body["ServiceToken"]
            assert old["Rack"] == rack
        else:
            assert "OldResourceProperties" not in body


def test_create(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, err = _invoke(capsys, str(EVENTS / "create.json"))
    event = _event("create.json")
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == BundleNames.for_rack("docker-tls-example").prefix
    assert response["RequestId"] == event["RequestId"]
    assert response["LogicalResourceId"] == event["LogicalResourceId"]
    assert response["NoEcho"] is False
    assert response["Data"]["Action"] == "created"
    assert len(response["Data"]["CAFingerprint"]) == 64
    assert "seeded" not in err
    assert "embedded SSM endpoint http://127.0.0.1:" in err


def test_update_is_seeded_and_reuses_the_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, err = _invoke(capsys, str(EVENTS / "update.json"))
    event = _event("update.json")
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == event["PhysicalResourceId"]
    assert response["Data"]["Action"] == "reused"  # a Version bump keeps the CA
    assert "seeded" in err and "OldResourceProperties" in err


def test_update_without_seed_creates(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, err = _invoke(capsys, str(EVENTS / "update.json"), "--no-seed")
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["Data"]["Action"] == "created"
    assert "seeded" not in err


def test_delete(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    code, response, err = _invoke(capsys, str(EVENTS / "delete.json"))
    event = _event("delete.json")
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == event["PhysicalResourceId"]
    assert response["Data"] == {}
    assert "seeded" in err
    # It removed the seeded bundle's six parameters and its owner record, not nothing.
    removed = [r for r in caplog.records if r.getMessage() == "bundle removed"]
    assert [getattr(r, "removed", None) for r in removed] == [7]


def test_getter_masks_the_private_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, err = _invoke(capsys, str(EVENTS / "getter.json"))
    event = _event("getter.json")
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == event["ResourceProperties"]["ParameterKey"]
    assert response["NoEcho"] is True
    assert response["Data"] == {"Value": invoke.MASK}
    assert "NoEcho is true" in err
    assert "LS0tLS1CRUdJTi" not in err  # no base64 PEM anywhere in the output


def test_getter_of_a_certificate_shows_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event = _event("getter.json")
    prefix = BundleNames.for_rack(event["ResourceProperties"]["Rack"]).prefix
    event["ResourceProperties"]["ParameterKey"] = f"{prefix}-docker-tls-ca-cert"
    path = tmp_path / "ca-getter.json"
    path.write_text(json.dumps(event))
    code, response, _ = _invoke(capsys, str(path))
    assert code == invoke.EXIT_SUCCESS
    assert response is not None
    assert response["NoEcho"] is False
    assert response["Data"]["Value"].startswith("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS")


def test_getter_without_seed_fails_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, _ = _invoke(capsys, str(EVENTS / "getter.json"), "--no-seed")
    assert code == invoke.EXIT_FAILED
    assert response is not None
    assert response["Status"] == "FAILED"
    assert "is not in SSM" in response["Reason"]
    assert response["PhysicalResourceId"].startswith("failed-")


def test_masked_hides_keys_even_without_no_echo() -> None:
    key = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCg=="  # "-----BEGIN EC PRIVATE KEY-----\n"
    shown = invoke.masked({"NoEcho": False, "Data": {"Value": key, "Other": "public"}})
    assert shown["Data"] == {"Value": invoke.MASK, "Other": "public"}


def test_send_needs_aws(capsys: pytest.CaptureFixture[str]) -> None:
    code, response, err = _invoke(capsys, str(EVENTS / "create.json"), "--send")
    assert code == invoke.EXIT_USAGE
    assert response is None
    assert "--send needs --aws" in err


def test_aws_without_credentials_stops_before_calling_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, response, err = _invoke(capsys, str(EVENTS / "update.json"), "--aws")
    assert code == invoke.EXIT_CREDENTIALS
    assert response is None
    assert "no AWS credentials" in err


def test_a_bad_event_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"RequestType": "Create"}))
    code, response, err = _invoke(capsys, str(path))
    assert code == invoke.EXIT_USAGE
    assert response is None
    assert "lacks ResourceType, ResourceProperties" in err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devkit.invoke", str(EVENTS / "getter.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["Status"] == "SUCCESS"
    assert response["Data"] == {"Value": invoke.MASK}
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert "LS0tLS1CRUdJTi" not in result.stdout + result.stderr
