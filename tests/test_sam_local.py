"""The function as AWS runs it: `make sam-local`'s lifecycle in a Python 3.13 runtime container.

The ``sam``-marked test runs the real thing: ``sam build`` for this machine's architecture,
``sam local invoke`` of the four shipped events in the runtime image (the Debian-built stand-in:
no image registry is reachable here), against moto's server and an HTTPS receiver on 127.0.0.1.
It needs the SAM CLI (``make sam-cli``) and a Docker engine or root with dockerd; it skips
without them on a laptop and fails under ``CI=true``.

The other tests check the verdicts themselves: each judgement must be able to say no.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from devkit import sam_local
from devkit.docker_engine import SYSTEM_SOCKET
from devkit.dockerd import dockerd_available
from devkit.sam_cli import DEFAULT_VENV
from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose
from handler.codec import certificate_pem, to_stored
from handler.names import BundleNames, Item

PREFIX = BundleNames.for_rack("docker-tls-example").prefix
NAMES = BundleNames(PREFIX)


def _missing_peer() -> str | None:
    if not (DEFAULT_VENV / "bin" / "python").is_file():
        return "no SAM CLI in .venv-sam (make sam-cli)"
    if not (os.environ.get("DOCKER_HOST") or SYSTEM_SOCKET.exists() or dockerd_available()):
        return "no Docker engine, and no root + dockerd to start one"
    return None


@pytest.mark.sam
def test_the_shipped_events_run_in_the_runtime_container() -> None:
    missing = _missing_peer()
    if missing:
        pytest.skip(missing)  # a failure under CI=true (tests/conftest.py)
    report = sam_local.run(image_choice="debian", note=print)
    print(sam_local.table(report))
    assert [s.name for s in report.steps] == list(sam_local.STEPS)
    assert report.passed, sam_local.table(report)
    create, update, getter, delete = (s.response for s in report.steps)
    assert create["Data"]["Action"] == "created"
    assert update["Data"]["Action"] == "reused"
    assert update["Data"]["CAFingerprint"] == create["Data"]["CAFingerprint"]
    assert getter["NoEcho"] is True
    assert delete["Status"] == "SUCCESS"
    assert report.image.startswith("docker-tls/lambda-python:3.13-")


# --------------------------------------------------------------------------------------------
# The verdicts can say no
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle() -> dict[str, str]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=2, now=now)
    server = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=now)
    other = ca.issue(Purpose.SERVER, KeyAlgorithm.ECDSA_P256, validity_days=1, now=now)
    return {
        NAMES.cert(Item.CA): to_stored(certificate_pem(ca.cert)),
        NAMES.cert(Item.SERVER): to_stored(server.cert_pem()),
        NAMES.key(Item.SERVER): to_stored(server.key_pem()),
        "other-key": to_stored(other.key_pem()),
    }


def _generator(action: str, ca: str = "ab" * 32, **extra: Any) -> dict[str, Any]:
    data = {"Action": action, "CAFingerprint": ca, "CACertificate": "LS0t", **extra}
    return {"Status": "SUCCESS", "PhysicalResourceId": PREFIX, "Data": data}


def _judge(name: str, response: dict[str, Any], state: dict[str, Any], stored: Any = dict) -> Any:
    return sam_local._judge(name, response, {"prefix": PREFIX, **state}, stored)


def test_create_must_answer_created_with_the_racks_id() -> None:
    assert _judge("create", _generator("created"), {})[0]
    assert not _judge("create", _generator("reused"), {})[0]
    wrong_id = {**_generator("created"), "PhysicalResourceId": "failed-1234"}
    assert not _judge("create", wrong_id, {})[0]
    failed = {"Status": "FAILED", "Reason": "SSM GetParameters failed", "Data": {}}
    ok, verdict = _judge("create", failed, {})
    assert not ok
    assert "SSM GetParameters failed" in verdict


def test_a_generator_response_with_a_key_fails(bundle: dict[str, str]) -> None:
    leaked = _generator("created", Leak=bundle[NAMES.key(Item.SERVER)])
    ok, verdict = _judge("create", leaked, {})
    assert not ok
    assert "private key" in verdict


def test_update_must_reuse_the_same_ca() -> None:
    assert _judge("update", _generator("reused"), {"ca": "ab" * 32})[0]
    assert not _judge("update", _generator("reused", ca="cd" * 32), {"ca": "ab" * 32})[0]
    assert not _judge("update", _generator("renewed"), {"ca": "ab" * 32})[0]


def test_the_getter_must_hide_a_key_that_matches_the_server_certificate(
    bundle: dict[str, str],
) -> None:
    def stored() -> dict[str, str]:
        return bundle

    good = {"Status": "SUCCESS", "NoEcho": True, "Data": {"Value": bundle[NAMES.key(Item.SERVER)]}}
    assert _judge("getter", good, {}, stored)[0]
    assert not _judge("getter", {**good, "NoEcho": False}, {}, stored)[0]
    other = {**good, "Data": {"Value": bundle["other-key"]}}
    assert not _judge("getter", other, {}, stored)[0]
    certificate = {**good, "Data": {"Value": bundle[NAMES.cert(Item.SERVER)]}}
    ok, verdict = _judge("getter", certificate, {}, stored)
    assert not ok
    assert "not the server key" in verdict


def test_delete_must_leave_nothing(bundle: dict[str, str]) -> None:
    done = {"Status": "SUCCESS", "Data": {}}
    assert _judge("delete", done, {}, dict)[0]
    ok, verdict = _judge("delete", done, {}, lambda: bundle)
    assert not ok
    assert verdict.startswith("4 of the bundle's parameters left")


def test_the_functions_log_lines_must_be_json_and_free_of_keys(bundle: dict[str, str]) -> None:
    line = json.dumps({"level": "INFO", "message": "request received"})
    assert sam_local._log_problem(f"START\n{line}\n{line}\nEND", None) is None
    assert "no JSON log line" in str(sam_local._log_problem("START\nEND", None))
    joined = sam_local._log_problem(f"{line}{line}\n", None)
    assert "not one JSON object" in str(joined)
    secret = bundle[NAMES.key(Item.SERVER)]
    leaked = json.dumps({"message": secret})
    assert "key material" in str(sam_local._log_problem(leaked, secret))
    pem = json.dumps({"message": base64.b64decode(secret).decode()})
    assert "key material" in str(sam_local._log_problem(pem, None))


def test_the_table_says_which_step_failed() -> None:
    steps = [
        sam_local.Step(name, sam_local.EVENTS / f"{name}.json", 1.0, "SUCCESS", "fine", True)
        for name in sam_local.STEPS
    ]
    steps[2].passed, steps[2].verdict = False, "NoEcho False"
    report = sam_local.Report("x86_64", "img", "debian (reused)", None, "SAM CLI", 2.0, steps)
    text = sam_local.table(report)
    assert not report.passed
    assert "getter   events/getter.json   SUCCESS       1.0  FAIL: NoEcho False" in text
    assert text.rstrip().splitlines()[-1].startswith("FAILED")
