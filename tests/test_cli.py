"""The ``docker-tls`` command line against in-process moto (an injected SSM client)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

import docker_tls_cli as cli
from devkit import ssm_rules
from docker_tls_cli import plan as cli_plan
from handler.bundle import plan
from handler.certificates import (
    CertificateAuthority,
    KeyAlgorithm,
    Purpose,
    fingerprint,
    same_key,
    signed_by,
)
from handler.codec import certificate_from_stored, private_key_from_stored, to_stored
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.properties import parse_generator
from handler.store import ParameterStore
from tests.conftest import NOW, OWNER, RecordingClient, client_error, props, ssm_versions
from tests.peers import DOCKER_CLI, docker_cli_available

RACK = "cli-rack"
NAMES = BundleNames.for_rack(RACK)
ECDSA = ["--property", "KeyAlgorithm=ECDSA-P256"]
AT = ["--at", NOW.isoformat()]


READ_ONLY = ("plan", "inspect", "export")


def run(client: Any, *argv: str) -> tuple[int, str, str]:
    """The CLI in this process. ``plan``, ``inspect`` and ``export`` write nothing: any SSM write
    they make is refused and fails the test (devkit.ssm_rules). ``--local`` may first create the
    local bundle, as the Lambda would; the test holds those calls read-only itself."""
    out, err = io.StringIO(), io.StringIO()
    scope = (
        ssm_rules.read_only(argv[0])
        if argv and argv[0] in READ_ONLY and "--local" not in argv
        else contextlib.nullcontext()
    )
    with scope:
        code = cli.main(list(argv), client=client, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def seeded(store: ParameterStore, ssm: Any) -> dict[str, str]:
    """A healthy ECDSA-P256 bundle for RACK, as the Lambda created it; returns its values."""
    ensure(store, props(RACK), rotate=False, now=NOW, requester=OWNER)
    found = ssm.get_parameters(Names=list(NAMES.material), WithDecryption=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def _no_secrets(text: str, values: dict[str, str]) -> None:
    assert "PRIVATE KEY" not in text
    for item in Item:
        assert values[NAMES.key(item)] not in text
        assert values[NAMES.key(item)][:40] not in text


def _nothing_to_evaluate(out: str, command: str = "export") -> None:
    """A failed export's stdout makes ``eval "$(docker-tls export …)"`` fail too; other
    commands print nothing on failure."""
    if command != "export":
        assert out == ""
        return
    assert out.startswith("false  # docker-tls export failed")
    assert len(out.splitlines()) == 1
    evaluated = subprocess.run(["bash", "-c", 'eval "$1"', "-", out], check=False)
    assert evaluated.returncode != 0


def _writes(recording: RecordingClient) -> list[str]:
    """Every SSM call that is not a read."""
    reads = {"get_parameters", "describe_parameters"}
    return [name for name, _ in recording.calls if name not in reads]


# --- plan -----------------------------------------------------------------------------------


def test_plan_of_a_healthy_bundle_reuses_everything_and_writes_nothing(
    recording: RecordingClient, ssm: Any, seeded: dict[str, str]
) -> None:
    before = ssm_versions(ssm, list(NAMES.everything))
    code, out, err = run(recording, "plan", "--rack", RACK, *ECDSA, *AT, "--json")
    assert code == cli.EXIT_OK, err
    report = json.loads(out)
    assert report["action"] == "reused"
    assert report["writes_anything"] is False
    assert [(i["item"], i["decision"], i["reason"]) for i in report["items"]] == [
        ("ca", "reuse", "healthy"),
        ("server", "reuse", "healthy"),
        ("client", "reuse", "healthy"),
    ]
    ca = certificate_from_stored(seeded[NAMES.cert(Item.CA)])
    assert report["items"][0]["not_after"] == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The bundle's ten names in one call, the convox handler's legacy parameter in a second.
    assert recording.count("get_parameters") == 2
    assert _writes(recording) == []
    assert ssm_versions(ssm, list(NAMES.everything)) == before


@pytest.mark.parametrize(
    ("argv", "action", "decisions", "reason_part"),
    [
        (
            [*ECDSA, "--property", "ServerSubjectAltNames=localhost,10.0.0.5"],
            "renewed",
            ["reuse", "reissue", "reuse"],
            "differ from ServerSubjectAltNames",
        ),
        ([*ECDSA, "--rotate"], "rotated", ["rotate", "reissue", "reissue"], "RotationToken"),
        (
            [*ECDSA, "--at", "2126-10-01"],
            "renewed",
            ["renew", "reissue", "reissue"],
            "within RenewBeforeDays",
        ),
        ([], "renewed", ["reuse", "reissue", "reissue"], "KeyAlgorithm asks for RSA-2048"),
    ],
    ids=["sans-changed", "rotation-token", "near-expiry", "default-key-algorithm"],
)
def test_plan_previews_each_decision_without_writing(
    recording: RecordingClient,
    ssm: Any,
    seeded: dict[str, str],
    argv: list[str],
    action: str,
    decisions: list[str],
    reason_part: str,
) -> None:
    before = ssm_versions(ssm, list(NAMES.everything))
    at = [] if "--at" in argv else AT
    code, out, err = run(recording, "plan", "--rack", RACK, *argv, *at, "--json")
    assert code == cli.EXIT_OK, err
    report = json.loads(out)
    assert report["action"] == action
    assert [i["decision"] for i in report["items"]] == decisions
    assert any(reason_part in i["reason"] for i in report["items"])
    assert _writes(recording) == []
    assert ssm_versions(ssm, list(NAMES.everything)) == before


def test_plan_is_what_the_lambda_then_does(
    recording: RecordingClient, store: ParameterStore, ssm: Any, seeded: dict[str, str]
) -> None:
    sans = ["--property", "ServerSubjectAltNames=localhost,10.0.0.5"]
    code, out, _ = run(recording, "plan", "--rack", RACK, *ECDSA, *sans, *AT, "--json")
    assert code == cli.EXIT_OK
    predicted = json.loads(out)
    properties = {
        "Rack": RACK,
        "KeyAlgorithm": "ECDSA-P256",
        "ServerSubjectAltNames": "localhost,10.0.0.5",
    }
    outcome = ensure(store, parse_generator(properties, NOW), rotate=False, now=NOW)
    assert outcome.action.value == predicted["action"] == "renewed"
    first = outcome.plans[0]
    assert [p.decision.value for p in first] == [i["decision"] for i in predicted["items"]]
    assert [p.reason for p in first] == [i["reason"] for i in predicted["items"]]
    after = ssm_versions(ssm, list(NAMES.material))
    changed = sorted(name for name, version in after.items() if version > 1)
    assert changed == sorted([NAMES.cert(Item.SERVER), NAMES.key(Item.SERVER)])


def test_plan_text_warns_before_a_rotation(
    recording: RecordingClient, seeded: dict[str, str]
) -> None:
    code, out, _ = run(recording, "plan", "--rack", RACK, *ECDSA, *AT, "--rotate")
    assert code == cli.EXIT_OK
    assert "WARNING: a new CA" in out
    assert "must be replaced" in out
    assert "plan writes nothing" in out
    assert "ca      rotate" in out


def test_plan_mentions_the_legacy_version_track(
    recording: RecordingClient, ssm: Any, seeded: dict[str, str]
) -> None:
    ssm.put_parameter(Name=NAMES.version_track, Value="20180101", Type="String")
    code, out, _ = run(recording, "plan", "--rack", RACK, *ECDSA, *AT)
    assert code == cli.EXIT_OK
    assert f"{NAMES.prefix}-version-track parameter is removed" in out
    assert ssm_versions(ssm, [NAMES.version_track]) == {NAMES.version_track: 1}


def test_plan_of_an_unknown_rack_shows_a_create_and_exits_not_found(
    recording: RecordingClient,
) -> None:
    code, out, err = run(recording, "plan", "--rack", "no-such-rack", "--json")
    assert code == cli.EXIT_NOT_FOUND
    assert json.loads(out)["action"] == "created"
    assert "no docker-tls parameters for Rack 'no-such-rack'" in err
    assert "us-east-1" in err
    assert len(err.splitlines()) == 1
    assert _writes(recording) == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--property", "KeyAlgorithm=DSA-1024"], "KeyAlgorithm"),
        (["--property", "Bogus=1"], "Bogus"),
        (["--property", "ValidityDays=ten"], "ValidityDays"),
        (["--property", "RenewBeforeDays=40000"], "RenewBeforeDays"),
        (["--property", "KeyAlgorithm"], "KEY=VALUE"),
        (["--property", "Rack=other"], "use --rack"),
        (["--property", "Version=1", "--property", "Version=2"], "twice"),
    ],
)
def test_a_bad_property_is_refused_before_anything_is_read(
    recording: RecordingClient, argv: list[str], named: str
) -> None:
    for command in ("plan", "inspect"):
        code, out, err = run(recording, command, "--rack", RACK, *argv)
        assert code == cli.EXIT_USAGE
        assert named in err
        assert out == ""
    assert recording.calls == []


# --- inspect --------------------------------------------------------------------------------


def test_inspect_shows_each_parameter_and_health(
    recording: RecordingClient, seeded: dict[str, str]
) -> None:
    code, out, err = run(recording, "inspect", "--rack", RACK, *AT, "--json")
    assert code == cli.EXIT_OK, err
    report = json.loads(out)
    assert report["rack"] == RACK
    assert report["health_judged_against"]["KeyAlgorithm"] == "ECDSA-P256 (stored)"
    assert report["action_if_updated_now"] == "reused"
    assert report["owner"] == "DockerTLS in stack docker-tls-demo"
    assert report["version_track_present"] is False
    items = {i["item"]: i for i in report["items"]}
    assert all(i["healthy"] and i["health"] == "healthy" for i in items.values())
    server_cert, server_key = items["server"]["parameters"]
    assert server_cert["name"] == NAMES.cert(Item.SERVER)
    assert (server_cert["type"], server_cert["tier"], server_cert["version"]) == (
        "String",
        "Standard",
        1,
    )
    stored = certificate_from_stored(seeded[NAMES.cert(Item.SERVER)])
    facts = server_cert["certificate"]
    assert facts["sha256"] == fingerprint(stored)
    assert facts["serial"] == format(stored.serial_number, "x")
    assert facts["subject_alt_names"] == ["localhost", "127.0.0.1"]
    assert facts["extended_key_usage"] == ["serverAuth"]
    assert facts["issuer"] == "CN=docker-tls CA"
    assert facts["not_after"].startswith("2126-11-03")
    assert server_key["type"] == "SecureString"
    assert server_key["kms_key_id"] == "alias/aws/ssm"
    assert server_key["key"] == {"algorithm": "ECDSA-P256", "matches_certificate": True}
    assert items["client"]["parameters"][0]["certificate"]["extended_key_usage"] == ["clientAuth"]
    assert items["ca"]["parameters"][0]["certificate"]["extended_key_usage"] is None
    _no_secrets(out + err, seeded)


def test_inspect_text_names_problems_and_tiers(
    recording: RecordingClient, ssm: Any, seeded: dict[str, str]
) -> None:
    # A client certificate from some other CA, the server key gone, the CA key re-put Advanced.
    other = CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=10, now=NOW)
    foreign = other.issue(Purpose.CLIENT, KeyAlgorithm.ECDSA_P256, validity_days=5, now=NOW)
    ssm.put_parameter(
        Name=NAMES.cert(Item.CLIENT),
        Value=to_stored(foreign.cert_pem()),
        Type="String",
        Overwrite=True,
    )
    ssm.put_parameter(
        Name=NAMES.key(Item.CLIENT),
        Value=to_stored(foreign.key_pem()),
        Type="SecureString",
        Overwrite=True,
    )
    ssm.delete_parameter(Name=NAMES.key(Item.SERVER))
    ssm.put_parameter(
        Name=NAMES.key(Item.CA),
        Value=seeded[NAMES.key(Item.CA)],
        Type="SecureString",
        Tier="Advanced",
        Overwrite=True,
    )
    code, out, err = run(recording, "inspect", "--rack", RACK, *AT)
    assert code == cli.EXIT_OK, err
    assert "client: reissue: not signed by the stored CA" in out
    assert "server: reissue: key not stored" in out
    assert f"{NAMES.key(Item.SERVER)}  (not stored)" in out
    assert "ca: healthy" in out
    ca_key_line = next(
        line for line in out.splitlines() if line.strip().startswith(NAMES.key(Item.CA))
    )
    assert "SecureString  Advanced  v2" in ca_key_line
    assert "issuer      CN=docker-tls CA" in out
    _no_secrets(out + err, {**seeded, NAMES.key(Item.CLIENT): to_stored(foreign.key_pem())})
    assert _writes(recording) == []
    assert recording.count("describe_parameters") == 1


def test_inspect_degrades_when_describe_is_denied(
    recording: RecordingClient, seeded: dict[str, str]
) -> None:
    recording.fail(
        "describe_parameters", client_error("AccessDeniedException", "DescribeParameters")
    )
    code, out, _ = run(recording, "inspect", "--rack", RACK, *AT, "--json")
    assert code == cli.EXIT_OK
    report = json.loads(out)
    assert "ssm:DescribeParameters" in report["note"]
    assert report["items"][0]["parameters"][0]["tier"] is None
    assert report["items"][0]["healthy"] is True


def test_inspect_judges_against_given_properties(
    recording: RecordingClient, seeded: dict[str, str]
) -> None:
    argv = ["--property", "KeyAlgorithm=RSA-2048", "--json", *AT]
    code, out, _ = run(recording, "inspect", "--rack", RACK, *argv)
    assert code == cli.EXIT_OK
    items = {i["item"]: i for i in json.loads(out)["items"]}
    assert items["ca"]["healthy"]
    assert items["client"]["health"] == "reissue: key is ECDSA-P256, KeyAlgorithm asks for RSA-2048"


# --- export ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_export_writes_docker_client_files(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    directory = tmp_path / "nested" / "certs"
    code, out, err = run(
        recording, "export", "--rack", RACK, "--dir", str(directory), "--host", "localhost", *AT
    )
    assert code == cli.EXIT_OK, err
    assert sorted(p.name for p in directory.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert _mode(directory) == 0o700
    assert _mode(directory / "key.pem") == 0o600
    assert _mode(directory / "cert.pem") == 0o644
    assert (directory / "ca.pem").read_bytes() == base64.b64decode(seeded[NAMES.cert(Item.CA)])
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    key = private_key_from_stored(to_stored((directory / "key.pem").read_bytes()))
    assert same_key(cert, key)
    assert signed_by(cert, ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert out.splitlines() == [
        "export DOCKER_HOST=tcp://localhost:2376",
        "export DOCKER_TLS_VERIFY=1",
        f"export DOCKER_CERT_PATH={directory}",
    ]
    _no_secrets(out + err, seeded)
    assert _writes(recording) == []


def test_export_refuses_to_overwrite_without_force(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    (tmp_path / "key.pem").write_text("keep me")
    (tmp_path / "key.pem").chmod(0o644)
    local = ["--host", "localhost"]
    code, out, err = run(recording, "export", "--rack", RACK, "--dir", str(tmp_path), *local)
    assert code == cli.EXIT_ERROR
    assert "already holds key.pem" in err and "--force" in err and "--env-only" in err
    _nothing_to_evaluate(out)
    assert (tmp_path / "key.pem").read_text() == "keep me"
    assert not (tmp_path / "ca.pem").exists()

    code, _, err = run(
        recording, "export", "--rack", RACK, "--dir", str(tmp_path), "--force", *local
    )
    assert code == cli.EXIT_OK, err
    assert (tmp_path / "key.pem").read_bytes() == base64.b64decode(seeded[NAMES.key(Item.CLIENT)])
    assert _mode(tmp_path / "key.pem") == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_export_server_files_and_dockerd_flags(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    code, out, err = run(recording, "export", "--rack", RACK, "--dir", str(tmp_path), "--server")
    assert code == cli.EXIT_OK, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.pem",
        "server-cert.pem",
        "server-key.pem",
    ]
    assert _mode(tmp_path / "server-key.pem") == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "server-cert.pem").read_bytes())
    assert cert == certificate_from_stored(seeded[NAMES.cert(Item.SERVER)])
    assert out.strip() == (
        f"dockerd --tlsverify --tlscacert={tmp_path}/ca.pem --tlscert={tmp_path}/server-cert.pem "
        f"--tlskey={tmp_path}/server-key.pem -H=0.0.0.0:2376"
    )


def test_export_server_listens_on_the_given_host(
    recording: RecordingClient, store: ParameterStore, tmp_path: Path
) -> None:
    sans = ("localhost", "127.0.0.1", "10.0.0.5")
    ensure(store, props(RACK, server_subject_alt_names=sans), rotate=False, now=NOW)
    argv = ["export", "--rack", RACK, "--server", "--host", "10.0.0.5", "--port", "2377"]
    code, out, err = run(recording, *argv, "--dir", str(tmp_path / "a"))
    assert code == cli.EXIT_OK, err
    assert out.strip().endswith(" -H=10.0.0.5:2377")
    assert "warning" not in err
    argv = ["export", "--rack", RACK, "--server", "--host", "10.9.9.9"]
    code, out, err = run(recording, *argv, "--dir", str(tmp_path / "b"))
    assert code == cli.EXIT_OK, err
    assert out.strip().endswith(" -H=10.9.9.9:2376")
    assert "10.9.9.9 is not in the daemons' certificate" in err


def test_export_env_only_prints_the_environment_for_files_already_there(
    recording: RecordingClient, store: ParameterStore, tmp_path: Path, seeded: dict[str, str]
) -> None:
    """docker-machine env for an export: a new shell gets its variables without rewriting
    (or needing --force for) the files; a file the bundle has since replaced is named."""
    directory = tmp_path / "certs"
    argv = ["export", "--rack", RACK, "--dir", str(directory), "--host", "localhost", *AT]
    code, exported, err = run(recording, *argv)
    assert code == cli.EXIT_OK, err
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}
    code, out, err = run(recording, *argv, "--env-only")
    assert code == cli.EXIT_OK, err
    assert out == exported
    assert "wrote" not in err and "warning" not in err
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()} == before
    assert _writes(recording) == []
    # The bundle changes (an Update reissues the client): the stale file is named.
    ensure(store, props(RACK, key_algorithm=KeyAlgorithm.RSA_2048), rotate=False, now=NOW)
    code, out, err = run(recording, *argv, "--env-only")
    assert code == cli.EXIT_OK, err
    assert f"warning: {directory}/cert.pem is not what the rack stores now" in err
    assert "export --force rewrites it" in err
    # Nothing there to print an environment for: refused, and eval fails.
    code, out, err = run(recording, *argv[:4], str(tmp_path / "none"), *argv[5:], "--env-only")
    assert code == cli.EXIT_NOT_FOUND
    assert "ca.pem" in err and "export without --env-only writes them" in err
    _nothing_to_evaluate(out)
    assert not (tmp_path / "none").exists()
    code, out, err = run(recording, *argv, "--env-only", "--force")
    assert code == cli.EXIT_USAGE
    _nothing_to_evaluate(out)


def test_version_comes_from_the_package_metadata() -> None:
    import importlib.metadata

    shown = subprocess.run(
        [sys.executable, "-m", "docker_tls_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"docker-tls {importlib.metadata.version('docker-tls')}"


def test_export_warns_about_a_host_and_port_the_certificate_does_not_name(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    argv = ["--dir", str(tmp_path), "--host", "docker.example.com", "--port", "2377"]
    code, out, err = run(recording, "export", "--rack", RACK, *argv)
    assert code == cli.EXIT_OK
    assert "export DOCKER_HOST=tcp://docker.example.com:2377" in out
    assert "docker.example.com is not in the daemons' certificate" in err


def test_export_warns_about_an_item_near_expiry(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    code, _, err = run(
        recording,
        "export",
        *("--rack", RACK, "--dir", str(tmp_path), "--at", "2126-10-01", "--host", "localhost"),
    )
    assert code == cli.EXIT_OK
    assert "warning: client is not healthy" in err
    assert "within RenewBeforeDays" in err


def test_export_needs_a_host_when_the_daemons_are_named_only_as_this_machine(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    """The default SANs (localhost, 127.0.0.1) would make DOCKER_HOST this machine's own
    Docker: refused before anything is written, naming --host."""
    code, out, err = run(recording, "export", "--rack", RACK, "--dir", str(tmp_path / "c"))
    assert code == cli.EXIT_USAGE
    assert "pass --host" in err
    assert "valid for localhost, 127.0.0.1" in err
    _nothing_to_evaluate(out)
    assert not (tmp_path / "c").exists()


def test_export_says_which_host_it_chose_and_why(
    recording: RecordingClient, store: ParameterStore, tmp_path: Path
) -> None:
    sans = ("localhost", "127.0.0.1", "*.ec2.internal", "docker.rack.internal", "10.0.0.5")
    ensure(store, props(RACK, server_subject_alt_names=sans), rotate=False, now=NOW)
    code, out, err = run(recording, "export", "--rack", RACK, "--dir", str(tmp_path / "c"))
    assert code == cli.EXIT_OK, err
    assert "export DOCKER_HOST=tcp://docker.rack.internal:2376" in out.splitlines()
    assert "DOCKER_HOST uses docker.rack.internal, the first name" in err
    assert "not this machine" in err


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("ip-10-0-1-23.ec2.internal", False),  # under the wildcard
        ("a.b.ec2.internal", True),  # a wildcard covers one label only
        ("ec2.internal", True),
        ("10.0.0.5", False),
        ("10.0.0.6", True),
    ],
)
def test_export_matches_the_host_as_tls_clients_do(
    recording: RecordingClient, store: ParameterStore, tmp_path: Path, host: str, warned: bool
) -> None:
    sans = ("*.ec2.internal", "10.0.0.5")
    ensure(store, props(RACK, server_subject_alt_names=sans), rotate=False, now=NOW)
    code, out, err = run(
        recording, "export", "--rack", RACK, "--dir", str(tmp_path / "c"), "--host", host
    )
    assert code == cli.EXIT_OK, err
    assert f"export DOCKER_HOST=tcp://{host}:2376" in out.splitlines()
    assert ("is not in the daemons' certificate" in err) is warned


def _context(config: Path, name: str) -> dict[str, Any]:
    shown = subprocess.run(
        [DOCKER_CLI, "context", "inspect", name],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DOCKER_CONFIG": str(config)},
    )
    found: list[dict[str, Any]] = json.loads(shown.stdout)
    return found[0]


def test_export_creates_then_updates_a_docker_context(
    recording: RecordingClient,
    tmp_path: Path,
    seeded: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not docker_cli_available():
        pytest.skip("needs the docker CLI")  # a failure under CI=true
    config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{Path(DOCKER_CLI).parent}:{os.environ['PATH']}")
    directory = tmp_path / "certs"
    argv = ["export", "--rack", RACK, "--dir", str(directory), "--context", "rack-a"]
    code, out, err = run(recording, *argv, "--host", "localhost")
    assert code == cli.EXIT_OK, err
    # What to use, and nothing that would override the context once evaluated.
    assert "docker --context rack-a version" in out
    assert "docker context use rack-a" in out
    assert "export DOCKER_HOST" not in out
    evaluated = subprocess.run(
        ["bash", "-c", 'export DOCKER_HOST=tcp://old:1; eval "$1"; env', "-", out],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "DOCKER_CONTEXT=rack-a" in evaluated
    assert not [line for line in evaluated if line.startswith(("DOCKER_HOST=", "DOCKER_TLS"))]
    assert "docker context rack-a created for tcp://localhost:2376" in err
    endpoint = _context(config, "rack-a")["Endpoints"]["docker"]
    assert endpoint["Host"] == "tcp://localhost:2376"
    assert endpoint["SkipTLSVerify"] is False
    tls = _context(config, "rack-a")["Storage"]["TLSPath"]
    stored_key = Path(tls) / "docker" / "key.pem"
    assert stored_key.read_bytes() == (directory / "key.pem").read_bytes()
    # Again for another host: the context is updated, not duplicated.
    code, _, err = run(recording, *argv, "--host", "127.0.0.1", "--port", "2377", "--force")
    assert code == cli.EXIT_OK, err
    assert "docker context rack-a updated for tcp://127.0.0.1:2377" in err
    assert _context(config, "rack-a")["Endpoints"]["docker"]["Host"] == "tcp://127.0.0.1:2377"


def test_a_context_is_refused_for_a_server_export_before_anything_is_written(
    recording: RecordingClient, tmp_path: Path, seeded: dict[str, str]
) -> None:
    argv = ["export", "--rack", RACK, "--dir", str(tmp_path / "s"), "--server", "--context", "x"]
    code, _, err = run(recording, *argv)
    assert code == cli.EXIT_USAGE
    assert "--context is for a client export" in err
    assert not (tmp_path / "s").exists()


def test_export_refuses_a_key_that_does_not_match(
    recording: RecordingClient, ssm: Any, tmp_path: Path, seeded: dict[str, str]
) -> None:
    ssm.put_parameter(
        Name=NAMES.key(Item.CLIENT),
        Value=seeded[NAMES.key(Item.SERVER)],
        Type="SecureString",
        Overwrite=True,
    )
    code, _, err = run(recording, "export", "--rack", RACK, "--dir", str(tmp_path / "x"))
    assert code == cli.EXIT_ERROR
    assert "does not match" in err
    assert not (tmp_path / "x").exists()


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "export"])
def test_a_missing_rack_is_not_found(
    recording: RecordingClient, tmp_path: Path, command: str
) -> None:
    extra = ["--dir", str(tmp_path / "d")] if command == "export" else []
    code, out, err = run(recording, command, "--rack", "ghost", *extra)
    assert code == cli.EXIT_NOT_FOUND
    assert "no docker-tls parameters for Rack 'ghost'" in err
    _nothing_to_evaluate(out, command)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("error", "exit_code", "says"),
    [
        (client_error("AccessDeniedException"), cli.EXIT_ACCESS_DENIED, "kms:Decrypt"),
        (client_error("ExpiredTokenException"), cli.EXIT_CREDENTIALS, "credentials"),
        (client_error("ThrottlingException"), cli.EXIT_ERROR, "ThrottlingException"),
    ],
    ids=["access-denied", "expired-token", "throttled"],
)
@pytest.mark.parametrize("command", ["plan", "inspect", "export"])
def test_ssm_failures_have_clear_errors(
    recording: RecordingClient,
    tmp_path: Path,
    error: Exception,
    exit_code: int,
    says: str,
    command: str,
) -> None:
    recording.fail("get_parameters", error)
    extra = ["--dir", str(tmp_path / "d")] if command == "export" else []
    code, out, err = run(recording, command, "--rack", RACK, *extra)
    assert code == exit_code
    assert says in err
    _nothing_to_evaluate(out, command)
    assert not (tmp_path / "d").exists()


@pytest.fixture
def fresh_default_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new boto3 default session (an earlier test's caches credentials), and an endpoint that
    refuses connections, so that nothing here can reach real AWS."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")


@pytest.mark.usefixtures("fresh_default_session")
def test_no_credentials_from_the_standard_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(key, raising=False)
    code, out, err = run(None, "inspect", "--rack", RACK)
    assert code == cli.EXIT_CREDENTIALS
    assert "no usable AWS credentials (NoCredentialsError)" in err
    assert out == ""


@pytest.mark.usefixtures("fresh_default_session")
def test_no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    code, _, err = run(None, "plan", "--rack", RACK)
    assert code == cli.EXIT_CREDENTIALS
    assert "no AWS region" in err


def _local_versions(directory: Path) -> dict[str, int]:
    """Every parameter the lasting endpoint holds, with its version (what a write changes)."""
    import boto3

    from devkit import local_endpoint

    endpoint = local_endpoint.running(directory)
    assert endpoint is not None
    client = boto3.client(
        "ssm",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = client.get_paginator("describe_parameters").paginate()
    return {p["Name"]: p["Version"] for page in pages for p in page["Parameters"]}


def test_local_mode_uses_one_lasting_endpoint(lasting_endpoint: Path, tmp_path: Path) -> None:
    """Every --local command sees the same bundle: the server and the client exported in
    separate calls share one CA (they used to get one embedded, throwaway CA each). plan
    --local writes nothing: a mistyped rack is reported missing, not created."""
    with ssm_rules.read_only("plan of a rack that does not exist"):
        code, out, err = run(None, "plan", "--rack", "typo-rack", "--local", "--json")
    assert code == cli.EXIT_NOT_FOUND, err
    assert json.loads(out)["action"] == "created"  # what a Create would do; none was run
    assert "no docker-tls parameters for Rack 'typo-rack'" in err
    assert "had no bundle" not in err
    assert "it lasts" in err
    assert _local_versions(lasting_endpoint) == {}
    code, out, err = run(None, "inspect", "--rack", "local-rack", "--local", "--json")
    assert code == cli.EXIT_OK, err
    assert "had no bundle there: created one" in err
    before = _local_versions(lasting_endpoint)
    assert before
    # Once the bundle exists every call only reads; over HTTP the lasting endpoint's own
    # process holds them read-only (it reads the scope from the rules directory it inherited).
    with ssm_rules.read_only("plan and export, once the local bundle exists"):
        for extra in ([], ["--rotate"]):
            code, out, err = run(
                None, "plan", "--rack", "local-rack", "--local", *ECDSA, *extra, "--json"
            )
            assert code == cli.EXIT_OK, err
            decisions = [i["decision"] for i in json.loads(out)["items"]]
            assert decisions == (["rotate"] if extra else ["reuse"]) + ["reissue", "reissue"]
            assert "had no bundle" not in err
        assert _local_versions(lasting_endpoint) == before
        exported = []
        for extra in (["--server"], ["--host", "localhost"]):
            directory = tmp_path / extra[0]
            code, _, err = run(
                None, "export", "--rack", "local-rack", "--local", "--dir", str(directory), *extra
            )
            assert code == cli.EXIT_OK, err
            exported.append((directory / "ca.pem").read_bytes())
        assert exported[0] == exported[1]
        assert "AWS_ENDPOINT_URL_SSM" not in os.environ


def test_the_console_script_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "docker_tls_cli", "plan", "--rack", RACK, "--property", "Nope=1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == cli.EXIT_USAGE
    assert "Nope is not a property" in result.stderr


def test_plan_uses_bundle_plan(
    recording: RecordingClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second copy of the decision: the CLI's answer is whatever bundle.plan says."""
    calls: list[dict[str, Any]] = []

    def spy(values: Any, properties: Any, *, rotate: bool, now: dt.datetime, **more: Any) -> Any:
        calls.append({"rotate": rotate, "rack": properties.rack, "now": now})
        return plan(values, properties, rotate=rotate, now=now, **more)

    monkeypatch.setattr(cli_plan, "plan", spy)
    code, _, _ = run(recording, "plan", "--rack", RACK, *ECDSA, *AT, "--rotate")
    assert code == cli.EXIT_OK
    assert calls == [{"rotate": True, "rack": RACK, "now": NOW}]


# --- a staged CA rotation -------------------------------------------------------------------


def _introduce(store: ParameterStore) -> None:
    import dataclasses

    from handler.model import RotationStage

    staged = dataclasses.replace(props(RACK), rotation_stage=RotationStage.INTRODUCE)
    ensure(store, staged, rotate=False, now=NOW)


def test_plan_shows_what_a_stage_would_write_and_refuses_one_out_of_order(
    recording: RecordingClient, seeded: dict[str, str]
) -> None:
    stage = ["--property", "RotationStage=introduce"]
    code, out, err = run(recording, "plan", "--rack", RACK, *ECDSA, *stage, *AT)
    assert code == cli.EXIT_OK, err
    assert "Action: introduced: a new CA is trusted beside the signing one" in out
    assert f"{NAMES.next_ca_key} parameter is written" in out
    assert "ca-cert after: signs: CN=docker-tls CA" in out and "then a new CA" in out
    code, out, err = run(
        recording, "plan", "--rack", RACK, *ECDSA, "--property", "RotationStage=switch", *AT
    )
    assert code == cli.EXIT_USAGE
    assert "RotationStage switch: no CA rotation is in progress" in err
    assert "Nothing would be written" in err
    assert _writes(recording) == []


def test_plan_during_an_introduce_knows_the_stack_sends_it(
    recording: RecordingClient, store: ParameterStore, seeded: dict[str, str]
) -> None:
    _introduce(store)
    code, out, _ = run(
        recording,
        "plan",
        "--rack",
        RACK,
        *ECDSA,
        "--property",
        "RotationStage=introduce",
        "--json",
        *AT,
    )
    assert code == cli.EXIT_OK
    assert json.loads(out)["action"] == "reused"
    code, out, _ = run(
        recording,
        "plan",
        "--rack",
        RACK,
        *ECDSA,
        "--property",
        "RotationStage=switch",
        "--json",
        *AT,
    )
    report = json.loads(out)
    assert report["action"] == "switched"
    assert [i["decision"] for i in report["items"]] == ["reuse", "reissue", "reissue"]
    assert report["parameters_removed"] == [NAMES.next_ca_key]


def test_inspect_and_export_read_a_bundle_of_two_cas(
    recording: RecordingClient, store: ParameterStore, seeded: dict[str, str], tmp_path: Path
) -> None:
    _introduce(store)
    code, out, err = run(recording, "inspect", "--rack", RACK, *AT)
    assert code == cli.EXIT_OK, err
    assert "ca: healthy" in out and "client: healthy" in out
    assert "    signs:" in out and "also trusted (does not sign):" in out
    assert f"staged CA rotation:\n  {NAMES.next_ca_key}  SecureString" in out
    _no_secrets(out + err, seeded)
    code, _, err = run(
        recording, "export", "--rack", RACK, "--dir", str(tmp_path), "--host", "localhost", *AT
    )
    assert code == cli.EXIT_OK, err
    assert (tmp_path / "ca.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert "ca.pem also trusts" in err
