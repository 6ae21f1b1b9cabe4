"""The lasting local SSM endpoint (devkit.local_endpoint) and the README's local story.

The endpoint runs as its own background process with a state directory and port of the test's
own (the ``lasting_endpoint`` fixture), never the developer's.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devkit import invoke, local_endpoint, ssm_rules
from devkit.dockerd import dockerd_available, private_dockerd
from handler.names import BundleNames
from tests.peers import DOCKER_CLI, docker_cli_available

# Background endpoint processes (and a daemon): the full run only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
RACK = "docker-tls-example"  # the shipped events' Rack
NAMES = BundleNames.for_rack(RACK)


def _use(endpoint: local_endpoint.Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `eval "$(make -s local-ssm)"` does to a shell."""
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)


def _invoke(name: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = invoke.main([str(EVENTS / name)], out=out, err=err)
    return code, json.loads(out.getvalue() or "{}"), err.getvalue()


def test_start_prints_the_environment_and_finds_the_running_one(lasting_endpoint: Path) -> None:
    out = io.StringIO()
    assert local_endpoint.main(["start"], out=out) == 0
    first = out.getvalue()
    assert "export AWS_ENDPOINT_URL_SSM=http://127.0.0.1:" in first
    assert "export AWS_ACCESS_KEY_ID=testing" in first
    running = local_endpoint.running(lasting_endpoint)
    assert running is not None
    again = io.StringIO()
    assert local_endpoint.main(["start"], out=again) == 0
    assert again.getvalue() == first
    assert local_endpoint.running(lasting_endpoint) == running  # the same process


def test_a_bundle_outlives_the_command_and_the_endpoint(
    lasting_endpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, started = local_endpoint.start()
    assert started
    _use(endpoint, monkeypatch)
    code, created, err = _invoke("create.json")
    assert code == invoke.EXIT_SUCCESS, err
    assert f"SSM endpoint {endpoint.url} (AWS_ENDPOINT_URL_SSM)" in err
    assert created["Data"]["Action"] == "created"
    # A later command sees the same bundle: an Update reuses it, nothing is seeded.
    code, updated, err = _invoke("update.json")
    assert code == invoke.EXIT_SUCCESS, err
    assert "seeded" not in err
    assert updated["Data"]["Action"] == "reused"
    assert updated["Data"]["CAFingerprint"] == created["Data"]["CAFingerprint"]
    # Stopped and started again, it holds the same parameters (restored from disk).
    assert local_endpoint.stop() is not None
    state = lasting_endpoint / "parameters.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600  # it holds the private keys
    assert set(NAMES.material) <= set(json.loads(state.read_text()))
    endpoint, started = local_endpoint.start()
    assert started
    _use(endpoint, monkeypatch)
    code, again, err = _invoke("update.json")
    assert code == invoke.EXIT_SUCCESS, err
    assert again["Data"]["Action"] == "reused"
    assert again["Data"]["CAFingerprint"] == created["Data"]["CAFingerprint"]


def test_invoke_without_an_endpoint_says_its_store_is_throwaway() -> None:
    code, _, err = _invoke("create.json")
    assert code == invoke.EXIT_SUCCESS
    assert "throwaway" in err
    assert "make -s local-ssm" in err


def test_aws_is_refused_while_the_local_endpoint_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    out, err = io.StringIO(), io.StringIO()
    code = invoke.main([str(EVENTS / "create.json"), "--aws"], out=out, err=err)
    assert code == invoke.EXIT_USAGE
    assert "unset it" in err.getvalue()
    assert out.getvalue() == ""


# --------------------------------------------------------------------------------------------
# The README's local story, end to end, with a real daemon
# --------------------------------------------------------------------------------------------


def _run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=ROOT
    )


@pytest.mark.dockerd
def test_the_readme_story_gets_to_docker_version_over_mutual_tls(
    lasting_endpoint: Path, tmp_path: Path
) -> None:
    """Start the endpoint, create the bundle through the handler, export the server and the
    client in separate calls, start dockerd --tlsverify with the server's files: `docker
    version` with the client's files is answered by that daemon."""
    if not (dockerd_available() and docker_cli_available()):
        pytest.skip("needs root, dockerd and the docker CLI")  # a failure under CI=true
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCKER_"))}
    env.update({k: os.environ[k] for k in (local_endpoint.STATE_DIR_ENV, local_endpoint.PORT_ENV)})
    python = sys.executable
    started = _run(python, "-m", "devkit.local_endpoint", "start", env=env)
    assert started.returncode == 0, started.stderr
    for line in started.stdout.splitlines():  # eval "$(make -s local-ssm)"
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    created = _run(python, "-m", "devkit.invoke", "events/create.json", env=env)
    assert created.returncode == 0, created.stderr
    export = [python, "-m", "docker_tls_cli", "export", "--rack", RACK]
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    with ssm_rules.read_only("export"):  # the endpoint's process refuses any write meanwhile
        server = _run(*export, "--server", "--dir", str(server_dir), env=env)
        assert server.returncode == 0, server.stderr
        client = _run(*export, "--dir", str(client_dir), "--host", "localhost", env=env)
        assert client.returncode == 0, client.stderr
    assert (server_dir / "ca.pem").read_bytes() == (client_dir / "ca.pem").read_bytes()
    files = {
        "ca.pem": (server_dir / "ca.pem").read_bytes(),
        "server-cert.pem": (server_dir / "server-cert.pem").read_bytes(),
        "server-key.pem": (server_dir / "server-key.pem").read_bytes(),
    }
    with private_dockerd(files=files, tls_listener=True) as daemon:
        shell = dict(env)
        for line in client.stdout.splitlines():  # eval "$(docker-tls export …)"
            name, _, value = line.removeprefix("export ").partition("=")
            shell[name] = value
        assert shell["DOCKER_HOST"] == "tcp://localhost:2376"
        shell["DOCKER_HOST"] = f"tcp://localhost:{daemon.port}"  # the test daemon's port
        shell["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
        version = _run(DOCKER_CLI, "version", "--format", "{{.Server.Version}}", env=shell)
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip()
        # The same client as a Docker context, today's way to name a remote daemon.
        port = ["--host", "localhost", "--port", str(daemon.port), "--force"]
        contexted = _run(*export, "--dir", str(client_dir), *port, "--context", "story", env=shell)
        assert contexted.returncode == 0, contexted.stderr
        plain = {k: v for k, v in shell.items() if k not in ("DOCKER_HOST", "DOCKER_TLS_VERIFY")}
        plain.pop("DOCKER_CERT_PATH")
        plain["PATH"] = f"{Path(DOCKER_CLI).parent}:{plain.get('PATH', '')}"
        server_version = ["version", "--format", "{{.Server.Version}}"]
        via = _run(DOCKER_CLI, "--context", "story", *server_version, env=plain)
        assert via.returncode == 0, via.stderr
        assert via.stdout == version.stdout
