"""``docker-tls plan``'s wording and ``docker-tls verify``'s verdicts at each stage of a staged CA
rotation, against in-process moto (fast; tests/test_rehearse.py runs the same story end to end
on the lasting local endpoint)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import docker_tls_cli as cli
from docker_tls_cli.verify import EXIT_REFRESH
from handler.ensure import ensure
from handler.model import RotationStage
from handler.names import BundleNames
from handler.store import ParameterStore
from tests.conftest import NOW, RecordingClient, props, ssm_versions

RACK = "rotating-rack"
NAMES = BundleNames.for_rack(RACK)
ECDSA = ["--property", "KeyAlgorithm=ECDSA-P256"]
AT = ["--at", NOW.isoformat()]


def _cli(client: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), client=client, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _to(store: ParameterStore, stage: RotationStage | None, previous: RotationStage | None) -> None:
    """An Update of the stack from ``previous`` to ``stage``, as the handler does it."""
    staged = dataclasses.replace(props(RACK), rotation_stage=stage)
    ensure(store, staged, rotate=False, now=NOW, previous_stage=previous)


@pytest.fixture
def steady(store: ParameterStore) -> ParameterStore:
    ensure(store, props(RACK), rotate=False, now=NOW)
    return store


def _plan(recording: RecordingClient, *argv: str) -> str:
    code, out, err = _cli(recording, "plan", "--rack", RACK, *ECDSA, *argv, *AT)
    assert code == cli.EXIT_OK, err
    assert {name for name, _ in recording.calls} == {"get_parameters"}
    return out


def _line(out: str, start: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(start))


def test_plan_at_each_stage_says_what_signs_what_is_trusted_and_what_stops_working(
    recording: RecordingClient, steady: ParameterStore
) -> None:
    out = _plan(recording, "--property", "RotationStage=introduce")
    before = _line(out, "ca-cert before:")
    assert before.startswith("ca-cert before: signs: CN=docker-tls CA (SHA-256 ")
    assert ", then" not in before
    assert _line(out, "ca-cert after:").endswith(", then a new CA")
    assert "ca.pem files held now lack the new CA" in out

    _to(steady, RotationStage.INTRODUCE, None)
    out = _plan(recording, "--property", "RotationStage=switch")
    assert "not signed by the stored CA" not in out
    server = _line(out, "  server  reissue")
    assert "the signing CA changes to CN=docker-tls CA " in server
    assert "which stops signing" in server
    old, new = (
        part.split("(SHA-256 ")[1][:16] for part in _line(out, "ca-cert before:").split(", then ")
    )
    after = _line(out, "ca-cert after:")
    assert after.index(new) < after.index(old)  # the new CA signs, the old stays trusted
    assert "reissued by CN=docker-tls CA" in out and "(until the retire)" in out

    _to(steady, RotationStage.SWITCH, RotationStage.INTRODUCE)
    out = _plan(recording)
    assert "Action: retired" in out
    after = _line(out, "ca-cert after:")
    assert new in after and old not in after
    assert (
        f"client certificates issued before the switch (signed by CN=docker-tls CA (SHA-256 {old}"
        in out
    )
    assert f"{NAMES.previous_ca_key} parameter is removed" in out
    assert "nothing would be written" not in out

    _to(steady, None, RotationStage.SWITCH)
    out = _plan(recording)
    assert "Action: reused: no certificate changes; only the parameters below are removed" in out
    assert f"{NAMES.previous_ca_cert} parameter is removed" in out
    assert "a rollback of the retire can no longer trust it again" in out
    assert "nothing would be written" not in out


def test_plan_json_carries_the_trust_before_and_after(
    recording: RecordingClient, steady: ParameterStore
) -> None:
    _to(steady, RotationStage.INTRODUCE, None)
    report = json.loads(_plan(recording, "--property", "RotationStage=switch", "--json"))
    assert [ca["role"] for ca in report["trusted_before"]] == [
        "the signing CA",
        "the introduced CA",
    ]
    assert [ca["role"] for ca in report["trusted_after"]] == [
        "the introduced CA",
        "the signing CA",
    ]
    assert report["signs_after"].startswith("CN=docker-tls CA ")
    assert NAMES.previous_ca_key in report["parameters_written"]
    assert any("reissued by" in line for line in report["held_credentials"])


def _export(recording: RecordingClient, directory: Path, *extra: str) -> Path:
    host = [] if "--server" in extra else ["--host", "localhost"]
    code, _, err = _cli(
        recording, "export", "--rack", RACK, "--dir", str(directory), *host, *extra, *AT
    )
    assert code == cli.EXIT_OK, err
    return directory


def _verify(recording: RecordingClient, ssm: Any, *argv: str) -> tuple[int, str]:
    before = ssm_versions(ssm, list(NAMES.everything))
    recording.calls.clear()
    code, out, err = _cli(recording, "verify", "--rack", RACK, *argv, *AT)
    assert {name for name, _ in recording.calls} <= {"get_parameters"}
    assert ssm_versions(ssm, list(NAMES.everything)) == before
    assert "PRIVATE KEY" not in out + err
    return code, out + err


def test_verify_says_what_each_stage_leaves_stale(
    recording: RecordingClient, ssm: Any, steady: ParameterStore, tmp_path: Path
) -> None:
    held = _export(recording, tmp_path / "steady")
    daemon = _export(recording, tmp_path / "daemon", "--server")
    code, out = _verify(recording, ssm, "--dir", str(held))
    assert code == cli.EXIT_OK and "current: nothing to refresh" in out
    assert _verify(recording, ssm, "--dir", str(daemon))[0] == cli.EXIT_OK

    _to(steady, RotationStage.INTRODUCE, None)
    code, out = _verify(recording, ssm, "--dir", str(held))
    assert code == EXIT_REFRESH
    assert "REFRESH: ca.pem lacks the introduced CA" in out and "before the switch" in out
    assert "ok: cert.pem is current" in out
    assert f"docker-tls export --rack {RACK} --dir {held} --force" in out
    code, out = _verify(recording, ssm, "--dir", str(daemon))
    assert code == EXIT_REFRESH and "--server --force" in out
    introduced = _export(recording, tmp_path / "introduced")

    _to(steady, RotationStage.SWITCH, RotationStage.INTRODUCE)
    code, out = _verify(recording, ssm, "--dir", str(introduced))
    assert code == EXIT_REFRESH
    assert "cert.pem is signed by the CA that signed before the switch" in out
    assert "re-export before the retire" in out
    code, out = _verify(recording, ssm, "--dir", str(held))
    assert "ca.pem lacks the signing CA" in out

    _to(steady, None, RotationStage.SWITCH)
    code, out = _verify(recording, ssm, "--dir", str(introduced))
    assert code == EXIT_REFRESH
    assert "cert.pem is signed by the retired CA" in out
    assert "ca.pem still trusts the retired CA" in out
    current = _export(recording, tmp_path / "retired")
    assert _verify(recording, ssm, "--dir", str(current))[0] == cli.EXIT_OK
    # A daemon's files, named one by one (its key need not be readable where this runs).
    fresh = _export(recording, tmp_path / "fresh-daemon", "--server")
    code, out = _verify(
        recording,
        ssm,
        "--ca",
        str(fresh / "ca.pem"),
        "--cert",
        str(fresh / "server-cert.pem"),
        "--server",
    )
    assert code == cli.EXIT_OK, out
    assert "ok: server-cert.pem is current" in out


def test_verify_refuses_a_key_of_another_certificate_and_a_foreign_ca(
    recording: RecordingClient, ssm: Any, steady: ParameterStore, tmp_path: Path
) -> None:
    held = _export(recording, tmp_path / "held")
    daemon = _export(recording, tmp_path / "daemon", "--server")
    shutil.copy(daemon / "server-key.pem", held / "key.pem")
    code, out = _verify(recording, ssm, "--dir", str(held))
    assert code == EXIT_REFRESH
    assert "key.pem does not match cert.pem" in out

    other = BundleNames.for_rack("another-rack")
    ensure(ParameterStore(ssm, sleep=lambda _: None), props("another-rack"), rotate=False, now=NOW)
    assert other.prefix != NAMES.prefix
    code, _, err = _cli(
        recording,
        "export",
        "--rack",
        "another-rack",
        "--dir",
        str(tmp_path / "foreign"),
        "--host",
        "localhost",
        *AT,
    )
    assert code == cli.EXIT_OK, err
    code, out = _verify(recording, ssm, "--dir", str(tmp_path / "foreign"))
    assert code == EXIT_REFRESH
    assert "a CA this rack does not trust" in out
    assert "cert.pem is signed by no CA this rack knows" in out


def test_verify_usage_and_missing_things(
    recording: RecordingClient, ssm: Any, steady: ParameterStore, tmp_path: Path
) -> None:
    code, out = _verify(recording, ssm)
    assert code == cli.EXIT_USAGE and "pass --dir" in out
    code, out = _verify(recording, ssm, "--dir", str(tmp_path / "nowhere"))
    assert code == cli.EXIT_ERROR and "cannot read" in out
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "ca.pem").write_text("not a certificate\n")
    code, out = _verify(recording, ssm, "--dir", str(tmp_path / "junk"))
    assert code == cli.EXIT_ERROR and "is not PEM certificates" in out
    held = _export(recording, tmp_path / "held")
    code, _, err = _cli(recording, "verify", "--rack", "no-such-rack", "--dir", str(held))
    assert code == cli.EXIT_NOT_FOUND, err
